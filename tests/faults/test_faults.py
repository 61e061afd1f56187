"""Fault injection: crashes, garbage, hangs, floods, eviction, cancellation, bad input, exits.

The backend here is `tests/fake_backend.py`, scripted per project; it is only ever
a fault injector. The same properties against the real backends are in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from procs import descendants, wait_gone

from typemux_lsp.client import LspClient, ResponseError
from typemux_lsp.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    REQUEST_FAILED,
)

FAKE = Path(__file__).resolve().parent.parent / "fake_backend.py"
CAPS: dict[str, Any] = {"general": {"positionEncodings": ["utf-16"]}}


def make_workspace(root: Path, projects: tuple[str, ...] = ("a", "b", "c")) -> Path:
    (root / ".git").mkdir(parents=True)
    for name in projects:
        venv = root / name / ".venv"
        venv.mkdir(parents=True)
        (venv / "pyvenv.cfg").write_text("version = 3.11.7\n")
        (root / name / "m.py").write_text(f"# project {name}\nx = 1\n")
    (root / "novenv").mkdir()
    (root / "novenv" / "m.py").write_text("y = 2\n")
    return root


class Proxy:
    """A running proxy with a fake backend, and helpers to talk about its files."""

    def __init__(self, root: Path, client: LspClient) -> None:
        self.root = root
        self.client = client

    def uri(self, project: str) -> str:
        return (self.root / project / "m.py").as_uri()

    def open(self, project: str, text: str | None = None) -> str:
        return self.client.open(self.root / project / "m.py", text)

    async def hover(self, project: str, timeout: float = 20) -> Any:
        return await self.client.request(
            "textDocument/hover",
            {"textDocument": {"uri": self.uri(project)}, "position": {"line": 0, "character": 0}},
            timeout=timeout,
        )

    def hover_future(self, project: str) -> asyncio.Future[Any]:
        return self.client.send_request(
            "textDocument/hover",
            {"textDocument": {"uri": self.uri(project)}, "position": {"line": 0, "character": 0}},
        )

    async def pid_of(self, project: str) -> int:
        hover = await self.hover(project)
        value: str = hover["contents"]["value"]
        assert f"venv={self.root / project / '.venv'}" in value, value
        return int(value.split("pid=")[1].split()[0])

    async def backend_text(self, project: str) -> Any:
        return await self.client.request("fake/text", {"textDocument": {"uri": self.uri(project)}})

    def responses_for(self, msg_id: Any) -> list[dict[str, Any]]:
        return [r for r in self.client.responses if r.get("id") == msg_id]


@pytest.fixture
async def start_proxy(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    clients: list[LspClient] = []

    async def start(
        *args: str,
        fake: str = "",
        command: str = f"{sys.executable} {FAKE}",
        event_loop: str = "auto",
    ) -> Proxy:
        root = make_workspace(tmp_path / "ws")
        env = dict(os.environ)
        env["TYPEMUX_LSP_BACKEND_COMMAND"] = command
        env["TYPEMUX_LSP_EVENT_LOOP"] = event_loop
        env["FAKE_BACKEND"] = fake
        client = LspClient()
        await client.start(
            [
                sys.executable,
                "-m",
                "typemux_lsp",
                "--backend",
                "ty",
                "--warmup-timeout",
                "0",
                *args,
            ],
            cwd=root,
            env=env,
        )
        clients.append(client)
        await client.initialize(root, CAPS)
        return Proxy(root, client)

    yield start
    for client in clients:
        client.kill()
        await client.wait_exit(5)


def project_file(proxy: Proxy, project: str, content: str) -> None:
    (proxy.root / project / ".fake_backend").write_text(content)


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
async def test_a_crash_fails_only_its_requests_and_the_venv_recovers(
    start_proxy: Any, event_loop: str
) -> None:
    proxy: Proxy = await start_proxy(event_loop=event_loop)
    project_file(proxy, "a", "crash_on=textDocument/definition")
    proxy.open("a", "x = 1\n")
    proxy.open("b")
    pid_a, pid_b = await proxy.pid_of("a"), await proxy.pid_of("b")
    with pytest.raises(ResponseError) as err:
        await proxy.client.request(
            "textDocument/definition",
            {"textDocument": {"uri": proxy.uri("a")}, "position": {"line": 0, "character": 0}},
        )
    assert err.value.code == REQUEST_FAILED
    assert (
        "exited" in err.value.message and "crashing on textDocument/definition" in err.value.message
    )
    assert await proxy.pid_of("b") == pid_b  # the other venv never noticed
    new_pid = await proxy.pid_of("a")  # the next request is answered by a fresh backend
    assert new_pid != pid_a
    status = await proxy.client.request("typemux/status", None)
    crashes = {Path(b["venv"]).parent.name: b["crashes"] for b in status["backends"]}
    assert crashes == {"a": 1, "b": 0}
    assert (await proxy.backend_text("a"))["text"] == "x = 1\n"  # documents replayed


async def test_a_backend_panic_is_named_as_that_backend_s_bug(start_proxy: Any) -> None:
    """A Rust backend (pyrefly, ty) that panics reports its own bug on stderr and exits 101:
    the error and the log say it was the backend's bug, with its message and place; a fresh
    backend answers the next request."""
    proxy: Proxy = await start_proxy()
    project_file(proxy, "a", "panic_on=textDocument/definition")
    proxy.open("a", "x = 1\n")
    pid = await proxy.pid_of("a")
    with pytest.raises(ResponseError) as err:
        await proxy.client.request(
            "textDocument/definition",
            {"textDocument": {"uri": proxy.uri("a")}, "position": {"line": 0, "character": 0}},
        )
    assert "panicked (exit code 101): a bug in" in err.value.message
    assert "not in typemux-lsp" in err.value.message
    assert (
        "'index out of bounds: the len is 3 but the index is 7' at "
        "crates/fake/src/solve.rs:812:27" in err.value.message
    )
    assert await proxy.pid_of("a") != pid


async def test_a_crash_clears_the_diagnostics_it_published(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy(fake="diag_on_open")
    project_file(proxy, "a", "crash_on=textDocument/definition")
    uri = proxy.open("a")
    await proxy.client.wait_diagnostics(uri, lambda d: len(d) == 1)
    with pytest.raises(ResponseError):
        await proxy.client.request(
            "textDocument/definition",
            {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}},
        )
    await proxy.client.wait_diagnostics(uri, lambda d: d == [])


async def test_garbage_on_stdout_restarts_the_backend(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy()
    project_file(proxy, "a", "garbage_on=textDocument/definition")
    proxy.open("a")
    pid = await proxy.pid_of("a")
    with pytest.raises(ResponseError) as err:
        await proxy.client.request(
            "textDocument/definition",
            {"textDocument": {"uri": proxy.uri("a")}, "position": {"line": 0, "character": 0}},
        )
    assert "not LSP" in err.value.message
    assert await proxy.pid_of("a") != pid


async def test_crash_loop_guard_stops_respawning_and_quotes_stderr(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy()
    project_file(proxy, "a", "crash_on=textDocument/hover")
    proxy.open("a")
    for _ in range(3):
        with pytest.raises(ResponseError) as err:
            await proxy.hover("a")
        assert "exited" in err.value.message
    with pytest.raises(ResponseError) as err:
        await proxy.hover("a")
    assert "failed 3 times" in err.value.message
    assert "crashing on textDocument/hover on purpose" in err.value.message
    proxy.open("b")
    await proxy.pid_of("b")


async def test_a_backend_that_never_initializes_times_out_and_frees_its_slot(
    start_proxy: Any,
) -> None:
    # The timeout applies to every backend: 5 s is long enough for the healthy one (b) to
    # start on a loaded machine, where 1 s was not.
    proxy: Proxy = await start_proxy("--start-timeout", "5", "--max-backends", "1")
    project_file(proxy, "a", "never_initialize")
    proxy.open("a")
    with pytest.raises(ResponseError) as err:
        await proxy.hover("a")
    assert "did not answer initialize within 5 s" in err.value.message
    proxy.open("b")
    await proxy.pid_of("b")  # the slot was freed


async def test_a_flood_on_stderr_never_blocks_the_backend(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy(fake="stderr_flood=16")
    proxy.open("a")
    await proxy.pid_of("a")


async def test_a_missing_executable_is_named_with_the_fix(start_proxy: Any, tmp_path: Path) -> None:
    proxy: Proxy = await start_proxy(command=str(tmp_path / "no-such-langserver"))
    proxy.open("a")
    with pytest.raises(ResponseError) as err:
        await proxy.hover("a")
    assert "no-such-langserver" in err.value.message and "Fix:" in err.value.message


async def test_cancelling_a_queued_request_answers_it_once_at_once(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy(fake="slow_start=1.5")
    proxy.open("a")
    fut = proxy.hover_future("a")  # queued: the backend is still starting
    msg_id = proxy.client.last_id
    proxy.client.notify("$/cancelRequest", {"id": msg_id})
    with pytest.raises(ResponseError) as err:
        await asyncio.wait_for(fut, 1.0)  # well before the backend is up
    assert err.value.code == REQUEST_CANCELLED
    await proxy.pid_of("a")  # the backend came up; the cancelled request was never sent twice
    assert len(proxy.responses_for(msg_id)) == 1


async def test_cancelling_a_forwarded_request_relays_the_backends_answer(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy(fake="delay=0.2")
    proxy.open("a")
    await proxy.pid_of("a")
    fut = proxy.hover_future("a")
    msg_id = proxy.client.last_id
    proxy.client.notify("$/cancelRequest", {"id": msg_id})
    with pytest.raises(ResponseError) as err:
        await fut
    assert err.value.code == REQUEST_CANCELLED and "by the client" in err.value.message
    assert len(proxy.responses_for(msg_id)) == 1


async def test_a_cancelled_request_the_backend_never_answers_is_answered_promptly(
    start_proxy: Any,
) -> None:
    proxy: Proxy = await start_proxy()
    project_file(proxy, "a", "hang_on=textDocument/hover")
    proxy.open("a")
    await proxy.backend_text("a")  # the backend is up: the hover is forwarded, not queued
    fut = proxy.hover_future("a")
    msg_id = proxy.client.last_id
    proxy.client.notify("$/cancelRequest", {"id": msg_id})
    with pytest.raises(ResponseError) as err:
        await asyncio.wait_for(fut, 3.0)
    assert err.value.code == REQUEST_CANCELLED
    assert len(proxy.responses_for(msg_id)) == 1


async def test_lru_eviction_prefers_idle_backends(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy("--max-backends", "2")
    project_file(proxy, "a", "delay=1.5")
    for name in "abc":
        proxy.open(name)
    pid_a = await proxy.pid_of("a")
    pid_b = await proxy.pid_of("b")
    slow = proxy.hover_future("a")  # a is busy and b is the least recently used idle one
    await proxy.pid_of("c")
    assert "venv=" in (await slow)["contents"]["value"]  # a was not evicted under its request
    status = await proxy.client.request("typemux/status", None)
    assert sorted(Path(b["venv"]).parent.name for b in status["backends"]) == ["a", "c"]
    assert await proxy.pid_of("a") == pid_a
    assert await proxy.pid_of("b") != pid_b  # b comes back as a fresh backend


async def test_eviction_fails_the_in_flight_requests_of_the_evicted(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy("--max-backends", "1")
    project_file(proxy, "a", "hang_on=textDocument/hover")
    proxy.open("a")
    proxy.open("b")
    hanging = proxy.hover_future("a")
    await proxy.pid_of("b")  # needs a's slot: a is evicted with its request in flight
    with pytest.raises(ResponseError) as err:
        await asyncio.wait_for(hanging, 10)
    assert err.value.code == REQUEST_FAILED and "stopped" in err.value.message


async def test_idle_backends_stop_after_the_ttl(start_proxy: Any) -> None:
    # 2 s: long enough that a loaded machine still asks for status before it runs out
    proxy: Proxy = await start_proxy("--backend-ttl", "2")
    proxy.open("a")
    pid = await proxy.pid_of("a")
    assert (await proxy.client.request("typemux/status", None))["backends"]
    gone = await wait_gone([p for p in descendants(proxy.client.pid or 0) if p.pid == pid], 10)
    assert gone == []
    assert (await proxy.client.request("typemux/status", None))["backends"] == []
    assert await proxy.pid_of("a") != pid  # and it comes back on demand


async def test_bad_input_gets_errors_and_the_proxy_keeps_serving(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy()
    client = proxy.client
    client.send_raw(b"Content-Length: 5\r\n\r\n{nope")
    client.send_raw(b"Content-Length: 2\r\n\r\n[]")
    client.send_raw(b"Content-Type: x\r\n\r\n")
    client.send_raw(b"Content-Length: 2\r\n\r\n42")
    bad_method = b'{"jsonrpc":"2.0","id":77,"method":42}'
    client.send_raw(b"Content-Length: %d\r\n\r\n%s" % (len(bad_method), bad_method))
    uri_a = proxy.open("a")
    await proxy.pid_of("a")
    codes = [r["error"]["code"] for r in client.responses if r.get("id") is None]
    assert codes == [PARSE_ERROR, INVALID_REQUEST, PARSE_ERROR, INVALID_REQUEST]
    # a request that is malformed but has a usable id is answered under that id
    (answer,) = [r for r in client.responses if r.get("id") == 77]
    assert answer["error"]["code"] == INVALID_REQUEST
    cases: list[tuple[str, Any, int]] = [
        ("textDocument/hover", None, INVALID_PARAMS),
        ("textDocument/hover", {"textDocument": 3}, INVALID_PARAMS),
        ("no/suchMethod", {}, METHOD_NOT_FOUND),
        (
            "textDocument/hover",
            {
                "textDocument": {"uri": "untitled:Untitled-1"},
                "position": {"line": 0, "character": 0},
            },
            REQUEST_FAILED,
        ),
        (
            "textDocument/hover",
            {"textDocument": {"uri": proxy.uri("novenv")}, "position": {"line": 0, "character": 0}},
            REQUEST_FAILED,
        ),
    ]
    for method, params, code in cases:
        with pytest.raises(ResponseError) as err:
            await client.request(method, params)
        assert err.value.code == code, (method, params, err.value.message)
    # a file that does not exist, in a project with a venv, is routed to that venv
    missing = (proxy.root / "a" / "not_there.py").as_uri()
    hover = await client.request(
        "textDocument/hover",
        {"textDocument": {"uri": missing}, "position": {"line": 0, "character": 0}},
    )
    assert "venv=" in hover["contents"]["value"]
    # an out-of-range edit desyncs the document until its full text comes back
    client.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": uri_a, "version": 2},
            "contentChanges": [
                {
                    "range": {
                        "start": {"line": 40, "character": 0},
                        "end": {"line": 41, "character": 0},
                    },
                    "text": "boom",
                }
            ],
        },
    )
    with pytest.raises(ResponseError) as err:
        await proxy.backend_text("a")
    assert "out of sync" in err.value.message
    client.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri_a, "version": 3}, "contentChanges": [{"text": "z = 3\n"}]},
    )
    assert (await proxy.backend_text("a"))["text"] == "z = 3\n"
    # every request above got exactly one response
    ids = [r["id"] for r in client.responses if r.get("id") is not None]
    assert len(ids) == len(set(ids))


async def test_shutdown_answers_in_flight_requests_and_leaves_nothing(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy(fake="spawn_child")
    project_file(proxy, "a", "hang_on=textDocument/hover")
    proxy.open("a")
    proxy.open("b")
    await proxy.pid_of("b")
    hanging = proxy.hover_future("a")
    family = descendants(proxy.client.pid or 0)
    assert len(family) >= 4  # two backends, each with its child, plus the reaper
    code = await proxy.client.stop()
    assert code == 0
    with pytest.raises(ResponseError):
        await hanging
    assert await wait_gone(family, 10) == []


async def test_exit_without_shutdown_exits_1(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy()
    proxy.open("a")
    await proxy.pid_of("a")
    family = descendants(proxy.client.pid or 0)
    proxy.client.notify("exit", None)
    assert await proxy.client.wait_exit() == 1
    assert await wait_gone(family, 10) == []


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("how", ["stdin", "SIGTERM", "SIGINT", "SIGHUP", "SIGKILL"])
async def test_no_backend_or_child_outlives_the_proxy(
    start_proxy: Any, how: str, event_loop: str
) -> None:
    proxy: Proxy = await start_proxy(fake="spawn_child", event_loop=event_loop)
    for name in "ab":
        proxy.open(name)
        await proxy.pid_of(name)
    family = descendants(proxy.client.pid or 0)
    assert len(family) >= 5  # two backends, two children, the reaper
    if how == "stdin":
        proxy.client.close_stdin()
    else:
        os.kill(proxy.client.pid or 0, getattr(signal, how))
    code = await proxy.client.wait_exit()
    if how not in ("stdin", "SIGKILL"):
        # The orderly way out ran (128 + the signal), not the signal's default action (-N):
        # Emacs sends SIGHUP when it quits with servers running.
        assert code == 128 + getattr(signal, how), code
    assert await wait_gone(family, 10) == []


async def test_a_backend_that_ignores_stdin_eof_is_killed_on_sigkill(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy(fake="ignore_stdin_eof")
    proxy.open("a")
    await proxy.pid_of("a")
    family = descendants(proxy.client.pid or 0)
    os.kill(proxy.client.pid or 0, signal.SIGKILL)
    await proxy.client.wait_exit()
    assert await wait_gone(family, 10) == []


async def test_a_file_without_venv_is_flagged_once_per_project_where_users_look(
    start_proxy: Any,
) -> None:
    proxy: Proxy = await start_proxy()
    uri = proxy.open("novenv")
    other = proxy.client.open(proxy.root / "novenv" / "other.py", "z = 1\n")
    diags = await proxy.client.wait_diagnostics(uri, lambda d: len(d) == 1)
    assert diags[0]["severity"] == 3 and diags[0]["source"] == "typemux-lsp"
    assert "no .venv found" in diags[0]["message"] and "uv sync" in diags[0]["message"]
    await proxy.client.wait_diagnostics(other, lambda d: len(d) == 1)
    shown = [n for n in proxy.client.notifications if n["method"] == "window/showMessage"]
    assert len(shown) == 1  # one project, one message
    # the venv appears: the next request is answered and the flag is withdrawn
    venv = proxy.root / "novenv" / ".venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("version = 3.11.7\n")
    await proxy.pid_of("novenv")
    await proxy.client.wait_diagnostics(uri, lambda d: d == [])


async def test_the_no_venv_diagnostic_can_be_turned_off(start_proxy: Any) -> None:
    os.environ["TYPEMUX_LSP_NO_VENV_DIAGNOSTIC"] = "0"
    try:
        proxy: Proxy = await start_proxy()
    finally:
        del os.environ["TYPEMUX_LSP_NO_VENV_DIAGNOSTIC"]
    uri = proxy.open("novenv")
    with pytest.raises(ResponseError):
        await proxy.hover("novenv")
    assert uri not in proxy.client.diagnostics


async def test_a_starting_backend_reports_progress_to_clients_that_take_it(
    tmp_path: Path,
) -> None:
    root = make_workspace(tmp_path / "ws")
    env = dict(os.environ)
    env["TYPEMUX_LSP_BACKEND_COMMAND"] = f"{sys.executable} {FAKE}"
    client = LspClient()
    await client.start([sys.executable, "-m", "typemux_lsp", "--backend", "ty"], cwd=root, env=env)
    try:
        await client.initialize(root, {**CAPS, "window": {"workDoneProgress": True}})
        uri = client.open(root / "a" / "m.py")
        await client.wait_diagnostics(uri)
        await client.request(
            "textDocument/hover",
            {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}},
        )
        progress = [n["params"] for n in client.notifications if n["method"] == "$/progress"]
        kinds = [p["value"]["kind"] for p in progress]
        assert kinds[0] == "begin" and kinds[-1] == "end"
        assert progress[0]["value"]["title"] == "Starting ty for a/.venv"
        created = [
            r for r in client.server_requests if r["method"] == "window/workDoneProgress/create"
        ]
        assert created and created[0]["params"]["token"] == progress[0]["token"]
    finally:
        assert await client.stop() == 0


@pytest.mark.parametrize("client_keeps_settings", [True, False])
async def test_configuration_answers_carry_the_clients_settings_and_the_venv(
    tmp_path: Path, client_keeps_settings: bool
) -> None:
    root = make_workspace(tmp_path / "ws")
    env = dict(os.environ)
    env["TYPEMUX_LSP_BACKEND_COMMAND"] = f"{sys.executable} {FAKE}"
    client_python = {"analysis": {"typeCheckingMode": "strict"}, "pythonPath": "/usr/bin/python"}

    def answer(message: dict[str, Any]) -> Any:
        if message["method"] == "workspace/configuration":
            sections = [i.get("section") for i in message["params"]["items"]]
            return [client_python if s == "python" else None for s in sections]
        return None

    client = LspClient(answer)
    await client.start([sys.executable, "-m", "typemux_lsp", "--backend", "ty"], cwd=root, env=env)
    try:
        caps = {**CAPS, "workspace": {"configuration": client_keeps_settings}}
        await client.initialize(root, caps)
        uri = client.open(root / "a" / "m.py")
        await client.wait_diagnostics(uri)
        params = {"textDocument": {"uri": uri}}
        python, ty = await client.request("fake/config", params)
        venv = str(root.resolve() / "a" / ".venv")
        assert ty == {"configuration": {"environment": {"python": venv}}}
        if client_keeps_settings:
            assert python == client_python  # passed through: ty's interpreter is in its section
            asked = [r for r in client.server_requests if r["method"] == "workspace/configuration"]
            assert asked
        else:
            assert python is None
    finally:
        assert await client.stop() == 0


@pytest.mark.parametrize(("level", "shows_text"), [("trace", True), ("info", False)])
async def test_logs_name_the_session_and_show_document_text_only_at_trace(
    start_proxy: Any, tmp_path: Path, level: str, shows_text: bool
) -> None:
    log = tmp_path / "proxy.log"
    proxy: Proxy = await start_proxy("--log-file", str(log), "--log-level", level)
    proxy.open("a", "secret_marker_text = 1\n")
    await proxy.pid_of("a")
    assert await proxy.client.stop() == 0
    text = log.read_text()
    assert f"[ty#1 {(proxy.root / 'a' / '.venv').resolve()}]" in text  # session and venv
    assert ("secret_marker_text" in text) is shows_text
    assert proxy.client.stderr.strip() == b""  # logs went to the file, nothing to stderr


def test_stdio_that_is_not_a_pipe_works(tmp_path: Path) -> None:
    """A recorded session replayed from a file, output to a file or /dev/null: served, no abort
    (uvloop aborts on /dev/null if handed it as a pipe)."""
    import json
    import subprocess

    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"processId": None, "rootUri": None, "capabilities": {}},
        }
    ).encode()
    session = tmp_path / "session.bin"
    session.write_bytes(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    cmd = [sys.executable, "-m", "typemux_lsp", "--backend", "ty"]
    for out in (tmp_path / "out.bin", Path(os.devnull)):
        with session.open("rb") as stdin, out.open("wb") as stdout:
            done = subprocess.run(cmd, stdin=stdin, stdout=stdout, timeout=30, check=False)
        assert done.returncode == 1  # end of input without exit: 1, not an abort
    assert b'"id":0,"result":{"capabilities"' in (tmp_path / "out.bin").read_bytes()


async def test_a_slow_starting_backend_never_stalls_another_venv(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy()
    project_file(proxy, "a", "slow_start=4")
    proxy.open("b")
    await proxy.pid_of("b")
    proxy.open("a")
    slow = proxy.hover_future("a")  # queued while a's backend takes 4 s to start
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(20):
        await proxy.pid_of("b")
    assert loop.time() - started < 2.0  # b kept answering meanwhile
    assert not slow.done()
    assert "venv=" in (await slow)["contents"]["value"]


async def test_a_huge_document_round_trips_intact(start_proxy: Any) -> None:
    proxy: Proxy = await start_proxy()
    text = "".join(f"name_{i} = '{'🚀' * 20}'\n" for i in range(60_000))  # ~6 MB of UTF-8
    proxy.open("a", text)
    assert (await proxy.backend_text("a"))["text"] == text


async def test_config_problems_are_shown_once_and_in_status(
    start_proxy: Any, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "pyproject.toml").write_text(
        "[tool.typemux-lsp]\nmax-backend = 3\nwarmup-timeout = 'x'\n"
    )
    proxy: Proxy = await start_proxy()
    proxy.open("a")
    state = await proxy.client.request("typemux/status", None)
    problems = state["configProblems"]
    assert {p["line"] for p in problems} == {2, 3}
    assert all(p["file"].endswith("pyproject.toml") and p["fix"] for p in problems)
    shown = [n for n in proxy.client.notifications if n["method"] == "window/showMessage"]
    assert len(shown) == 1
    assert "max-backend" in shown[0]["params"]["message"]
    # and where Claude Code looks: diagnostics on the file, at each problem's line
    pyproject = (ws / "pyproject.toml").resolve().as_uri()
    published = [
        n["params"]
        for n in proxy.client.notifications
        if n["method"] == "textDocument/publishDiagnostics" and n["params"]["uri"] == pyproject
    ]
    assert len(published) == 1, published
    lines = {d["range"]["start"]["line"] for d in published[0]["diagnostics"]}
    assert lines == {1, 2}  # 0-based: lines 2 and 3
    assert all("Fix:" in d["message"] for d in published[0]["diagnostics"])
    # the valid parts still apply: the proxy serves
    await proxy.pid_of("a")


async def test_status_describes_every_backend_and_the_documents_without_venv(
    start_proxy: Any,
) -> None:
    proxy: Proxy = await start_proxy()
    proxy.open("a")
    pid = await proxy.pid_of("a")
    uri = proxy.open("novenv")
    state = await proxy.client.request(
        "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
    )
    (backend,) = state["backends"]
    assert backend["pid"] == pid
    assert backend["kind"] == "ty"
    assert backend["state"] in ("warming", "ready")
    assert backend["venv"] == str((proxy.root / "a" / ".venv").resolve())
    assert backend["openDocuments"] == [proxy.uri("a")]
    assert backend["memory"] > 0 and backend["uptime"] > 0
    assert backend["requestsInFlight"] == 0 and backend["crashes"] == 0
    assert state["documentsWithoutVenv"] == [uri]


async def file_appears(path: Path, timeout: float = 10.0) -> str:
    """The text of `path` once a backend has written it (a fake backend's marker)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await asyncio.to_thread(path.exists):
        assert loop.time() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.02)
    return await asyncio.to_thread(path.read_text)


