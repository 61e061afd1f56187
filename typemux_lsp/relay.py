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

import logging
import time
from typing import Any, Final, Protocol

from . import jsonrpc
from .connection import ClientConnection
from .diagnostics import Diagnostics
from .documents import ChangeOutcome, DocumentStore
from .features import ACROSS_METHODS, NOTIFICATIONS, PROVIDER_METHODS, unsupported
from .jsonrpc import BadMessage, FrameError, Message
from .ledger import Ledger, Pending
from .plane import Plane
from .pool import Pool
from .resolve import Origins
from .router import RECHECK_SECONDS
from .session import BackendSession, State
from .transport import flush_batch

logger = logging.getLogger(__name__)

#: Document notifications the hot path relays to the document's backend.
_SYNC_NOTIFICATIONS: Final = frozenset(
    {"textDocument/didChange", "textDocument/didSave", "textDocument/willSave"}
)


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
        pool: Pool,
        diagnostics: Diagnostics,
        origins: Origins,
        control: Control,
    ) -> None:
        self.plane = plane
        self.connection = connection
        self.ledger = ledger
        self.store = store
        self.pool = pool
        self.diagnostics = diagnostics
        self.origins = origins
        self.control = control
        #: client messages handed to the control plane and not handled yet
        self.handoffs = 0
        #: set by the control plane once `initialize` is answered
        self.open = False

    # -- client -> backend (the client's reader thread) -----------------------------------

    def client_body(self, body: bytes) -> None:
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
                    self.connection.send(
                        jsonrpc.error_response(
                            msg_id,
                            jsonrpc.INVALID_REQUEST,
                            f"typemux-lsp: id {msg_id!r} is already used by a request not "
                            "answered yet; ids must be unique among pending requests.",
                        )
                    )
                    return
                if method in NOTIFICATIONS:
                    self.ledger.fail(
                        entry,
                        jsonrpc.INVALID_REQUEST,
                        f"typemux-lsp: {method} is a notification, but it was sent with an id "
                        f"({msg_id!r}); it was not processed. Send it without an id.",
                    )
                    return
            if self.handoffs == 0 and self.open and self._fast(method, message, body, entry):
                return
            self._hand_off(self.control.client_message, body, message, entry)

    def _hand_off(self, fn: Any, *args: Any) -> None:
        """To the control plane, after every client message handed off before (and after what
        this thread has written so far: see transport.flush_batch)."""
        flush_batch()
        self.handoffs += 1

        def run() -> None:
            self.handoffs -= 1
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

    def _fast(self, method: str, message: Message, body: bytes, entry: Pending | None) -> bool:
        params = message.get("params")
        document = params.get("textDocument") if isinstance(params, dict) else None
        uri = document.get("uri") if isinstance(document, dict) else None
        if not isinstance(uri, str):
            return False
        if entry is None and method not in _SYNC_NOTIFICATIONS:
            return False
        session = self.session_of(uri)
        if session is None:
            return False
        if entry is not None:
            if (
                not session.accepts(method)
                or (method in ACROSS_METHODS and session.crosses)
                or (
                    method in PROVIDER_METHODS
                    and unsupported(session.kind, method, session.capabilities) is not None
                )
            ):
                return False
            session.forward(entry, message, body)
            return True
        if session.state not in (State.WARMING, State.READY):
            return False
        if method == "textDocument/didChange":
            self.did_change(message, body)
        else:
            if method == "textDocument/didSave":
                self.did_save(message)
            session.send_body(body)
        return True

    def session_of(self, uri: str) -> BackendSession | None:
        """The running session that has `uri` open, if its routing is fresh (else None: the
        control plane looks again)."""
        doc = self.store.get(uri)
        if doc is None or doc.venv is None or doc.desynced:
            return None
        now = time.monotonic()
        if now - doc.checked_at >= RECHECK_SECONDS:
            return None
        session = self.pool.sessions.get(doc.venv.key)
        if session is None or uri not in session.open_docs:
            return None
        if now - session.identity_checked_at >= 1.0:
            return None
        session.used[doc.venv.key] = now  # a shared backend's projects are evicted by LRU
        return session

    def did_change(self, message: Message, body: bytes) -> None:
        """Apply a didChange to the store and relay it to the document's backend (holding the
        lock, from either side)."""
        params = message.get("params")
        document = params.get("textDocument") if isinstance(params, dict) else None
        uri = document.get("uri") if isinstance(document, dict) else None
        version = document.get("version") if isinstance(document, dict) else None
        changes = params.get("contentChanges") if isinstance(params, dict) else None
        doc = self.store.get(uri) if isinstance(uri, str) else None
        if doc is None:
            logger.warning("didChange for %s, which is not open: ignored", uri)
            return
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
        session = self.pool.get(doc.venv) if doc.venv is not None else None
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
            else:
                assert isinstance(document, dict)
                document["version"] = doc.sync_version
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
            text = params.get("text") if isinstance(params, dict) else None
            doc.clean_text = text if isinstance(text, str) else doc.text

    def desync(self, uri: str, why: str) -> None:
        """A change could not be applied: no backend may analyse a text we cannot vouch for."""
        doc = self.store.get(uri)
        if doc is None:
            return
        doc.desynced = True
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
            with self.plane.lock:
                if session.handoffs == 0:
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
        decoded = jsonrpc.decode(body)
        with self.plane.lock:
            if isinstance(decoded, BadMessage):
                self._backend_hand_off(session, _not_lsp, session, decoded.reason)
                return
            message, body = decoded
            if (
                session.handoffs == 0
                and message.get("method") == "textDocument/publishDiagnostics"
                and self.diagnostics.publish_fast(session, body, message.get("params"))
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
        flush_batch()
        session.handoffs += 1

        def run() -> None:
            session.handoffs -= 1
            fn(*args)

        self.plane.submit(run)


def _not_lsp(session: BackendSession, reason: str) -> None:
    session.output_not_lsp(reason)
