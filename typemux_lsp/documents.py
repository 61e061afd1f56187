"""The client's open documents, as the client sees them.

Every backend is fed from this store: when a backend starts it gets the current
text of its project's documents, so the store must be exact. Edits are applied
in the negotiated position encoding; an edit that cannot be applied marks the
document out of sync instead of guessing (pygls's `TextDocument` silently drops
an edit past the end of the file), and the next full-text change resyncs it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from .uris import BadUri, local_path, path_of, spelling
from .venv import Lookup, Venv


class OpenAt(Protocol):
    """A backend session a document is open at, as far as the store knows one (it never
    imports the session: data flows the other way)."""

    open_docs: set[str]


class InvalidChange(ValueError):
    """A didChange range that does not fit the document."""


class Encoding(enum.StrEnum):
    UTF8 = "utf-8"
    UTF16 = "utf-16"
    UTF32 = "utf-32"


class Document:
    """One open document: its text as a list of lines, so an edit touches only its lines.

    Each line keeps its end-of-line; the last has none (it is "" after a final newline),
    so line N of an LSP position is `lines[N]`. The whole text is joined only when it is
    needed (a backend's replay), then kept until the next edit.
    """

    __slots__ = (
        "_lines",
        "_text",
        "checked_at",
        "clean_text",
        "client_version",
        "desynced",
        "disk_text",
        "in_use",
        "language_id",
        "lookup",
        "path",
        "routed_until",
        "session",
        "sync_version",
        "uri",
        "uri_error",
        "venv",
    )

    def __init__(
        self, uri: str, language_id: str, text: str, client_version: int, sync_version: int
    ) -> None:
        self.uri = uri
        self.language_id = language_id
        self.client_version = client_version
        #: The version backends see: the client's while it increases, else one more than
        #: the last (Claude Code sends version 1 with every change).
        self.sync_version = sync_version
        #: why the URI cannot be a path, if it cannot (requests on it are InvalidParams)
        self.uri_error: str | None = None
        try:
            self.path: Path | None = local_path(uri)
        except BadUri as exc:
            self.path = None
            self.uri_error = str(exc)
        self.venv: Venv | None = None
        self.lookup: Lookup | None = None
        #: monotonic time of the last venv lookup; negative lookups are always redone
        self.checked_at = float("-inf")
        #: the session the control plane last routed it to, for the hot path (relay.py's
        #: `route`): good until `routed_until` (monotonic), cleared by what changes it
        self.session: OpenAt | None = None
        self.routed_until = float("-inf")
        #: set when the hot path took that route since the control plane last renewed it
        self.in_use = False
        #: set when an edit could not be applied: backends must not get this text
        self.desynced = False
        self._lines = split_lines(text)
        self._text: str | None = text
        #: the text at the client's last open or save: what it had on disk then (freshness:
        #: the disk wins over an open document only while the client has no unsaved edits)
        self.clean_text: str | None = text
        #: set while backends were given this disk text instead of the client's (a file
        #: changed behind the client's back); the client's next change clears it
        self.disk_text: str | None = None

    @property
    def backend_text(self) -> str:
        """The text backends are given: the disk's while it won, else the client's."""
        return self.disk_text if self.disk_text is not None else self.text

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = "".join(self._lines)
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        self._lines = split_lines(value)
        self._text = value

    def next_version(self, client_version: int) -> None:
        self.client_version = client_version
        self.sync_version = max(client_version, self.sync_version + 1)


class ChangeOutcome(enum.Enum):
    APPLIED = "applied"
    #: this change could not be applied: the document is now out of sync
    DESYNCED = "desynced"
    #: still out of sync: an incremental change on unknown text is dropped
    IGNORED = "ignored"
    #: a full-text change brought an out-of-sync document back
    RESYNCED = "resynced"


class DocumentStore:
    """The open documents by the URI the client opened them with, and by path: a file the
    client names with another spelling of its URI (`file://localhost/`, `%61` for `a`) is
    the same document (see spellings.py)."""

    def __init__(self, encoding: Encoding = Encoding.UTF16) -> None:
        self.encoding = encoding
        self._docs: dict[str, Document] = {}
        self._by_path: dict[Path, Document] = {}
        #: open documents whose URI is not spelled as backends spell it (`uris.spelling`):
        #: while there are none, answers need no respelling
        self.odd = 0

    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self) -> Iterator[Document]:
        return iter(list(self._docs.values()))

    def get(self, uri: str) -> Document | None:
        """The open document `uri` names, however it is spelled."""
        doc = self._docs.get(uri)
        if doc is None and self._by_path:
            path = path_of(uri)
            doc = self._by_path.get(path) if path is not None else None
        return doc

    def at(self, path: Path) -> Document | None:
        """The open document of `path`, if any."""
        return self._by_path.get(path)

    def open(self, uri: str, language_id: str, version: int, text: str) -> Document:
        """Open `uri`; a document open under another spelling of its URI is replaced (the
        caller closes it at the backends first)."""
        old = self.get(uri)
        if old is not None:
            self.close(old.uri)
        sync = version if old is None else max(version, old.sync_version + 1)
        doc = Document(uri, language_id, text, version, sync)
        self._docs[uri] = doc
        if doc.path is not None:
            self._by_path[doc.path] = doc
            if uri != spelling(doc.path):
                self.odd += 1
        return doc

    def close(self, uri: str) -> Document | None:
        doc = self._docs.pop(uri, None)
        if doc is not None and doc.path is not None:
            if self._by_path.get(doc.path) is doc:
                del self._by_path[doc.path]
            if uri != spelling(doc.path):
                self.odd -= 1
        return doc

    def change(
        self,
        doc: Document,
        version: int,
        changes: Sequence[Any],
    ) -> ChangeOutcome:
        """Apply the changes (`TextDocumentContentChangeEvent` JSON) in order; all or nothing."""
        lines = doc._lines
        copied = False
        resynced = False
        for change in changes:
            text = change.get("text") if isinstance(change, dict) else None
            rng = change.get("range") if isinstance(change, dict) else None
            if isinstance(text, str) and rng is None:
                lines, copied = split_lines(text), True
                resynced = resynced or doc.desynced
                continue
            if doc.desynced and not resynced:
                return ChangeOutcome.IGNORED
            if not copied and len(changes) > 1:
                lines, copied = list(lines), True  # all or nothing: edit a copy
            try:
                if not isinstance(text, str):
                    raise InvalidChange(f"a content change without text: {change!r:.80}")
                edit_lines(lines, _range(rng), text, self.encoding)
            except InvalidChange:
                doc.desynced = True
                doc.next_version(version)
                return ChangeOutcome.DESYNCED
        doc._lines = lines
        doc._text = None
        doc.next_version(version)
        if resynced:
            doc.desynced = False
            return ChangeOutcome.RESYNCED
        return ChangeOutcome.APPLIED


_SPLIT = re.compile(r"(?<=\n)|(?<=\r)(?!\n)")


def split_lines(text: str) -> list[str]:
    """Lines with their ends kept (`\n`, `\r\n` or `\r`, as LSP counts them)."""
    return _SPLIT.split(text)


Range = tuple[int, int, int, int]
"""start line, start character, end line, end character"""


def _range(rng: Any) -> Range:
    """A JSON `Range` as four non-negative integers, or InvalidChange."""
    try:
        start, end = rng["start"], rng["end"]
        values = (start["line"], start["character"], end["line"], end["character"])
    except (TypeError, KeyError):
        raise InvalidChange(f"not a range: {rng!r:.80}") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise InvalidChange(f"not a range: {rng!r:.80}")
    return values


def edit_lines(lines: list[str], rng: Range, new_text: str, encoding: Encoding) -> None:
    """Replace `rng` in place; only the lines it spans are touched.

    A character past the end of its line means the end of the line (as the LSP
    specification says); a line past the last line, or a reversed range, is an error.
    """
    start_line, start_char, end_line, end_char = rng
    if start_line >= len(lines) or end_line >= len(lines):
        raise InvalidChange(f"range {rng} is past the end ({len(lines)} lines)")
    first, last = lines[start_line], lines[end_line]
    c1 = _column(_content(first), start_char, encoding)
    c2 = _column(_content(last), end_char, encoding)
    if (end_line, c2) < (start_line, c1):
        raise InvalidChange(f"reversed range {rng}")
    pieces = split_lines(first[:c1] + new_text + last[c2:])
    if pieces[-1] == "" and end_line + 1 < len(lines):
        pieces.pop()  # the segment ended with its own line end; the next line follows
    lines[start_line : end_line + 1] = pieces
    # A lone "\r" now followed by "\n" is one line end, not two: re-split around it.
    after = start_line + len(pieces)
    if (start_line > 0 and lines[start_line - 1].endswith("\r") and pieces[0].startswith("\n")) or (
        after < len(lines) and pieces[-1].endswith("\r") and lines[after].startswith("\n")
    ):
        lines[:] = split_lines("".join(lines))


def _content(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def apply_edit(text: str, rng: Any, new_text: str, encoding: Encoding) -> str:
    """`text` with one edit (a JSON `Range`) applied, for callers that hold a whole string."""
    lines = split_lines(text)
    edit_lines(lines, _range(rng), new_text, encoding)
    return "".join(lines)


def _column(line: str, units: int, encoding: Encoding) -> int:
    if encoding is Encoding.UTF32 or line.isascii():
        return min(units, len(line))
    count = 0
    for index, char in enumerate(line):
        if count >= units:
            return index
        code = ord(char)
        if encoding is Encoding.UTF16:
            count += 2 if code > 0xFFFF else 1
        else:
            count += 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
    return len(line)


def text_in(text: str, rng: Any, encoding: Encoding) -> str | None:
    """The text a JSON `Range` covers in `text` (None if it does not fit)."""
    try:
        start_line, start_char, end_line, end_char = _range(rng)
    except InvalidChange:
        return None
    lines = split_lines(text)
    if end_line >= len(lines) or (end_line, end_char) < (start_line, start_char):
        return None
    first, last = _content(lines[start_line]), _content(lines[end_line])
    c1, c2 = _column(first, start_char, encoding), _column(last, end_char, encoding)
    if start_line == end_line:
        return first[c1:c2]
    return "".join([lines[start_line][c1:], *lines[start_line + 1 : end_line], last[:c2]])