async def test_a_request_in_flight_at_a_freshness_restart_is_answered_by_the_new_backend(
    start_proxy: Any,
) -> None:
    """The venv is recreated while its backend holds a hover: the client gets the new
    backend's answer, once, and never hears of the restart."""
    proxy: Proxy = await start_proxy()
    project_file(proxy, "a", "hang_once_on=textDocument/hover")
    proxy.open("a")
    await proxy.backend_text("a")  # up, and watching its venv: the hover is forwarded
    fut = proxy.hover_future("a")
    msg_id = proxy.client.last_id
    hung_pid = int(await file_appears(proxy.root / "a" / ".fake_hung"))
    (proxy.root / "a" / ".venv" / "pyvenv.cfg").write_text("version = 3.11.8\n")
    hover = await asyncio.wait_for(fut, 20)
    value = hover["contents"]["value"]
    assert f"venv={proxy.root / 'a' / '.venv'}" in value
    assert f"pid={hung_pid} " not in value  # the new backend answered
    assert len(proxy.responses_for(msg_id)) == 1


async def test_a_request_the_backend_cancels_for_the_proxys_own_change_is_sent_again(
    start_proxy: Any,
) -> None:
    """pyrefly cancels what it is answering when told of a change on disk; the proxy told it
    (the client did not), so the client gets an answer, not RequestCancelled."""
    proxy: Proxy = await start_proxy()
    project_file(proxy, "a", "cancel_on_watched")
    proxy.open("a")
    await proxy.backend_text("a")
    fut = proxy.hover_future("a")
    msg_id = proxy.client.last_id
    await file_appears(proxy.root / "a" / ".fake_held")
    (proxy.root / "a" / "other.py").write_text("z = 3\n")  # a module appears, not open
    hover = await asyncio.wait_for(fut, 20)
    assert f"venv={proxy.root / 'a' / '.venv'}" in hover["contents"]["value"]
    assert len(proxy.responses_for(msg_id)) == 1


