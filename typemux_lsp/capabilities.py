"""The initialize answer: the installed backend's own, learned once per version and client.

The client is answered before any backend runs (an environment is known only once a file
opens, and Claude Code hangs when initialize is answered late), so the answer is what the
backend kind would say. A recording (profiles/*.json) goes stale as backends are upgraded:
a client told "pyrefly 1.4.1" misses 1.5.0's semantic tokens. So when no answer is known for
the installed version and this client's capabilities, the installed backend is asked once,
in the background, with the client's very `initialize`, and its answer is cached
(`<user cache>/typemux-lsp/initialize/`). From the next session on the client gets exactly
what the backend would tell it; the session that learned it gets the capabilities the
recording lacked registered dynamically, where the client allows that.
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
import time
from collections.abc import Sequence
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

    def path(self, kind: BackendKind, capabilities: Any) -> Path | None:
        identity = _identity(kind)
        if identity is None:
            return None
        digest = hashlib.sha256(
            json.dumps([FORMAT, kind.name, identity, capabilities], sort_keys=True).encode()
        ).hexdigest()[:20]
        return self.directory / f"{kind.name}-{digest}.json"

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
        except OSError as exc:
            logger.warning("cannot cache %s's initialize answer in %s: %s", kind.name, path, exc)


def probe(
    kind: BackendKind, client_params: dict[str, Any], roots: Sequence[Path]
) -> dict[str, Any] | None:
    """Ask the installed backend for its initialize answer to this client (blocking: run it
    in a thread). It runs in an empty temporary directory and is stopped at once; nothing
    the repositories of `roots` ship runs (`backend_environment`)."""
    with tempfile.TemporaryDirectory(prefix="typemux-lsp-probe-") as tmp:
        env = backend_environment(Path(tmp), *roots)
        executable = kind.resolve_executable(env["PATH"])
        if executable is None:
            return None
        root = Path(tmp).as_uri()
        params = copy.deepcopy(client_params)
        params.update(
            processId=os.getpid(),
            rootUri=root,
            rootPath=tmp,
            workspaceFolders=[{"uri": root, "name": "probe"}],
        )
        try:
            proc = subprocess.Popen(
                kind.command(executable, env["PATH"]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=tmp,
                env=env,
                bufsize=0,
                **new_group(),
            )
        except OSError as exc:
            logger.info("cannot probe %s: %s", kind.name, exc)
            return None
        try:
            return _exchange(proc, params)
        finally:
            kill_group(proc.pid)
            proc.wait()


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
