"""The hot path: messages relayed by the reader threads themselves, everything else handed
to the control plane in order.

A message takes the hot path when its destination is already known and nothing needs
the event loop:

- a client request about a document that is open at a backend that takes requests now:
  entered in the ledger and written to the backend (with the client's own id when the
  backend can echo it, see ledger.py);
- a document notification (didChange, didSave, willSave) for a document open at a
  running backend: applied to the document store and written on;
- a backend's answer to a forwarded request: written to the client as the bytes the
  backend wrote (the id put back if it was renamed);
- a backend's diagnostics for a document the client has open in its environment.

Anything else, and anything arriving while earlier messages from the same peer are
still with the control plane (so order is kept: a didChange is never overtaken by the
hover after it), is handed to the control plane (`Control`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, Protocol, cast

from msgspec import UNSET

from . import jsonrpc
from .connection import ClientConnection
from .diagnostics import PUBLISH, Diagnostics
from .documents import ChangeOutcome, Document, DocumentStore
from .features import ACROSS_METHODS, NOTIFICATIONS, PROVIDER_METHODS, unsupported
from .jsonrpc import BadMessage, DocumentHead, FrameError, Head, Message, ParamsHead
from .ledger import Ledger, Pending, echoed
from .plane import Backlog, Plane
from .pool import Pool
from .resolve import Origins
from .router import RECHECK_SECONDS, BadUri, Router
from .session import BackendSession, State

logger = logging.getLogger(__name__)

#: Document notifications the hot path relays to the document's backend.
_SYNC_NOTIFICATIONS: Final = frozenset(
    {"textDocument/didChange", "textDocument/didSave", "textDocument/willSave"}
)
#: How often the routes the hot path uses are checked again (`Relay._renew_routes`): well
#: within their freshness, so they are renewed before they fall due.
ROUTE_RENEWAL: Final = RECHECK_SECONDS / 2

#: States in which a backend is sent document notifications straight. (A tuple: `in` compares
#: by identity first, where a set would call the Enum's Python-level __hash__.)
_TAKES_NOTIFICATIONS: Final = (State.READY, State.WARMING)


class Control(Protocol):
    """The control plane's entry points (server.py); called holding the plane's lock."""

    def client_message(self, body: bytes, message: Message, entry: Pending | None) -> None: ...

    def client_response(self, message: Message) -> None: ...

    def backend_message(self, session: BackendSession, body: bytes, message: Message) -> None: ...


class Relay:
    def __init__(
        self,
        plane: Plane,
        connection: ClientConnection,
        ledger: Ledger,
        store: DocumentStore,
        router: Router,
        pool: Pool,
        diagnostics: Diagnostics,
        origins: Origins,
        control: Control,
    ) -> None:
        self.plane = plane
        self.connection = connection
        self.ledger = ledger
        self.store = store
        self.router = router
        self.pool = pool
        self.diagnostics = diagnostics
        self.origins = origins
        self.control = control
        #: client messages handed to the control plane and not handled yet
        self.handoffs = Backlog()
        #: set by the control plane once `initialize` is answered
        self.open = False
        #: the pending `_renew_routes`, while routes are cached
        self._renewal: asyncio.TimerHandle | None = None

    # -- client -> backend (the client's reader thread) -----------------------------------

    def client_body(self, body: bytes) -> None:
        head = jsonrpc.peek(body)
        if head is not None and head.method is not None and head.params is not None:
            document = head.params.textDocument
            if document is not None and document.uri is not None:
                self.handoffs.settle()
                with self.plane.lock:
                    if self.handoffs.count == 0 and self.open and self._fast(head, body):
                        return
        # Not the common shape, or not for the hot path: the whole message.
        decoded = jsonrpc.decode(body)
        if isinstance(decoded, BadMessage):
            logger.warning("bad message from the client: %s", decoded.reason)
            self.connection.send(jsonrpc.error_response(None, decoded.code, decoded.reason))
            return
        message, body = decoded
        method = message.get("method")
        has_id = "id" in message
        msg_id = message.get("id")
        with self.plane.lock:
            if method is None:
                if has_id and ("result" in message or "error" in message):
                    self._hand_off(self.control.client_response, message)
                else:
                    self._invalid(msg_id, "a message with neither a method nor a result")
                return
            if not isinstance(method, str) or (has_id and not jsonrpc.valid_id(msg_id)):
                self._invalid(msg_id, "the method must be a string and the id a string or integer")
                return
            entry = None
            if has_id:
                assert msg_id is not None  # valid_id above
                entry = self.ledger.open(msg_id, method)
                if entry is None:
                    self._duplicate(msg_id)
                    return
                if method in NOTIFICATIONS:
                    self.ledger.fail(
                        entry,
                        jsonrpc.INVALID_REQUEST,
                        f"typemux-lsp: {method} is a notification, but it was sent with an id "
                        f"({msg_id!r}); it was not processed. Send it without an id.",
                    )
                    return
            if self.handoffs.count == 0 and self.open:
                head = _head_of(message)
                if head is not None and self._fast(head, body, message, entry):
                    return
            self._hand_off(self.control.client_message, body, message, entry)

    def _duplicate(self, msg_id: jsonrpc.MsgId) -> None:
        self.connection.send(
            jsonrpc.error_response(
                msg_id,
                jsonrpc.INVALID_REQUEST,
                f"typemux-lsp: id {msg_id!r} is already used by a request not "
                "answered yet; ids must be unique among pending requests.",
            )
        )

    def _hand_off(self, fn: Any, *args: Any) -> None:
        """To the control plane, after every client message handed off before. (What this
        thread wrote so far is never overtaken by what the control plane writes: see the
        cork in transport.Outbox.)"""
        self.handoffs.add()

        def run() -> None:
            self.handoffs.done()
            fn(*args)

        self.plane.submit(run)

    def _invalid(self, msg_id: Any, why: str) -> None:
        """InvalidRequest for a message rejected before it was entered: under its id if that
        id is usable and no pending request holds it, else under null."""
        logger.warning("invalid message from the client: %s", why)
        reply_id = msg_id if jsonrpc.valid_id(msg_id) and msg_id not in self.ledger else None
        self.connection.send(
            jsonrpc.error_response(
                reply_id, jsonrpc.INVALID_REQUEST, f"invalid JSON-RPC message: {why}"
            )
        )

    def client_bad_frame(self, error: FrameError) -> None:
        logger.warning("bad frame from the client: %s", error.reason)
        self.connection.send(jsonrpc.error_response(None, jsonrpc.PARSE_ERROR, error.reason))

    def _fast(
        self,
        head: Head,
        body: bytes,
        message: Message | None = None,
        entry: Pending | None = None,
    ) -> bool:
        """Relay a client message from the reader thread if it is the common case (holding the
        lock); False: the control plane decides. `head` has a method and a document uri;
        `message` is the whole message when it was decoded, `entry` its ledger entry when
        it was entered already."""
        params = head.params
        assert params is not None and params.textDocument is not None
        method = head.method
        assert method is not None
        uri = params.textDocument.uri
        assert uri is not None
        session = self.session_of(uri)
        if session is None:
            return False
        msg_id = head.id
        if msg_id is not UNSET:
            if (
                not session.accepts(method)
                or (method in ACROSS_METHODS and session.crosses)
                or (
                    method in PROVIDER_METHODS
                    and unsupported(session.kind, method, session.capabilities) is not None
                )
            ):
                return False
            if entry is None:
                if method in NOTIFICATIONS or (message is None and not echoed(msg_id)):
                    return False  # an error to answer, or an id to rename: the whole path
                entry = self.ledger.open(msg_id, method)
                if entry is None:
                    self._duplicate(msg_id)
                    return True
            session.forward(entry, message, body)
            return True
        if method not in _SYNC_NOTIFICATIONS or session.state not in _TAKES_NOTIFICATIONS:
            return False
        doc = self.store.get(uri)
        assert doc is not None  # session_of found it
        if method == "textDocument/didChange":
            self._change(
                doc, session, params.textDocument.version, params.contentChanges, body, message
            )
        else:
            if method == "textDocument/didSave":
                self._saved(doc, params.text)
            session.send_body(body)
        return True

    def session_of(self, uri: str) -> BackendSession | None:
        """The session that has `uri` open, as the control plane last routed it, while that
        route is fresh (else None: the control plane looks again and caches it anew).

        The route's freshness (`Document.routed_until`) covers both checks made at most
        once a second: the document's environment on disk, and its backend's environment
        not recreated. While the route is used they are made ahead of time on a timer
        (`_renew_routes`), so the hot path never waits for them."""
        doc = self.store.get(uri)
        if doc is None:
            return None
        session = doc.session
        now = time.monotonic()
        if (
            session is None
            or now >= doc.routed_until
            or uri not in session.open_docs  # (the invariant the relay rests on, checked)
        ):
            return None
        doc.in_use = True
        routed = cast(BackendSession, session)  # (only `route` below sets it)
        if doc.venv is not None:  # a shared backend's projects are evicted by LRU
            routed.used[doc.venv.key] = now
        return routed

    def route(self, doc: Document, session: BackendSession | None) -> None:
        """Cache on `doc` the session the control plane just routed it to (or found it open
        at), for the hot path; called holding the lock. Fresh until either once-a-second
        check is due: the document's environment lookup or the session's own environment
        check (`BackendSession.venv_recreated`). Cleared by the events that change it: a
        new lookup (router.py), a desync, the session's end (server.py)."""
        if (
            session is None
            or doc.desynced
            or doc.venv is None
            or not session.alive
            or doc.uri not in session.open_docs
            or doc.venv.key in session.renewals  # (its requests wait on the control plane)
        ):
            doc.session = None
            return
        doc.session = session
        doc.routed_until = min(doc.checked_at, session.identity_checked_at) + RECHECK_SECONDS
        if self._renewal is None:
            self._renewal = self.plane.later(ROUTE_RENEWAL, self._renew_routes)

    def _renew_routes(self) -> None:
        """Make the once-a-second checks of the routes the hot path uses before they fall
        due (control plane, every `ROUTE_RENEWAL` seconds while any is used). Otherwise the
        first message after they fell due would go to the control plane, and every message
        from that peer after it until it was handled."""
        self._renewal = None
        for doc in self.store:
            if doc.session is None or not doc.in_use:
                continue
            doc.in_use = False
            try:
                venv = self.router.refresh(doc, force=True)
            except BadUri:
                continue
            # (a changed environment or a restarted backend leaves no route: the next
            # message goes to the control plane, which routes it anew)
            session = self.pool.current(venv, every=ROUTE_RENEWAL / 2) if venv else None
            self.route(doc, session)

    def did_change(self, message: Message, body: bytes) -> None:
        """A didChange on the control plane (it came behind handed-off messages, or its route
        was due for its once-a-second check): checked, applied to the store and relayed."""
        params = message.get("params")
        document = params.get("textDocument") if isinstance(params, dict) else None
        uri = document.get("uri") if isinstance(document, dict) else None
        doc = self.store.get(uri) if isinstance(uri, str) else None
        if doc is None:
            logger.warning("didChange for %s, which is not open: ignored", uri)
            return
        session: BackendSession | None = None
        try:
            venv = self.router.refresh(doc)
        except BadUri:
            venv = None
        if venv is not None:
            session = self.pool.current(venv)
        self._change(
            doc,
            session,
            document.get("version") if isinstance(document, dict) else None,
            params.get("contentChanges") if isinstance(params, dict) else None,
            body,
            message,
        )
        self.route(doc, session)

    def _change(
        self,
        doc: Document,
        session: BackendSession | None,
        version: Any,
        changes: Any,
        body: bytes,
        message: Message | None,
    ) -> None:
        """Apply a didChange to the store and relay it to `session`, the document's backend
        (holding the lock, from either side)."""
        if (
            not isinstance(version, int)
            or isinstance(version, bool)
            or not isinstance(changes, list)
        ):
            self.desync(doc.uri, "a didChange without a version or contentChanges")
            return
        disk_won = doc.disk_text is not None
        doc.disk_text = None  # the client's own edit wins again
        outcome = self.store.change(doc, version, changes)
        if session is None or session.state in (State.WAITING, State.STARTING):
            return  # the replay at start sends the current text
        if outcome is ChangeOutcome.APPLIED:
            if doc.uri not in session.open_docs:
                return
            if disk_won:  # the backend has the disk's text: an edit of the client's is not
                session.notify(  # relative to it, so the client's whole text goes
                    "textDocument/didChange",
                    {
                        "textDocument": {"uri": doc.uri, "version": doc.sync_version},
                        "contentChanges": [{"text": doc.text}],
                    },
                )
            elif doc.sync_version == doc.client_version:
                session.send_body(body)
            else:  # the client repeated a version: the backend gets the next one, every field
                if message is None:  # the client sent kept
                    decoded = jsonrpc.decode(body)
                    if isinstance(decoded, BadMessage):  # (peek accepts only what decodes)
                        self.desync(doc.uri, decoded.reason)
                        return
                    message = decoded[0]
                params = message["params"]
                params["textDocument"]["version"] = doc.sync_version
                session.send(message)
        elif outcome is ChangeOutcome.DESYNCED:
            self.desync(doc.uri, "a didChange does not fit the document")
        elif outcome is ChangeOutcome.RESYNCED:
            session.open_document(doc)

    def did_save(self, message: Message) -> None:
        """The client's text is on disk now: the disk may win again (freshness)."""
        params = message.get("params")
        document = params.get("textDocument") if isinstance(params, dict) else None
        uri = document.get("uri") if isinstance(document, dict) else None
        doc = self.store.get(uri) if isinstance(uri, str) else None
        if doc is not None:
            self._saved(doc, params.get("text") if isinstance(params, dict) else None)

    def _saved(self, doc: Document, text: Any) -> None:
        doc.clean_text = text if isinstance(text, str) else doc.text

    def desync(self, uri: str, why: str) -> None:
        """A change could not be applied: no backend may analyse a text we cannot vouch for."""
        doc = self.store.get(uri)
        if doc is None:
            return
        doc.desynced = True
        doc.session = None
        logger.warning(
            "%s: %s; it is closed at its backend until the client sends its full text "
            "(requests on it fail until then)",
            uri,
            why,
        )
        for session in self.pool.live():
            session.close_document(uri)

    # -- backend -> client (each backend's reader thread) ---------------------------------

    def backend_body(self, session: BackendSession, body: bytes) -> None:
        # Backpressure: while the client does not read, stop reading this backend.
        self.connection.wait_for_room()
        peeked = jsonrpc.peek_response(body)
        if peeked is not None:
            wire, id_end = peeked
            session.handoffs.settle()
            with self.plane.lock:
                if session.handoffs.count == 0:
                    entry = session.inflight.get(wire)
                    if entry is not None:
                        if session.disturbed_at > entry.sent_at and self.resend(
                            session, entry, body, id_end
                        ):
                            return
                        if entry.method in Origins.PARENTS:
                            self.origins.record(entry.method, session, body)
                        self.ledger.relay(entry, body, id_end)
                        return
                    if not (isinstance(wire, int) and wire in session.internal):
                        session.log.debug("dropping a late answer to %r", wire)
                        return
        head = jsonrpc.peek_backend(body)
        if head is not None and head.method == PUBLISH:
            params = head.params
            if params is not None and params.uri is not None:
                session.handoffs.settle()
                with self.plane.lock:
                    if session.handoffs.count == 0 and self.diagnostics.publish_fast(
                        session, body, params.uri, params.version, bool(params.diagnostics)
                    ):
                        return
        # Not the common shape, or not for the hot path: the whole message.
        decoded = jsonrpc.decode(body)
        with self.plane.lock:
            if isinstance(decoded, BadMessage):
                self._backend_hand_off(session, _not_lsp, session, decoded.reason)
                return
            message, body = decoded
            params = message.get("params")
            if (
                session.handoffs.count == 0
                and message.get("method") == PUBLISH
                and isinstance(params, dict)
                and isinstance(params.get("uri"), str)
                and self.diagnostics.publish_fast(
                    session,
                    body,
                    params["uri"],
                    params.get("version"),
                    bool(params.get("diagnostics")),
                )
            ):
                return
            self._backend_hand_off(session, self.control.backend_message, session, body, message)

    def backend_response(self, session: BackendSession, body: bytes, message: Message) -> None:
        """A response from the backend, on the control plane (it arrived behind handed-off
        messages, or is not in the compact form the hot path reads)."""
        msg_id = message.get("id")
        if session.resolve_internal(message):
            return
        entry = session.inflight.get(msg_id) if isinstance(msg_id, int | str) else None
        if entry is None:
            session.log.debug("dropping a late answer to %r", msg_id)
            return
        peeked = jsonrpc.peek_response(body)
        id_end = peeked[1] if peeked is not None else None
        if session.disturbed_at > entry.sent_at and self.resend(session, entry, body, id_end):
            return
        if entry.method in Origins.PARENTS:
            self.origins.record(entry.method, session, body)
        self.ledger.relay(entry, body, id_end)

    def resend(
        self, session: BackendSession, entry: Pending, body: bytes, id_end: int | None
    ) -> bool:
        """A request the backend gave up on because the proxy changed its view of the disk
        meanwhile (pyrefly cancels, ty answers ContentModified): the client did nothing to
        deserve that error, so the request is sent again. False: relay the answer."""
        error = jsonrpc.error_code(body, id_end)
        if error not in (jsonrpc.REQUEST_CANCELLED, jsonrpc.CONTENT_MODIFIED):
            return False
        if not entry.resendable():
            return False
        session.log.info(
            "%s gave up on %s (error %d) after the proxy told it of a change on disk: "
            "sending it again",
            session.kind.name,
            entry.method,
            error,
        )
        message, request_body = entry.unsend()
        session.forward(entry, message, request_body)
        return True

    def backend_bad_frame(self, session: BackendSession, error: FrameError) -> None:
        with self.plane.lock:
            self._backend_hand_off(session, _not_lsp, session, error.reason)

    def _backend_hand_off(self, session: BackendSession, fn: Any, *args: Any) -> None:
        session.handoffs.add()

        def run() -> None:
            session.handoffs.done()
            fn(*args)

        self.plane.submit(run)


def _not_lsp(session: BackendSession, reason: str) -> None:
    session.output_not_lsp(reason)


def _head_of(message: Message) -> Head | None:
    """The routing fields of a whole message, as `jsonrpc.peek` reads them; None if it names
    no document (only the control plane can route it)."""
    params = message.get("params")
    document = params.get("textDocument") if isinstance(params, dict) else None
    uri = document.get("uri") if isinstance(document, dict) else None
    if not isinstance(uri, str):
        return None
    assert isinstance(params, dict) and isinstance(document, dict)
    version = document.get("version")
    changes = params.get("contentChanges")
    text = params.get("text")
    msg_id = message.get("id", UNSET)
    return Head(
        method=message["method"],
        id=msg_id,
        params=ParamsHead(
            textDocument=DocumentHead(
                uri=uri,
                # (a value of another type is kept: the change is refused for it, as it must)
                version=version,
            ),
            contentChanges=changes,
            text=text if isinstance(text, str) else None,
        ),
    )
