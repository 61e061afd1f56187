"""Client profiles and small LSP helpers shared by the end-to-end tests.

A *profile* is what a real editor says about itself in ``initialize``: the proxy must behave for
all of them. Claude Code's profile is written from measurements of its LSP client (2.1.x, see
/work/shared/notes/backends.md); VS Code's and Neovim's are the ones pytest-lsp ships.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import unquote, urlparse

import cattrs
import pytest_lsp
from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.protocol import default_converter

BACKENDS = ("pyright", "basedpyright", "ty", "pyrefly")
"""The ``--backend`` values of typemux-lsp, in the order tests are parametrized."""

_CONVERTER = get_converter()

# -- client profiles ----------------------------------------------------------------------------

CLAUDE_CODE_CAPABILITIES: dict[str, Any] = {
    "textDocument": {
        "synchronization": {
            "dynamicRegistration": False,
            "willSave": False,
            "willSaveWaitUntil": False,
            "didSave": True,
        },
        "publishDiagnostics": {"relatedInformation": True},
        "hover": {"dynamicRegistration": False, "contentFormat": ["markdown", "plaintext"]},
        "definition": {"dynamicRegistration": False, "linkSupport": True},
        "references": {"dynamicRegistration": False},
        "documentSymbol": {"dynamicRegistration": False, "hierarchicalDocumentSymbolSupport": True},
        "callHierarchy": {"dynamicRegistration": False},
    },
    # No "configuration" (Claude Code declares it only when a plugin sets `settings`) and
    # deliberately no "window": Claude Code has no workDoneProgress support.
    "workspace": {"workspaceFolders": False},
    "general": {"positionEncodings": ["utf-16"]},
}
"""What Claude Code 2.1.x declares: no completion, no pull diagnostics, no progress, UTF-16 only."""

CLAUDE_CODE_CLIENT_INFO: dict[str, str] = {"name": "Claude Code", "version": "2.1.0"}


@dataclass(frozen=True)
class Profile:
    """One editor as seen by a language server."""

    name: str
    client_info: dict[str, str]
    capabilities: dict[str, Any]

    @property
    def typed_capabilities(self) -> types.ClientCapabilities:
        return _CONVERTER.structure(self.capabilities, types.ClientCapabilities)

    def initialize_params(self, root: Path, *, process_id: int | None = None) -> dict[str, Any]:
        """JSON ``initialize`` params as this editor sends them for a session opened at ``root``.

        Claude Code sends one workspace folder (its session cwd) even though it declares
        ``workspace.workspaceFolders = false``; the other editors do the same for one folder.
        """
        uri = root.as_uri()
        return {
            "processId": os.getpid() if process_id is None else process_id,
            "clientInfo": self.client_info,
            "rootPath": str(root),
            "rootUri": uri,
            "workspaceFolders": [{"uri": uri, "name": root.name}],
            "capabilities": self.capabilities,
        }

    def typed_initialize_params(self, root: Path) -> types.InitializeParams:
        return _CONVERTER.structure(self.initialize_params(root), types.InitializeParams)


def _pytest_lsp_profile(spec: str, name: str) -> Profile:
    capabilities = pytest_lsp.client_capabilities(spec)
    info = {"visual-studio-code": "Visual Studio Code", "neovim": "Neovim"}[spec.split("@")[0]]
    return Profile(
        name=name,
        client_info={"name": info, "version": spec.partition("@")[2] or "latest"},
        capabilities=_CONVERTER.unstructure(capabilities),
    )


CLAUDE_CODE = Profile("claude-code", CLAUDE_CODE_CLIENT_INFO, CLAUDE_CODE_CAPABILITIES)
VSCODE = _pytest_lsp_profile("visual-studio-code", "vscode")
NEOVIM = _pytest_lsp_profile("neovim", "neovim")
PROFILES = {profile.name: profile for profile in (CLAUDE_CODE, VSCODE, NEOVIM)}

# -- commands -----------------------------------------------------------------------------------

BIN = Path(sys.executable).parent
"""Where the dev venv's backends live (the test interpreter's own bin directory)."""

BACKEND_COMMANDS: dict[str, list[str]] = {
    "pyright": [str(BIN / "pyright-langserver"), "--stdio"],
    "basedpyright": [str(BIN / "basedpyright-langserver"), "--stdio"],
    "ty": [str(BIN / "ty"), "server"],
    "pyrefly": [str(BIN / "pyrefly"), "lsp"],
}
"""How to start each backend straight, without the proxy."""


REPO_ROOT = Path(__file__).resolve().parent.parent


def proxy_command(backend: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "typemux_lsp", "--backend", backend, *extra]


#: set to 1, the proxies the tests start run every backend kind in its other mode: shared
#: where it is per-process by default, and the reverse (`backend-sharing`); CI runs the
#: routing and freshness suites so
OTHER_MODE = "TYPEMUX_LSP_TEST_OTHER_MODE"


def shares(backend: str) -> bool:
    """Whether the proxies the tests start run `backend` shared (one process, a folder per
    environment): its default, `TYPEMUX_LSP_BACKEND_SHARING`, or the other mode."""
    from typemux_lsp.config.settings import sharing_kinds

    return backend in sharing_kinds(proxy_env().get("TYPEMUX_LSP_BACKEND_SHARING") or "auto")


def proxy_env() -> dict[str, str]:
    """The environment the proxy runs in: the test environment minus venv selection.

    ``VIRTUAL_ENV`` is dropped (an activated dev venv must not leak into backends).
    ``PYTHONPATH`` is set to the repository only if typemux_lsp is not installed.
    """
    return dict(_proxy_env())


@functools.cache
def _proxy_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env.pop("TYPEMUX_LSP_BACKEND", None)
    # Hermetic: learned initialize answers (capabilities.py) go to a cache of this test run,
    # never the developer's, so every run learns them from the backends it installed.
    env["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="typemux-lsp-test-cache-")
    if os.environ.get(OTHER_MODE) == "1":  # each kind in the mode it does not run by default
        from typemux_lsp.backends import KINDS

        env["TYPEMUX_LSP_BACKEND_SHARING"] = (
            ",".join(n for n, kind in KINDS.items() if not kind.shares_by_default) or "none"
        )
    probe = subprocess.run(
        [sys.executable, "-c", "import typemux_lsp"], env=env, cwd="/", capture_output=True
    )
    if probe.returncode != 0:
        env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def straight_env(venv: Path | None) -> dict[str, str]:
    """Environment for a backend started straight for one project.

    ``VIRTUAL_ENV`` plus the venv's ``bin`` first on ``PATH`` selects the venv for all four
    backends (pyright and basedpyright run ``python`` from PATH, ty and pyrefly read
    VIRTUAL_ENV). ``PYTHONPATH`` is dropped so the test tree cannot leak into import resolution.
    """
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != BIN]
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        path.insert(0, str(venv / "bin"))
    env["PATH"] = os.pathsep.join(path)
    return env


# -- positions ----------------------------------------------------------------------------------


def column(line: str, index: int, encoding: str = "utf-16") -> int:
    """The LSP ``character`` of ``line[index]`` in ``encoding`` (utf-8, utf-16 or utf-32)."""
    prefix = line[:index]
    if encoding == "utf-32":
        return len(prefix)
    if encoding == "utf-8":
        return len(prefix.encode("utf-8"))
    return len(prefix.encode("utf-16-le")) // 2


def position_of(
    text: str, needle: str, *, occurrence: int = 0, offset: int = 0, encoding: str = "utf-16"
) -> dict[str, int]:
    """LSP position of the ``occurrence``-th ``needle`` in ``text`` (plus ``offset`` chars)."""
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    index += offset
    line_number = text.count("\n", 0, index)
    line_start = text.rfind("\n", 0, index) + 1
    line = text[line_start:].split("\n", 1)[0]
    return {"line": line_number, "character": column(line, index - line_start, encoding)}


def offset_at(text: str, position: dict[str, int], encoding: str = "utf-16") -> int:
    """The string index of an LSP position: the inverse of ``position_of``."""
    lines = text.split("\n")
    start = sum(len(line) + 1 for line in lines[: position["line"]])
    line = lines[position["line"]]
    for index in range(len(line) + 1):
        if column(line, index, encoding) >= position["character"]:
            return start + index
    return start + len(line)


def apply_change(text: str, change: dict[str, Any], encoding: str = "utf-16") -> str:
    """Apply one ``TextDocumentContentChangeEvent`` (incremental or full) to ``text``."""
    if "range" not in change:
        return str(change["text"])
    start = offset_at(text, change["range"]["start"], encoding)
    end = offset_at(text, change["range"]["end"], encoding)
    return text[:start] + str(change["text"]) + text[end:]


def text_of_range(text: str, range_: dict[str, dict[str, int]], encoding: str = "utf-16") -> str:
    return text[
        offset_at(text, range_["start"], encoding) : offset_at(text, range_["end"], encoding)
    ]


# -- results ------------------------------------------------------------------------------------


def hover_text(hover: Any) -> str:
    """The text of a hover result (JSON or lsprotocol), whatever its ``contents`` shape."""
    if hover is None:
        return ""
    if not isinstance(hover, dict):
        hover = _CONVERTER.unstructure(hover)
    contents = hover["contents"]
    items = contents if isinstance(contents, list) else [contents]
    return "\n".join(
        item if isinstance(item, str) else str(item.get("value", "")) for item in items
    )


def definition_targets(result: Any) -> list[tuple[str, int]]:
    """``(uri, line)`` of each target of a definition result: Location(s) or LocationLink(s)."""
    if result is None:
        return []
    if not isinstance(result, (dict, list)):
        result = _CONVERTER.unstructure(result)
    items = result if isinstance(result, list) else [result]
    targets = []
    for item in items:
        if not isinstance(item, dict):
            item = _CONVERTER.unstructure(item)
        if "targetUri" in item:
            targets.append((item["targetUri"], item["targetSelectionRange"]["start"]["line"]))
        else:
            targets.append((item["uri"], item["range"]["start"]["line"]))
    return targets


def uri_path(uri: str) -> Path:
    """A ``file://`` URI as a resolved path (so symlinked temp dirs compare equal)."""
    parsed = urlparse(uri)
    assert parsed.scheme == "file", uri
    return Path(unquote(parsed.path)).resolve()


