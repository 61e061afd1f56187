"""Record each backend's raw `initialize` result as `typemux_lsp/profiles/<kind>.json`.

typemux-lsp answers the client's `initialize` before any backend runs (the venv, hence the
backend process, is only known once a file is opened), so it needs the capabilities each backend
kind *would* answer. This script asks the real backends: it starts each one in a throwaway
project with its own `.venv`, speaks raw JSON-RPC over stdio (no pygls typing, so the stored
result is exactly the JSON the backend sent), opens one file, records what the server sends for
a few seconds, then shuts it down.

    .venv/bin/python scripts/capture_profiles.py [--trace DIR] [KIND ...]

The client sent is pytest-lsp's recorded VS Code (capabilities and clientInfo) with
`general.positionEncodings = ["utf-16"]`: the richest common client, in the one encoding that
every backend and every client supports. The result is the same for every client tried, except
that ty answers `positionEncoding: "utf-8"` when offered it and drops its static
`diagnosticProvider` for clients that register pull diagnostics dynamically (pyrefly 1.4 added
`semanticTokensProvider` only for clients with `semanticTokens.augmentsSyntaxTokens`; 1.5.1
always does). tests/e2e/test_wire.py checks the recordings against the installed backends for
every client profile of the suite: re-record when it fails after a backend release.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.resources
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Json = dict[str, Any]
#: Answers one `workspace/configuration` item; the default answers `null` (no settings).
ConfigAnswer = Callable[[Json], Any]

REPO = Path(__file__).resolve().parent.parent
PROFILES = REPO / "typemux_lsp" / "profiles"
SOURCE = 'def greet(name: str) -> str:\n    return "hello " + name\n\n\ncount: int = greet("x")\n'
#: How long to keep listening after `didOpen`: the slowest backend publishes in about 1 s.
LISTEN_SECONDS = 3.0
TIMEOUT = 30.0


@dataclass(frozen=True)
class Backend:
    """How to start one backend kind and which distribution reports its version."""

    argv: tuple[str, ...]
    package: str


BACKENDS: dict[str, Backend] = {
    "pyright": Backend(("pyright-langserver", "--stdio"), "pyright"),
    "basedpyright": Backend(("basedpyright-langserver", "--stdio"), "basedpyright"),
    "ty": Backend(("ty", "server"), "ty"),
    "pyrefly": Backend(("pyrefly", "lsp"), "pyrefly"),
}


@dataclass
class Capture:
    """Everything one backend run showed: the result, the server's traffic and its timings."""

    kind: str
    version: str
    initialize_result: Json
    #: (seconds since spawn, raw message) for every server→client request and notification.
    events: list[tuple[float, Json]] = field(default_factory=list)
    spawn_to_initialize: float = 0.0
    open_to_diagnostics: float | None = None
    stderr: str = ""


class Connection:
    """Content-Length framed JSON-RPC on a child's stdio, answering the server's requests."""

    def __init__(self, proc: asyncio.subprocess.Process, answer: Callable[[Json], Any]) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        self._stdin = proc.stdin
        self._stdout = proc.stdout
        self._answer = answer
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.started = time.monotonic()
        self.events: list[tuple[float, Json]] = []
        self.on_event: Callable[[Json], None] = lambda message: None
        self._reader = asyncio.create_task(self._read_loop())

    async def _write(self, message: Json) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        self._stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await self._stdin.drain()

    async def request(self, method: str, params: Any) -> Any:
        """Send a request and wait for its result; a JSON-RPC error raises `RuntimeError`."""
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        await self._write({"id": self._next_id, "method": method, "params": params})
        return await asyncio.wait_for(future, TIMEOUT)

    async def notify(self, method: str, params: Any) -> None:
        await self._write({"method": method, "params": params})

    async def _read_loop(self) -> None:
        while True:
            try:
                header = await self._stdout.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            match = re.search(rb"Content-Length:\s*(\d+)", header, re.IGNORECASE)
            if match is None:
                continue
            message: Json = json.loads(await self._stdout.readexactly(int(match[1])))
            if "method" not in message:
                self._resolve(message)
                continue
            self.events.append((time.monotonic() - self.started, message))
            self.on_event(message)
            if "id" in message:
                with contextlib.suppress(ConnectionError):
                    await self._write({"id": message["id"], "result": self._answer(message)})
        for future in self._pending.values():
            if not future.done():
                future.set_exception(EOFError("backend closed its stdout"))

    def _resolve(self, message: Json) -> None:
        future = self._pending.pop(message.get("id", -1), None)
        if future is None or future.done():
            return
        if "error" in message:
            future.set_exception(RuntimeError(message["error"]))
        else:
            future.set_result(message.get("result"))

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def permissive_answer(config: ConfigAnswer) -> Callable[[Json], Any]:
    """Answer server→client requests as a permissive editor does, so no backend stalls."""

    def answer(message: Json) -> Any:
        if message["method"] == "workspace/configuration":
            return [config(item) for item in message["params"]["items"]]
        if message["method"] == "workspace/applyEdit":
            return {"applied": False}
        # registerCapability, workDoneProgress/create, */refresh, showMessageRequest, ...
        return None

    return answer


