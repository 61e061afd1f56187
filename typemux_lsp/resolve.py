"""Which backend produced the item a `*/resolve` request carries.

A resolve request names no document: only the item (a completion item, a code action,
an inlay hint, ...). It must go to the backend that produced that item, whatever the
client asked in between — completing in project A, then in B, then resolving A's item
must reach A's backend. Items are not tagged (the client sees the backend's own item):
the last answers of each parent request are kept per backend as the bytes that were
relayed, and only when more than one backend could have produced the item are they
parsed to find it.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, ClassVar, Final

from .features import RESOLVE_PARENT
from .session import BackendSession

#: parent answers kept per backend and method
KEEP: Final = 2
#: fields an item is recognised by, where it has them (the client returns the item it got)
_IDENTITY: Final = ("data", "label", "title", "name", "kind", "range", "position", "target")


class Origins:
    PARENTS: ClassVar[frozenset[str]] = frozenset(RESOLVE_PARENT.values())

    def __init__(self) -> None:
        #: parent method -> session -> its last answers (newest last), as relayed bytes
        self._answers: dict[str, dict[BackendSession, deque[_Answer]]] = {}

    def record(self, method: str, session: BackendSession, body: bytes) -> None:
        """A backend answered a parent request (called on the hot path: no parsing)."""
        by_session = self._answers.setdefault(method, {})
        kept = by_session.pop(session, None) or deque(maxlen=KEEP)  # re-inserted: newest last
        kept.append(_Answer(body))
        by_session[session] = kept

    def forget(self, session: BackendSession) -> None:
        for by_session in self._answers.values():
            by_session.pop(session, None)

    def origin(self, resolve_method: str, item: Any) -> BackendSession | None:
        """The live backend that produced `item`, or None if no live backend answered the
        parent request."""
        parent = RESOLVE_PARENT.get(resolve_method)
        by_session = self._answers.get(parent, {}) if parent else {}
        candidates = [s for s in reversed(by_session) if s.alive]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        for session in candidates:
            for answer in reversed(by_session[session]):
                if any(_same(item, known) for known in answer.items()):
                    return session
        return candidates[0]


class _Answer:
    __slots__ = ("_body", "_items")

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._items: list[Any] | None = None

    def items(self) -> list[Any]:
        if self._items is None:
            try:
                result = json.loads(self._body).get("result")
            except (ValueError, AttributeError):
                result = None
            if isinstance(result, dict):  # a CompletionList
                result = result.get("items")
            self._items = result if isinstance(result, list) else []
        return self._items


def _same(item: Any, known: Any) -> bool:
    if not isinstance(item, dict) or not isinstance(known, dict):
        return False
    keys = [k for k in _IDENTITY if k in item]
    return bool(keys) and all(known.get(k) == item[k] for k in keys)
