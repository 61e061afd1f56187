"""The README's guarantees under hostile and odd input, on the four real backends.

- nothing a repository ships is run (not even from an activated `.venv`);
- any id JSON-RPC allows is answered with exactly that id, and every message with an id
  gets exactly one response, whatever its method;
- a URI that cannot be a path is an error naming it, and status keeps working;
- a frozen backend is answered for (an error naming it) and replaced;
- the pool never has more than `--max-backends` backend processes;
- a client that stops reading does not make the proxy buffer without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import procs
import pytest
from clients import CLAUDE_CODE, MuxClient, hover_text, position_of, proxy_command, proxy_env
from pygls.exceptions import JsonRpcException
from rawclient import RawClient, encode_message

if TYPE_CHECKING:
    from conftest import Monorepo

StartProxy = Callable[..., Awaitable[MuxClient]]
StartRaw = Callable[[str, Path], Awaitable[RawClient]]

AREA_V1 = "def area(radius: float) -> float"
ALPHA = "alpha/app.py"


def hover_params(path: Path, needle: str = "area(2.0)") -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    return {"textDocument": {"uri": path.as_uri()}, "position": position_of(text, needle)}


async def status(client: MuxClient) -> dict[str, Any]:
    """The pool, through the `typemux.status` command (as an editor would call it)."""
    result: dict[str, Any] = await client.request(
        "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
    )
    return result


# -- nothing a repository ships runs ----------------------------------------------------------

#: programs a repository could plant where an activated venv puts them first on PATH
PLANTED = (
    "node",
    "npm",
    "sh",
    "bash",
    "git",
    "uv",
    "env",
    "pyright-langserver",
    "basedpyright-langserver",
    "ty",
    "pyrefly",
)


async def test_no_program_the_repository_ships_runs(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy, tmp_path: Path
) -> None:
    """The proxy is started as from a shell that activated alpha's venv: the repository's
    `.venv/bin` and a `bin/` it ships come first on PATH, each holding a `node`, `git`, `sh`,
    backend executables... that record that they ran. The backend must answer correctly
    and none of them may run (only the venv's own Python may: backends ask it for its
    search paths)."""
    marker = tmp_path / "planted-programs-that-ran"
    planted_dirs = [fresh_monorepo.venv("alpha") / "bin", fresh_monorepo.path("bin")]
    for directory in planted_dirs:
        directory.mkdir(exist_ok=True)
        for name in PLANTED:
            program = directory / name
            program.write_text(f'#!/bin/sh\necho "{program} $*" >> {marker}\nexit 1\n')
            program.chmod(0o755)
    env = proxy_env()
    env["PATH"] = os.pathsep.join([*map(str, planted_dirs), env["PATH"]])
    env["VIRTUAL_ENV"] = str(fresh_monorepo.venv("alpha"))
    client = await start_proxy(backend, fresh_monorepo.root, env=env)
    app = fresh_monorepo.path(ALPHA)
    uri = client.open(app)
    await client.wait_for_diagnostics(uri)
    assert AREA_V1 in hover_text(await client.hover(uri, "area(2.0)"))
    assert not marker.exists(), marker.read_text()


# -- ids ---------------------------------------------------------------------------------------

#: ids JSON-RPC allows that a backend may not echo (ty drops ids beyond 32 bits, node rounds
#: 2^53+1, pyrefly exits), and ones that look like the proxy's own
ODD_IDS: tuple[Any, ...] = (
    0,
    -1,
    -(2**31),
    2**31,
    2**53 + 1,
    10**30,
    "",
    "typemux-lsp:1",
    "é🚀",
    'a"b\\c',
    "\ud800",
    "x" * 300,
)


async def test_any_id_is_answered_with_exactly_that_id(
    backend: str, monorepo: Monorepo, start_raw_proxy: StartRaw
) -> None:
    proxy = await start_raw_proxy(backend, monorepo.root)
    await proxy.initialize(CLAUDE_CODE.initialize_params(monorepo.root))
    app = monorepo.path(ALPHA)
    uri = proxy.open(app)
    await proxy.wait_for_diagnostics(uri)
    params = hover_params(app)
    expected = await proxy.result("textDocument/hover", params)
    assert AREA_V1 in json.dumps(expected)
    for msg_id in ODD_IDS:
        answer = await proxy.request("textDocument/hover", params, msg_id=msg_id, timeout=30)
        assert answer.get("result") == expected, (msg_id, answer)
        assert type(answer["id"]) is type(msg_id) and answer["id"] == msg_id
    # The proxy still serves, and its backend is the one it started (none crashed on an id).
    assert await proxy.result("textDocument/hover", params) == expected


async def test_client_ids_never_collide_with_the_proxys_own(
    monorepo: Monorepo, start_raw_proxy: StartRaw
) -> None:
    """While a fan-out (the proxy's own requests to every backend) is in flight, client
    requests use the ids the proxy uses internally: each gets its own answer."""
    proxy = await start_raw_proxy("ty", monorepo.root)
    await proxy.initialize(CLAUDE_CODE.initialize_params(monorepo.root))
    alpha, beta = monorepo.path(ALPHA), monorepo.path("beta/app.py")
    for path in (alpha, beta):
        await proxy.wait_for_diagnostics(proxy.open(path))
    expected = await proxy.result("textDocument/hover", hover_params(alpha))
    symbols = asyncio.ensure_future(proxy.request("workspace/symbol", {"query": "report"}))
    clashing = [-1, -2, -3, -4, "typemux-lsp:1", "typemux-lsp/1/1"]
    answers = await asyncio.gather(
        *(proxy.request("textDocument/hover", hover_params(alpha), msg_id=i) for i in clashing)
    )
    assert [a["id"] for a in answers] == clashing
    assert all(a.get("result") == expected for a in answers), answers
    found = (await symbols)["result"]
    assert {s["name"] for s in found} >= {"report"}, found


@pytest.mark.parametrize(
    "method",
    [
        "textDocument/didOpen",
        "textDocument/didChange",
        "textDocument/didClose",
        "$/cancelRequest",
        "initialized",
        "workspace/didChangeConfiguration",
    ],
)
async def test_a_notification_sent_with_an_id_gets_one_error(
    method: str, monorepo: Monorepo, start_raw_proxy: StartRaw
) -> None:
    proxy = await start_raw_proxy("ty", monorepo.root)
    await proxy.initialize(CLAUDE_CODE.initialize_params(monorepo.root))
    answer = await proxy.request(method, {"textDocument": {"uri": "file:///x.py"}}, msg_id=41)
    assert answer["id"] == 41 and answer["error"]["code"] == -32600, answer
    assert method in answer["error"]["message"]
    app = monorepo.path(ALPHA)
    await proxy.wait_for_diagnostics(proxy.open(app))
    assert AREA_V1 in json.dumps(await proxy.result("textDocument/hover", hover_params(app)))
    assert [m for d, m in proxy.messages if d == "in" and m.get("id") == 41] == [answer]


# -- URIs that cannot be paths -------------------------------------------------------------------

BAD_URIS = {
    "a NUL byte": "file:///tmp/a%00b.py",
    "another host": "file://build-server/srv/app.py",
    "a name too long": "file:///tmp/" + "n" * 300 + ".py",
    "a path too long": "file://" + "/d" * 2100 + "/x.py",
}


async def test_a_uri_that_cannot_be_a_path_is_invalid_params_and_status_keeps_working(
    monorepo: Monorepo, start_raw_proxy: StartRaw
) -> None:
    proxy = await start_raw_proxy("ty", monorepo.root)
    await proxy.initialize(CLAUDE_CODE.initialize_params(monorepo.root))
    for uri in BAD_URIS.values():  # opened: status must not trip on them
        proxy.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": "x=1"}},
        )
    for why, uri in BAD_URIS.items():
        answer = await proxy.request(
            "textDocument/hover",
            {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}},
        )
        error = answer.get("error")
        assert error is not None and error["code"] == -32602, (why, answer)
        assert uri[:40] in error["message"], (why, error)
    state = await proxy.result("typemux/status")
    assert set(BAD_URIS.values()) <= set(state["documentsWithoutVenv"])
    # a surrogate in a URI is repaired (U+FFFD), like any string: an answer, not silence
    answer = await proxy.request(
        "textDocument/hover",
        {"textDocument": {"uri": "file:///tmp/\ud800.py"}, "position": {"line": 0, "character": 0}},
    )
    assert answer["error"]["code"] == -32803 and "no .venv" in answer["error"]["message"]


# -- a frozen backend -----------------------------------------------------------------------------


async def test_a_frozen_backend_is_answered_for_and_replaced(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """One process per environment (a shared backend's restart: tests/e2e/test_sharing.py)."""
    client = await start_proxy(
        backend, fresh_monorepo.root, args=("--request-timeout", "3", *PER_PROCESS)
    )
    alpha, beta = fresh_monorepo.path(ALPHA), fresh_monorepo.path("beta/app.py")
    alpha_uri, beta_uri = client.open(alpha), client.open(beta)
    await client.wait_for_diagnostics(alpha_uri)
    await client.wait_for_diagnostics(beta_uri)
    assert AREA_V1 in hover_text(await client.hover(alpha_uri, "area(2.0)"))
    before = {b["project"]: b["pid"] for b in (await status(client))["backends"]}
    frozen = before[str(fresh_monorepo.path("alpha"))]
    os.killpg(frozen, signal.SIGSTOP)  # a deadlock, as far as anyone outside can tell
    try:
        started = time.monotonic()
        with pytest.raises(JsonRpcException) as err:
            await client.hover(alpha_uri, "area(2.0)")
        waited = time.monotonic() - started
        assert 2.5 <= waited < 8, waited
        assert backend in err.value.message and str(fresh_monorepo.venv("alpha")) in (
            err.value.message
        ), err.value.message
        # beta's backend never noticed; alpha's was replaced, its document replayed
        assert "Circle" in hover_text(await client.hover(beta_uri, "Circle"))
        assert AREA_V1 in hover_text(await client.hover(alpha_uri, "area(2.0)"))
        after = {b["project"]: b["pid"] for b in (await status(client))["backends"]}
        assert after[str(fresh_monorepo.path("alpha"))] != frozen
        assert after[str(fresh_monorepo.path("beta"))] == before[str(fresh_monorepo.path("beta"))]
    finally:
        with contextlib.suppress(OSError):
            os.killpg(frozen, signal.SIGCONT)


#: one backend process per environment, whatever the kind's default (`backend-sharing`)
PER_PROCESS = ("--backend-sharing", "none")


# -- the pool's cap -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def forty_projects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository of 40 projects, each with its own (empty) venv and one module."""
    root = tmp_path_factory.mktemp("forty")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for n in range(40):
        project = root / f"p{n:02d}"
        project.mkdir()
        (project / "m.py").write_text(f"def f{n}(x: int) -> int:\n    return x + {n}\n")
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, venv\nfor p in sys.argv[1:]: venv.create(p, with_pip=False)",
            *(str(root / f"p{n:02d}" / ".venv") for n in range(40)),
        ],
        check=True,
    )
    return root


