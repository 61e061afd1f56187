"""The document store mirrors the client exactly, or says it cannot."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from typemux_lsp.documents import (
    ChangeOutcome,
    DocumentStore,
    Encoding,
    InvalidChange,
    apply_edit,
    split_lines,
)

URI = "file:///p/a.py"


class Pos(NamedTuple):
    line: int
    character: int


def span(start: Pos, end: Pos) -> dict[str, Any]:
    return rng(start.line, start.character, end.line, end.character)


def rng(l1: int, c1: int, l2: int, c2: int) -> dict[str, Any]:
    return {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}}


def partial(r: dict[str, Any], text: str) -> dict[str, Any]:
    return {"range": r, "text": text}


def whole(text: str) -> dict[str, Any]:
    return {"text": text}


def open_doc(store: DocumentStore, text: str, version: int = 1) -> None:
    store.open(URI, "python", version, text)


def test_astral_characters_count_two_utf16_units() -> None:
    text = 'x = "🚀"  # end\n'
    # 🚀 is at code point 5: UTF-16 units 5-6, UTF-8 bytes 5-8; the closing quote follows.
    for encoding, unit in ((Encoding.UTF16, 7), (Encoding.UTF32, 6), (Encoding.UTF8, 9)):
        edited = apply_edit(text, rng(0, unit, 0, unit), "|", encoding)
        assert edited == 'x = "🚀|"  # end\n', encoding


def test_incremental_edit_after_non_ascii_text() -> None:
    store = DocumentStore(Encoding.UTF16)
    open_doc(store, 'a = "π 🚀"\nb = 1\n')
    doc = store.get(URI)
    assert doc is not None
    # a=0 ␠=1 '='=2 ␠=3 "=4 π=5 ␠=6 🚀=7,8 "=9: unit 10 is after the closing quote
    outcome = store.change(doc, 2, [partial(rng(0, 10, 0, 10), " ok")])
    assert outcome is ChangeOutcome.APPLIED
    assert doc.text == 'a = "π 🚀" ok\nb = 1\n'


def test_character_past_line_end_clamps_to_the_line_end() -> None:
    assert apply_edit("ab\ncd", rng(0, 99, 0, 99), "!", Encoding.UTF16) == "ab!\ncd"


def test_crlf_and_cr_line_endings() -> None:
    assert apply_edit("a\r\nb\rc", rng(2, 0, 2, 1), "C", Encoding.UTF16) == "a\r\nb\rC"


@pytest.mark.parametrize(
    "bad", [rng(5, 0, 5, 0), rng(0, 2, 0, 1), rng(1, 0, 0, 0), rng(2, 0, 2, 0)]
)
def test_invalid_ranges_raise(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidChange):
        apply_edit("ab\ncd", bad, "x", Encoding.UTF16)


def test_a_bad_edit_desyncs_until_full_text_arrives() -> None:
    store = DocumentStore()
    open_doc(store, "one\n")
    doc = store.get(URI)
    assert doc is not None
    assert store.change(doc, 2, [partial(rng(9, 0, 9, 0), "x")]) is ChangeOutcome.DESYNCED
    assert doc.desynced and doc.text == "one\n"
    assert store.change(doc, 3, [partial(rng(0, 0, 0, 0), "y")]) is ChangeOutcome.IGNORED
    assert store.change(doc, 4, [whole("two\n")]) is ChangeOutcome.RESYNCED
    assert doc.text == "two\n"
    assert not doc.desynced


def test_versions_seen_by_backends_increase_even_when_the_client_repeats_one() -> None:
    store = DocumentStore()
    open_doc(store, "a", version=1)
    doc = store.get(URI)
    assert doc is not None
    seen = [doc.sync_version]
    for _ in range(3):  # Claude Code: full text, version 1, every time
        store.change(doc, 1, [whole("b")])
        seen.append(doc.sync_version)
    assert seen == [1, 2, 3, 4]
    store.change(doc, 10, [whole("c")])
    assert doc.sync_version == 10  # the client's own version is kept while it increases


def test_reopen_keeps_versions_increasing() -> None:
    store = DocumentStore()
    open_doc(store, "a", version=5)
    open_doc(store, "b", version=1)
    doc = store.get(URI)
    assert doc is not None and doc.sync_version == 6 and doc.text == "b"


_text = st.text(alphabet=st.sampled_from(list("ab \n\r🚀é")), max_size=40)


@given(_text, st.integers(0, 60), st.integers(0, 60), _text)
def test_edits_match_a_utf16_reference_model(text: str, a: int, b: int, insert: str) -> None:
    """Apply an edit given as UTF-16 offsets; the store must agree with slicing UTF-16 text."""
    units = text.encode("utf-16-le")
    n = len(units) // 2
    start, end = sorted((min(a, n), min(b, n)))

    def to_pos(unit: int) -> Pos:
        before = units[: unit * 2].decode("utf-16-le", errors="ignore")
        lines = before.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return Pos(len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2)

    # only test offsets on character boundaries and not inside a CRLF pair
    for unit in (start, end):
        prefix = units[: unit * 2]
        if prefix.decode("utf-16-le", errors="ignore").encode("utf-16-le") != prefix:
            return
        if text[: len(prefix.decode("utf-16-le"))].endswith("\r") and text[
            len(prefix.decode("utf-16-le")) :
        ].startswith("\n"):
            return
    expected = (
        units[: start * 2].decode("utf-16-le") + insert + units[end * 2 :].decode("utf-16-le")
    )
    got = apply_edit(text, span(to_pos(start), to_pos(end)), insert, Encoding.UTF16)
    assert got == expected


def reference_apply(text: str, r: tuple[Pos, Pos], new: str) -> str:
    """An independent model: offsets found by scanning the whole text (UTF-16 units)."""

    def offset(pos: Pos) -> int:
        line_starts = [0]
        i = 0
        while i < len(text):
            if text[i] == "\r" and text[i + 1 : i + 2] == "\n":
                i += 2
                line_starts.append(i)
                continue
            if text[i] in "\r\n":
                line_starts.append(i + 1)
            i += 1
        if pos.line >= len(line_starts):
            raise InvalidChange("past the end")
        start = line_starts[pos.line]
        end = line_starts[pos.line + 1] if pos.line + 1 < len(line_starts) else len(text)
        line = text[start:end].rstrip("\r\n")
        units = 0
        for index, char in enumerate(line):
            if units >= pos.character:
                return start + index
            units += 2 if ord(char) > 0xFFFF else 1
        return start + len(line)

    a, b = offset(r[0]), offset(r[1])
    if b < a:
        raise InvalidChange("reversed")
    return text[:a] + new + text[b:]


_pos = st.builds(Pos, st.integers(0, 6), st.integers(0, 8))


@given(
    _text,
    st.lists(st.tuples(_pos, _pos, _text), min_size=1, max_size=6),
)
def test_line_edits_agree_with_a_whole_text_model(
    text: str, edits: list[tuple[Pos, Pos, str]]
) -> None:
    store = DocumentStore(Encoding.UTF16)
    open_doc(store, text)
    doc = store.get(URI)
    assert doc is not None
    expected = text
    for version, (start, end, new) in enumerate(edits, start=2):
        change = partial(span(start, end), new)
        try:
            expected = reference_apply(expected, (start, end), new)
        except InvalidChange:
            assert store.change(doc, version, [change]) is ChangeOutcome.DESYNCED
            return
        assert store.change(doc, version, [change]) is ChangeOutcome.APPLIED
        assert doc.text == expected
        assert split_lines(doc.text) == doc._lines
