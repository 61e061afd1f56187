"""JSON-level contract, checked with a raw client: ids, ``"result": null``, and fidelity.

A typed client cannot tell ``{"result": null}`` from a response without ``result`` (Claude Code
hangs on the latter), nor send id 0 (Claude Code's initialize id). Fidelity: through the proxy,
a backend's answers must be the very JSON the same backend gives when started straight in the
project with the project's venv.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from clients import CLAUDE_CODE, PROFILES, VSCODE, position_of, proxy_command, proxy_env
from rawclient import Message, RawClient

if TYPE_CHECKING:
    from conftest import Monorepo

StartRaw = Callable[[str, "Path"], Awaitable[RawClient]]
StartRawCommand = Callable[..., Awaitable[RawClient]]


def at(uri: str, text: str, needle: str, offset: int = 0) -> dict[str, Any]:
    return {"textDocument": {"uri": uri}, "position": position_of(text, needle, offset=offset)}


def body(response: Message) -> dict[str, Any]:
    """A response without its id: what must be equal between proxy and straight backend."""
    return {key: value for key, value in response.items() if key != "id"}


async def test_initialize_id_zero_and_null_results(
    backend: str, monorepo: Monorepo, start_raw_proxy: StartRaw
) -> None:
    proxy = await start_raw_proxy(backend, monorepo.root)
    init = await proxy.initialize(CLAUDE_CODE.initialize_params(monorepo.root), msg_id=0)
    assert init["id"] == 0, init.get("id")
    assert type(init["id"]) is int  # not "0", not 1
    assert "capabilities" in init["result"], init

    app = monorepo.path("alpha/app.py")
    text = app.read_text(encoding="utf-8")
    uri = proxy.open(app)
    await proxy.wait_for_diagnostics(uri)

    blank_line = text.split("\n").index("")
    for params in (
        at(uri, text, "# non-ASCII", offset=4),  # a comment, after non-ASCII text
        {"textDocument": {"uri": uri}, "position": {"line": blank_line, "character": 0}},
    ):
        response = await proxy.request("textDocument/hover", params)
        assert "error" not in response, response
        assert "result" in response, f"result dropped: {response}"
        assert response["result"] is None, response

    # references on a comment: null or [], but always a present "result"
    response = await proxy.request(
        "textDocument/references",
        {**at(uri, text, "# non-ASCII", offset=4), "context": {"includeDeclaration": True}},
    )
    assert "result" in response, f"result dropped: {response}"
    assert response["result"] in (None, []), response

    # string ids, including non-ASCII ones, come back untouched
    response = await proxy.request(
        "textDocument/hover", at(uri, text, "area(2.0)"), msg_id="hover-π-🚀"
    )
    assert response["id"] == "hover-π-🚀"
    assert response["result"] is not None

    shutdown = await proxy.request("shutdown", msg_id=0)  # ids may be reused once answered
    assert shutdown["id"] == 0
    assert "result" in shutdown, shutdown
    assert shutdown["result"] is None
    proxy.notify("exit")
    assert await proxy.wait(30) == 0


async def test_answers_equal_straight_backend(
    backend: str, monorepo: Monorepo, start_raw_proxy: StartRaw, start_straight: StartRaw
) -> None:
    alpha = monorepo.path("alpha")
    app = alpha / "app.py"
    text = app.read_text(encoding="utf-8")
    proxy, straight = await asyncio.gather(
        start_raw_proxy(backend, monorepo.root), start_straight(backend, alpha)
    )
    await asyncio.gather(
        proxy.initialize(CLAUDE_CODE.initialize_params(monorepo.root)),
        straight.initialize(CLAUDE_CODE.initialize_params(alpha)),
    )
    uri = proxy.open(app)
    straight.open(app)
    await asyncio.gather(proxy.wait_for_diagnostics(uri), straight.wait_for_diagnostics(uri))

    requests: list[tuple[str, dict[str, Any]]] = [
        ("textDocument/hover", at(uri, text, "area(2.0)")),
        ("textDocument/hover", at(uri, text, "report(2.0)")),
        ("textDocument/hover", at(uri, text, "import area", offset=7)),
        ("textDocument/hover", at(uri, text, "# non-ASCII", offset=4)),
        ("textDocument/definition", at(uri, text, "area(2.0)")),
        ("textDocument/definition", at(uri, text, "from shapes", offset=5)),
        ("textDocument/definition", at(uri, text, "report(2.0)")),
        ("textDocument/documentSymbol", {"textDocument": {"uri": uri}}),
    ]
    for method, params in requests:
        via_proxy, direct = await asyncio.gather(
            proxy.request(method, params), straight.request(method, params)
        )
        assert body(via_proxy) == body(direct), (
            method,
            params.get("position"),
        )

    # and the diagnostics that led here were the same
    assert proxy.last_diagnostics(uri) == straight.last_diagnostics(uri)


@pytest.mark.parametrize("profile", sorted(PROFILES))
async def test_initialize_answer_is_the_installed_backends_own(
    backend: str,
    profile: str,
    monorepo: Monorepo,
    start_raw: StartRawCommand,
    start_straight: StartRaw,
    tmp_path: Path,
) -> None:
    """Answered before any backend runs: a first session (empty cache) answers from the
    recording and learns the installed backend's own answer in the background; every later
    session answers exactly what that backend says to this client (its version included),
    but for the proxy's own status command."""
    client = PROFILES[profile]
    env = proxy_env()
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    first = await start_raw(proxy_command(backend), cwd=monorepo.root, env=env, name="first")
    await first.initialize(client.initialize_params(monorepo.root))
    await first.wait_for(
        lambda m: m["method"] == "window/logMessage" and "learned" in m["params"]["message"]
    )
    assert (await first.result("typemux/status"))["initializeAnswer"] == "recorded, then learned"

    alpha = monorepo.path("alpha")
    proxy = await start_raw(proxy_command(backend), cwd=monorepo.root, env=env, name="second")
    straight = await start_straight(backend, alpha)
    via_proxy, direct = await asyncio.gather(
        proxy.initialize(client.initialize_params(monorepo.root)),
        straight.initialize(client.initialize_params(alpha)),
    )
    assert (await proxy.result("typemux/status"))["initializeAnswer"] == "learned"
    ours = via_proxy["result"]
    commands = ours["capabilities"]["executeCommandProvider"]["commands"]
    assert commands[-1] == "typemux.status"
    commands.pop()
    if not commands and "executeCommandProvider" not in direct["result"]["capabilities"]:
        del ours["capabilities"]["executeCommandProvider"]
    assert ours == direct["result"]


