"""Every client request gets exactly one response: the ledger of those not answered yet.

A request is entered when it is read and leaves the ledger exactly once, through
`take` — whoever takes it (the backend's answer on the hot path, an error from the
control plane, a cancellation, a deadline) writes the one response. All access holds
the plane's lock.

Ids. A client may use any id JSON-RPC allows; a backend may not echo them all (ty treats
an id beyond 32 bits as a notification, node rounds 2^53+1, pyrefly exits). So the id a
backend sees — the *wire id* — is the client's own only when every backend echoes it
exactly (a non-negative 31-bit integer, or a short plain ASCII string); any other id is
sent as a fresh negative integer and the client's id is put back into the answer. The
proxy's own requests use negative integers from the same counter, so they never collide
with a client's id.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

from . import jsonrpc
from .jsonrpc import Message, MsgId
from .spellings import ClientSpellings, Spellings

logger = logging.getLogger(__name__)

_SAFE_STRING: Final = re.compile(r"[A-Za-z0-9_.:/+=-]{1,64}\Z")
_INT31: Final = 2**31

#: How often one request is sent again because the proxy itself disturbed its backend (a
#: freshness restart, a change of the disk the proxy told it of); then its error is relayed.
MAX_RESENDS: Final = 3
#: Requests never sent twice: their effects (edits the backend applies) may have happened.
_NOT_RESENT: Final = frozenset({"workspace/executeCommand"})

_wire_ids = itertools.count(1)


def proxy_id() -> int:
    """A fresh id of the proxy's own: negative, within 32 bits, never a forwarded client id."""
    return -(next(_wire_ids) % (_INT31 - 1)) - 1


def echoed(client_id: MsgId) -> bool:
    """Whether every backend echoes this id exactly, so it is sent as it is."""
    if isinstance(client_id, int):
        return 0 <= client_id < _INT31
    return _SAFE_STRING.match(client_id) is not None


def wire_id_for(client_id: MsgId) -> MsgId:
    """The id a backend sees for a client request."""
    return client_id if echoed(client_id) else proxy_id()


class Holder(Protocol):
    """Where a forwarded request waits for its answer: a backend session, as far as the
    ledger needs to know one (it never imports the session: data flows session -> ledger)."""

    inflight: dict[MsgId, Pending]


@dataclass(slots=True, eq=False)
class Pending:
    """One client request not answered yet."""

    client_id: MsgId
    method: str
    #: the backend it was forwarded to or queued at
    session: Holder | None = None
    #: the id the backend sees (`wire_id_for`); set when it is sent
    wire_id: MsgId | None = None
    #: monotonic time it was sent to a backend (for its deadline)
    sent_at: float = 0.0
    #: monotonic time the client cancelled it
    cancelled_at: float | None = None
    #: control-plane work answering it (a fan-out), cancelled with it
    task: Any = None
    #: the client's message (None: not decoded whole, its id is echoed) and its bytes, as
    #: forwarded (to send it again)
    request: tuple[Message | None, bytes] | None = None
    #: times it was sent again (`MAX_RESENDS`)
    resends: int = 0
    #: the client's spellings of the URIs respelled for the backend (spellings.py)
    spelled: ClientSpellings | None = None

    def resendable(self) -> bool:
        """Whether it may go to a backend again: the proxy, not the client, disturbed the one
        answering it, the client has not cancelled it, and a second answer has no effect."""
        return (
            self.request is not None
            and self.cancelled_at is None
            and self.resends < MAX_RESENDS
            and self.method not in _NOT_RESENT
        )

    def unsend(self) -> tuple[Message | None, bytes]:
        """Withdraw it from the backend it was sent to, to send it again."""
        assert self.request is not None and self.session is not None
        if self.wire_id is not None:
            self.session.inflight.pop(self.wire_id, None)
        self.wire_id = None
        self.sent_at = 0.0
        self.resends += 1
        return self.request


