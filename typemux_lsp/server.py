"""The client's side of the proxy: one LSP connection, many backends behind it.

`TypemuxServer` is a pygls `LanguageServer`: the methods the proxy decides on
(lifecycle, document sync, cancellation, status) are typed handlers registered
with pygls's feature manager and given lsprotocol params. Everything else is
relayed as raw JSON: the request body goes to the backend unchanged (with the
client's own id) and the backend's response comes back as the very bytes it
wrote, so `null` results, unknown fields and vendor extensions survive. The I/O
loop is the proxy's own (`jsonrpc.Channel`): pygls's threaded stdin reader and
typed round trip would cost several times the relay's whole latency budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import attrs
from cattrs import transform_error
from lsprotocol import types as lsp
from lsprotocol.converters import get_converter
from pygls.lsp.server import LanguageServer

from . import __version__, jsonrpc
from .backends import KINDS, BackendKind
from .config import ConfigProblem, Settings, problems_summary
from .documents import ChangeOutcome, Document, DocumentStore, Encoding
from .features import (
    BROADCAST_NOTIFICATIONS,
    FAN_OUT_METHODS,
    RESOLVE_PARENT,
    STATUS_COMMAND,
    STATUS_REQUEST,
    ClientSupport,
    backend_initialize_params,
    client_initialize_result,
    get_path,
    local_answer,
    merge_symbols,
)
from .feedback import Feedback
from .jsonrpc import Message, MsgId
from .pool import Pool
from .reaper import Reaper
from .router import NoVenv, Router, workspace_roots
from .session import BackendError, BackendSession, State, Timeouts
from .stdio import open_reader, open_writer
from .venv import Venv, canonical, fallback_venv, no_venv_message

logger = logging.getLogger(__name__)

#: seconds a fanned-out request waits for the slowest backend
FAN_OUT_TIMEOUT = 5.0
#: seconds the client gets to answer a backend's workspace/configuration
CONFIGURATION_WAIT = 1.0


@dataclass(slots=True)
class Call:
    """The raw message behind a typed handler call."""

    msg_id: MsgId | None
    message: Message
    body: bytes


@dataclass(slots=True)
class ClientRequest:
    """A client request not answered yet: it gets exactly one response."""

    method: str
    session: BackendSession | None
    task: asyncio.Task[None] | None = None


class TypemuxServer(LanguageServer):
    def __init__(
        self,
        settings: Settings,
        cwd: str | None = None,
        problems: Sequence[ConfigProblem] = (),
    ) -> None:
        super().__init__("typemux-lsp", __version__)
        self.settings = settings
        #: the default kind: it answers initialize; project rules may pick others per venv
        self.kind: BackendKind = KINDS[settings.backend]
        self.config_problems = list(problems)
        self.cwd = canonical(cwd or os.getcwd())
        self.converter = get_converter()
        self.store = DocumentStore()
        self.router = Router(self.store, rules=settings.projects)
        self.timeouts = Timeouts(
            start=settings.start_timeout, warmup=settings.warmup_timeout, stop=2.0
        )
        self.pool = Pool(
            self._new_session, max_backends=settings.max_backends, ttl=settings.backend_ttl
        )
        self.pending: dict[MsgId, ClientRequest] = {}
        #: server->client requests in flight: proxy id -> (session, backend's id) for a
        #: backend's request, or the callback (or None) of a request of the proxy's own
        self.server_requests: dict[
            int, tuple[BackendSession, MsgId] | Callable[[Message], None] | None
        ] = {}
        self._server_ids = itertools.count(1)
        #: renamed progress tokens -> (session, backend's token)
        self.tokens: dict[str, tuple[BackendSession, Any]] = {}
        #: registration ids forwarded to the client -> method
        self.client_registrations: dict[str, str] = {}
        self.answered_by: dict[str, BackendSession] = {}
        self.client_params: Message = {}
        self.support = ClientSupport({})
        self.client_settings: Any = None
        self.initialized = False
        self.shutdown_requested = False
        self.done: asyncio.Future[int] | None = None
        self.reaper = Reaper()
        self.feedback = Feedback(
            self._send,
            self._client_request,
            lambda: self.support,
            no_venv_diagnostic=settings.no_venv_diagnostic,
        )
        self._write: Callable[[bytes], None] = lambda data: None
        self._typed: dict[str, tuple[Any, Callable[[Any, Call], None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: message bodies are logged only at trace level, and checked once, not per message
        self._tracing = logger.isEnabledFor(jsonrpc.TRACE)
        self._register_handlers()

    # -- the typed handlers --------------------------------------------------------------

    def _register_handlers(self) -> None:
        for method, params_type, handler in (
            (lsp.INITIALIZE, lsp.InitializeParams, self.on_initialize),
            (lsp.INITIALIZED, None, self.on_initialized),
            (lsp.SHUTDOWN, None, self.on_shutdown),
            (lsp.EXIT, None, self.on_exit),
            (lsp.TEXT_DOCUMENT_DID_OPEN, lsp.DidOpenTextDocumentParams, self.on_did_open),
            (lsp.TEXT_DOCUMENT_DID_CHANGE, lsp.DidChangeTextDocumentParams, self.on_did_change),
            (lsp.TEXT_DOCUMENT_DID_CLOSE, lsp.DidCloseTextDocumentParams, self.on_did_close),
            (lsp.CANCEL_REQUEST, lsp.CancelParams, self.on_cancel),
            (
                lsp.WORKSPACE_DID_CHANGE_CONFIGURATION,
                lsp.DidChangeConfigurationParams,
                self.on_did_change_configuration,
            ),
            (
                lsp.WINDOW_WORK_DONE_PROGRESS_CANCEL,
                lsp.WorkDoneProgressCancelParams,
                self.on_progress_cancel,
            ),
            (STATUS_REQUEST, None, self.on_status),
            (lsp.WORKSPACE_EXECUTE_COMMAND, lsp.ExecuteCommandParams, self.on_execute_command),
        ):
            # pygls's feature registry is the dispatch table for what the proxy decides.
            self.feature(method)(_plain(handler))
            self._typed[method] = (params_type, self.protocol.fm.features[method])

    def on_initialize(self, params: lsp.InitializeParams, call: Call) -> None:
        raw = call.message.get("params")
        self.client_params = raw if isinstance(raw, dict) else {}
        self.router.roots = workspace_roots(self.client_params) or (self.cwd,)
        caps = self.client_params.get("capabilities")
        self.support = ClientSupport(caps if isinstance(caps, dict) else {})
        offered = (
            params.capabilities.general.position_encodings if params.capabilities.general else None
        )
        kinds = {self.kind.name, *(r.backend for r in self.settings.projects if r.backend)}
        # Positions are relayed untouched, so every backend must use the one encoding
        # negotiated with the client; with several kinds that is the one all support.
        self.store.encoding = (
            self.kind.choose_encoding([str(e) for e in offered or ()])
            if len(kinds) == 1
            else Encoding.UTF16
        )
        options = params.initialization_options
        if isinstance(options, dict) and isinstance(options.get("settings"), dict):
            self.client_settings = options["settings"]
        result = client_initialize_result(
            self.kind, self.store.encoding, caps, extra_commands=[STATUS_COMMAND]
        )
        self.initialized = True
        self.respond(call.msg_id, result)
        venv = fallback_venv(self.cwd, rules=self.settings.projects)
        if venv is not None:
            logger.info("pre-starting the fallback venv %s", venv)
            with contextlib.suppress(BackendError):
                self.pool.get_or_start(venv)

    def on_initialized(self, params: None, call: Call) -> None:
        logger.info("client initialized (%s)", get_path(self.client_params, "clientInfo", "name"))
        if self.config_problems:
            self._send(
                jsonrpc.notification(
                    lsp.WINDOW_SHOW_MESSAGE,
                    {
                        "type": lsp.MessageType.Warning.value,
                        "message": problems_summary(self.config_problems),
                    },
                )
            )

    def on_shutdown(self, params: None, call: Call) -> None:
        self.shutdown_requested = True
        msg_id = call.msg_id

        async def stop() -> None:
            await self.pool.stop_all()
            self._fail_all("typemux-lsp: the server is shutting down.", keep=msg_id)
            self.respond(msg_id, None)

        self._task(stop())

    def on_exit(self, params: None, call: Call) -> None:
        self.finish(0 if self.shutdown_requested else 1)

    def on_did_open(self, params: lsp.DidOpenTextDocumentParams, call: Call) -> None:
        uri = params.text_document.uri
        if self.store.get(uri) is not None:
            self._close_everywhere(uri)
        doc = self.store.open(params.text_document)
        venv = self.router.refresh(doc, force=True)
        if venv is None:
            logger.info("no venv for %s", uri)
            self.feedback.no_venv(doc, no_venv_message(doc.path, uri, doc.lookup))
            return
        with contextlib.suppress(BackendError):
            session = self.pool.get_or_start(venv)
            if session.state is not State.STARTING:
                session.open_document(doc)

    def on_did_change(self, params: lsp.DidChangeTextDocumentParams, call: Call) -> None:
        uri = params.text_document.uri
        doc = self.store.get(uri)
        if doc is None:
            logger.warning("didChange for %s, which is not open: ignored", uri)
            return
        outcome = self.store.change(doc, params.text_document.version, params.content_changes)
        session = self.pool.get(doc.venv) if doc.venv is not None else None
        if session is None or session.state is State.STARTING:
            return  # the replay at start sends the current text
        if outcome is ChangeOutcome.APPLIED:
            if uri not in session.open_docs:
                return
            if doc.sync_version == doc.client_version:
                session.send_raw(call.body)
            else:
                call.message["params"]["textDocument"]["version"] = doc.sync_version
                session.send(call.message)
        elif outcome is ChangeOutcome.DESYNCED:
            self._desync(uri)
        elif outcome is ChangeOutcome.RESYNCED:
            session.open_document(doc)

    def _desync(self, uri: Any) -> None:
        """A change could not be applied: no backend may analyse a text we cannot vouch for."""
        doc = self.store.get(uri) if isinstance(uri, str) else None
        if doc is None:
            return
        doc.desynced = True
        logger.warning(
            "%s: a didChange does not fit the document; it is closed at its backend until the "
            "client sends its full text (requests on it fail until then)",
            uri,
        )
        self._close_everywhere(uri)

    def on_did_close(self, params: lsp.DidCloseTextDocumentParams, call: Call) -> None:
        self._close_everywhere(params.text_document.uri)
        self.feedback.closed(params.text_document.uri)
        self.store.close(params.text_document.uri)

    def on_cancel(self, params: lsp.CancelParams, call: Call) -> None:
        if not _valid_id(params.id):
            return
        req = self.pending.get(params.id)
        if req is None:
            return
        if req.task is not None:
            req.task.cancel()
            self.respond_error(params.id, jsonrpc.REQUEST_CANCELLED, "request cancelled")
        elif req.session is not None:
            if req.session.cancel_queued(params.id):
                self.respond_error(params.id, jsonrpc.REQUEST_CANCELLED, "request cancelled")
            else:
                req.session.send_raw(call.body)

    def on_did_change_configuration(
        self, params: lsp.DidChangeConfigurationParams, call: Call
    ) -> None:
        self.client_settings = get_path(call.message, "params", "settings")
        self._broadcast(call.body)

    def on_progress_cancel(self, params: lsp.WorkDoneProgressCancelParams, call: Call) -> None:
        entry = self.tokens.get(str(params.token))
        if entry is not None:
            session, token = entry
            session.notify(lsp.WINDOW_WORK_DONE_PROGRESS_CANCEL, {"token": token})

    def on_status(self, params: None, call: Call) -> None:
        self.respond(call.msg_id, self.status())

    def on_execute_command(self, params: lsp.ExecuteCommandParams, call: Call) -> None:
        if params.command == STATUS_COMMAND:
            self.respond(call.msg_id, self.status())
        elif call.msg_id is not None:
            self._relay_request(call.msg_id, lsp.WORKSPACE_EXECUTE_COMMAND, call.message, call.body)

    # -- dispatch ------------------------------------------------------------------------

    def on_client_message(self, body: bytes, message: Message) -> None:
        if self._tracing:
            logger.log(jsonrpc.TRACE, "client -> proxy: %s", body.decode(errors="replace"))
        method = message.get("method")
        has_id = "id" in message
        msg_id = message.get("id")
        if method is None:
            if has_id and ("result" in message or "error" in message):
                self._client_response(message)
            else:
                self._invalid(msg_id if _valid_id(msg_id) else None, "no method")
            return
        if not isinstance(method, str) or (has_id and not _valid_id(msg_id)):
            self._invalid(msg_id if _valid_id(msg_id) else None, "bad method or id")
            return
        request = has_id
        if request:
            if msg_id in self.pending:
                self._send(
                    jsonrpc.error_response(
                        msg_id, jsonrpc.INVALID_REQUEST, f"id {msg_id!r} is already in use"
                    )
                )
                return
            # From here on this id gets exactly one response, through respond/respond_error.
            assert msg_id is not None
            self.pending[msg_id] = ClientRequest(method, None)
        if not self.initialized and method not in (lsp.INITIALIZE, lsp.EXIT):
            if request:
                self.respond_error(
                    msg_id, jsonrpc.SERVER_NOT_INITIALIZED, "initialize has not been sent"
                )
            return
        if self.initialized and method == lsp.INITIALIZE:
            if request:
                self.respond_error(msg_id, jsonrpc.INVALID_REQUEST, "initialize was already sent")
            return
        if self.shutdown_requested and method != lsp.EXIT:
            if request:
                self.respond_error(msg_id, jsonrpc.INVALID_REQUEST, "the server is shut down")
            return
        typed = self._typed.get(method)
        if typed is not None:
            params_type, handler = typed
            try:
                params = (
                    None
                    if params_type is None
                    else self.converter.structure(message.get("params"), params_type)
                )
            except Exception as exc:
                why = "; ".join(transform_error(exc)) if isinstance(exc, Exception) else str(exc)
                logger.warning("invalid params for %s: %s", method, why)
                if request:
                    self.respond_error(
                        msg_id, jsonrpc.INVALID_PARAMS, f"invalid params for {method}: {why}"
                    )
                elif method == lsp.TEXT_DOCUMENT_DID_CHANGE:
                    self._desync(get_path(message, "params", "textDocument", "uri"))
                return
            try:
                handler(params, Call(msg_id if request else None, message, body))
            except Exception as exc:
                logger.exception("handler for %s failed", method)
                if request:
                    self.respond_error(msg_id, jsonrpc.INTERNAL_ERROR, f"{method} failed: {exc}")
            return
        if request:
            assert msg_id is not None
            self._relay_request(msg_id, method, message, body)
        else:
            self._relay_notification(method, message, body)

    def _relay_request(self, msg_id: MsgId, method: str, message: Message, body: bytes) -> None:
        if method in FAN_OUT_METHODS:
            self._fan_out(msg_id, method, message.get("params"))
            return
        params = message.get("params")
        uri = self.router.uri_of(method, params)
        session: BackendSession | None = None
        if uri is None:
            parent = RESOLVE_PARENT.get(method)
            candidate = self.answered_by.get(parent) if parent else None
            if candidate is not None and candidate.alive:
                session = candidate
            elif method not in lsp.METHOD_TO_TYPES:
                self.respond_error(
                    msg_id,
                    jsonrpc.METHOD_NOT_FOUND,
                    f"typemux-lsp: unknown method {method} names no document, so no backend "
                    "can be chosen for it.",
                )
                return
            else:
                code = jsonrpc.INVALID_PARAMS if _needs_document(method) else jsonrpc.REQUEST_FAILED
                self.respond_error(
                    msg_id,
                    code,
                    f"typemux-lsp: cannot route {method}: its params name no document "
                    "(textDocument.uri), so there is no way to know which venv's backend "
                    "should answer it.",
                )
                return
        else:
            target = self._session_for(uri)
            if isinstance(target, str):
                self.respond_error(msg_id, jsonrpc.REQUEST_FAILED, target)
                return
            session = target
        self.pending[msg_id].session = session
        session.forward(msg_id, method, body)

    def _session_for(self, uri: str) -> BackendSession | str:
        """The session that must answer for `uri`, or why there is none."""
        doc = self.store.get(uri)
        venv = self.router.venv_for(uri, doc)
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
        if doc is not None and doc.desynced:
            return (
                f"typemux-lsp: {uri} is out of sync: a didChange did not fit the document, so "
                "its backend was not given a text that may be wrong. Fix: the client must send "
                "the full text (close and reopen the file)."
            )
        if doc is not None and uri not in session.open_docs:
            self._rehome(doc, session)
        return session

    def _rehome(self, doc: Document, session: BackendSession) -> None:
        """The document's venv changed: close it at the old backend, open it at the new."""
        for other in self.pool.live():
            if other is not session and doc.uri in other.open_docs:
                other.close_document(doc.uri)
        if session.state is not State.STARTING and not doc.desynced:
            session.open_document(doc)

    def _close_everywhere(self, uri: str) -> None:
        for session in self.pool.live():
            session.close_document(uri)

    def _relay_notification(self, method: str, message: Message, body: bytes) -> None:
        if method in BROADCAST_NOTIFICATIONS:
            self._broadcast(body)
            return
        uri = self.router.uri_of(method, message.get("params"))
        doc = self.store.get(uri) if uri is not None else None
        if doc is not None and doc.venv is not None:
            session = self.pool.get(doc.venv)
            if session is not None and uri in session.open_docs:
                session.send_raw(body)
                return
        logger.debug("notification %s has no backend to go to: dropped", method)

    def _broadcast(self, body: bytes) -> None:
        for session in self.pool.live():
            if session.state is not State.STARTING:
                session.send_raw(body)

    def _fan_out(self, msg_id: MsgId, method: str, params: Any) -> None:
        sessions = self.pool.live()
        if not sessions:
            self.respond_error(
                msg_id,
                jsonrpc.REQUEST_FAILED,
                f"typemux-lsp: no backend is running yet, so {method} has nothing to search. "
                "Open a Python file that has a .venv first.",
            )
            return

        async def gather() -> None:
            results = await asyncio.gather(
                *(self._ask(s, method, params) for s in sessions), return_exceptions=True
            )
            for session, result in zip(sessions, results, strict=True):
                if isinstance(result, BaseException):
                    session.log.warning("%s failed: %s", method, result)
            self.respond(
                msg_id, merge_symbols(r for r in results if not isinstance(r, BaseException))
            )

        self.pending[msg_id].task = self._task(gather())

    async def _ask(self, session: BackendSession, method: str, params: Any) -> Any:
        async with asyncio.timeout(FAN_OUT_TIMEOUT):
            await asyncio.shield(session.started)
            return await session.request(method, params)

    # -- responses to the client ---------------------------------------------------------

    def respond(self, msg_id: MsgId | None, result: Any) -> None:
        """Answer a pending client request; a second answer for the same id is dropped."""
        if msg_id is None or self.pending.pop(msg_id, None) is None:
            return
        self._send(jsonrpc.response(msg_id, result))

    def respond_error(self, msg_id: MsgId | None, code: int, message: str) -> None:
        if msg_id is not None and self.pending.pop(msg_id, None) is None:
            return
        self._send(jsonrpc.error_response(msg_id, code, message))

    def _invalid(self, msg_id: MsgId | None, why: str) -> None:
        """InvalidRequest for a message rejected before it was registered as pending: with its
        id if it has a usable one no pending request holds, else with id null."""
        logger.warning("invalid message from the client: %s", why)
        reply_id = msg_id if msg_id is not None and msg_id not in self.pending else None
        self._send(
            jsonrpc.error_response(
                reply_id, jsonrpc.INVALID_REQUEST, f"invalid JSON-RPC message: {why}"
            )
        )

    def on_bad_frame(self, code: int, reason: str) -> None:
        logger.warning("bad frame from the client: %s", reason)
        self._send(jsonrpc.error_response(None, code, reason))

    def _send(self, message: Message) -> None:
        self._write(jsonrpc.frame(jsonrpc.dumps(message)))

    def _send_raw(self, body: bytes) -> None:
        self._write(jsonrpc.frame(body))

    def _fail_all(self, why: str, keep: MsgId | None = None) -> None:
        for msg_id in list(self.pending):
            if msg_id == keep:
                continue
            req = self.pending[msg_id]
            if req.task is not None:
                req.task.cancel()
            self.respond_error(msg_id, jsonrpc.REQUEST_FAILED, why)

    # -- the backends' side (session.Upstream) -------------------------------------------

    def _new_session(self, venv: Venv) -> BackendSession:
        command = (
            shlex.split(self.settings.backend_command) if self.settings.backend_command else None
        )
        kind_name, backend_settings = self.settings.backend_for(venv.project_dir)
        session = BackendSession(KINDS[kind_name], venv, self, self.timeouts, command, self.reaper)
        session.settings = backend_settings
        self.feedback.backend_starting(session, self.cwd)
        return session

    def initialize_params(self, session: BackendSession) -> Message:
        return backend_initialize_params(self.client_params, session.venv, self.store.encoding)

    def session_started(self, session: BackendSession) -> None:
        self.feedback.backend_started(session)
        for doc in self.store:
            if doc.venv is not None and doc.venv.key == session.venv.key and not doc.desynced:
                session.open_document(doc)

    def backend_response(self, session: BackendSession, msg_id: MsgId, body: bytes) -> None:
        req = self.pending.get(msg_id)
        if req is None or req.session is not session:
            return  # cancelled and already answered, or a stale answer
        del self.pending[msg_id]
        if req.method in _RESOLVABLE:
            self.answered_by[req.method] = session
        self._send_raw(body)

    def backend_request(self, session: BackendSession, message: Message) -> None:
        method: str = message["method"]
        backend_id: MsgId = message["id"]
        params = message.get("params")
        if method == lsp.WORKSPACE_CONFIGURATION:
            self._configuration(session, backend_id, params)
            return
        if method == lsp.CLIENT_REGISTER_CAPABILITY:
            self._register(session, params)
            session.send(jsonrpc.response(backend_id, None))
            return
        if method == lsp.CLIENT_UNREGISTER_CAPABILITY:
            self._unregister(session, params)
            session.send(jsonrpc.response(backend_id, None))
            return
        answered, answer = local_answer(method, self.support, session.venv)
        if method == lsp.WINDOW_WORK_DONE_PROGRESS_CREATE:
            token = get_path(params, "token")
            if answered:
                session.local_tokens.add(json.dumps(token))
            else:
                params = {**(params or {}), "token": self._rename_token(session, token)}
        if answered:
            session.send(jsonrpc.response(backend_id, answer))
            return
        proxy_id = next(self._server_ids)
        self.server_requests[proxy_id] = (session, backend_id)
        self._send(jsonrpc.request(proxy_id, method, params))

    def _configuration(self, session: BackendSession, backend_id: MsgId, params: Any) -> None:
        """Answer with the client's settings (when it keeps any), the user's backend
        settings over them, and the venv's interpreter over everything.

        Every backend holds analysis until this is answered, so a client that does not
        answer within `CONFIGURATION_WAIT` seconds is not waited for.
        """
        items = get_path(params, "items")
        items = items if isinstance(items, list) else []
        answered = False

        def answer(client_values: list[Any] | None) -> None:
            nonlocal answered
            if answered or not session.alive:
                return
            answered = True
            result = []
            for index, item in enumerate(items):
                section = get_path(item, "section")
                base = self.client_settings
                if client_values is not None and index < len(client_values):
                    base = _nest(section, client_values[index])
                settings = _merge(base, session.settings)
                result.append(session.kind.configuration(section, session.venv, settings))
            session.send(jsonrpc.response(backend_id, result))

        if not self.support.configuration:
            answer(None)
            return

        def from_client(message: Message) -> None:
            values = message.get("result")
            answer(values if isinstance(values, list) else None)

        self._client_request(lsp.WORKSPACE_CONFIGURATION, params, from_client)
        asyncio.get_running_loop().call_later(CONFIGURATION_WAIT, answer, None)

    def _rename_token(self, session: BackendSession, token: Any) -> str:
        renamed = f"typemux-lsp/{session.id}/{token}"
        self.tokens[renamed] = (session, token)
        session.remote_tokens[json.dumps(token)] = renamed
        return renamed

    def _register(self, session: BackendSession, params: Any) -> None:
        forward: list[Any] = []
        for reg in get_path(params, "registrations") or []:
            method = get_path(reg, "method")
            if not isinstance(method, str) or not self.support.dynamic_registration(method):
                continue
            renamed = f"typemux-lsp/{session.id}/{reg.get('id')}"
            if renamed in self.client_registrations:
                self._client_request(
                    lsp.CLIENT_UNREGISTER_CAPABILITY,
                    {"unregisterations": [{"id": renamed, "method": method}]},
                )
            self.client_registrations[renamed] = method
            forward.append({**reg, "id": renamed})
        if forward:
            self._client_request(lsp.CLIENT_REGISTER_CAPABILITY, {"registrations": forward})

    def _unregister(self, session: BackendSession, params: Any) -> None:
        gone: list[Any] = []
        for unreg in get_path(params, "unregisterations") or []:
            renamed = f"typemux-lsp/{session.id}/{get_path(unreg, 'id')}"
            method = self.client_registrations.pop(renamed, None)
            if method is not None:
                gone.append({"id": renamed, "method": method})
        if gone:
            self._client_request(lsp.CLIENT_UNREGISTER_CAPABILITY, {"unregisterations": gone})

    def _client_request(
        self, method: str, params: Any, on_answer: Callable[[Message], None] | None = None
    ) -> None:
        proxy_id = next(self._server_ids)
        self.server_requests[proxy_id] = on_answer
        self._send(jsonrpc.request(proxy_id, method, params))

    def _client_response(self, message: Message) -> None:
        msg_id = message.get("id")
        if not isinstance(msg_id, int) or msg_id not in self.server_requests:
            logger.warning("response to an unknown server request %r: dropped", msg_id)
            return
        entry = self.server_requests.pop(msg_id)
        if not isinstance(entry, tuple):
            if "error" in message:
                logger.info("the client refused a request of the proxy: %s", message["error"])
            if entry is not None:
                entry(message)
            return
        session, backend_id = entry
        if session.alive:
            answer = dict(message)
            answer["id"] = backend_id
            session.send(answer)

    def backend_notification(self, session: BackendSession, body: bytes, message: Message) -> None:
        method = message["method"]
        params = message.get("params")
        if method == lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS:
            self._diagnostics(session, body, params)
            return
        if method == lsp.PROGRESS:
            token = get_path(params, "token")
            if get_path(params, "value", "kind") == "end":
                session.mark_ready("progress end")
            key = json.dumps(token)
            if key in session.local_tokens:
                if get_path(params, "value", "kind") == "end":
                    session.local_tokens.discard(key)
                return
            renamed = session.remote_tokens.get(key)
            if renamed is not None:
                self._send(jsonrpc.notification(method, {**(params or {}), "token": renamed}))
                return
        self._send_raw(body)

    def _diagnostics(self, session: BackendSession, body: bytes, params: Any) -> None:
        uri = get_path(params, "uri")
        if not isinstance(uri, str):
            return
        if session.state is State.WARMING:
            session.mark_ready("first diagnostics")
        owner = self.router.venv_for(uri, self.store.get(uri))
        if isinstance(owner, NoVenv) or owner.key != session.venv.key:
            session.log.debug("diagnostics for %s, which is not this venv's: dropped", uri)
            return
        if get_path(params, "diagnostics"):
            session.diagnosed.add(uri)
        else:
            session.diagnosed.discard(uri)
        doc = self.store.get(uri)
        version = get_path(params, "version")
        if doc is not None and version == doc.sync_version != doc.client_version:
            self._send(
                jsonrpc.notification(
                    lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS, {**params, "version": doc.client_version}
                )
            )
            return
        self._send_raw(body)

    def session_lost(self, session: BackendSession, error: BackendError) -> None:
        self.feedback.backend_started(session, str(error))
        for msg_id, req in list(self.pending.items()):
            if req.session is session:
                self.respond_error(msg_id, jsonrpc.REQUEST_FAILED, str(error))
        for uri in sorted(session.diagnosed):
            self._send(
                jsonrpc.notification(
                    lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS, {"uri": uri, "diagnostics": []}
                )
            )
        session.diagnosed.clear()
        for proxy_id, entry in list(self.server_requests.items()):
            if isinstance(entry, tuple) and entry[0] is session:
                del self.server_requests[proxy_id]
        prefix = f"typemux-lsp/{session.id}/"
        gone = [
            {"id": rid, "method": m}
            for rid, m in self.client_registrations.items()
            if rid.startswith(prefix)
        ]
        for item in gone:
            del self.client_registrations[item["id"]]
        if gone and not self.shutdown_requested:
            self._client_request(lsp.CLIENT_UNREGISTER_CAPABILITY, {"unregisterations": gone})
        for renamed in [t for t, (s, _) in self.tokens.items() if s is session]:
            del self.tokens[renamed]
        for method in [m for m, s in self.answered_by.items() if s is session]:
            del self.answered_by[method]
        self.pool.forget(session, error)

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        backends = []
        for session in self.pool.live():
            backends.append(
                {
                    "venv": str(session.venv.path),
                    "project": str(session.venv.project_dir),
                    "kind": session.kind.name,
                    "pid": session.pid,
                    "state": session.state.value,
                    "uptime": round(now - session.started_at, 3),
                    "memory": _rss_bytes(session.pid),
                    "openDocuments": sorted(session.open_docs),
                    "requestsInFlight": len(session.inflight) + len(session.queue),
                    "crashes": self.pool.crash_count(session.venv),
                }
            )
        return {
            "version": __version__,
            "backend": self.kind.name,
            "positionEncoding": self.store.encoding.value,
            "backends": backends,
            "configProblems": [
                {"file": p.file, "line": p.line, "message": p.message, "fix": p.fix}
                for p in self.config_problems
            ],
            "documentsWithoutVenv": sorted(
                d.uri for d in self.store if self.router.refresh(d) is None
            ),
        }

    # -- running -------------------------------------------------------------------------

    def _task(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def finish(self, code: int) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(code)

    async def serve(self, stdin: int = 0, stdout: int = 1) -> int:
        """Serve one client over the given file descriptors until exit or end of input."""
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        await self.reaper.start()
        channel = jsonrpc.Channel(self._write_frame, self.on_client_message, self.on_bad_frame)
        self._write = await open_writer(stdout)
        if self._tracing:
            write = self._write

            def traced(data: bytes) -> None:
                logger.log(jsonrpc.TRACE, "proxy -> client: %s", data.decode(errors="replace"))
                write(data)

            self._write = traced
        await open_reader(stdin, _Reader(channel, self))
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.finish, 128 + sig)
        try:
            code = await self.done
        finally:
            self._fail_all("typemux-lsp: the server is exiting.")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.stop_all(), 5)
            self.pool.kill_all()
            await self.reaper.close()
        return code

    def _write_frame(self, data: bytes) -> None:
        self._write(data)