def vscode_client() -> Json:
    """pytest-lsp's newest recorded VS Code `clientInfo` and `capabilities`, offering UTF-16."""
    clients = importlib.resources.files("pytest_lsp.clients")
    names = [p.name for p in clients.iterdir() if p.name.startswith("visual_studio_code_v")]
    newest = max(names, key=lambda n: [int(x) for x in re.findall(r"\d+", n)])
    client: Json = json.loads(clients.joinpath(newest).read_text())
    client["capabilities"].setdefault("general", {})["positionEncodings"] = ["utf-16"]
    return client


def make_project(root: Path) -> Path:
    """A one-file project with its own `.venv`, as the backends meet in real use."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root / ".venv"], check=True)
    (root / "main.py").write_text(SOURCE)
    return root


def backend_env(venv: Path) -> dict[str, str]:
    """The environment typemux-lsp gives a backend: the project venv activated."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def executable(name: str) -> str:
    """The backend installed next to this interpreter (the dev venv), else on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install typemux-lsp[all]")
    return found


def kill_group(proc: asyncio.subprocess.Process) -> None:
    """Kill the backend's whole process group: basedpyright's wrapper leaves node behind."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def capture(
    kind: str,
    capabilities: Json,
    project: Path,
    *,
    config: ConfigAnswer = lambda item: None,
    env: dict[str, str] | None = None,
    listen: float = LISTEN_SECONDS,
    client_info: Json | None = None,
) -> Capture:
    """Run one backend through initialize → didOpen → listen → shutdown/exit."""
    backend = BACKENDS[kind]
    root_uri = project.as_uri()
    main_uri = (project / "main.py").as_uri()
    # A file, not a pipe: nobody reads stderr while the run goes on, and a full pipe would block.
    with tempfile.TemporaryFile() as stderr:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            executable(backend.argv[0]),
            *backend.argv[1:],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            cwd=project,
            env=backend_env(project / ".venv") if env is None else env,
            start_new_session=True,
        )
        conn = Connection(proc, permissive_answer(config))
        conn.started = started
        diagnosed: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        def watch(message: Json) -> None:
            if (
                message["method"] == "textDocument/publishDiagnostics"
                and message["params"]["uri"] == main_uri
                and not diagnosed.done()
            ):
                diagnosed.set_result(time.monotonic())

        conn.on_event = watch
        try:
            result: Json = await conn.request(
                "initialize",
                {
                    "processId": os.getpid(),
                    **({} if client_info is None else {"clientInfo": client_info}),
                    "rootUri": root_uri,
                    "rootPath": str(project),
                    "workspaceFolders": [{"uri": root_uri, "name": project.name}],
                    "capabilities": capabilities,
                    "trace": "off",
                },
            )
            initialized = time.monotonic()
            await conn.notify("initialized", {})
            opened = time.monotonic()
            document = {"uri": main_uri, "languageId": "python", "version": 1, "text": SOURCE}
            await conn.notify("textDocument/didOpen", {"textDocument": document})
            await asyncio.sleep(listen)
            with contextlib.suppress(RuntimeError, EOFError, asyncio.TimeoutError):
                await conn.request("shutdown", None)
            await conn.notify("exit", None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
        finally:
            kill_group(proc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
            await conn.close()
        stderr.seek(0)
        log = stderr.read().decode(errors="replace")
    server_version = (result.get("serverInfo") or {}).get("version")
    return Capture(
        kind=kind,
        version=server_version or importlib.metadata.version(backend.package),
        initialize_result=result,
        events=conn.events,
        spawn_to_initialize=initialized - started,
        open_to_diagnostics=diagnosed.result() - opened if diagnosed.done() else None,
        stderr=log,
    )


#: Client capabilities that change some backend's initialize answer (measured: pyrefly adds
#: semantic tokens for clients that augment syntax tokens; ty drops its static diagnostic
#: provider for clients that register pull diagnostics dynamically).
TOGGLES: tuple[tuple[tuple[str, ...], Any], ...] = (
    (("textDocument", "semanticTokens", "augmentsSyntaxTokens"), True),
    (("textDocument", "diagnostic", "dynamicRegistration"), True),
)


def with_capability(capabilities: Json, path: tuple[str, ...], value: Any) -> Json:
    """A deep copy of `capabilities` with `path` set to `value`."""
    result: Json = json.loads(json.dumps(capabilities))
    node = result
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return result


def variant(base: Json, changed: Json, path: tuple[str, ...], value: Any) -> Json | None:
    """How the capabilities differ when the client declares `path` = `value`; None if not."""
    before, after = base["capabilities"], changed["capabilities"]
    set_ = {k: v for k, v in after.items() if before.get(k) != v}
    unset = sorted(k for k in before if k not in after)
    if not set_ and not unset:
        return None
    return {"when": list(path), "is": value, "set": set_, "unset": unset}


def profile(capture: Capture, variants: list[Json]) -> Json:
    """The stored profile: the raw result as sent, and how it varies with the client.

    Stored whole because it holds nothing run-specific (no pid, path or UUID: identical across
    runs in different temporary projects); registration ids and paths only appear in the
    server's later requests, which are not stored.
    """
    stored: Json = {
        "backend": capture.kind,
        "version": capture.version,
        "initializeResult": capture.initialize_result,
    }
    if variants:
        stored["variants"] = variants
    return stored


def dump(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=2) + "\n"


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kinds", nargs="*", metavar="KIND", help=f"any of {', '.join(BACKENDS)}")
    parser.add_argument("--out", type=Path, default=PROFILES, help="profile directory")
    parser.add_argument("--trace", type=Path, help="also write each run's traffic and timings")
    args = parser.parse_args(argv)
    if unknown := set(args.kinds) - set(BACKENDS):
        parser.error(f"unknown backend kind: {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="typemux-capture-") as tmp:
        for kind in args.kinds or list(BACKENDS):
            client = vscode_client()
            run = await capture(
                kind,
                client["capabilities"],
                make_project(Path(tmp) / kind),
                client_info=client.get("clientInfo"),
            )
            variants = []
            for path, value in TOGGLES:
                toggled = await capture(
                    kind,
                    with_capability(client["capabilities"], path, value),
                    make_project(Path(tmp) / f"{kind}-{'.'.join(path)}"),
                    client_info=client.get("clientInfo"),
                    listen=0.2,
                )
                found = variant(run.initialize_result, toggled.initialize_result, path, value)
                if found is not None:
                    variants.append(found)
            (args.out / f"{kind}.json").write_text(dump(profile(run, variants)))
            diagnosed = run.open_to_diagnostics
            print(
                f"{kind} {run.version}: initialize {run.spawn_to_initialize * 1000:.0f} ms, "
                f"first diagnostics {'-' if diagnosed is None else f'{diagnosed * 1000:.0f} ms'}"
            )
            if args.trace:
                args.trace.mkdir(parents=True, exist_ok=True)
                trace = {
                    "spawnToInitialize": run.spawn_to_initialize,
                    "openToDiagnostics": run.open_to_diagnostics,
                    "events": [{"t": round(t, 4), "message": m} for t, m in run.events],
                    "stderr": run.stderr,
                }
                (args.trace / f"{kind}.json").write_text(dump(trace))


if __name__ == "__main__":
    asyncio.run(main())
