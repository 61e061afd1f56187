"""Answers across projects: `libs/core` installed editable into `services/a`, `services/b` and
`services/alias` (which imports `greet as hello`); every project has its own `.venv`. On every
real backend, references, rename and incoming calls from the definition and from a call site
cover every project — or the proxy says which project it could not ask."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from clients import NEOVIM, VSCODE, MuxClient, apply_change, proxy_command, proxy_env
from layouts import Layout, build, build_uv_workspace
from pygls.exceptions import JsonRpcException

StartProxy = Callable[..., Awaitable[MuxClient]]


@pytest.fixture(scope="session")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return build(tmp_path_factory.mktemp("across"))


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return build_uv_workspace(tmp_path_factory.mktemp("uvws"))


def files_of(locations: Any) -> set[str]:
    """The files of a list of locations, relative to nothing: `libs/core/...` etc."""
    found = set()
    for location in locations or []:
        uri = location.get("uri") or location.get("targetUri")
        found.add(_short(uri))
    return found


def _short(uri: str) -> str:
    for marker in ("/libs/", "/services/"):
        if marker in uri:
            return marker.strip("/") + "/" + uri.split(marker, 1)[1]
    return uri


async def status_of(client: MuxClient) -> Any:
    return await client.request(
        "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
    )


CORE = "libs/core/src/core/__init__.py"
EVERY = {CORE, "services/a/app.py", "services/b/app.py", "services/alias/app.py"}


def where(client: MuxClient, layout: Layout, start: str) -> dict[str, Any]:
    """The position of `greet` in the definition (`start == "definition"`) or in a's call."""
    if start == "definition":
        uri = client.open(layout.core)
        position = client.position(uri, "def greet", offset=4)
    else:
        uri = client.open(layout.path("services/a/app.py"))
        position = client.position(uri, 'greet("a")')
    return {"textDocument": {"uri": uri}, "position": position}


@pytest.mark.parametrize("start", ["definition", "call"])
async def test_references_cover_every_project(
    backend: str, layout: Layout, start_proxy: StartProxy, start: str
) -> None:
    client = await start_proxy(backend, layout.root)
    at = where(client, layout, start)
    found = await client.request(
        "textDocument/references", {**at, "context": {"includeDeclaration": True}}
    )
    assert files_of(found) >= EVERY, found
    assert len({json.dumps(f, sort_keys=True) for f in found}) == len(found), "duplicates"
    keys = [
        (f["uri"], f["range"]["start"]["line"], f["range"]["start"]["character"]) for f in found
    ]
    assert keys == sorted(keys), "not ordered"


def apply(edit: dict[str, Any], layout: Layout) -> dict[str, str]:
    """The files as the client would have them after applying a WorkspaceEdit."""
    per_file: dict[str, list[Any]] = {}
    for change in edit.get("documentChanges") or []:
        per_file.setdefault(change["textDocument"]["uri"], []).extend(change["edits"])
    for uri, edits in (edit.get("changes") or {}).items():
        per_file.setdefault(uri, []).extend(edits)
    result = {}
    for uri, edits in per_file.items():
        text = Path(uri.removeprefix("file://")).read_text(encoding="utf-8")
        for e in sorted(
            edits,
            key=lambda e: (e["range"]["start"]["line"], e["range"]["start"]["character"]),
            reverse=True,
        ):
            text = apply_change(text, {"range": e["range"], "text": e["newText"]})
        result[_short(uri)] = text
    return result


@pytest.mark.parametrize("start", ["definition", "call"])
async def test_rename_edits_every_project_and_keeps_an_alias(
    backend: str, layout: Layout, start_proxy: StartProxy, start: str
) -> None:
    client = await start_proxy(backend, layout.root, NEOVIM)
    at = where(client, layout, start)
    prepared = await client.request("textDocument/prepareRename", at)
    assert prepared is not None, "the client would not offer the rename"
    edit = await client.request("textDocument/rename", {**at, "newName": "salute"})
    after = apply(edit, layout)
    assert set(after) >= EVERY, after
    assert "def salute(name: str)" in after[CORE] and "return salute(name)" in after[CORE]
    for name in ("a", "b"):
        assert f'return salute("{name}")' in after[f"services/{name}/app.py"]
        assert "from core import salute\n" in after[f"services/{name}/app.py"]
    alias = after["services/alias/app.py"]
    assert "from core import salute as hello" in alias and 'hello("alias")' in alias, alias


