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
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types as lsp

from .venv import Lookup, Venv, uri_to_path

_EOL = re.compile(r"\r\n|\r|\n")


class InvalidChange(ValueError):
    """A didChange range that does not fit the document."""


class Encoding(enum.StrEnum):
    UTF8 = "utf-8"
    UTF16 = "utf-16"
    UTF32 = "utf-32"


@dataclass(slots=True, eq=False)
class Document:
    uri: str
    language_id: str
    text: str
    client_version: int
    #: The version backends see: the client's while it increases, else one more than
    #: the last (Claude Code sends version 1 with every change).
    sync_version: int
    path: Path | None
    venv: Venv | None = None
    lookup: Lookup | None = None
    #: monotonic time of the last venv lookup; negative lookups are always redone
    checked_at: float = float("-inf")
    #: set when an edit could not be applied: backends must not get this text
    desynced: bool = False

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
    def __init__(self, encoding: Encoding = Encoding.UTF16) -> None:
        self.encoding = encoding
        self._docs: dict[str, Document] = {}

    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self) -> Iterator[Document]:
        return iter(list(self._docs.values()))

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def open(self, item: lsp.TextDocumentItem) -> Document:
        old = self._docs.get(item.uri)
        sync = item.version if old is None else max(item.version, old.sync_version + 1)
        doc = Document(
            uri=item.uri,
            language_id=item.language_id,
            text=item.text,
            client_version=item.version,
            sync_version=sync,
            path=uri_to_path(item.uri),
        )
        self._docs[item.uri] = doc
        return doc

    def close(self, uri: str) -> Document | None:
        return self._docs.pop(uri, None)

    def change(
        self,
        doc: Document,
        version: int,
        changes: Sequence[lsp.TextDocumentContentChangeEvent],
    ) -> ChangeOutcome:
        """Apply the changes in order; all or nothing."""
        text = doc.text
        resynced = False
        for change in changes:
            if isinstance(change, lsp.TextDocumentContentChangeWholeDocument):
                text, resynced = change.text, doc.desynced or resynced
                continue
            if doc.desynced and not resynced:
                return ChangeOutcome.IGNORED
            try:
                text = apply_edit(text, change.range, change.text, self.encoding)
            except InvalidChange:
                doc.desynced = True
                doc.next_version(version)
                return ChangeOutcome.DESYNCED
        doc.text = text
        doc.next_version(version)
        if resynced:
            doc.desynced = False
            return ChangeOutcome.RESYNCED
        return ChangeOutcome.APPLIED


def apply_edit(text: str, rng: lsp.Range, new_text: str, encoding: Encoding) -> str:
    start = offset_at(text, rng.start, encoding)
    end = offset_at(text, rng.end, encoding)
    if end < start:
        raise InvalidChange(f"reversed range {rng}")
    return text[:start] + new_text + text[end:]


def offset_at(text: str, pos: lsp.Position, encoding: Encoding) -> int:
    """The string index of an LSP position.

    A character past the end of its line means the end of the line (as the LSP
    specification says); a line past the last line is an error.
    """
    if pos.line < 0 or pos.character < 0:
        raise InvalidChange(f"negative position {pos}")
    line_start = 0
    if pos.line:
        seen = 0
        for seen, match in enumerate(_EOL.finditer(text), start=1):
            if seen == pos.line:
                line_start = match.end()
                break
        else:
            raise InvalidChange(f"line {pos.line} is past the end ({seen + 1} lines)")
    eol = _EOL.search(text, line_start)
    line_end = eol.start() if eol else len(text)
    line = text[line_start:line_end]
    return line_start + _column(line, pos.character, encoding)


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
