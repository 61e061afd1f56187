"""The document store mirrors the client exactly, or says it cannot."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lsprotocol import types as lsp

from typemux_lsp.documents import (
    ChangeOutcome,
    DocumentStore,
    Encoding,
    InvalidChange,
    apply_edit,
    offset_at,
)

URI = "file:///p/a.py"


def rng(l1: int, c1: int, l2: int, c2: int) -> lsp.Range:
    return lsp.Range(lsp.Position(l1, c1), lsp.Position(l2, c2))


def partial(r: lsp.Range, text: str) -> lsp.TextDocumentContentChangePartial:
    return lsp.TextDocumentContentChangePartial(range=r, text=text)


def open_doc(store: DocumentStore, text: str, version: int = 1) -> None:
    store.open(lsp.TextDocumentItem(uri=URI, language_id="python", version=version, text=text))


def test_astral_characters_count_two_utf16_units() -> None:
    text = 'x = "🚀"  # end\n'
    # 🚀 is at code point 5, UTF-16 units 5-6; the closing quote is unit 7.
    assert offset_at(text, lsp.Position(0, 7), Encoding.UTF16) == text.index('"', 5)
    assert offset_at(text, lsp.Position(0, 6), Encoding.UTF32) == text.index('"', 5)
    assert offset_at(text, lsp.Position(0, 9), Encoding.UTF8) == text.index('"', 5)


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
def test_invalid_ranges_raise(bad: lsp.Range) -> None:
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
    whole = lsp.TextDocumentContentChangeWholeDocument(text="two\n")
    assert store.change(doc, 4, [whole]) is ChangeOutcome.RESYNCED
    assert not doc.desynced and doc.text == "two\n"


def test_versions_seen_by_backends_increase_even_when_the_client_repeats_one() -> None:
    store = DocumentStore()
    open_doc(store, "a", version=1)
    doc = store.get(URI)
    assert doc is not None
    seen = [doc.sync_version]
    for _ in range(3):  # Claude Code: full text, version 1, every time
        store.change(doc, 1, [lsp.TextDocumentContentChangeWholeDocument(text="b")])
        seen.append(doc.sync_version)
    assert seen == [1, 2, 3, 4]
    store.change(doc, 10, [lsp.TextDocumentContentChangeWholeDocument(text="c")])
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

    def to_pos(unit: int) -> lsp.Position:
        before = units[: unit * 2].decode("utf-16-le", errors="ignore")
        lines = before.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return lsp.Position(len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2)

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
    got = apply_edit(text, lsp.Range(to_pos(start), to_pos(end)), insert, Encoding.UTF16)
    assert got == expected