@pytest.mark.parametrize("backend", ["ty", "pyright"])
async def test_rename_in_document_changes_with_the_clients_versions(
    backend: str, layout: Layout, start_proxy: StartProxy
) -> None:
    """A client that takes `documentChanges` (VS Code) gets them, with its own version of the
    document it has open (edited twice: version 3) and null for the others."""
    client = await start_proxy(backend, layout.root, VSCODE)
    at = where(client, layout, "call")
    uri = at["textDocument"]["uri"]
    for _ in range(2):  # (the same text, two versions later)
        client.change(uri, [{"text": client.text(uri)}])
    edit = await client.request("textDocument/rename", {**at, "newName": "salute"})
    assert "changes" not in edit, edit
    versions = {
        c["textDocument"]["uri"]: c["textDocument"]["version"] for c in edit["documentChanges"]
    }
    assert versions[uri] == 3, versions
    assert {u for u, v in versions.items() if v is None} == {
        layout.uri(f) for f in EVERY if layout.uri(f) != uri
    }, versions


@pytest.mark.parametrize("start", ["definition", "call"])
async def test_incoming_calls_cover_every_project(
    backend: str, layout: Layout, start_proxy: StartProxy, start: str
) -> None:
    """As Claude Code asks it: prepare, then incoming calls of the first item."""
    client = await start_proxy(backend, layout.root)
    at = where(client, layout, start)
    items = await client.request("textDocument/prepareCallHierarchy", at)
    assert items, items
    calls = await client.request("callHierarchy/incomingCalls", {"item": items[0]})
    callers = {(_short(c["from"]["uri"]), c["from"]["name"]) for c in calls}
    assert callers >= {("services/a/app.py", "main"), ("services/b/app.py", "main")}, callers
    # A call through an alias is an incoming call for ty only: the others do not report it
    # in their own project either (test_a_uv_workspace_does_not_fan_out).
    assert (("services/alias/app.py", "main") in callers) == (backend == "ty"), callers
    keys = [(c["from"]["uri"], json.dumps(c["from"]["range"])) for c in calls]
    assert len(keys) == len(set(keys)), "a caller twice"


@pytest.mark.parametrize("backend", ["basedpyright", "ty", "pyrefly"])  # (pyright has none)
async def test_implementations_in_other_projects(
    backend: str, layout: Layout, start_proxy: StartProxy
) -> None:
    client = await start_proxy(backend, layout.root)
    uri = client.open(layout.core)
    found = await client.request(
        "textDocument/implementation",
        {
            "textDocument": {"uri": uri},
            "position": client.position(uri, "def greet(self", offset=4),
        },
    )
    found = found if isinstance(found, list) else [found]
    assert "services/b/loud.py" in files_of(found), found


@pytest.mark.parametrize("backend", ["ty", "pyrefly"])  # (the kinds with type hierarchy)
async def test_subtypes_in_other_projects(
    backend: str, layout: Layout, start_proxy: StartProxy
) -> None:
    client = await start_proxy(backend, layout.root)
    uri = client.open(layout.core)
    items = await client.request(
        "textDocument/prepareTypeHierarchy",
        {"textDocument": {"uri": uri}, "position": client.position(uri, "class Greeter", offset=6)},
    )
    assert items, items
    subtypes = await client.request("typeHierarchy/subtypes", {"item": items[0]})
    assert {(_short(s["uri"]), s["name"]) for s in subtypes} >= {("services/b/loud.py", "Loud")}