# -- the test client ----------------------------------------------------------------------------

_NOTEBOOK_FILTER = Optional[  # noqa: UP045 - must equal the Union object lsprotocol resolves
    Union[  # noqa: UP007
        str,
        types.NotebookDocumentFilterNotebookType,
        types.NotebookDocumentFilterScheme,
        types.NotebookDocumentFilterPattern,
    ]
]


def client_converter() -> cattrs.Converter:
    """pygls's converter plus the hook lsprotocol 2025.0.0 lacks.

    ty, pyrefly and basedpyright declare ``notebookSelector: [{"cells": [...]}]`` (no
    ``notebook``); without this hook the client cannot even read their initialize result.
    """
    converter: cattrs.Converter = default_converter()  # type: ignore[no-untyped-call]

    def notebook_filter(value: Any, _type: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        for key, cls in (
            ("notebookType", types.NotebookDocumentFilterNotebookType),
            ("scheme", types.NotebookDocumentFilterScheme),
            ("pattern", types.NotebookDocumentFilterPattern),
        ):
            if key in value:
                return converter.structure(value, cls)
        raise ValueError(f"not a notebook document filter: {value!r}")

    converter.register_structure_hook(_NOTEBOOK_FILTER, notebook_filter)
    return converter


REFRESH_REQUESTS = (
    "workspace/diagnostic/refresh",
    "workspace/semanticTokens/refresh",
    "workspace/inlayHint/refresh",
    "workspace/inlineValue/refresh",
    "workspace/codeLens/refresh",
    "workspace/foldingRange/refresh",
)


@dataclass
class OpenDocument:
    uri: str
    text: str
    version: int


@dataclass
class ServerEvent:
    """One server -> client message of interest, numbered so tests can split it into phases."""

    seq: int
    kind: str  # "register" | "unregister" | "progress/create" | "progress"
    key: str  # registration id or progress token (as JSON text: 1 and "1" differ)
    detail: dict[str, Any] = field(default_factory=dict)


class MuxClient(pytest_lsp.LanguageClient):
    """pytest-lsp's client, answering like a real editor and recording what tests assert on.

    - answers ``workspace/configuration`` with ``null`` per item, (un)registerCapability,
      ``window/workDoneProgress/create`` and every ``workspace/*/refresh`` with ``null``
      (pytest-lsp's default client fails the test on those it lacks);
    - records registrations and progress tokens as ``events`` and every publishDiagnostics;
    - keeps the text of open documents and speaks positions in the negotiated encoding.

    All handlers run on the event loop, so the ``_changed`` event needs no locking.
    """

    def __init__(self, profile: Profile, backend: str = "") -> None:
        super().__init__(converter_factory=client_converter)
        self.profile = profile
        self.backend = backend
        self.init_result: dict[str, Any] = {}
        self.encoding = "utf-16"
        self.documents: dict[str, OpenDocument] = {}
        self.published: list[tuple[int, str, list[dict[str, Any]]]] = []
        self.events: list[ServerEvent] = []
        self.server_requests: list[str] = []
        self.seq = 0
        self.active_tokens: set[str] = set()
        self.token_problems: list[str] = []
        self._changed = asyncio.Event()
        #: when set, awaited before each window/workDoneProgress/create is answered
        self.progress_gate: Callable[[Any], Awaitable[None]] | None = None
        self._register_handlers()

    # -- handlers --------------------------------------------------------------------------

    def _bump(self) -> int:
        """Count one server message and wake every waiter; the message's sequence number."""
        self.seq += 1
        self._changed.set()
        self._changed = asyncio.Event()
        return self.seq

    def _register_handlers(self) -> None:
        def configuration(params: types.ConfigurationParams) -> list[None]:
            self.server_requests.append(types.WORKSPACE_CONFIGURATION)
            self._bump()
            return [None] * len(params.items)

        def register(params: types.RegistrationParams) -> None:
            self.server_requests.append(types.CLIENT_REGISTER_CAPABILITY)
            seq = self._bump()
            for registration in params.registrations:
                self.events.append(
                    ServerEvent(
                        seq,
                        "register",
                        json.dumps(registration.id),
                        _CONVERTER.unstructure(registration),
                    )
                )

        def unregister(params: types.UnregistrationParams) -> None:
            self.server_requests.append(types.CLIENT_UNREGISTER_CAPABILITY)
            seq = self._bump()
            for unregistration in params.unregisterations:
                self.events.append(ServerEvent(seq, "unregister", json.dumps(unregistration.id)))

        def create_progress(params: types.WorkDoneProgressCreateParams) -> Iterator[Any]:
            # A generator: pygls runs it at once up to its first yield, so the token is known
            # before the $/progress a backend may send without awaiting this answer.
            self.server_requests.append(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
            token = json.dumps(params.token)
            if token in self.active_tokens:
                self.token_problems.append(f"progress token {token} created while in use")
            self.active_tokens.add(token)
            self.events.append(ServerEvent(self._bump(), "progress/create", token))
            if self.progress_gate is not None:  # a test holds (or refuses) the answer
                yield (self.progress_gate, (params.token,), {})

        def progress(params: types.ProgressParams) -> None:
            token = json.dumps(params.token)
            kind = params.value.get("kind") if isinstance(params.value, dict) else None
            if token not in self.active_tokens:
                self.token_problems.append(f"$/progress {kind} for unknown token {token}")
            if kind == "end":
                self.active_tokens.discard(token)
            self.events.append(ServerEvent(self._bump(), "progress", token, {"kind": kind}))

        def publish(params: types.PublishDiagnosticsParams) -> None:
            self.diagnostics[params.uri] = params.diagnostics
            diagnostics = [_CONVERTER.unstructure(d) for d in params.diagnostics]
            self.published.append((self._bump(), params.uri, diagnostics))

        def refresh(method: str) -> Callable[[Any], None]:
            def handler(_params: Any) -> None:
                self.server_requests.append(method)
                if method == types.WORKSPACE_DIAGNOSTIC_REFRESH:
                    self.diagnostic_refresh_count += 1
                self._bump()

            return handler

        features: dict[str, Callable[..., Any]] = {
            types.WORKSPACE_CONFIGURATION: configuration,
            types.CLIENT_REGISTER_CAPABILITY: register,
            types.CLIENT_UNREGISTER_CAPABILITY: unregister,
            types.WINDOW_WORK_DONE_PROGRESS_CREATE: create_progress,
            types.PROGRESS: progress,
            types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: publish,
            **{method: refresh(method) for method in REFRESH_REQUESTS},
        }
        defaults = pytest_lsp.client.DEFAULT_CLIENT_FEATURES
        for method, handler in defaults.items():
            if method not in features:
                self.feature(method)(handler)
        for method, handler in features.items():
            self.feature(method)(handler)

    async def server_exit(self, server: asyncio.subprocess.Process) -> None:
        await super().server_exit(server)
        self._bump()  # wake waiters: they re-check and fail fast instead of timing out

    # -- session -----------------------------------------------------------------------------

    @property
    def process(self) -> asyncio.subprocess.Process:
        assert self._server is not None, "not started"
        return self._server

    @property
    def pid(self) -> int:
        return self.process.pid

    def _check_alive(self) -> None:
        if self._server is not None and self._server.returncode is not None:
            raise ConnectionError(f"server exited with code {self._server.returncode}")

    async def start_session(self, root: Path, timeout: float = 60.0) -> dict[str, Any]:
        """``initialize`` + ``initialized`` as the profile's editor would, opened at ``root``."""
        result = await asyncio.wait_for(
            self.initialize_session(self.profile.typed_initialize_params(root)), timeout
        )
        self.init_result = _CONVERTER.unstructure(result)
        self.encoding = self.init_result["capabilities"].get("positionEncoding", "utf-16")
        return self.init_result

    async def close_session(self, timeout: float = 20.0) -> int | None:
        """shutdown + exit; the exit code, or None if the server did not end in time."""
        if self._server is None or self._server.returncode is not None:
            return None if self._server is None else self._server.returncode
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.shutdown_async(None), timeout)
            self.exit(None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait(), timeout)
        return self._server.returncode

    # -- documents ---------------------------------------------------------------------------

    def open(self, path: Path, text: str | None = None) -> str:
        """didOpen ``path`` (version 1, text from disk unless given) unless already open."""
        uri = path.as_uri()
        if uri not in self.documents:
            content = path.read_text(encoding="utf-8") if text is None else text
            self.documents[uri] = OpenDocument(uri, content, 1)
            self.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    text_document=types.TextDocumentItem(
                        uri=uri, language_id="python", version=1, text=content
                    )
                )
            )
        return uri

    def change(self, uri: str, changes: list[dict[str, Any]], *, version: int | None = None) -> str:
        """didChange with JSON content changes (applied here too); returns the new text."""
        document = self.documents[uri]
        for change in changes:
            document.text = apply_change(document.text, change, self.encoding)
        document.version = document.version + 1 if version is None else version
        self.text_document_did_change(
            _CONVERTER.structure(
                {
                    "textDocument": {"uri": uri, "version": document.version},
                    "contentChanges": changes,
                },
                types.DidChangeTextDocumentParams,
            )
        )
        return document.text

    def save(self, uri: str) -> None:
        self.text_document_did_save(
            types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )

    def close(self, uri: str) -> None:
        self.documents.pop(uri)
        self.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )

    def text(self, uri: str) -> str:
        return self.documents[uri].text

    def position(
        self, uri: str, needle: str, *, occurrence: int = 0, offset: int = 0
    ) -> dict[str, int]:
        return position_of(
            self.text(uri), needle, occurrence=occurrence, offset=offset, encoding=self.encoding
        )

    # -- requests (JSON in, JSON out) --------------------------------------------------------

    async def request(self, method: str, params: dict[str, Any], timeout: float = 60.0) -> Any:
        """Send a typed request built from JSON ``params``; return the result as JSON.

        Errors raise ``pygls.exceptions.JsonRpcException`` (``.code``, ``.message``).
        """
        params_type: Any = types.METHOD_TO_TYPES[method][2]
        typed = _CONVERTER.structure(params, params_type) if params_type else params
        self._check_alive()
        sent = self.protocol.send_request_async(method, typed)  # type: ignore[no-untyped-call]
        result = await asyncio.wait_for(sent, timeout)
        return _CONVERTER.unstructure(result)

    def _at(self, uri: str, needle: str, occurrence: int, offset: int) -> dict[str, Any]:
        return {
            "textDocument": {"uri": uri},
            "position": self.position(uri, needle, occurrence=occurrence, offset=offset),
        }

    async def hover(self, uri: str, needle: str, *, occurrence: int = 0, offset: int = 0) -> Any:
        return await self.request(
            types.TEXT_DOCUMENT_HOVER, self._at(uri, needle, occurrence, offset)
        )

    async def definition(
        self, uri: str, needle: str, *, occurrence: int = 0, offset: int = 0
    ) -> Any:
        return await self.request(
            types.TEXT_DOCUMENT_DEFINITION, self._at(uri, needle, occurrence, offset)
        )

    async def prepare_call_hierarchy(
        self, uri: str, needle: str, *, occurrence: int = 0, offset: int = 0
    ) -> Any:
        return await self.request(
            types.TEXT_DOCUMENT_PREPARE_CALL_HIERARCHY, self._at(uri, needle, occurrence, offset)
        )

    # -- waiting -----------------------------------------------------------------------------

    def latest_diagnostics(self, uri: str) -> list[dict[str, Any]] | None:
        for _seq, published_uri, diagnostics in reversed(self.published):
            if published_uri == uri:
                return list(diagnostics)
        return None

    async def until(
        self, condition: Callable[[], Any], timeout: float, what: Callable[[], str]
    ) -> Any:
        """Wait (without polling) until ``condition()`` is truthy; re-checked on every message.

        ``what()`` describes the awaited state in the timeout error (evaluated at timeout).
        """

        async def wait() -> Any:
            while True:
                changed = self._changed
                if value := condition():
                    return value
                self._check_alive()
                await changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what()}") from None

    async def wait_for_diagnostics(
        self,
        uri: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = lambda _: True,
        *,
        timeout: float = 60.0,
        after: int = -1,
    ) -> list[dict[str, Any]]:
        """The latest diagnostics of ``uri`` published after event ``after``, once they match."""

        def check() -> list[list[dict[str, Any]]] | None:
            for seq, published_uri, diagnostics in reversed(self.published):
                if published_uri == uri:
                    if seq > after and predicate(diagnostics):
                        # a list, maybe empty: wrap so "no diagnostics" is truthy
                        return [diagnostics]
                    return None
            return None

        found = await self.until(
            check,
            timeout,
            lambda: f"diagnostics of {uri} (last: {self.latest_diagnostics(uri)})",
        )
        return list(found[0])
