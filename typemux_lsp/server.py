"""The control plane: what the proxy decides about the client's messages.

The relay (relay.py) handles the common messages on the reader threads and hands the
rest here, in order, on the event loop, holding the plane's lock: the lifecycle
(initialize, shutdown, exit), documents opening and closing, routing a request whose
backend is not up yet, cancellation, the proxy's own requests (`typemux/status`),
fan-outs (fanout.py) and everything backends ask of the client (backchannel.py,
configuration.py). Data flows one way: client -> relay/server -> router -> pool ->
session -> backend; what comes back arrives through the session's `Upstream`, which
this class implements.

Every handler here runs behind one guard: an exception while handling a request becomes
an error response for that request, never silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Hashable, Sequence
from pathlib import Path
from typing import Any, Final

from . import __version__, jsonrpc
from .across import Across
from .backchannel import REGISTER, BackChannel
from .backends import KINDS, BackendKind
from .capabilities import ANSWER_BY, ANSWER_GRACE, PROBE_TIMEOUT, Answers, Probe, registrations
from .config import ConfigProblem, Settings
from .configuration import METHOD as CONFIGURATION
from .configuration import Configuration
from .connection import ClientConnection
from .diagnostics import PUBLISH, Diagnostics
from .documents import DocumentStore, Encoding
from .fanout import FanOut
from .features import (
    ACROSS_METHODS,
    BROADCAST_NOTIFICATIONS,
    DOCUMENT_REQUESTS,
    REQUESTS,
    RESOLVE_PARENT,
    STATUS_COMMAND,
    STATUS_REQUEST,
    ClientSupport,
    backend_initialize_params,
    client_initialize_result,
    unsupported,
)
from .feedback import Feedback
from .freshness import classify, decide, disk_text_wins, plan_watch, read_environment
from .jsonrpc import Message
from .ledger import Ledger, Pending
from .merge import REPEATED_PER_FOLDER
from .plane import Plane
from .platform import termination_signals
from .pool import Pool, Restarted
from .reaper import Reaper
from .relay import Relay
from .resolve import Origins
from .router import BadUri, NoVenv, Router, local_path
from .session import BackendError, BackendSession, State, Timeouts
from .spellings import Spellings
from .status import status
from .tree import get_path
from .venv import Venv, canonical, fallback_venv
from .watcher import Change, Changes, Watcher, fs_clock_ns

logger = logging.getLogger(__name__)

#: seconds a cancelled request waits for its backend's own answer before the proxy answers
CANCEL_GRACE: Final = 0.5
#: where backend settings name extra import roots (pyright, basedpyright, ty, pyrefly)
_EXTRA_PATHS: Final = (
    ("python", "analysis", "extraPaths"),
    ("basedpyright", "analysis", "extraPaths"),
    ("ty", "environment", "extra-paths"),
    ("ty", "environment", "extraPaths"),
    ("pyrefly", "search-path"),
)
#: how often deadlines are checked
DEADLINE_TICK: Final = 1.0

Handler = Callable[[Message, "Pending | None", bytes], None]


class TypemuxServer:
    def __init__(
        self,
        settings: Settings,
        cwd: str | None = None,
        problems: Sequence[ConfigProblem] = (),
        probe: Probe | None = None,
        launched: float | None = None,
        *,
        sharing: Collection[str] | None = None,
        max_backend_memory: float | None = None,
    ) -> None:
        self.settings = settings
        #: the kinds whose environments share one backend process (a folder each)
        self.sharing = frozenset(sharing if sharing is not None else settings.sharing_kinds())
        #: MiB of the backends' resident memory past which projects are evicted (0: none)
        self.max_backend_memory = (
            max_backend_memory if max_backend_memory is not None else settings.max_backend_memory
        )
        #: a shared backend's cwd: empty, so no backend finds an environment from it
        self._neutral_dir: Path | None = None
        #: the default kind: it answers initialize; project rules may pick others per venv
        self.kind: BackendKind = KINDS[settings.backend]
        self.config_problems = list(problems)
        self.cwd = canonical(cwd or os.getcwd())
        self.store = DocumentStore()
        self.router = Router(self.store, rules=settings.projects, roots=lambda: self.roots)
        self.timeouts = Timeouts(
            start=settings.start_timeout, warmup=settings.warmup_timeout, stop=2.0
        )
        self.client_params: Message = {}
        self.support = ClientSupport({})
        #: the client's workspace folders (multi-root clients have several)
        self.roots: list[Path] = []
        self.initialized = False
        self.shutdown_requested = False
        self.reaper = Reaper()
        #: the installed backends' own initialize answers, learned once (capabilities.py)
        self.answers = Answers.default()
        #: whether the client's initialize answer was the installed backend's or a recording
        self.initialize_source = "recorded"
        #: the installed backend, started at launch to be asked its initialize answer
        self.probe = probe
        #: when the client's initialize is answered at the latest (capabilities.ANSWER_BY)
        self.answer_by = (time.monotonic() if launched is None else launched) + ANSWER_BY
        self._handlers: dict[str, Handler] = {
            "initialize": self.on_initialize,
            "initialized": self.on_initialized,
            "shutdown": self.on_shutdown,
            "exit": self.on_exit,
            "textDocument/didOpen": self.on_did_open,
            "textDocument/didChange": self.on_did_change,
            "textDocument/didClose": self.on_did_close,
            "$/cancelRequest": self.on_cancel,
            "workspace/didChangeConfiguration": self.on_did_change_configuration,
            "workspace/didChangeWorkspaceFolders": self.on_did_change_workspace_folders,
            "window/workDoneProgress/cancel": self.on_progress_cancel,
            "workspace/didChangeWatchedFiles": self.on_did_change_watched_files,
            STATUS_REQUEST: self.on_status,
            "workspace/executeCommand": self.on_execute_command,
        }

    # -- wiring --------------------------------------------------------------------------

    async def serve(self, stdin: int = 0, stdout: int = 1) -> int:
        """Serve one client over the given file descriptors until exit or end of input."""
        loop = asyncio.get_running_loop()
        self.connect(loop, stdin, stdout)
        plane = self.plane
        self.reaper.start()
        for sig in termination_signals():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.finish, 128 + sig)
        self.connection.start()
        self._deadlines = plane.later(DEADLINE_TICK, self._check_deadlines)
        try:
            code = await self.done
        finally:
            with plane.lock:
                self._deadlines.cancel()
                self._fail_all("typemux-lsp: the server is exiting.")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.stop_all(), 5)
            self.pool.kill_all()
            if self.watcher is not None:
                self.watcher.close()
            self.reaper.close()
            if self.probe is not None:
                self.probe.close()
            if self._neutral_dir is not None:
                shutil.rmtree(self._neutral_dir, ignore_errors=True)
            await loop.run_in_executor(None, self.connection.outbox.flush, 1.0)
        return code

    def connect(self, loop: asyncio.AbstractEventLoop, stdin: int, stdout: int) -> None:
        """Build the proxy's parts around a client on `stdin`/`stdout` (nothing runs yet)."""
        self.plane = plane = Plane(loop)
        self.done: asyncio.Future[int] = loop.create_future()
        self.connection = ClientConnection(
            stdin,
            stdout,
            on_body=self._client_body,
            on_bad_frame=self._client_bad_frame,
            on_eof=lambda: plane.submit(self._client_gone, "closed its end of the connection"),
            on_gone=lambda: plane.submit(self._client_gone, "stopped reading"),
        )
        #: one spelling of each file's URI for the backends, the client's own back
        self.spellings = Spellings(self.store)
        self.ledger = Ledger(self.connection.send_body, self.spellings)
        self.pool = Pool(
            plane,
            self._new_session,
            max_backends=self.settings.max_backends,
            ttl=self.settings.backend_ttl,
            share=self._share,
            max_memory=self.max_backend_memory,
        )
        self.backchannel = BackChannel(self.connection, lambda: self.support)
        self.configuration = Configuration(plane, self.backchannel, lambda: self.support)
        self.diagnostics = Diagnostics(self.connection, self.store, self.router, self.spellings)
        self.origins = Origins()
        self.relay = Relay(
            plane,
            self.connection,
            self.ledger,
            self.store,
            self.router,
            self.pool,
            self.diagnostics,
            self.origins,
            self,
        )
        self.fanout = FanOut(
            plane,
            self.ledger,
            self.pool,
            self.router,
            self.store,
            lambda: self.roots,
            lambda: self.settings.request_timeout,
        )
        self.across = Across(
            plane,
            self.ledger,
            self.pool,
            self.router,
            self.store,
            self.fanout.workspace_venvs,
            self._extra_paths,
            lambda: self.support,
            lambda: self.settings.request_timeout,
            lambda: self.settings.warmup_timeout,
            self.connection.send,
        )
        self.feedback = Feedback(
            self.connection.send,
            self.backchannel.request,
            lambda: self.support,
            no_venv_diagnostic=self.settings.no_venv_diagnostic,
        )
        self.watcher: Watcher | None = None
        if self.settings.freshness:
            self.watcher = Watcher(
                lambda key, changes: plane.submit(self._disk_changed, key, changes),
                debounce_ms=self.settings.freshness_debounce_ms,
            )

    def finish(self, code: int) -> None:
        if not self.done.done():
            self.done.set_result(code)

    def _client_gone(self, how: str) -> None:
        logger.info("the client %s", how)
        self.finish(0 if self.shutdown_requested else 1)

    # reader-thread entry points: the relay decides
    def _client_body(self, body: bytes) -> None:
        self.relay.client_body(body)

    def _client_bad_frame(self, error: jsonrpc.FrameError) -> None:
        self.relay.client_bad_frame(error)

    # -- the relay's control-plane entry points (relay.Control) ---------------------------

    def client_message(self, body: bytes, message: Message, entry: Pending | None) -> None:
        method: str = message["method"]
        try:
            if not self.initialized and method not in ("initialize", "exit"):
                if entry is not None:
                    self.ledger.fail(
                        entry, jsonrpc.SERVER_NOT_INITIALIZED, "initialize has not been sent"
                    )
                return
            if self.initialized and method == "initialize":
                if entry is not None:
                    self.ledger.fail(entry, jsonrpc.INVALID_REQUEST, "initialize was already sent")
                return
            if self.shutdown_requested and method != "exit":
                if entry is not None:
                    self.ledger.fail(entry, jsonrpc.INVALID_REQUEST, "the server is shut down")
                return
            if method not in ("initialize", "textDocument/didOpen"):
                # A URI the backends know under another spelling is given in theirs (and the
                # answer in the client's): pyright answers null about a document under two.
                message, body, spelled = self.spellings.to_backend(message, body)
                if spelled and entry is not None:
                    entry.spelled = spelled
            handler = self._handlers.get(method)
            if handler is not None:
                handler(message, entry, body)
            elif entry is not None:
                self._route_request(entry, message, body)
            else:
                self._relay_notification(method, message, body)
        except BadUri as exc:
            if entry is not None:
                self.ledger.fail(entry, jsonrpc.INVALID_PARAMS, str(exc))
            else:
                logger.warning("%s: %s", method, exc)
        except Exception as exc:
            logger.exception("handling %s failed", method)
            if entry is not None:
                self.ledger.fail(
                    entry,
                    jsonrpc.INTERNAL_ERROR,
                    f"typemux-lsp: handling {method} failed ({type(exc).__name__}: {exc}). "
                    "This is a bug of typemux-lsp; the log has the details.",
                )

    def client_response(self, message: Message) -> None:
        self.backchannel.client_response(message)

    def backend_message(self, session: BackendSession, body: bytes, message: Message) -> None:
        method = message.get("method")
        if not isinstance(method, str):
            self.relay.backend_response(session, body, message)
            return
        if "id" in message:
            if self.spellings.needed(None):  # scopeUri, a WorkspaceEdit's URIs: the client's
                message = {**message, "params": self.spellings.to_client(message.get("params"))}
            if method == CONFIGURATION:
                self.configuration.answer(session, message["id"], message.get("params"))
            else:
                self.backchannel.backend_request(session, message)
            return
        params = message.get("params")
        if method == PUBLISH:
            if self.diagnostics.publish(session, body, params):
                assert isinstance(params, dict)  # (publish read its uri)
                doc = self.store.get(params["uri"])
                if doc is not None and doc.session is None:
                    self.relay.route(doc, session)  # (its next publish takes the hot path)
        elif method == "$/progress":
            session.progress_reported(params)  # (a joining folder's recheck ending)
            self.backchannel.progress(session, body, params)
        else:
            self.connection.send_body(body)

    # -- lifecycle ---------------------------------------------------------------------------

    def on_initialize(self, message: Message, entry: Pending | None, body: bytes) -> None:
        params = message.get("params")
        if not isinstance(params, dict):
            if entry is not None:
                self.ledger.fail(
                    entry, jsonrpc.INVALID_PARAMS, "initialize needs params (an object)"
                )
            return
        self.client_params = params
        caps = params.get("capabilities")
        self.support = ClientSupport(caps if isinstance(caps, dict) else {})
        offered = get_path(caps, "general", "positionEncodings")
        offered = [str(e) for e in offered] if isinstance(offered, list) else []
        kinds = {self.kind.name, *(r.backend for r in self.settings.projects if r.backend)}
        # Positions are relayed untouched, so every backend must use the one encoding
        # negotiated with the client; with several kinds that is the one all support.
        self.store.encoding = (
            self.kind.choose_encoding(offered) if len(kinds) == 1 else Encoding.UTF16
        )
        options = params.get("initializationOptions")
        if isinstance(options, dict) and isinstance(options.get("settings"), dict):
            self.configuration.client_settings = options["settings"]
        self.roots = _workspace_roots(params) or [self.cwd]
        self.spellings.add_roots(_workspace_root_uris(params))
        learned = self.answers.load(self.kind, caps)
        source, probe = "learned", None
        if learned is not None:
            if self.probe is not None:
                self.probe.close()
                self.probe = None
        elif (probe := self._probe()) is not None:
            # the installed backend's own answer, when it comes within the start-up budget
            probe.ask(params)
            learned = probe.answer(max(self.answer_by - time.monotonic(), ANSWER_GRACE))
            source = "asked"
            if learned is not None:
                self.answers.save(self.kind, caps, learned)
        result = client_initialize_result(
            self.kind, self.store.encoding, caps, extra_commands=[STATUS_COMMAND], learned=learned
        )
        self.initialize_source = source if learned else "recorded"
        self.initialized = True
        if entry is not None:
            self.ledger.answer(entry, result)
        self.relay.open = True
        if learned is None and probe is not None:
            self._learn(probe, caps, result)
        venv = fallback_venv(self.cwd, rules=self.settings.projects)
        if venv is not None:
            logger.info("pre-starting the fallback venv %s", venv)
            with contextlib.suppress(BackendError):
                self.pool.get_or_start(venv)

    def _probe(self) -> Probe | None:
        """The installed backend to ask: the one started at launch if its PATH is safe for
        the client's roots too, else a new one."""
        probe, self.probe = self.probe, None
        roots = [*self.roots, self.cwd]
        if probe is not None and not probe.safe_for(*roots):
            logger.info("the probe started at launch had a PATH into a workspace: not used")
            probe.close()
            probe = None
        return probe or Probe.start(self.kind, *roots)

    def _learn(self, probe: Probe, caps: Any, answered: dict[str, Any]) -> None:
        """The installed backend's answer did not come in time: wait for it in the
        background, cache it, and register what the recording lacked where the client
        registers dynamically."""
        kind, answers, plane = self.kind, self.answers, self.plane
        self.probe = probe  # stopped with the server if it has not answered by then

        def learned(result: dict[str, Any]) -> None:
            self.initialize_source = "recorded, then learned"
            regs = registrations(answered, result, self.support)
            told, real = get_path(answered, "serverInfo"), get_path(result, "serverInfo")
            logger.info(
                "learned %s's initialize answer (told the client %s, the installed one is %s)%s",
                kind.name,
                told,
                real,
                f"; registering {', '.join(r['method'] for r in regs)}" if regs else "",
            )
            if regs and not self.shutdown_requested:
                self.backchannel.request(REGISTER, {"registrations": regs})
            self.connection.send(
                jsonrpc.notification(
                    "window/logMessage",
                    {
                        "type": 4,
                        "message": f"typemux-lsp: learned the initialize answer of {kind.name} "
                        f"{get_path(result, 'serverInfo', 'version') or ''} as installed; "
                        "the next session starts with it.",
                    },
                )
            )

        def run() -> None:
            result = probe.answer(PROBE_TIMEOUT)
            probe.close()
            if self.probe is probe:
                self.probe = None
            if result is not None:
                answers.save(kind, caps, result)
                plane.submit(learned, result)

        threading.Thread(target=run, name=f"probe-{kind.name}", daemon=True).start()

    def on_initialized(self, message: Message, entry: Pending | None, body: bytes) -> None:
        logger.info("client initialized (%s)", get_path(self.client_params, "clientInfo", "name"))
        self.feedback.config_problems(self.config_problems)

    def on_shutdown(self, message: Message, entry: Pending | None, body: bytes) -> None:
        self.shutdown_requested = True

        async def stop() -> None:
            await self.pool.stop_all()
            with self.plane.lock:
                self._fail_all("typemux-lsp: the server is shutting down.", keep=entry)
                if entry is not None:
                    self.ledger.answer(entry, None)

        self.plane.spawn(stop())

    def on_exit(self, message: Message, entry: Pending | None, body: bytes) -> None:
        self.finish(0 if self.shutdown_requested else 1)

    # -- documents ---------------------------------------------------------------------------

    def on_did_open(self, message: Message, entry: Pending | None, body: bytes) -> None:
        item = get_path(message, "params", "textDocument")
        uri = get_path(item, "uri")
        fields = (uri, get_path(item, "languageId"), get_path(item, "text"))
        version = get_path(item, "version")
        if not all(isinstance(f, str) for f in fields) or not _is_int(version):
            logger.warning("didOpen with invalid params ignored: %.200s", body)
            return
        assert isinstance(uri, str)
        old = self.store.get(uri)  # open already, maybe under another spelling of its URI
        if old is not None:
            self._close_everywhere(old.uri)
        doc = self.store.open(uri, str(fields[1]), version, str(fields[2]))
        if doc.uri_error is not None:
            logger.warning("didOpen: %s", doc.uri_error)
            return
        venv = self.router.refresh(doc, force=True)
        if venv is None:
            logger.info("no venv for %s", uri)
            self.feedback.no_venv(doc, NoVenv(uri, doc.path, doc.lookup).message)
            return
        with contextlib.suppress(BackendError):
            session = self.pool.get_or_start(venv)
            session.used[venv.key] = time.monotonic()
            if session.state not in (State.WAITING, State.STARTING):
                session.open_document(doc)

    def on_did_change(self, message: Message, entry: Pending | None, body: bytes) -> None:
        self.relay.did_change(message, body)

    def on_did_close(self, message: Message, entry: Pending | None, body: bytes) -> None:
        uri = get_path(message, "params", "textDocument", "uri")
        if not isinstance(uri, str):
            return
        self._close_everywhere(uri)
        self.feedback.closed(uri)
        self.store.close(uri)

    def _close_everywhere(self, uri: str) -> None:
        for session in self.pool.live():
            session.close_document(uri)

    def _relay_notification(self, method: str, message: Message, body: bytes) -> None:
        if method in BROADCAST_NOTIFICATIONS:
            self._broadcast(body)
            return
        if method == "textDocument/didSave":
            self.relay.did_save(message)
        uri = self.router.uri_of(method, message.get("params"))
        doc = self.store.get(uri) if uri is not None else None
        if doc is not None and doc.venv is not None:
            session = self.pool.get(doc.venv)
            if session is not None and doc.uri in session.open_docs:
                session.send_body(body)
                return
        logger.debug("notification %s has no backend to go to: dropped", method)

    def _broadcast(self, body: bytes) -> None:
        for session in self.pool.live():
            if session.state in (State.WARMING, State.READY):
                session.send_body(body)

    # -- requests ----------------------------------------------------------------------------

    def _route_request(self, entry: Pending, message: Message, body: bytes) -> None:
        method = entry.method
        params = message.get("params")
        if method == "workspace/symbol":
            self.fanout.workspace_symbol(entry, params)
            return
        if method == "workspace/diagnostic":
            self.fanout.workspace_diagnostic(entry, params)
            return
        if method in RESOLVE_PARENT:
            session = self.origins.origin(method, params)
            if session is None:
                self.ledger.fail(
                    entry,
                    jsonrpc.REQUEST_FAILED,
                    f"typemux-lsp: cannot route {method}: no running backend produced the item "
                    f"(it answers {RESOLVE_PARENT[method]} first).",
                )
                return
            session.forward(entry, message, body)
            return
        self._to_document(entry, message, body, across=True)

    def _to_document(
        self, entry: Pending, message: Message, body: bytes, *, across: bool = False
    ) -> None:
        """To the backend of the document the request names; with `across`, a request whose
        answer lives in several environments is answered by all of them (across.py)."""
        method = entry.method
        uri = self.router.uri_of(method, message.get("params"))
        if uri is None:
            self._unroutable(entry, method)
            return
        target = self._session_for(uri)
        if isinstance(target, str):
            self.ledger.fail(entry, jsonrpc.REQUEST_FAILED, target)
            return
        doc = self.store.get(uri)
        if doc is not None and doc.uri in target.pinning:  # (pin.py)
            if doc.uri in target.unpinned:
                self.ledger.fail(entry, jsonrpc.REQUEST_FAILED, target.unpinned[doc.uri])
                return
            pinning = target.pinning[doc.uri]
            if not pinning.done():
                entry.task = self.plane.spawn(
                    self._after_pin(entry, message, body, target, pinning, across)
                )
                return
        refusal = unsupported(target.kind, method, target.capabilities)
        if refusal is not None:
            self.ledger.fail(entry, jsonrpc.METHOD_NOT_FOUND, refusal)
            return
        if across and method in ACROSS_METHODS and target.crosses:
            self.across.request(entry, message, body, target, self._to_document)
            return
        if (
            method in REPEATED_PER_FOLDER
            and target.kind.repeats_per_folder
            and len(target.venvs) > 1
        ):
            self.across.answer_once(entry, message, target)
            return
        scope = None
        if target.joining or target.renewals:  # (a folder joins or is renewed: which one?)
            owner = self.router.venv_for(uri, doc)
            scope = None if isinstance(owner, NoVenv) else owner.key
        target.forward(entry, message, body, scope)

    async def _after_pin(
        self,
        entry: Pending,
        message: Message,
        body: bytes,
        target: BackendSession,
        pinning: asyncio.Future[None],
        across: bool,
    ) -> None:
        """A request about a document being pinned to its folder (pin.py), routed once its
        didOpen went to that folder (the pin's own wait is bounded by the start timeout)."""
        await asyncio.shield(pinning)
        with self.plane.lock:
            entry.task = None
            if self.ledger.get(entry.client_id) is entry:
                self._to_document(entry, message, body, across=across)

    def _extra_paths(self, venv: Venv) -> tuple[Path, ...]:
        """The `extraPaths` the backend settings of the venv's project add to its imports."""
        _, settings = self.settings.backend_for(venv.project_dir)
        found: list[Path] = []
        for keys in _EXTRA_PATHS:
            value = get_path(settings, *keys)
            if isinstance(value, list):
                found.extend(Path(v) for v in value if isinstance(v, str))
        return tuple(found)

    def _unroutable(self, entry: Pending, method: str) -> None:
        if method not in REQUESTS:
            self.ledger.fail(
                entry,
                jsonrpc.METHOD_NOT_FOUND,
                f"typemux-lsp: unknown method {method} names no document, so no backend can be "
                "chosen for it.",
            )
            return
        self.ledger.fail(
            entry,
            jsonrpc.INVALID_PARAMS if method in DOCUMENT_REQUESTS else jsonrpc.REQUEST_FAILED,
            f"typemux-lsp: cannot route {method}: its params name no document "
            "(textDocument.uri), so there is no way to know which environment's backend "
            "should answer it.",
        )

    def _session_for(self, uri: str) -> BackendSession | str:
        """The session that must answer for `uri`, or why there is none."""
        doc = self.store.get(uri)
        venv = self.router.venv_for(uri, doc)
        if not isinstance(venv, NoVenv) and self.pool.get(venv) is None:
            # A backend is about to start: the route is checked on disk now, not taken from
            # the last second's cache (the environment may just have been deleted).
            venv = self.router.venv_for(uri, doc, force=True)
        if isinstance(venv, NoVenv):
            self._close_everywhere(uri)
            if doc is not None:
                self.feedback.no_venv(doc, venv.message)
            return venv.message
        self.feedback.venv_found(uri)
        try:
            session = self.pool.get_or_start(venv)
        except BackendError as exc:
            return str(exc)
        session.used[venv.key] = time.monotonic()
        if doc is not None and doc.desynced:
            return (
                f"typemux-lsp: {uri} is out of sync: a didChange did not fit the document, so "
                "its backend was not given a text that may be wrong. Fix: the client must send "
                "the full text (close and reopen the file)."
            )
        if doc is not None:
            if uri not in session.open_docs:
                for other in self.pool.live():
                    if other is not session and uri in other.open_docs:
                        other.close_document(uri)
                if session.state not in (State.WAITING, State.STARTING):
                    session.open_document(doc)
            self.relay.route(doc, session)
        return session

    def on_cancel(self, message: Message, entry: Pending | None, body: bytes) -> None:
        msg_id = get_path(message, "params", "id")
        target = self.ledger.get(msg_id) if jsonrpc.valid_id(msg_id) else None
        if target is None:
            return
        if target.task is not None:
            target.task.cancel()
            self.ledger.fail(target, jsonrpc.REQUEST_CANCELLED, "request cancelled")
            return
        session = target.session
        if not isinstance(session, BackendSession):
            return
        if session.cancel_queued(target):
            self.ledger.fail(target, jsonrpc.REQUEST_CANCELLED, "request cancelled")
            return
        if target.wire_id is not None and target.cancelled_at is None:
            target.cancelled_at = time.monotonic()
            session.notify("$/cancelRequest", {"id": target.wire_id})
            # The backend's own answer (a result or RequestCancelled) is relayed if it comes
            # promptly; otherwise the proxy answers, so a frozen backend holds nothing.
            self.plane.later(
                CANCEL_GRACE,
                self.ledger.fail,
                target,
                jsonrpc.REQUEST_CANCELLED,
                "request cancelled",
            )

    def on_did_change_configuration(
        self, message: Message, entry: Pending | None, body: bytes
    ) -> None:
        self.configuration.client_settings = get_path(message, "params", "settings")
        self._broadcast(body)

    def on_did_change_workspace_folders(
        self, message: Message, entry: Pending | None, body: bytes
    ) -> None:
        event = get_path(message, "params", "event")
        removed = {_folder_path(f) for f in get_path(event, "removed") or []}
        self.spellings.add_roots(
            f["uri"] for f in get_path(event, "added") or [] if isinstance(get_path(f, "uri"), str)
        )
        added = [p for p in (_folder_path(f) for f in get_path(event, "added") or []) if p]
        self.roots = [r for r in self.roots if r not in removed] + [
            p for p in added if p not in self.roots
        ]
        logger.info("workspace folders: %s", ", ".join(map(str, self.roots)))

    def on_did_change_watched_files(
        self, message: Message, entry: Pending | None, body: bytes
    ) -> None:
        """A client that watches files itself: each backend is told each change once, whether
        the client or the proxy's own watcher saw it first."""
        changes = get_path(message, "params", "changes")
        if not isinstance(changes, list):
            return
        for session in self.pool.live():
            if session.state in (State.WARMING, State.READY):
                fresh = session.recent.fresh((c for c in changes if isinstance(c, dict)), "client")
                if fresh:
                    session.notify("workspace/didChangeWatchedFiles", {"changes": fresh})

    def _disk_changed(self, key: str, changes: Changes) -> None:
        """A settled batch of changes under what a backend's answers depend on: bring the
        backend up to date the way measured fastest for its kind (freshness.py)."""
        session = self.pool.sessions.get(Path(key))
        plan = session.watch_plans.get(Path(key)) if session is not None else None
        if session is None or not session.alive or plan is None:
            return
        venv = session.venvs[Path(key)]
        classified = classify(plan, changes)
        if classified.environment_replaced and session.serves_current(venv):
            # started or renewed since with this very environment (the once-a-second check
            # saw it first): what else changed in it is told as for any change
            classified = dataclasses.replace(classified, environment_replaced=False)
        if any(_editable_install(path) for _, path in classified.environment):
            self.across.refresh()
        if (
            classified.configs
            and len(session.venvs) > 1
            and not session.kind.can_share(venv.project_dir)
        ):
            # Its config now leaves files out of its folder (or puts them under another's):
            # shared, they would be answered from another environment. Asked again, it gets
            # a process of its own (`_share`).
            self.pool.evict(venv, "its configuration no longer lets it share a process")
            self.router.forget(venv)
            return
        self._open_documents_changed(session, classified.sources)
        action = decide(session.kind.name, classified, open_uris=session.open_docs)
        if action is None:
            return
        if action.kind == "stop":
            self.pool.evict(venv, action.cause)
            self.router.forget(venv)
            return
        if action.kind == "restart":
            if classified.environment_replaced:  # a shared backend renews that folder alone
                self.pool.renew(session, venv, action.cause)
            else:
                self.pool.restart(session, action.cause)
            return
        if session.state not in (State.WARMING, State.READY):
            return  # it starts after the change: it reads the disk as it is now
        events = session.recent.fresh(
            (dict(e) for e in (action.params or {}).get("changes", [])), "watcher"
        )
        if events:
            session.disturbed_at = time.monotonic()
            session.notify("workspace/didChangeWatchedFiles", {"changes": events})
        if action.kind == "reconfigure":
            session.disturbed_at = time.monotonic()
            session.notify(
                "workspace/didChangeConfiguration",
                {"settings": self.configuration.client_settings},
            )
        session.log.info("told of the disk's changes (%s): %s", action.kind, action.cause)

    def _open_documents_changed(
        self, session: BackendSession, sources: Sequence[tuple[Change, Path]]
    ) -> None:
        """An open document rewritten on disk while the client, which does not watch files,
        has no unsaved edits (Claude Code after `sed`, a formatter, `git checkout`): the
        backend gets the disk's text. The client's own next edit wins again."""
        for change, path in sources:
            if change is Change.DELETED:
                continue
            doc = self.store.get(path.as_uri())
            if doc is None or doc.uri not in session.open_docs or doc.desynced:
                continue
            try:
                disk = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if disk == doc.backend_text or not disk_text_wins(
                client_text=doc.text,
                clean_text=doc.clean_text,
                disk_text=disk,
                client_watches_files=self.support.watches_files,
            ):
                continue
            doc.disk_text = disk
            doc.sync_version += 1  # backends only ever see versions increase
            session.disturbed_at = time.monotonic()
            session.notify(
                "textDocument/didChange",
                {
                    "textDocument": {"uri": doc.uri, "version": doc.sync_version},
                    "contentChanges": [{"text": disk}],
                },
            )
            session.log.info("%s changed on disk: its backend has the new text", path)

    def on_progress_cancel(self, message: Message, entry: Pending | None, body: bytes) -> None:
        self.backchannel.cancel_progress(get_path(message, "params", "token"))

    def on_status(self, message: Message, entry: Pending | None, body: bytes) -> None:
        if entry is not None:
            self.ledger.answer(entry, self.status())

    def on_execute_command(self, message: Message, entry: Pending | None, body: bytes) -> None:
        if entry is None:
            return
        if get_path(message, "params", "command") == STATUS_COMMAND:
            self.ledger.answer(entry, self.status())
        else:
            self._route_request(entry, message, body)

    def status(self) -> dict[str, Any]:
        return {**self._status(), "answersAcross": self.across.status()}

    def _status(self) -> dict[str, Any]:
        return status(
            version=__version__,
            kind=self.kind,
            encoding=self.store.encoding,
            pool=self.pool,
            store=self.store,
            router=self.router,
            problems=self.config_problems,
            roots=self.roots,
            initialize_source=self.initialize_source,
            freshness=self._freshness_status(),
        )

    def _freshness_status(self) -> dict[str, Any]:
        if self.watcher is None:
            return {"enabled": False}
        return {"enabled": True, **self.watcher.status()}

    # -- deadlines ---------------------------------------------------------------------------

    def _check_deadlines(self) -> None:
        """Requests a backend held too long get an error; a backend that answered nothing at
        all for that long is restarted (its documents replayed)."""
        self._deadlines = self.plane.later(DEADLINE_TICK, self._check_deadlines)
        deadline = self.settings.request_timeout
        if deadline <= 0:
            return
        now = time.monotonic()
        frozen: set[BackendSession] = set()
        for entry in self.ledger.overdue(now, deadline):
            session = entry.session
            if not isinstance(session, BackendSession):
                continue
            self.ledger.fail(
                entry,
                jsonrpc.REQUEST_FAILED,
                f"typemux-lsp: the {session.kind.name} backend for {session.venv} did not answer "
                f"{entry.method} within {deadline:g} s (--request-timeout). "
                + (
                    "It has sent nothing at all since, so it is being restarted."
                    if now - session.last_heard >= deadline
                    else "Retry; if it keeps happening, the log has the backend's stderr."
                ),
            )
            if entry.wire_id is not None and session.alive:
                session.notify("$/cancelRequest", {"id": entry.wire_id})
            if now - session.last_heard >= deadline and session.alive:
                frozen.add(session)
        for session in frozen:
            self.pool.restart(session, f"it answered nothing for {deadline:g} s", graceful=False)

    # -- the sessions' side (session.Upstream) ---------------------------------------------

    def _share(self, venv: Venv) -> Hashable | None:
        """The group whose shared backend may serve `venv`: its kind and settings, when that
        kind shares (`backend-sharing`); None: a process of its own."""
        kind_name, backend_settings = self.settings.backend_for(venv.project_dir)
        if kind_name not in self.sharing or self.settings.backend_command:
            return None  # (a command of the user's own is not known to serve several folders)
        if not KINDS[kind_name].can_share(venv.project_dir):
            return None  # (its files would be checked with another folder's interpreter)
        return (kind_name, json.dumps(backend_settings, sort_keys=True, default=str))

    def _new_session(self, venv: Venv, shared: bool = False) -> BackendSession:
        command = (
            shlex.split(self.settings.backend_command) if self.settings.backend_command else None
        )
        kind_name, backend_settings = self.settings.backend_for(venv.project_dir)
        if shared and self._neutral_dir is None:
            self._neutral_dir = Path(tempfile.mkdtemp(prefix="typemux-lsp-shared-"))
        session = BackendSession(
            KINDS[kind_name],
            venv,
            self,
            self.plane,
            self.timeouts,
            command,
            self.reaper,
            shared=shared,
            neutral_dir=self._neutral_dir,
        )
        session.settings = backend_settings
        self.feedback.backend_starting(session, self.cwd)
        return session

    def initialize_params(self, session: BackendSession) -> Message:
        folders = session.initialize_folders() if session.shared else None
        return backend_initialize_params(
            self.client_params, session.venv, self.store.encoding, folders
        )

    def session_started(self, session: BackendSession) -> None:
        self.feedback.backend_started(session)
        self.across.refresh()
        for venv in list(session.venvs.values()):
            self._serve(session, venv, since_ns=session.spawned_ns)

    def folder_added(self, session: BackendSession, venv: Venv) -> None:
        self._serve(session, venv, since_ns=fs_clock_ns())
        self.across.refresh()

    def _serve(self, session: BackendSession, venv: Venv, since_ns: int | None) -> None:
        """The backend serves `venv` now: its documents opened, what it depends on watched."""
        for doc in self.store:
            if doc.venv is not None and doc.venv.key == venv.key and not doc.desynced:
                session.open_document(doc)
                self.relay.route(doc, session)
        if self.watcher is not None:
            # Planned again at every start: a .pth file (an editable install) may be new.
            plan = plan_watch(read_environment(venv), venv.project_dir)
            session.watch_plans[venv.key] = plan
            if venv.key == session.venv.key:
                session.watch_plan = plan
            self.watcher.watch(str(venv.key), plan.roots, plan.filter, since_ns=since_ns)

    def folder_removed(self, session: BackendSession, venv: Venv) -> None:
        """`venv` leaves a shared backend (evicted, idle, deleted): its documents are closed
        there and their diagnostics withdrawn; requests for them get an error (the backend
        would answer them without their environment)."""
        gone = {
            uri
            for uri in session.open_docs
            if session.venv_for_scope(_uri_path(uri)).key == venv.key
        }
        for uri in sorted(gone):
            session.close_document(uri)
            if uri in session.diagnosed:
                session.diagnosed.discard(uri)
                self.connection.send(jsonrpc.notification(PUBLISH, {"uri": uri, "diagnostics": []}))
        for entry, _, _ in self.folder_requests(session, venv):
            session.cancel_queued(entry)
            self.ledger.fail(
                entry,
                jsonrpc.CONTENT_MODIFIED,
                f"typemux-lsp: the {session.kind.name} backend stopped serving {venv} "
                "while this request was in flight; retry it.",
            )
        session.watch_plans.pop(venv.key, None)
        if self.watcher is not None:
            self.watcher.unwatch(str(venv.key))

    def folder_requests(
        self, session: BackendSession, venv: Venv
    ) -> list[tuple[Pending, Message | None, bytes]]:
        held = [(e, *e.request) for e in session.inflight.values() if e.request is not None]
        held += [(q.entry, q.message, q.body) for q in session.queued()]
        found: list[tuple[Pending, Message | None, bytes]] = []
        for entry, message, body in held:
            decoded = message
            if decoded is None:  # (relayed undecoded: read it now, off the hot path)
                read = jsonrpc.decode(body)
                decoded = {} if isinstance(read, jsonrpc.BadMessage) else read[0]
            target = self.router.uri_of(entry.method, decoded.get("params"))
            if target is not None and session.venv_for_scope(_uri_path(target)).key == venv.key:
                found.append((entry, message, body))
        return found

    def backend_body(self, session: BackendSession, body: bytes) -> None:
        self.relay.backend_body(session, body)

    def backend_bad_frame(self, session: BackendSession, error: jsonrpc.FrameError) -> None:
        self.relay.backend_bad_frame(session, error)

    def request_failed(self, session: BackendSession, entry: Pending, why: str) -> None:
        self.ledger.fail(entry, jsonrpc.REQUEST_FAILED, why)

    def session_ended(self, session: BackendSession, error: BackendError) -> None:
        self.feedback.backend_started(session, str(error))
        code = error.code if isinstance(error, Restarted) else jsonrpc.REQUEST_FAILED
        # What it still holds: a restart has moved what the new backend answers instead.
        for entry in [*session.inflight.values(), *(q.entry for q in session.queued())]:
            self.ledger.fail(entry, code, str(error))
        for doc in self.store:
            if doc.session is session:
                doc.session = None  # (the hot path's route to it)
        self.diagnostics.clear(session, self.pool.get(session.venv))
        self.backchannel.forget(session, notify_client=not self.shutdown_requested)
        self.origins.forget(session)
        if self.watcher is not None:
            for venv in session.venvs.values():
                if self.pool.get(venv) is None:
                    self.watcher.unwatch(str(venv.key))  # (a restart keeps watching)

    def _fail_all(self, why: str, keep: Pending | None = None) -> None:
        for entry in self.ledger:
            if entry is keep:
                continue
            if entry.task is not None:
                entry.task.cancel()
            self.ledger.fail(entry, jsonrpc.REQUEST_FAILED, why)