async def test_an_editable_install_added_while_running_is_seen(
    tmp_path: Path, start_proxy: StartProxy
) -> None:
    """`uv add --editable ../../libs/core` in a while a's backend is not running: core's
    references, until then core's own backend's alone (the hot path), include a."""
    layout = build(tmp_path / "repo", 1, alias=False)
    pth = next(layout.path("services/a/.venv").glob("lib/python3*/site-packages/_core.pth"))
    text = pth.read_text()
    pth.unlink()
    client = await start_proxy("ty", layout.root)
    uri = client.open(layout.core)
    params = {
        "textDocument": {"uri": uri},
        "position": client.position(uri, "def greet", offset=4),
        "context": {"includeDeclaration": True},
    }
    before = files_of(await client.request("textDocument/references", params))
    assert before == {CORE}, before
    pth.write_text(text)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while "services/a/app.py" not in files_of(
        await client.request("textDocument/references", params)
    ):
        assert loop.time() < deadline, "a's new editable install never seen"
        await asyncio.sleep(0.25)


async def test_partial_results_stream_under_the_clients_token(
    layout: Layout, start_raw_proxy: Any
) -> None:
    """Each backend's references reach the client as partial results under its token, none
    twice; the final answer is then empty, as the protocol says."""
    proxy = await start_raw_proxy("ty", layout.root)
    await proxy.initialize(NEOVIM.initialize_params(layout.root))
    proxy.open(layout.core)
    answer = await proxy.result(
        "textDocument/references",
        {
            **at_definition(layout),
            "context": {"includeDeclaration": True},
            "partialResultToken": "refs",
        },
    )
    partial = [
        m["params"]["value"]
        for d, m in proxy.messages
        if d == "in" and m.get("method") == "$/progress" and m["params"]["token"] == "refs"
    ]
    streamed = [location for value in partial for location in value]
    assert answer == [] and len(partial) >= 2, (answer, partial)
    assert files_of(streamed) >= EVERY, streamed
    keys = [json.dumps(s, sort_keys=True) for s in streamed]
    assert len(keys) == len(set(keys)), "a location twice"


async def test_questions_asked_at_once_do_not_disturb_each_other(
    backend: str, layout: Layout, start_proxy: StartProxy
) -> None:
    """Claude Code sends a turn's tool calls at once: fan-outs sharing backends (each opens
    core's file in them) all answer whole (pyrefly cancels a request when a file is opened
    or closed under it)."""
    client = await start_proxy(backend, layout.root)
    at = where(client, layout, "call")
    items = await client.request("textDocument/prepareCallHierarchy", at)
    refs = {**at, "context": {"includeDeclaration": True}}
    answers = await asyncio.gather(
        client.request("textDocument/references", refs),
        client.request("callHierarchy/incomingCalls", {"item": items[0]}),
        client.request("textDocument/references", refs),
    )
    assert files_of(answers[0]) >= EVERY and files_of(answers[2]) >= EVERY, answers
    callers = {_short(c["from"]["uri"]) for c in answers[1]}
    assert callers >= {"services/a/app.py", "services/b/app.py"}, answers[1]


async def test_a_uv_workspace_does_not_fan_out(
    backend: str, workspace: Layout, start_proxy: StartProxy, tmp_path: Path
) -> None:
    """One environment sees every member: references are its own answer, straight (no
    definition asked first, nothing opened).

    A habit of the backends, pinned (it fails the day it changes): pyright, basedpyright
    and pyrefly report no incoming call made through an alias (`greet as hello`), ty does."""
    log = tmp_path / "proxy.log"
    client = await start_proxy(
        backend, workspace.root, args=("--log-level", "trace", "--log-file", str(log))
    )
    uri = client.open(workspace.core)
    found = await client.request(
        "textDocument/references",
        {
            "textDocument": {"uri": uri},
            "position": client.position(uri, "def greet", offset=4),
            "context": {"includeDeclaration": True},
        },
    )
    # (right after its start a backend's own answer may lack files it has not analysed yet:
    # bench/across_habits.py; that is the backend straight, not the proxy's business here)
    assert CORE in files_of(found), found
    items = await client.request(
        "textDocument/prepareCallHierarchy",
        {"textDocument": {"uri": uri}, "position": client.position(uri, "def greet", offset=4)},
    )
    calls = await client.request("callHierarchy/incomingCalls", {"item": items[0]})
    callers = {_short(c["from"]["uri"]) for c in calls}
    assert ("services/alias/app.py" in callers) == (backend == "ty"), callers
    sent = [
        json.loads(line.split("proxy -> backend: ", 1)[1])
        for line in log.read_text(encoding="utf-8").splitlines()
        if "proxy -> backend: " in line
    ]
    assert not [m for m in sent if m.get("method") == "textDocument/definition"], "fanned out"
    status = await status_of(client)
    assert status["answersAcross"]["crossing"] == []


