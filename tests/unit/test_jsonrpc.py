"""Framing: every byte sequence a client can send gives messages or errors, never a crash."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from typemux_lsp.jsonrpc import FrameDecoder, FrameError, frame, peek_response_id


def test_frames_split_at_every_byte_boundary() -> None:
    bodies = [b'{"a":1}', '{"é":"🚀"}'.encode(), b"{}"]
    stream = b"".join(frame(b) for b in bodies)
    for cut in range(len(stream)):
        dec = FrameDecoder()
        out = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert out == bodies


def test_header_names_are_case_insensitive_and_extra_headers_allowed() -> None:
    data = b"content-length: 2\r\nContent-Type: application/vscode-jsonrpc\r\n\r\n{}"
    assert FrameDecoder().feed(data) == [b"{}"]


def test_bad_headers_are_reported_and_the_stream_recovers() -> None:
    dec = FrameDecoder()
    out = dec.feed(b"Content-Length: x\r\n\r\n" + b"Nope: 1\r\n\r\n" + frame(b"{}"))
    assert [type(o) for o in out] == [FrameError, FrameError, bytes]
    assert out[-1] == b"{}"


def test_oversized_length_is_refused() -> None:
    out = FrameDecoder().feed(b"Content-Length: 999999999999\r\n\r\n")
    assert isinstance(out[0], FrameError)


@given(st.binary(max_size=300), st.lists(st.binary(max_size=50), max_size=5))
def test_random_bytes_never_raise_and_valid_frames_after_garbage_survive(
    garbage: bytes, bodies: list[bytes]
) -> None:
    dec = FrameDecoder()
    dec.feed(garbage)
    # After a blank line any decoder state is reset or waiting for a body: a well-formed
    # frame sent once the garbage is flushed comes through (possibly after a FrameError).
    out = dec.feed(b"\r\n\r\n" + b"".join(frame(b) for b in bodies))
    assert all(isinstance(o, (bytes, FrameError)) for o in out)


@given(st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=20)))
def test_peek_response_id_agrees_with_json(msg_id: int | str) -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": msg_id, "result": None}, separators=(",", ":")
    ).encode()
    peeked = peek_response_id(body)
    assert peeked is None or peeked == json.loads(body)["id"]


def test_peek_refuses_requests_and_other_shapes() -> None:
    assert peek_response_id(b'{"jsonrpc":"2.0","id":1,"method":"x"}') is None
    assert peek_response_id(b'{"id":1,"jsonrpc":"2.0","result":null}') is None
    assert peek_response_id(b'{"jsonrpc":"2.0","id":7,"result":null}') == 7
    assert peek_response_id(b'{"jsonrpc":"2.0","id":"a","error":{}}') == "a"