async def test_what_the_recording_lacked_is_registered_where_the_client_allows(
    monorepo: Monorepo, start_raw: StartRawCommand, tmp_path: Path
) -> None:
    """pyrefly 1.5.0 has semantic tokens that the 1.4.1 recording lacks: a VS Code-like
    client (dynamic registration) gets them registered in the first session already."""
    env = proxy_env()
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proxy = await start_raw(proxy_command("pyrefly"), cwd=monorepo.root, env=env, name="p")
    registered: list[dict[str, Any]] = []

    def answer(message: dict[str, Any]) -> Any:
        if message["method"] == "client/registerCapability":
            registered.extend(message["params"]["registrations"])
        if message["method"] == "workspace/configuration":
            return [None] * len(message["params"]["items"])
        return None

    proxy.server_request_handler = answer
    init = await proxy.initialize(VSCODE.initialize_params(monorepo.root))
    assert "semanticTokensProvider" not in init["result"]["capabilities"]  # (the recording)
    await proxy.wait_for(
        lambda m: m["method"] == "window/logMessage" and "learned" in m["params"]["message"]
    )
    (tokens,) = [r for r in registered if r["method"] == "textDocument/semanticTokens"]
    assert tokens["registerOptions"]["legend"]["tokenTypes"], tokens
    app = monorepo.path("alpha/app.py")
    await proxy.wait_for_diagnostics(proxy.open(app))
    result = await proxy.result(
        "textDocument/semanticTokens/full", {"textDocument": {"uri": app.as_uri()}}
    )
    assert result and result["data"], result