def _editable_install(path: Path) -> bool:
    """A `.pth` file or a setuptools editable finder: what makes other projects importable."""
    return path.suffix == ".pth" or path.name.startswith("__editable__")


def _uri_path(uri: str) -> Path | None:
    try:
        return local_path(uri)
    except BadUri:
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _folder_path(folder: Any) -> Path | None:
    uri = get_path(folder, "uri")
    if not isinstance(uri, str):
        return None
    try:
        path = local_path(uri)
    except BadUri:
        return None
    return path


def _workspace_root_uris(params: Message) -> list[str]:
    """The URIs of the client's workspace folders and rootUri, as it spells them."""
    folders = params.get("workspaceFolders")
    uris = [get_path(f, "uri") for f in folders] if isinstance(folders, list) else []
    return [u for u in (*uris, params.get("rootUri")) if isinstance(u, str)]


def _workspace_roots(params: Message) -> list[Path]:
    """The client's workspace folders, else its rootUri, else its rootPath."""
    folders = params.get("workspaceFolders")
    roots = (
        [p for p in (_folder_path(f) for f in folders or []) if p]
        if isinstance(folders, list)
        else []
    )
    if not roots:
        root = _folder_path({"uri": params.get("rootUri")})
        root_path = params.get("rootPath")
        if root is None and isinstance(root_path, str) and os.path.isabs(root_path):
            root = Path(root_path)  # ("" or a relative path names no folder: the cwd serves)
        roots = [root] if root is not None else []
    return roots
