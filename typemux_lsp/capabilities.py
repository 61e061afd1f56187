"""The initialize answer: the installed backend's own, learned once per version and client.

The client is answered before any backend runs for a project (an environment is known only
once a file opens, and Claude Code hangs when initialize is answered late), so the answer is
what the installed backend says to this client. A recording (profiles/*.json) goes stale as
backends are upgraded: a client told "pyrefly 1.4.1" misses 1.5's semantic tokens. So when no
answer is cached for the installed version and this client's capabilities, the installed
backend is asked (`Probe`) with the client's very `initialize`, and its answer is cached
(`<user cache>/typemux-lsp/initialize/`). The first session with an installed version starts
the probe at launch (`prestart`), so pyright's node boots while the proxy does; the answer is
given if it comes within the start-up budget (`ANSWER_BY`), else the recording is, and what it
lacked is registered dynamically as soon as the backend's answer is known, where the client
allows that.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

from . import jsonrpc
from .backends import BackendKind, backend_environment, safe_path
from .features import ClientSupport
from .platform import kill_group, new_group

logger = logging.getLogger(__name__)

#: bumped when what is cached changes meaning
FORMAT: Final = 1
#: seconds the backend has to answer the probe
PROBE_TIMEOUT: Final = 30.0
#: seconds after launch by which the client is answered: the backend's own answer if it came,
#: else the recording (bench/startup.py: the budget is 0.25 s, interpreter start included)
ANSWER_BY: Final = 0.2
#: seconds a probe asked after that still gets (ty and pyrefly answer in ~10 ms)
ANSWER_GRACE: Final = 0.05

#: server capability -> the method a client registers it under
_REGISTRABLE: Final = {
    "hoverProvider": "textDocument/hover",
    "completionProvider": "textDocument/completion",
    "signatureHelpProvider": "textDocument/signatureHelp",
    "definitionProvider": "textDocument/definition",
    "declarationProvider": "textDocument/declaration",
    "typeDefinitionProvider": "textDocument/typeDefinition",
    "implementationProvider": "textDocument/implementation",
    "referencesProvider": "textDocument/references",
    "documentHighlightProvider": "textDocument/documentHighlight",
    "documentSymbolProvider": "textDocument/documentSymbol",
    "codeActionProvider": "textDocument/codeAction",
    "codeLensProvider": "textDocument/codeLens",
    "documentLinkProvider": "textDocument/documentLink",
    "renameProvider": "textDocument/rename",
    "foldingRangeProvider": "textDocument/foldingRange",
    "selectionRangeProvider": "textDocument/selectionRange",
    "callHierarchyProvider": "textDocument/prepareCallHierarchy",
    "typeHierarchyProvider": "textDocument/prepareTypeHierarchy",
    "semanticTokensProvider": "textDocument/semanticTokens",
    "inlayHintProvider": "textDocument/inlayHint",
    "diagnosticProvider": "textDocument/diagnostic",
    "workspaceSymbolProvider": "workspace/symbol",
}


def _identity(kind: BackendKind) -> str | None:
    """What changes when the backend is installed again (upgraded, downgraded): its
    executable's path, size and time. Cheaper than asking for its version (that would
    import importlib.metadata, ~40 ms, while the client waits for the answer)."""
    executable = kind.resolve_executable(safe_path(os.environ.get("PATH", "")))  # (only stat'ed)
    if executable is None:
        return None
    try:
        st = executable.stat()
    except OSError:
        return None
    return f"{executable}:{st.st_size}:{st.st_mtime_ns}"


class Answers:
    """The learned answers on disk, and how to learn one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def default(cls) -> Answers:
        """The user's cache of learned answers."""
        import platformdirs

        return cls(Path(platformdirs.user_cache_dir("typemux-lsp")) / "initialize")

    def path(self, kind: BackendKind, capabilities: Any) -> Path | None:
        identity = _identity(kind)
        if identity is None:
            return None
        digest = hashlib.sha256(
            json.dumps([FORMAT, kind.name, identity, capabilities], sort_keys=True).encode()
        ).hexdigest()[:20]
        return self.directory / f"{kind.name}-{digest}.json"

    def _marker(self, kind: BackendKind) -> Path | None:
        """A file that says some answer of this installed version is cached."""
        identity = _identity(kind)
        if identity is None:
            return None
        digest = hashlib.sha256(json.dumps([FORMAT, kind.name, identity]).encode()).hexdigest()
        return self.directory / f"{kind.name}-{digest[:20]}.known"

    def known(self, kind: BackendKind) -> bool:
        """Whether the installed version of `kind` was asked before (by any client)."""
        marker = self._marker(kind)
        return marker is not None and marker.exists()

    def load(self, kind: BackendKind, capabilities: Any) -> dict[str, Any] | None:
        path = self.path(kind, capabilities)
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        result = data.get("initializeResult") if isinstance(data, dict) else None
        return result if isinstance(result, dict) else None

    def save(self, kind: BackendKind, capabilities: Any, result: dict[str, Any]) -> None:
        path = self.path(kind, capabilities)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(
                json.dumps({"backend": kind.name, "initializeResult": result}, indent=1),
                encoding="utf-8",
            )
            tmp.replace(path)  # atomic: another proxy reads all of it or none
            marker = self._marker(kind)
            if marker is not None:
                marker.touch()
        except OSError as exc:
            logger.warning("cannot cache %s's initialize answer in %s: %s", kind.name, path, exc)


