"""Requests that are not about one open document: resolving an item, searching the whole
workspace, pulling the workspace's diagnostics, and methods a backend kind lacks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from clients import NEOVIM, VSCODE, MuxClient, client_converter, hover_text
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from rawclient import RawClient

if TYPE_CHECKING:
    from conftest import Monorepo

StartProxy = Callable[..., Awaitable[MuxClient]]
StartRaw = Callable[[str, Path], Awaitable[RawClient]]


def end_of(text: str) -> dict[str, int]:
    lines = text.split("\n")
    return {"line": len(lines) - 1, "character": len(lines[-1])}


def completion_items(result: Any) -> list[dict[str, Any]]:
    items = result.get("items", []) if isinstance(result, dict) else result or []
    return list(items)


def documentation(item: dict[str, Any]) -> str:
    doc = item.get("documentation")
    return doc.get("value", "") if isinstance(doc, dict) else str(doc or "")


def sessions_that_got(log: str, method: str) -> list[str]:
    """Which backend sessions (`kind#n /venv`) the proxy sent `method` to, per its trace log."""
    found = []
    for line in log.splitlines():
        if "proxy -> backend: " in line:
            message = json.loads(line.split("proxy -> backend: ", 1)[1])
            if message.get("method") == method:
                found.append(line.split("[", 1)[1].split("]", 1)[0])
    return found


@pytest.mark.parametrize("backend", ["pyright", "basedpyright", "pyrefly"])
async def test_resolve_goes_to_the_backend_that_produced_the_item(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy, tmp_path: Path
) -> None:
    """Complete in alpha, then in beta, then resolve alpha's item: alpha's backend answers.
    (ty declares no completionItem/resolve, so a client never sends it one.)"""
    log = tmp_path / "proxy.log"
    client = await start_proxy(
        backend,
        fresh_monorepo.root,
        NEOVIM,
        args=("--log-level", "trace", "--log-file", str(log)),
    )
    uris = {}
    for project, line in (("alpha", "from shapes import ar"), ("beta", "from shapes import Ci")):
        uri = client.open(fresh_monorepo.path(f"{project}/app.py"))
        await client.wait_for_diagnostics(uri)
        text = client.change(uri, [{"text": client.text(uri) + line}])
        uris[project] = (uri, text)
    completions = {}
    for project, (uri, text) in uris.items():
        result = await client.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": end_of(text)},
        )
        completions[project] = completion_items(result)
    area = next(i for i in completions["alpha"] if i["label"] == "area")
    assert any(i["label"] == "Circle" for i in completions["beta"])
    resolved = await client.request("completionItem/resolve", area)
    assert resolved["label"] == "area"
    if backend != "pyrefly":  # pyrefly's resolve adds nothing; its routing is checked below
        assert "Return the area of a circle" in documentation(resolved), resolved
    targets = sessions_that_got(log.read_text(encoding="utf-8"), "completionItem/resolve")
    alpha_venv = str(fresh_monorepo.venv("alpha").resolve())
    assert len(targets) == 1 and targets[0].endswith(alpha_venv), targets


async def test_workspace_symbols_search_projects_not_opened_yet(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """From a file of alpha, the agent asks where a class of beta lives; beta has not been
    opened (Claude Code sends workspace/symbol to the server of the file it is in)."""
    models = fresh_monorepo.path("beta/models.py")
    models.write_text('class BetaInvoice:\n    """An invoice of beta."""\n\n    total: int = 0\n')
    client = await start_proxy(backend, fresh_monorepo.root)
    alpha = client.open(fresh_monorepo.path("alpha/app.py"))
    await client.wait_for_diagnostics(alpha)
    found = await client.request("workspace/symbol", {"query": "BetaInvoice"})
    locations = [s["location"]["uri"] for s in found if s["name"] == "BetaInvoice"]
    assert locations and all(uri.endswith("/beta/models.py") for uri in locations), found


async def test_a_project_that_could_not_be_searched_is_named_never_silence(
    fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """With no backend slot free for beta, a symbol only beta has is not silently "not
    found": the error says beta was not searched, why, and what to do."""
    fresh_monorepo.path("beta/models.py").write_text("class BetaInvoice:\n    total: int = 0\n")
    client = await start_proxy("ty", fresh_monorepo.root, args=("--max-backends", "1"))
    alpha = client.open(fresh_monorepo.path("alpha/app.py"))
    await client.wait_for_diagnostics(alpha)
    with pytest.raises(JsonRpcException) as err:
        await client.request("workspace/symbol", {"query": "BetaInvoice"})
    message = err.value.message
    assert str(fresh_monorepo.path("beta")) in message and "--max-backends" in message, message
    # a symbol that the searched project has is answered normally (the gap is only logged)
    found = await client.request("workspace/symbol", {"query": "report"})
    assert any(s["name"] == "report" for s in found)