async def test_a_backends_cancellation_the_proxy_did_not_cause_reaches_the_client(
    start_proxy: Any,
) -> None:
    """Transparency: when the client's own change makes the backend give up, the client gets
    the backend's error as it is."""
    proxy: Proxy = await start_proxy()
    project_file(proxy, "a", "cancel_on_watched")
    proxy.open("a")
    await proxy.backend_text("a")
    fut = proxy.hover_future("a")
    await file_appears(proxy.root / "a" / ".fake_held")
    proxy.client.notify(
        "workspace/didChangeWatchedFiles",
        {"changes": [{"uri": (proxy.root / "a" / "gone.py").as_uri(), "type": 3}]},
    )
    with pytest.raises(ResponseError) as err:
        await asyncio.wait_for(fut, 20)
    assert err.value.code == REQUEST_CANCELLED
    assert "subsequent mutation" in err.value.message


async def test_a_replaced_backend_leaves_its_successors_diagnostics_alone(
    start_proxy: Any,
) -> None:
    """A venv recreated: the old backend, slow to go, still publishes (empty) diagnostics
    and then ends; the client keeps the new backend's diagnostics."""
    proxy: Proxy = await start_proxy()
    project_file(proxy, "a", "diag_on_open,linger_on_exit=1")
    uri = proxy.open("a")
    await proxy.client.wait_diagnostics(uri, lambda d: len(d) == 1)
    old_pid = await proxy.pid_of("a")
    (proxy.root / "a" / ".venv" / "pyvenv.cfg").write_text("version = 3.11.8\n")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:  # until the old backend is gone and the proxy has seen it go
        status = await proxy.client.request("typemux/status", None)
        pids = [b["pid"] for b in status["backends"]]
        if pids and old_pid not in pids and status["backendProcesses"] == 1:
            break
        assert loop.time() < deadline, status
        await asyncio.sleep(0.05)
    assert await proxy.pid_of("a") != old_pid
    assert len(proxy.client.diagnostics[uri]) == 1, proxy.client.diagnostics[uri]