class Probe:
    """The installed backend, started to be asked its initialize answer, then stopped.

    It can be started before the client's `initialize` arrives (`prestart`, at launch), so a
    backend that boots slowly (pyright and basedpyright run node: ~170-230 ms to their first
    answer) boots while the proxy itself starts; ty and pyrefly answer in ~10 ms anyway. It
    runs in an empty temporary directory, with a PATH that holds nothing of the repositories
    served (`backend_environment`), and is stopped (its process group killed) once it answered.
    """

    def __init__(self, kind: BackendKind, env: dict[str, str], executable: Path) -> None:
        self.kind = kind
        self.path = env["PATH"]
        self._tmp = tempfile.TemporaryDirectory(prefix="typemux-lsp-probe-")
        self.directory = Path(self._tmp.name)
        self._answered = threading.Event()
        self._result: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._asked = False
        self._proc = subprocess.Popen(
            kind.command(executable, env["PATH"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self.directory,
            env=env,
            bufsize=0,
            **new_group(),
        )

    @classmethod
    def start(cls, kind: BackendKind, *roots: Path, path: str | None = None) -> Probe | None:
        """The backend of `kind` started, or None when it is not installed (or cannot start)."""
        env = backend_environment(*roots)
        if path is not None:
            env["PATH"] = path
        executable = kind.resolve_executable(env["PATH"])
        if executable is None:
            return None
        try:
            return cls(kind, env, executable)
        except OSError as exc:
            logger.info("cannot probe %s: %s", kind.name, exc)
            return None

    def safe_for(self, *roots: Path) -> bool:
        """Whether the PATH it was started with holds nothing of `roots`' repositories."""
        allowed = set(safe_path(self.path, *roots).split(os.pathsep))
        return all(entry in allowed for entry in self.path.split(os.pathsep) if entry)

    def ask(self, client_params: dict[str, Any]) -> None:
        """Send the client's own initialize (rooted at the probe's empty directory); the
        answer is read in a thread."""
        with self._lock:
            if self._asked:
                return
            self._asked = True
        root = self.directory.as_uri()
        params = copy.deepcopy(client_params)
        params.update(
            processId=os.getpid(),
            rootUri=root,
            rootPath=str(self.directory),
            workspaceFolders=[{"uri": root, "name": "probe"}],
        )
        threading.Thread(
            target=self._run, args=(params,), name=f"probe-{self.kind.name}", daemon=True
        ).start()

    def answer(self, timeout: float) -> dict[str, Any] | None:
        """The backend's initialize result, waiting at most `timeout` s; None if not (yet)."""
        self._answered.wait(max(timeout, 0.0))
        return self._result

    def close(self) -> None:
        """Stop the backend (its whole process group) and remove its directory."""
        kill_group(self._proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)
        with contextlib.suppress(OSError):
            self._tmp.cleanup()
        self._answered.set()

    def _run(self, params: dict[str, Any]) -> None:
        try:
            self._result = _exchange(self._proc, params)
        except OSError as exc:
            logger.info("probing %s failed: %s", self.kind.name, exc)
        finally:
            self._answered.set()
            self.close()


def prestart(kind: BackendKind, cwd: Path, answers: Answers) -> Probe | None:
    """At launch, before the client's initialize: start the probe when the installed version
    of `kind` was never asked (no answer cached for it, whatever the client), so its answer
    can be the first session's.

    The workspace roots are not known yet, so its PATH also leaves out every entry inside a
    git repository or a virtual environment (where a repository could plant a program); the
    server checks it against the roots before using it (`Probe.safe_for`)."""
    if answers.known(kind):
        return None
    path = _outside_projects(safe_path(os.environ.get("PATH", ""), cwd))
    return Probe.start(kind, cwd, path=path)


def _outside_projects(path: str) -> str:
    kept = []
    for entry in path.split(os.pathsep):
        where = Path(entry)
        if not entry or any(
            (parent / ".git").exists() or (parent / "pyvenv.cfg").exists()
            for parent in (where, *where.parents)
        ):
            continue
        kept.append(entry)
    return os.pathsep.join(kept)


def _exchange(proc: subprocess.Popen[bytes], params: dict[str, Any]) -> dict[str, Any] | None:
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def send(message: dict[str, Any]) -> None:
        stdin.write(jsonrpc.frame(jsonrpc.dumps(message)))

    decoder = jsonrpc.FrameDecoder()
    deadline = time.monotonic() + PROBE_TIMEOUT
    send(jsonrpc.request(1, "initialize", params))
    result: dict[str, Any] | None = None
    while result is None and time.monotonic() < deadline:
        data = os.read(stdout.fileno(), 65536)
        if not data:
            return None
        for body in decoder.feed(data):
            if isinstance(body, jsonrpc.FrameError):
                return None
            decoded = jsonrpc.decode(body)
            if isinstance(decoded, jsonrpc.BadMessage):
                return None
            message = decoded[0]
            if message.get("id") == 1 and "method" not in message:
                answer = message.get("result")
                result = answer if isinstance(answer, dict) else {}
            elif "method" in message and "id" in message:
                send(jsonrpc.response(message["id"], None))
    with contextlib.suppress(OSError):
        send(jsonrpc.request(2, "shutdown", None))
        send(jsonrpc.notification("exit", None))
    return result


def registrations(
    answered: dict[str, Any], learned: dict[str, Any], support: ClientSupport
) -> list[dict[str, Any]]:
    """Dynamic registrations for what the learned answer has and the given one lacked, where
    the client registers that capability dynamically."""
    before = answered.get("capabilities", {})
    after = learned.get("capabilities", {})
    found = []
    for key, method in _REGISTRABLE.items():
        value = after.get(key)
        if not value or before.get(key) or not support.dynamic_registration(method):
            continue
        options = dict(value) if isinstance(value, dict) else {}
        if method.startswith("textDocument/"):
            options["documentSelector"] = [{"language": "python"}]
        found.append(
            {"id": f"typemux-lsp/initialize/{key}", "method": method, "registerOptions": options}
        )
    return found