async def test_workspace_pull_diagnostics_cover_every_backend(
    fresh_monorepo: Monorepo, start_raw_proxy: StartRaw
) -> None:
    """A VS Code-like client pulls the whole workspace's diagnostics from ty (in its
    "workspace" diagnostic mode: without it ty holds the request until something changes,
    straight or through the proxy alike). Each backend answers for its own environment's
    files — alpha's and beta's errors differ because their shapes packages do — partial
    results reach the client under its own token, and one answer ends the request."""
    fresh_monorepo.path("alpha/broken.py").write_text("from shapes import Circle\n")
    fresh_monorepo.path("beta/broken.py").write_text("from shapes import area\n")
    proxy = await start_raw_proxy("ty", fresh_monorepo.root)

    def answer(message: dict[str, Any]) -> Any:
        if message["method"] == "workspace/configuration":
            return [{"diagnosticMode": "workspace"}] * len(message["params"]["items"])
        return None

    proxy.server_request_handler = answer
    await proxy.initialize(VSCODE.initialize_params(fresh_monorepo.root))
    for project in ("alpha", "beta"):  # each backend started by a file of its project
        proxy.open(fresh_monorepo.path(f"{project}/app.py"))
        await proxy.result(
            "textDocument/hover",
            {
                "textDocument": {"uri": fresh_monorepo.path(f"{project}/app.py").as_uri()},
                "position": {"line": 0, "character": 0},
            },
        )
    result = await proxy.result(
        "workspace/diagnostic", {"previousResultIds": [], "partialResultToken": "pull-1"}
    )
    reports = list(result["items"])
    for message in proxy.notifications:
        if message["method"] == "$/progress" and message["params"]["token"] == "pull-1":
            reports += message["params"]["value"].get("items", [])
    messages = {
        report["uri"]: " ".join(d["message"] for d in report.get("items", [])) for report in reports
    }
    alpha_bad = fresh_monorepo.path("alpha/broken.py").as_uri()
    beta_bad = fresh_monorepo.path("beta/broken.py").as_uri()
    assert "Circle" in messages.get(alpha_bad, ""), messages
    assert "area" in messages.get(beta_bad, ""), messages


async def test_a_cancelled_workspace_pull_is_answered_once(
    fresh_monorepo: Monorepo, start_raw_proxy: StartRaw
) -> None:
    """With no backend that pulls (pyrefly), the proxy holds the request as a long poll
    would; a cancel answers it at once, and only once."""
    proxy = await start_raw_proxy("pyrefly", fresh_monorepo.root)
    await proxy.initialize(VSCODE.initialize_params(fresh_monorepo.root))
    await proxy.wait_for_diagnostics(proxy.open(fresh_monorepo.path("alpha/app.py")))
    pending = asyncio.ensure_future(
        proxy.request("workspace/diagnostic", {"previousResultIds": []}, msg_id="pull")
    )
    await asyncio.sleep(0.5)  # nothing arrives meanwhile: that is the point, no event to await
    assert not pending.done()
    proxy.notify("$/cancelRequest", {"id": "pull"})
    answer = await asyncio.wait_for(pending, 5)
    assert answer["error"]["code"] == -32800, answer
    assert [m for d, m in proxy.messages if d == "in" and m.get("id") == "pull"] == [answer]


async def test_a_method_the_backend_kind_lacks_is_named_with_the_kinds_that_have_it(
    backend: str, monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """Claude Code sends goToImplementation even when the server does not declare it; pyright
    would answer "Unhandled method", which tells the agent nothing."""
    client = await start_proxy(backend, monorepo.root)
    app = monorepo.path("alpha/app.py")
    uri = client.open(app)
    await client.wait_for_diagnostics(uri)
    params = {
        "textDocument": {"uri": uri},
        "position": client.position(uri, "area(2.0)"),
    }
    if backend != "pyright":
        await client.request("textDocument/implementation", params)  # answered, not refused
        return
    with pytest.raises(JsonRpcException) as err:
        await client.request("textDocument/implementation", params)
    message = err.value.message
    assert "pyright does not support textDocument/implementation" in message, message
    assert all(k in message for k in ("basedpyright", "ty", "pyrefly")), message
    assert json.dumps(message)  # (a plain string the agent can read)


async def test_a_multi_root_client_gets_each_folder_from_its_own_environments(
    backend: str, tmp_path: Path, start_proxy: StartProxy
) -> None:
    """Two workspace folders from two repositories, then a third added: each file is answered
    from its own project's environment, and workspace symbols search every folder."""
    from conftest import make_monorepo

    one = make_monorepo(tmp_path / "one").root
    two = make_monorepo(tmp_path / "two").root
    (two / "beta" / "models.py").write_text("class TwoInvoice:\n    total: int = 0\n")
    client = await start_proxy(backend, tmp_path, VSCODE, initialize=False)
    params = VSCODE.initialize_params(tmp_path)
    params["rootUri"] = params["rootPath"] = None
    params["workspaceFolders"] = [
        {"uri": (one / "alpha").as_uri(), "name": "one-alpha"},
        {"uri": (two / "beta").as_uri(), "name": "two-beta"},
    ]
    result = await client.initialize_session(
        client_converter().structure(params, types.InitializeParams)
    )
    client.encoding = result.capabilities.position_encoding or "utf-16"
    alpha = client.open(one / "alpha" / "app.py")
    beta = client.open(two / "beta" / "app.py")
    assert "def area(radius: float) -> float" in hover_text(await client.hover(alpha, "area(2.0)"))
    assert "A circle that knows its own area." in hover_text(await client.hover(beta, "Circle"))
    found = await client.request("workspace/symbol", {"query": "TwoInvoice"})
    assert any(s["location"]["uri"].endswith("/beta/models.py") for s in found), found

    client.workspace_did_change_workspace_folders(
        types.DidChangeWorkspaceFoldersParams(
            event=types.WorkspaceFoldersChangeEvent(
                added=[types.WorkspaceFolder(uri=(two / "alpha").as_uri(), name="two-alpha")],
                removed=[types.WorkspaceFolder(uri=(one / "alpha").as_uri(), name="one-alpha")],
            )
        )
    )
    other = client.open(two / "alpha" / "app.py")
    assert "def area(radius: float) -> float" in hover_text(await client.hover(other, "area(2.0)"))
    state = await client.request(
        "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
    )
    assert state["workspaceFolders"] == [str(two / "beta"), str(two / "alpha")]
    projects = {p["project"] for b in state["backends"] for p in b["projects"]}  # (shared too)
    assert projects >= {str(one / "alpha"), str(two / "beta"), str(two / "alpha")}