async def test_a_cancelled_workspace_symbol_search_is_withdrawn_from_the_backends(
    start_proxy: Any,
) -> None:
    """The client cancels a workspace/symbol fan-out: it is answered RequestCancelled once,
    and each backend still searching is told to stop ($/cancelRequest), not left at it."""
    proxy: Proxy = await start_proxy()
    project_file(proxy, "a", "hang_on=workspace/symbol,log_requests=workspace/symbol,log_cancels")
    proxy.open("a")
    await proxy.backend_text("a")
    fut = proxy.client.send_request("workspace/symbol", {"query": "x"})
    msg_id = proxy.client.last_id
    await file_appears(proxy.root / "a" / ".fake_requests")  # the backend is searching
    proxy.client.notify("$/cancelRequest", {"id": msg_id})
    with pytest.raises(ResponseError) as err:
        await asyncio.wait_for(fut, 10)
    assert err.value.code == REQUEST_CANCELLED
    assert len(proxy.responses_for(msg_id)) == 1
    assert (await file_appears(proxy.root / "a" / ".fake_cancels")).strip()


async def test_workspace_symbol_keeps_the_clients_progress_tokens_from_the_backends(
    start_proxy: Any,
) -> None:
    proxy: Proxy = await start_proxy()
    project_file(proxy, "a", "log_requests=workspace/symbol")
    proxy.open("a")
    await proxy.backend_text("a")
    await proxy.client.request(
        "workspace/symbol", {"query": "x", "workDoneToken": "w1", "partialResultToken": "p1"}
    )
    seen = json.loads(await file_appears(proxy.root / "a" / ".fake_requests"))
    assert seen == {"query": "x"}
