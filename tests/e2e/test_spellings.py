"""One file, several URIs: every backend sees one spelling; the client gets its own back.

`file://localhost/p` and `file:///p` name one file, as do `%61` and `a`. Measured straight:
pyright and basedpyright answer `null` about a document opened as `file:///p` and asked
about as `file://localhost/p` (basedpyright also the other way round); pyrefly answers and
publishes under `file:///p` whatever the document was opened as; pyright publishes `%61pp.py`
as `app.py`. Through the proxy, on all four backends: the answer is the document's, and every
URI naming the client's file is spelled as the client spelled it (in the request, else when
it opened the document).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from clients import CLAUDE_CODE, position_of, uri_path
from rawclient import RawClient

if TYPE_CHECKING:
    from conftest import Monorepo

StartRaw = Callable[[str, Path], Awaitable[RawClient]]

AREA_V1 = "def area(radius: float) -> float"
PUBLISH = "textDocument/publishDiagnostics"

VARIANTS: dict[str, Callable[[str], str]] = {
    "localhost": lambda uri: uri.replace("file:///", "file://localhost/", 1),
    "escaped": lambda uri: uri.replace("/app.py", "/%61pp.py"),
}


def locations(result: Any) -> list[tuple[str, int]]:
    """(uri, line) of each target of a definition answer (Location, Location[], LocationLink[])."""
    items = result if isinstance(result, list) else [result] if result else []
    return [
        (i.get("targetUri", i.get("uri")), (i.get("targetRange") or i["range"])["start"]["line"])
        for i in items
    ]


async def ask(proxy: RawClient, uri: str, text: str, method: str, needle: str) -> Any:
    params = {"textDocument": {"uri": uri}, "position": position_of(text, needle)}
    response = await proxy.request(method, params)
    assert "error" not in response, response
    return response["result"]


async def check_answers(
    proxy: RawClient, asked: str, text: str, monorepo: Monorepo, report_line: int, caps: Any
) -> None:
    """Hover and definitions on alpha/app.py, asked as `asked`: the document's answers, and
    the document itself named as `asked`."""
    hover = await ask(proxy, asked, text, "textDocument/hover", "area(2.0)")
    assert hover is not None, f"null hover asked as {asked}"
    assert AREA_V1 in str(hover), hover
    # a definition in the same file: named in the spelling of the request
    targets = locations(await ask(proxy, asked, text, "textDocument/definition", "report(2.0)"))
    assert targets == [(asked, report_line)], targets
    # a definition elsewhere (the venv's shapes): as the backend spells it
    targets = locations(await ask(proxy, asked, text, "textDocument/definition", "area(2.0)"))
    assert [uri_path(t) for t, _ in targets] == [monorepo.shapes_init("alpha")], targets
    assert all(t.startswith("file:///") for t, _ in targets), targets
    if not caps.get("callHierarchyProvider"):
        return
    # a call hierarchy item names the file as asked, and is understood when sent back so
    items = await ask(proxy, asked, text, "textDocument/prepareCallHierarchy", "report(radius")
    assert items and [i["uri"] for i in items] == [asked], items
    calls = await proxy.request("callHierarchy/incomingCalls", {"item": items[0]})
    assert calls.get("result"), calls
    assert {c["from"]["uri"] for c in calls["result"]} == {asked}, calls


@pytest.mark.parametrize("variant", sorted(VARIANTS))
async def test_one_file_under_two_spellings(
    backend: str, variant: str, monorepo: Monorepo, start_raw_proxy: StartRaw
) -> None:
    app = monorepo.path("alpha/app.py")
    text = app.read_text(encoding="utf-8")
    plain = app.as_uri()
    other = VARIANTS[variant](plain)
    report_line = text.split("\n").index("def report(radius: float) -> str:")

    # opened plainly, asked in the other spelling (the pyright `null` of issue 17)
    proxy = await start_raw_proxy(backend, monorepo.root)
    init = await proxy.initialize(CLAUDE_CODE.initialize_params(monorepo.root))
    caps = init["result"]["capabilities"]
    proxy.open(app)
    await proxy.wait_for_diagnostics(plain)
    await check_answers(proxy, other, text, monorepo, report_line, caps)
    await check_answers(proxy, plain, text, monorepo, report_line, caps)

    # opened in the other spelling: asked either way; published under the opened one
    proxy = await start_raw_proxy(backend, monorepo.root)
    await proxy.initialize(CLAUDE_CODE.initialize_params(monorepo.root))
    proxy.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": other, "languageId": "python", "version": 1, "text": text}},
    )
    await proxy.wait_for_diagnostics(other)
    await check_answers(proxy, other, text, monorepo, report_line, caps)
    await check_answers(proxy, plain, text, monorepo, report_line, caps)
    # an edit and a close in the plain spelling reach the document opened in the other one
    proxy.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": plain, "version": 2},
            "contentChanges": [{"text": text + "\nundefined_name\n"}],
        },
    )
    diagnostics = await proxy.wait_for_diagnostics(
        other, lambda ds: any("undefined_name" in d["message"] for d in ds)
    )
    assert diagnostics
    published = {
        m["params"]["uri"]
        for m in proxy.notifications
        if m.get("method") == PUBLISH and uri_path(m["params"]["uri"]) == app
    }
    assert published == {other}, published

    # reopened under the plain spelling (no close): the backend has it open once, as reopened
    proxy.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": plain, "languageId": "python", "version": 3, "text": text}},
    )
    status = (await proxy.request("typemux/status", {}))["result"]
    assert [b["openDocuments"] for b in status["backends"]] == [[plain]], status["backends"]
    await check_answers(proxy, other, text, monorepo, report_line, caps)
