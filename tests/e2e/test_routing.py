"""Each file is answered by the backend of its own venv (Claude Code profile, one shared proxy).

alpha's venv has shapes 1.x (``area()`` function), beta's has shapes 2.x (``Circle`` class): a
file answered from the wrong venv shows an unresolved import or a wrong hover at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from clients import MuxClient, definition_targets, hover_text, uri_path
from pygls.exceptions import JsonRpcException

if TYPE_CHECKING:
    from conftest import Monorepo

ALPHA = "alpha/app.py"
BETA = "beta/app.py"
GAMMA = "gamma/tool.py"

AREA_V1 = "def area(radius: float) -> float"
CIRCLE_V2_DOC = "A circle that knows its own area."  # beta's shapes only
REQUEST_FAILED = -32803


async def settled(client: MuxClient, monorepo: Monorepo, relative: str) -> str:
    """Open a document (once per session) and wait until its backend published diagnostics."""
    uri = client.open(monorepo.path(relative))
    await client.wait_for_diagnostics(uri)
    return uri


async def assert_alpha_answers(client: MuxClient, monorepo: Monorepo) -> None:
    uri = client.open(monorepo.path(ALPHA))
    hover = hover_text(await client.hover(uri, "area(2.0)"))
    assert AREA_V1 in hover, hover
    targets = definition_targets(await client.definition(uri, "area(2.0)"))
    assert targets, "no definition for area"
    assert {uri_path(t) for t, _ in targets} == {monorepo.shapes_init("alpha")}


async def assert_beta_answers(client: MuxClient, monorepo: Monorepo) -> None:
    uri = client.open(monorepo.path(BETA))
    hover = hover_text(await client.hover(uri, "Circle"))
    assert "class" in hover, hover
    assert CIRCLE_V2_DOC in hover, hover
    targets = definition_targets(await client.definition(uri, "Circle"))
    assert targets, "no definition for Circle"
    assert {uri_path(t) for t, _ in targets} == {monorepo.shapes_init("beta")}


async def test_claude_code_gets_utf16(shared_proxy: MuxClient) -> None:
    """Claude Code offers only UTF-16: the proxy must not pick anything else."""
    assert shared_proxy.init_result["capabilities"].get("positionEncoding", "utf-16") == "utf-16"


async def test_alpha_hover_is_shapes_1(shared_proxy: MuxClient, monorepo: Monorepo) -> None:
    uri = shared_proxy.open(monorepo.path(ALPHA))
    # `area(2.0)` comes after "π ≈ 3.14 — 🚀" on its line: the column is in UTF-16 units
    hover = hover_text(await shared_proxy.hover(uri, "area(2.0)"))
    assert AREA_V1 in hover, hover


async def test_beta_hover_is_shapes_2(shared_proxy: MuxClient, monorepo: Monorepo) -> None:
    uri = shared_proxy.open(monorepo.path(BETA))
    hover = hover_text(await shared_proxy.hover(uri, "Circle"))  # in the import line
    assert "class" in hover, hover
    assert "Circle" in hover, hover
    assert CIRCLE_V2_DOC in hover, hover


async def test_alpha_definitions_land_in_alpha_venv(
    shared_proxy: MuxClient, monorepo: Monorepo
) -> None:
    uri = shared_proxy.open(monorepo.path(ALPHA))
    expected = monorepo.shapes_init("alpha")
    for needle, offset in (("from shapes", 5), ("import area", 7), ("area(2.0)", 0)):
        result = await shared_proxy.definition(uri, needle, offset=offset)
        targets = definition_targets(result)
        assert targets, f"no definition at {needle!r}"
        assert {uri_path(t) for t, _ in targets} == {expected}, (needle, result)


async def test_beta_definitions_land_in_beta_venv(
    shared_proxy: MuxClient, monorepo: Monorepo
) -> None:
    uri = shared_proxy.open(monorepo.path(BETA))
    expected = monorepo.shapes_init("beta")
    for needle, offset in (("from shapes", 5), ("import Circle", 7)):
        result = await shared_proxy.definition(uri, needle, offset=offset)
        targets = definition_targets(result)
        assert targets, f"no definition at {needle!r}"
        assert {uri_path(t) for t, _ in targets} == {expected}, (needle, result)


async def test_diagnostics_clean_in_both_projects(
    shared_proxy: MuxClient, monorepo: Monorepo
) -> None:
    """No unresolved import, no unknown attribute: each file sees its own shapes."""
    for relative, needle in ((ALPHA, "area(2.0)"), (BETA, "Circle")):
        uri = await settled(shared_proxy, monorepo, relative)
        await shared_proxy.hover(uri, needle)  # pyright-family: answered after analysis
        latest = shared_proxy.latest_diagnostics(uri)
        assert latest == [], f"{relative}: {latest}"


async def test_switching_back_and_forth(shared_proxy: MuxClient, monorepo: Monorepo) -> None:
    for _ in range(3):
        await assert_alpha_answers(shared_proxy, monorepo)
        await assert_beta_answers(shared_proxy, monorepo)
    await assert_alpha_answers(shared_proxy, monorepo)


async def test_hover_on_comment_is_null(shared_proxy: MuxClient, monorepo: Monorepo) -> None:
    uri = shared_proxy.open(monorepo.path(ALPHA))
    assert await shared_proxy.hover(uri, "# non-ASCII", offset=4) is None


@pytest.mark.parametrize("method", ["textDocument/hover", "textDocument/definition"])
async def test_file_without_venv_is_request_failed(
    shared_proxy: MuxClient, monorepo: Monorepo, method: str
) -> None:
    """Strict mode: no guessing, a RequestFailed error that says what to do."""
    uri = shared_proxy.open(monorepo.path(GAMMA))
    position = shared_proxy.position(uri, "shout(")
    with pytest.raises(JsonRpcException) as caught:
        await shared_proxy.request(method, {"textDocument": {"uri": uri}, "position": position})
    error = caught.value
    assert error.code == REQUEST_FAILED, (error.code, error.message)
    assert "tool.py" in error.message, error.message
    assert ".venv" in error.message, error.message
    assert "uv sync" in error.message or "python -m venv" in error.message, error.message
    # the session is unharmed
    await assert_alpha_answers(shared_proxy, monorepo)


async def test_workspace_symbol_empty_query(shared_proxy: MuxClient, monorepo: Monorepo) -> None:
    """Claude Code sends ``query: ""``: it must be answered (a list or null), not fail or hang.

    All four backends answer "" with nothing (pyright, basedpyright, pyrefly: [], ty: null), so
    the merged answer is empty too; symbols only come with a non-empty query (next test).
    """
    await settled(shared_proxy, monorepo, ALPHA)
    await settled(shared_proxy, monorepo, BETA)
    result = await shared_proxy.request("workspace/symbol", {"query": ""})
    assert result is None or isinstance(result, list), result


async def test_workspace_symbol_spans_projects(shared_proxy: MuxClient, monorepo: Monorepo) -> None:
    await settled(shared_proxy, monorepo, ALPHA)
    await settled(shared_proxy, monorepo, BETA)
    result = await shared_proxy.request("workspace/symbol", {"query": "report"})
    found = {
        uri_path(symbol["location"]["uri"]) for symbol in result or [] if symbol["name"] == "report"
    }
    assert found == {monorepo.path(ALPHA), monorepo.path(BETA)}, result


@pytest.mark.parametrize("relative", [ALPHA, BETA])
async def test_call_hierarchy(shared_proxy: MuxClient, monorepo: Monorepo, relative: str) -> None:
    """incoming/outgoingCalls carry only ``item``: they must reach the item's backend (a
    shared ty lists the caller once per folder that sees it: answered once, test_sharing)."""
    uri = await settled(shared_proxy, monorepo, relative)
    path = monorepo.path(relative)

    (report,) = await shared_proxy.prepare_call_hierarchy(uri, "def report", offset=4)
    assert report["name"] == "report"
    incoming = await shared_proxy.request("callHierarchy/incomingCalls", {"item": report})
    assert [(call["from"]["name"], uri_path(call["from"]["uri"])) for call in incoming] == [
        ("main", path)
    ]

    (main,) = await shared_proxy.prepare_call_hierarchy(uri, "def main", offset=4)
    outgoing = await shared_proxy.request("callHierarchy/outgoingCalls", {"item": main})
    names = {call["to"]["name"] for call in outgoing}
    assert "print" in names, outgoing
    if shared_proxy.backend != "pyrefly":  # pyrefly 1.4 lists only the print() calls
        assert "report" in names, outgoing