def record_sent(
    entry: Pending, session: Holder, message: Message | None, body: bytes, now: float
) -> MsgId:
    """Record that `entry` (the client's `message`, `body`) goes to `session` at `now`
    (monotonic); the wire id to send it with."""
    wire = wire_id_for(entry.client_id)
    entry.request = (message, body)
    entry.session = session
    entry.wire_id = wire
    entry.sent_at = now
    session.inflight[wire] = entry
    return wire


class Ledger:
    """The pending requests, and the one place that writes responses to the client."""

    def __init__(
        self, send_body: Callable[[bytes], None], spellings: Spellings | None = None
    ) -> None:
        self._pending: dict[MsgId, Pending] = {}
        self._send_body = send_body
        #: answers name the client's files as the client spelled them
        self._spellings = spellings

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._pending

    def __iter__(self) -> Iterator[Pending]:
        return iter(list(self._pending.values()))

    def open(self, client_id: MsgId, method: str) -> Pending | None:
        """Enter a request; None when a request with this id is still pending."""
        if client_id in self._pending:
            return None
        entry = Pending(client_id, method)
        self._pending[client_id] = entry
        return entry

    def get(self, client_id: MsgId) -> Pending | None:
        return self._pending.get(client_id)

    def take(self, entry: Pending) -> bool:
        """Remove `entry`: True exactly once, for whoever must now write its response."""
        if self._pending.get(entry.client_id) is entry:
            del self._pending[entry.client_id]
            if entry.session is not None and entry.wire_id is not None:
                entry.session.inflight.pop(entry.wire_id, None)
            return True
        return False

    def answer(self, entry: Pending, result: object) -> bool:
        """Answer `entry` with `result`, unless it was answered already."""
        if not self.take(entry):
            return False
        if self._spellings is not None and self._spellings.needed(entry.spelled):
            result = self._spellings.to_client(result, entry.spelled)
        self._send_body(jsonrpc.dumps(jsonrpc.response(entry.client_id, result)))
        return True

    def fail(self, entry: Pending, code: int, message: str) -> bool:
        """Answer `entry` with an error, unless it was answered already."""
        if not self.take(entry):
            return False
        self._send_body(jsonrpc.dumps(jsonrpc.error_response(entry.client_id, code, message)))
        return True

    def relay(self, entry: Pending, body: bytes, id_end: int | None) -> bool:
        """Answer `entry` with a backend's response body: the very bytes it wrote, with the
        client's id put back if the backend saw another (`id_end`: where its id ends, from
        `jsonrpc.peek_response`; None if the body was not read that way)."""
        if not self.take(entry):
            return False
        if entry.wire_id != entry.client_id:
            if id_end is not None:
                body = jsonrpc.splice_id(body, id_end, entry.client_id)
            else:
                message = jsonrpc.decode(body)
                if isinstance(message, jsonrpc.BadMessage):
                    return True  # unreachable: the caller decoded it already
                answer = dict(message[0])
                answer["id"] = entry.client_id
                body = jsonrpc.dumps(answer)
        spellings = self._spellings  # (spellings.needed, inlined: on every answer's path)
        if spellings is not None and (entry.spelled or spellings.store.odd or spellings.odd_roots):
            body = spellings.body_to_client(body, entry.spelled)
        self._send_body(body)
        return True

    def overdue(self, now: float, deadline: float) -> list[Pending]:
        """Requests a backend has held for longer than `deadline` seconds."""
        return [
            e
            for e in self._pending.values()
            if e.wire_id is not None and e.sent_at and now - e.sent_at >= deadline
        ]


async def answering(
    ledger: Ledger, lock: AbstractContextManager[Any], entry: Pending, work: Awaitable[None]
) -> None:
    """Run control-plane work that answers `entry` (a fan-out); whatever goes wrong in it,
    `entry` is answered, with an error that calls it the bug it is."""
    try:
        await work
    except Exception as exc:
        logger.exception("%s failed", entry.method)
        with lock:
            ledger.fail(
                entry,
                jsonrpc.INTERNAL_ERROR,
                f"typemux-lsp: {entry.method} failed: {exc}. This is a bug in typemux-lsp; the "
                "log has the traceback.",
            )