_RESOLVABLE = frozenset(RESOLVE_PARENT.values())


class _Reader(asyncio.Protocol):
    def __init__(self, channel: jsonrpc.Channel, server: TypemuxServer) -> None:
        self._channel = channel
        self._server = server

    def data_received(self, data: bytes) -> None:
        self._channel.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        logger.info("the client closed its end of the connection")
        self._server.finish(0 if self._server.shutdown_requested else 1)


def _plain(handler: Callable[[Any, Call], None]) -> Callable[[Any, Call], None]:
    """A function pygls can tag (it sets attributes on handlers; bound methods refuse)."""

    def typed_handler(params: Any, call: Call) -> None:
        handler(params, call)

    typed_handler.__name__ = getattr(handler, "__name__", "handler")
    return typed_handler


def _needs_document(method: str) -> bool:
    """Whether the method's params (per lsprotocol) carry a `textDocument`."""
    params_type = lsp.METHOD_TO_TYPES.get(method, (None, None, None, None))[2]
    return (
        isinstance(params_type, type)
        and attrs.has(params_type)
        and any(f.name == "text_document" for f in attrs.fields(params_type))
    )


def _valid_id(msg_id: Any) -> bool:
    return isinstance(msg_id, (int, str)) and not isinstance(msg_id, bool)


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _merge(base.get(key), value)
        return merged
    return over if over not in (None, {}) else base


def _nest(section: Any, value: Any) -> Any:
    """The client's value for `section` (e.g. "python.analysis") as a full settings tree."""
    if not isinstance(section, str) or not section:
        return value
    for part in reversed(section.split(".")):
        value = {part: value}
    return value


def _rss_bytes(pid: int | None) -> int | None:
    if pid is None or not sys.platform.startswith("linux"):
        return None
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