async def test_a_project_not_asked_is_named_and_a_rename_is_refused(
    layout: Layout, start_proxy: StartProxy
) -> None:
    """With room for two backends, one of the four projects that see core cannot be asked:
    references answer what was found and `typemux/status` names the gap; a rename is an
    error naming the project, and no edit (one process per project: a shared one would serve
    all four)."""
    client = await start_proxy(
        "ty", layout.root, args=("--max-backends", "3", "--backend-sharing", "none")
    )
    at = where(client, layout, "definition")
    found = await client.request(
        "textDocument/references", {**at, "context": {"includeDeclaration": True}}
    )
    assert CORE in files_of(found)
    status = await status_of(client)
    gaps = status["answersAcross"]["gaps"]
    assert gaps and "--max-backends" in gaps[-1]["notAsked"][0], gaps
    with pytest.raises(JsonRpcException) as err:
        await client.request("textDocument/rename", {**at, "newName": "salute"})
    assert "--max-backends" in err.value.message and "services/" in err.value.message
    assert "No edit was made" in err.value.message


async def test_projects_sharing_a_process_are_named_not_silently_left_out(
    layout: Layout, start_proxy: StartProxy
) -> None:
    """A shared backend answers core's file from core's folder only: the consumers it also
    serves are asked through an import of the symbol (probe.py), which a parameter has none
    of (keyword arguments name it). References say so in `typemux/status`, a rename is
    refused naming them, and nothing pretends to be whole."""
    client = await start_proxy("ty", layout.root, args=("--backend-sharing", "all"))
    uri = client.open(layout.core)
    at = {
        "textDocument": {"uri": uri},
        "position": client.position(uri, "def greet(name", offset=10),
    }
    for path in ("services/a/app.py", "services/b/app.py", "services/alias/app.py"):
        client.open(layout.path(path))  # every project joins the one shared process
    found = await client.request(
        "textDocument/references", {**at, "context": {"includeDeclaration": True}}
    )
    assert CORE in files_of(found)
    status = await status_of(client)
    shared = [b for b in status["backends"] if b.get("shared")]
    assert shared, status["backends"]
    gaps = status["answersAcross"]["gaps"]
    assert gaps and "backend-sharing" in " ".join(gaps[-1]["notAsked"]), gaps
    assert "parameter" in gaps[-1]["notAsked"][0], gaps
    with pytest.raises(JsonRpcException) as err:
        await client.request("textDocument/rename", {**at, "newName": "salute"})
    assert "backend-sharing" in err.value.message and "No edit was made" in err.value.message


@pytest.mark.parametrize("start", ["definition", "call"])
async def test_one_ask_of_a_shared_ty_covers_every_project_it_serves(
    layout: Layout, start_proxy: StartProxy, start: str
) -> None:
    """ty 1.2.0 shared answers incoming calls and subtypes from every folder's project, each
    resolved in its own environment (bench/shared_habits.py): asked once for all the projects
    it serves, every consumer's callers and subclasses found, none twice, no gap named."""
    client = await start_proxy("ty", layout.root, args=("--backend-sharing", "ty"))
    at = where(client, layout, start)
    items = await client.request("textDocument/prepareCallHierarchy", at)
    calls = await client.request("callHierarchy/incomingCalls", {"item": items[0]})
    callers = [(_short(c["from"]["uri"]), c["from"]["name"]) for c in calls]
    assert set(callers) >= {
        ("services/a/app.py", "main"),
        ("services/b/app.py", "main"),
        ("services/alias/app.py", "main"),
    }, callers
    assert len(callers) == len(set(callers)), "a caller twice"
    uri = client.open(layout.core)
    (greeter,) = await client.request(
        "textDocument/prepareTypeHierarchy",
        {"textDocument": {"uri": uri}, "position": client.position(uri, "class Greeter", offset=6)},
    )
    subtypes = await client.request("typeHierarchy/subtypes", {"item": greeter})
    assert [(_short(s["uri"]), s["name"]) for s in subtypes] == [("services/b/loud.py", "Loud")]
    status = await status_of(client)
    assert [len(b["projects"]) for b in status["backends"]] == [4], status["backends"]
    assert status["answersAcross"]["gaps"] == []