def backend_processes(proxy_pid: int) -> int:
    """Live (not zombie) direct children of the proxy: its backends. Not counted: the reaper,
    and the one-off probe that learns a backend's initialize answer (capabilities.py), which
    runs in a typemux-lsp-probe-* directory and is no pool backend."""
    count = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[1]) != proxy_pid or fields[0] in (b"Z", b"X"):
            continue
        if b"groups.add" not in cmdline and "typemux-lsp-probe-" not in cwd:
            count += 1
    return count


async def test_the_pool_never_holds_more_backends_than_its_cap(
    backend: str, forty_projects: Path, start_proxy: StartProxy
) -> None:
    """The cap on processes, so one process per environment."""
    client = await start_proxy(backend, forty_projects, args=("--max-backends", "4", *PER_PROCESS))
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # a thread: it samples while the event loop is busy too
        while not stop.wait(0.01):
            seen.append(backend_processes(client.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        uris = [client.open(forty_projects / f"p{n:02d}" / "m.py") for n in range(40)]
        # the last four opened are the ones running: each answers from its own project
        for n in (36, 37, 38, 39):
            hover = await client.hover(uris[n], f"f{n}")
            assert f"f{n}" in hover_text(hover)
        # an evicted one comes back on demand, evicting another
        assert "f0" in hover_text(await client.hover(uris[0], "f0"))
        state = await status(client)
        assert len(state["backends"]) <= 4 and state["backendProcesses"] <= 4
    finally:
        stop.set()
        sampler.join()
    assert max(seen) <= 4, f"up to {max(seen)} backend processes at once"
    assert len(seen) >= 5 and max(seen) >= 3  # it sampled while the pool was full


# -- a client that stops reading ----------------------------------------------------------------


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_client_that_stops_reading_gets_everything_later_with_bounded_memory(
    fresh_monorepo: Monorepo,
) -> None:
    """200 documentSymbol answers of ~1 MB each are asked for and not read: the proxy's
    memory stays bounded (it stops reading the backend), and once the client reads again
    every answer arrives, in full."""
    big = fresh_monorepo.path("alpha/big.py")
    big.write_text(
        "".join(
            f'def function_{i}(x: int) -> int:\n    """Doc {i}."""\n    return x\n\n'
            for i in range(6000)
        )
    )
    process = await asyncio.create_subprocess_exec(
        *proxy_command("ty"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=fresh_monorepo.root,
        env=proxy_env(),
        start_new_session=True,
        limit=1 << 20,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        reader = _Reader(process.stdout)
        process.stdin.write(
            encode_message(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": CLAUDE_CODE.initialize_params(fresh_monorepo.root),
                }
            )
        )
        await reader.until_id(0)
        uri = big.as_uri()
        for message in (
            {"jsonrpc": "2.0", "method": "initialized", "params": {}},
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didOpen",
                "params": {
                    "textDocument": {
                        "uri": uri,
                        "languageId": "python",
                        "version": 1,
                        "text": big.read_text(),
                    }
                },
            },
        ):
            process.stdin.write(encode_message(message))
        symbols = {"textDocument": {"uri": uri}}
        process.stdin.write(
            encode_message(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "textDocument/documentSymbol",
                    "params": symbols,
                }
            )
        )
        first = await reader.until_id(1)
        one_answer = len(json.dumps(first)) / 2**20
        assert one_answer > 0.5, one_answer  # big enough that 200 make the point
        baseline = rss_mib(process.pid)
        count = 200
        for i in range(2, 2 + count):
            process.stdin.write(
                encode_message(
                    {
                        "jsonrpc": "2.0",
                        "id": i,
                        "method": "textDocument/documentSymbol",
                        "params": symbols,
                    }
                )
            )
        await process.stdin.drain()
        peak = baseline
        for _ in range(40):  # 4 s while nothing is read
            await asyncio.sleep(0.1)
            peak = max(peak, rss_mib(process.pid))
        assert peak - baseline < 40, (
            f"RSS grew {peak - baseline:.0f} MiB for {count * one_answer:.0f} MiB unread"
        )
        answers = [await reader.until_id(i, timeout=120) for i in range(2, 2 + count)]
        assert all(a.get("result") == first["result"] for a in answers)
    finally:
        process.kill()
        await process.wait()


class _Reader:
    """Reads framed messages only when asked to (so the client can stop reading)."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self._stream = stream
        self._seen: dict[Any, dict[str, Any]] = {}

    async def until_id(self, msg_id: Any, timeout: float = 60) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            while msg_id not in self._seen:
                header = await self._stream.readuntil(b"\r\n\r\n")
                length = int(header.split(b":")[1].split(b"\r")[0])
                message = json.loads(await self._stream.readexactly(length))
                if "id" in message and "method" not in message:
                    self._seen[message["id"]] = message
            return self._seen.pop(msg_id)

        return await asyncio.wait_for(read(), timeout)


# -- memory in status -----------------------------------------------------------------------------


def _rss(pid: int) -> int:
    """Resident bytes of one process, from /proc (independent of the proxy's own reading)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_status_memory_is_the_backends_whole_process_tree(
    monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """basedpyright from PyPI is a Python wrapper (~12 MB) whose node child does the work
    (hundreds of MB): the memory status reports is the whole tree's, not the wrapper's."""
    client = await start_proxy("basedpyright", monorepo.root)
    await client.wait_for_diagnostics(client.open(monorepo.path(ALPHA)))
    (backend,) = (await status(client))["backends"]
    wrapper = backend["pid"]
    tree = [wrapper, *(p.pid for p in procs.descendants(wrapper))]
    assert len(tree) > 1, "basedpyright runs node as a child"
    total = sum(_rss(pid) for pid in tree)
    assert backend["memory"] > 3 * _rss(wrapper), (backend["memory"], _rss(wrapper))
    assert abs(backend["memory"] - total) < 0.2 * total, (backend["memory"], total)


# -- warm-up: no partial answer from a backend still reading its project --------------------------

CALLERS = 8


def _callers_project(root: Path) -> Path:
    """A project whose `pkg/lib.py:target` is called from CALLERS other modules."""
    (root / "pkg").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'callers'\nversion = '0'\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "lib.py").write_text("def target(x: int) -> int:\n    return x\n")
    for i in range(CALLERS):
        (root / "pkg" / f"m{i}.py").write_text(
            f"from pkg.lib import target\n\n\ndef f() -> int:\n    return target({i})\n"
        )
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


@pytest.mark.parametrize("opened_after", [0.0, 2.5], ids=["at-once", "after-the-warm-up-bound"])
async def test_references_asked_at_once_are_whole(
    backend: str, tmp_path: Path, start_proxy: StartProxy, opened_after: float
) -> None:
    """References asked right after the first file is opened find every caller: they wait
    for the backend's own readiness signal (pyrefly reads its project only when first asked
    for references and answered that from before: 0 callers; the warm-up asks first). The
    project is the working directory, so its backend starts with the proxy, before any file
    is open: its warm-up bound (2 s) runs from the first file opened, not from its start."""
    root = _callers_project(tmp_path / "callers")
    client = await start_proxy(backend, root)
    await asyncio.sleep(opened_after)  # the client opens its first file later
    uri = client.open(root / "pkg" / "lib.py")
    found = await client.request(
        "textDocument/references",
        {
            "textDocument": {"uri": uri},
            "position": {"line": 0, "character": 5},
            "context": {"includeDeclaration": False},
        },
    )
    files = {Path(loc["uri"].removeprefix("file://")).name for loc in found or []}
    assert files == {f"m{i}.py" for i in range(CALLERS)}, found