async def start_shared(start_raw: Any, backend: str, layout: Layout) -> Any:
    """The proxy with `backend` shared, every project of `layout` one folder of its process
    (each consumer's file opened in turn: each joins the process)."""
    env = {**proxy_env(), "TYPEMUX_LSP_BACKEND_SHARING": backend}
    proxy = await start_raw(proxy_command(backend), cwd=layout.root, env=env, name="typemux-lsp")
    await proxy.initialize(NEOVIM.initialize_params(layout.root))
    proxy.open(layout.core)
    for name in layout.consumers:
        proxy.open(layout.path(f"services/{name}/app.py"))
    return proxy


async def shared_status(proxy: Any, projects: int) -> Any:
    """`typemux/status` once one shared process serves `projects` projects."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        status = await proxy.result(
            "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
        )
        shared = [b for b in status["backends"] if b.get("shared")]
        if len(status["backends"]) == 1 and shared and len(shared[0]["projects"]) == projects:
            return status
        assert loop.time() < deadline, status["backends"]
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("backend", ["pyright", "basedpyright", "ty"])
async def test_a_shared_backend_asks_each_project_through_a_probe_the_client_never_sees(
    backend: str, layout: Layout, start_raw: Any
) -> None:
    """One process, a folder per project: core's references, rename, implementations and
    incoming calls cover every consumer (each asked through a document that exists only in
    the backend; ty's incoming calls span its folders unasked), nothing is a gap, and no
    message to the client names the probe; no file was written."""
    proxy = await start_shared(start_raw, backend, layout)
    await shared_status(proxy, 1 + len(layout.consumers))
    at = at_definition(layout)
    found = await proxy.result(
        "textDocument/references", {**at, "context": {"includeDeclaration": True}}
    )
    assert files_of(found) == EVERY, found
    edit = await proxy.result("textDocument/rename", {**at, "newName": "salute"})
    assert set(apply(edit, layout)) == EVERY, edit
    items = await proxy.result("textDocument/prepareCallHierarchy", at)
    calls = await proxy.result("callHierarchy/incomingCalls", {"item": items[0]})
    assert {_short(c["from"]["uri"]) for c in calls} >= {"services/a/app.py", "services/b/app.py"}
    if backend != "pyright":  # (pyright has no implementation)
        text = layout.core.read_text(encoding="utf-8").split("\n")
        line = next(i for i, t in enumerate(text) if "def greet(self" in t)
        method = {"line": line, "character": text[line].index("greet")}
        found = await proxy.result(
            "textDocument/implementation", {"textDocument": at["textDocument"], "position": method}
        )
        assert "services/b/loud.py" in files_of(found), found
    status = await shared_status(proxy, 1 + len(layout.consumers))
    assert status["answersAcross"]["gaps"] == [], status["answersAcross"]
    await proxy.result("workspace/executeCommand", {"command": "typemux.status", "arguments": []})
    leaked = [m for d, m in proxy.messages if d == "in" and "__typemux_probe_" in json.dumps(m)]
    assert not leaked, leaked
    assert not list(layout.root.rglob("__typemux_probe_*")), "a probe written to disk"


LOCALS = """

def shout(text: str) -> str:
    loud = text.upper()
    return loud


def outer() -> object:
    class Inner:
        level = 1

    return Inner
"""


@pytest.mark.parametrize("backend", ["pyright", "basedpyright", "ty"])
async def test_a_shared_backend_names_what_no_import_reaches(
    backend: str, tmp_path: Path, start_raw: Any
) -> None:
    """A name bound in a function body is no other module's to use: renamed without a gap. A
    parameter (keyword arguments name it) or a class attribute inside a function cannot be
    asked through an import: a rename is refused naming why, and references name the gap."""
    layout = build(tmp_path / "repo", 1, alias=False)
    with layout.core.open("a", encoding="utf-8") as handle:
        handle.write(LOCALS)
    proxy = await start_shared(start_raw, backend, layout)
    await shared_status(proxy, 2)
    text = layout.core.read_text(encoding="utf-8").split("\n")

    def at(line: str, word: str) -> dict[str, Any]:
        number = next(i for i, t in enumerate(text) if t.strip().startswith(line))
        return {
            "textDocument": {"uri": layout.core.as_uri()},
            "position": {"line": number, "character": text[number].index(word)},
        }

    edit = await proxy.result("textDocument/rename", {**at("loud =", "loud"), "newName": "big"})
    assert "big = text.upper()" in apply(edit, layout)[CORE], edit
    for line, word, why in (
        ("def shout", "text", "parameter"),
        ("level", "level", "class defined in a function"),
    ):
        answer = await proxy.request("textDocument/rename", {**at(line, word), "newName": "other"})
        message = answer["error"]["message"]
        assert why in message and "services/a" in message, message
        assert "No edit was made" in message, message
        await proxy.result(
            "textDocument/references", {**at(line, word), "context": {"includeDeclaration": True}}
        )
        status = await proxy.result(
            "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
        )
        assert why in " ".join(status["answersAcross"]["gaps"][-1]["notAsked"]), status


@pytest.mark.parametrize("backend", ["pyright", "ty"])
async def test_a_shared_backend_whose_probe_reaches_another_module_names_the_project(
    backend: str, tmp_path: Path, start_raw: Any
) -> None:
    """A consumer with a `core.py` of its own imports that, not the library: its probe does not
    reach the definition, so its answer is not taken as the library's (a named gap; ty's
    references leave the definition out either way: its probe's definition tells)."""
    layout = build(tmp_path / "repo", 1, alias=False)
    layout.path("services/a/core.py").write_text(
        "def greet(name: str) -> str:\n    return name\n", encoding="utf-8"
    )
    proxy = await start_shared(start_raw, backend, layout)
    await shared_status(proxy, 2)
    await proxy.result(
        "textDocument/references",
        {**at_definition(layout), "context": {"includeDeclaration": True}},
    )
    status = await proxy.result(
        "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
    )
    gaps = status["answersAcross"]["gaps"]
    assert gaps and "does not reach the definition" in gaps[-1]["notAsked"][0], gaps
    assert str(layout.path("services/a")) in gaps[-1]["notAsked"][0], gaps


@pytest.mark.parametrize("backend", ["pyright", "basedpyright", "ty"])
async def test_a_consumer_with_its_own_include_is_asked_whole(
    backend: str, tmp_path: Path, start_raw: Any
) -> None:
    """A consumer whose `include` is `src`, its uses of core there. ty answers a probe at the
    project's root whatever its `[tool.ty.src] include`: it shares, asked through a probe. A
    pyright project whose own config sets `include` (or `exclude`) gets a process of its own
    (a file outside it would be answered from another folder's environment when shared), and
    is asked there as any project per process. Either way its uses in `src` are found."""
    layout = build(tmp_path / "repo", 1, alias=False)
    consumer = layout.path("services/a")
    section = "[tool.ty.src]" if backend == "ty" else "[tool.pyright]"
    with (consumer / "pyproject.toml").open("a", encoding="utf-8") as handle:
        handle.write(f'\n{section}\ninclude = ["src"]\n')
    (consumer / "src").mkdir()
    (consumer / "src/use.py").write_text(
        'from core import greet\n\n\ndef other() -> str:\n    return greet("src")\n',
        encoding="utf-8",
    )
    proxy = await start_shared(start_raw, backend, layout)
    if backend == "ty":
        await shared_status(proxy, 2)
    found = await proxy.result(
        "textDocument/references",
        {**at_definition(layout), "context": {"includeDeclaration": True}},
    )
    assert "services/a/src/use.py" in files_of(found), found
    status = await proxy.result(
        "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
    )
    assert status["answersAcross"]["gaps"] == [], status["answersAcross"]
    if backend != "ty":
        (own,) = [
            b for b in status["backends"] if str(consumer) in (p["project"] for p in b["projects"])
        ]
        assert not own.get("shared") and len(own["projects"]) == 1, status["backends"]


async def wait_for_file(path: Path, pending: Any, timeout: float = 30) -> None:
    """Until a file the fake backend writes exists (it has no other way to tell)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(path.exists):
        assert pending is None or not pending.done(), pending.result()
        assert loop.time() < deadline, f"{path} never written"
        await asyncio.sleep(0.02)


FAKE = Path(__file__).resolve().parent.parent / "fake_backend.py"


async def start_with_fault(
    start_raw: Any, layout: Layout, project: str, fault: str, tmp_path: Path
) -> Any:
    """The proxy on real ty backends, except `project`'s: the fake backend with `fault`
    (fault injection only: the wrapper runs it where `.fake_backend` exists)."""
    (layout.path(project) / ".fake_backend").write_text(fault, encoding="utf-8")
    wrapper = tmp_path / "backend.sh"
    ty = Path(sys.executable).parent / "ty"
    wrapper.write_text(
        f"#!/bin/sh\n[ -f .fake_backend ] && exec {sys.executable} {FAKE}\nexec {ty} server\n"
    )
    wrapper.chmod(0o755)
    env = {**proxy_env(), "TYPEMUX_LSP_BACKEND_COMMAND": str(wrapper)}
    proxy = await start_raw(proxy_command("ty"), cwd=layout.root, env=env, name="typemux-lsp")
    await proxy.initialize(NEOVIM.initialize_params(layout.root))
    return proxy


def at_definition(layout: Layout) -> dict[str, Any]:
    text = layout.core.read_text(encoding="utf-8")
    line = text.split("\n").index("def greet(name: str) -> str:")
    return {
        "textDocument": {"uri": layout.core.as_uri()},
        "position": {"line": line, "character": 4},
    }


async def test_a_consumer_backend_crashing_mid_rename_gives_an_error_and_no_edit(
    tmp_path: Path, start_raw: Any
) -> None:
    layout = build(tmp_path / "repo")
    proxy = await start_with_fault(
        start_raw, layout, "services/b", "crash_on=textDocument/references", tmp_path
    )
    proxy.open(layout.core)
    answer = await proxy.request(
        "textDocument/rename", {**at_definition(layout), "newName": "salute"}
    )
    assert "result" not in answer, answer
    message = answer["error"]["message"]
    assert str(layout.path("services/b")) in message and "No edit was made" in message, message
    # the other projects are untouched and still answer
    found = await proxy.result(
        "textDocument/references",
        {**at_definition(layout), "context": {"includeDeclaration": True}},
    )
    assert files_of(found) >= {CORE, "services/a/app.py", "services/alias/app.py"}, found


async def test_a_cancelled_fan_out_is_withdrawn_from_every_backend(
    tmp_path: Path, start_raw: Any
) -> None:
    """b's backend never answers references: the client's cancel answers RequestCancelled
    at once, and b's backend gets a $/cancelRequest for the proxy's sub-request."""
    layout = build(tmp_path / "repo")
    proxy = await start_with_fault(
        start_raw,
        layout,
        "services/b",
        "hang_on=textDocument/references,log_requests=textDocument/references,log_cancels",
        tmp_path,
    )
    proxy.open(layout.core)
    pending = asyncio.ensure_future(
        proxy.request(
            "textDocument/references",
            {**at_definition(layout), "context": {"includeDeclaration": True}},
            msg_id="refs",
        )
    )
    requests = layout.path("services/b") / ".fake_requests"
    await wait_for_file(requests, pending)
    proxy.notify("$/cancelRequest", {"id": "refs"})
    answer = await asyncio.wait_for(pending, 10)
    assert answer["error"]["code"] == -32800, answer
    logged = layout.path("services/b") / ".fake_cancels"
    await wait_for_file(logged, None)  # (the fake backend writes it on receipt)
