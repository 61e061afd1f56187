"""Framing and JSON: every byte sequence a client can send gives messages or errors, never a
crash, and after any malformed frame the next valid one comes through."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from typemux_lsp.jsonrpc import (
    INVALID_REQUEST,
    MAX_DEPTH,
    PARSE_ERROR,
    BadMessage,
    FrameDecoder,
    FrameError,
    decode,
    dumps,
    frame,
    peek,
    peek_backend,
    peek_response,
    splice_id,
)

GOOD = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}'


def feed(*chunks: bytes) -> list[bytes | str]:
    """Decode `chunks` in order: bodies as bytes, errors as "ERROR"."""
    decoder = FrameDecoder()
    out: list[bytes | str] = []
    for chunk in chunks:
        out += [o if isinstance(o, bytes) else "ERROR" for o in decoder.feed(chunk)]
    return out


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


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"Content-Length: 99999999999\r\n\r\n{}", id="too large"),
        pytest.param(b"Content-Length: -5\r\n\r\n{}", id="negative"),
        pytest.param(b"Content-Length: five\r\n\r\n{}", id="not a number"),
        pytest.param(b"Content-Type: text/plain\r\n\r\n{}", id="missing"),
        pytest.param(b"Content-Length: 2\n\n{}", id="bare LF line ends"),
        pytest.param(b"Content-Length: 2\r\n\n{}", id="mixed line ends"),
        pytest.param(b"Content-Length: 400\r\n\r\n{}", id="body shorter than declared"),
        pytest.param(b"Content-Length: 9\r\n\r\n{}", id="body a little shorter"),
        pytest.param(b"garbage" * 2000, id="no header at all"),
        pytest.param(b"\r\n\r\n", id="empty header"),
    ],
)
def test_one_error_for_a_malformed_frame_then_the_next_frame(bad: bytes) -> None:
    """The valid frame after any malformed one is decoded, in one feed or byte by byte."""
    stream = bad + frame(GOOD)
    assert feed(stream) == ["ERROR", GOOD]
    assert feed(*(stream[i : i + 1] for i in range(len(stream)))) == ["ERROR", GOOD]


_BODIES = st.lists(
    st.one_of(
        st.binary(max_size=40).map(lambda b: b'{"a":"' + b.hex().encode() + b'"}'),
        st.sampled_from([b"{}", b"[1]", b'{"t":"a\\nb"}', b'{"x":1}\n', b"{nope"]),
    ),
    min_size=1,
    max_size=8,
)


@given(_BODIES, st.lists(st.integers(0, 2000), max_size=6))
def test_pipelined_frames_come_out_the_same_however_the_reads_cut_them(
    bodies: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(frame(b) for b in bodies)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert feed(stream) == bodies
    assert feed(*chunks) == bodies


def test_a_body_that_swallowed_the_start_of_the_next_header_resynchronises_in_one_read() -> None:
    # (its Content-Length 5 too large: "Conte" of the next header is in it)
    swallowed = b"Content-Length: 7\r\n\r\n{}" + frame(GOOD)
    assert feed(swallowed) == ["ERROR", GOOD]
    assert feed(swallowed[:28], swallowed[28:]) == ["ERROR", GOOD]  # the first read: one "frame"


def test_a_truncated_body_is_reported_as_soon_as_the_next_header_arrives() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"Content-Length: 1000\r\n\r\n{") == []
    # The client waits for an answer; its next request is not swallowed by the first.
    out = decoder.feed(frame(GOOD))
    assert [type(o) for o in out] == [FrameError, bytes]


def test_two_malformed_frames_in_a_row_are_two_errors() -> None:
    assert feed(b"Content-Length: 2\n\n{}" + b"Content-Length: 2\n\n{}" + frame(GOOD)) == [
        "ERROR",
        "ERROR",
        GOOD,
    ]


def test_a_body_that_is_not_json_still_comes_out_as_a_body() -> None:
    # (the caller answers ParseError for it; framing was fine)
    assert feed(frame(b"{nope") + frame(GOOD)) == [b"{nope", GOOD]


@given(st.binary(max_size=300), st.lists(st.binary(max_size=50), max_size=5))
def test_random_bytes_never_raise_and_a_valid_frame_after_them_survives(
    garbage: bytes, bodies: list[bytes]
) -> None:
    dec = FrameDecoder()
    dec.feed(garbage)
    out = dec.feed(b"\r\n\r\n" + frame(GOOD))
    assert all(isinstance(o, bytes | FrameError) for o in out)


@given(st.binary(max_size=200))
def test_whatever_came_before_a_valid_frame_in_one_read_it_comes_through(garbage: bytes) -> None:
    """Bytes that are not a frame (no `\\n` to start a header in) never hide the next one."""
    garbage = garbage.replace(b"\n", b" ").replace(b"\r", b" ")
    out = FrameDecoder().feed(garbage + b"\r\n\r\n" + frame(GOOD))
    assert out[-1:] == [GOOD]


# -- bodies --------------------------------------------------------------------------------------


def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    for depth in (MAX_DEPTH + 1, 5000, 100_000):
        result = decode(b"[" * depth + b"]" * depth)
        assert isinstance(result, BadMessage) and result.code == PARSE_ERROR
        nested = b'{"id":1,"params":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
        result = decode(nested)
        assert isinstance(result, BadMessage) and result.code == PARSE_ERROR


def test_nesting_within_the_limit_is_fine() -> None:
    depth = MAX_DEPTH - 2
    body = b'{"id":1,"params":' + b"[" * depth + b"]" * depth + b"}"
    assert not isinstance(decode(body), BadMessage)


def test_json_that_is_not_an_object_is_an_invalid_request() -> None:
    for body in (b"[]", b"42", b'"x"', b"null"):
        result = decode(body)
        assert isinstance(result, BadMessage) and result.code == INVALID_REQUEST


def test_invalid_utf8_is_a_parse_error() -> None:
    result = decode(b'{"a":"\xff"}')
    assert isinstance(result, BadMessage) and result.code == PARSE_ERROR


def test_unpaired_surrogates_are_replaced_outside_the_id() -> None:
    body = b'{"id":"\\ud800x","method":"m","params":{"text":"a\\udc00b","k\\ud801":1}}'
    result = decode(body)
    assert not isinstance(result, BadMessage)
    message, forwarded = result
    assert message["id"] == "\ud800x"  # an id is echoed exactly
    assert message["params"] == {"text": "a\ufffdb", "k\ufffd": 1}
    json.loads(forwarded)  # valid JSON, and UTF-8: the backend can read it
    forwarded.decode("utf-8")


def test_a_valid_surrogate_pair_is_kept() -> None:
    body = b'{"id":1,"params":{"text":"\\ud83d\\ude80"}}'
    result = decode(body)
    assert not isinstance(result, BadMessage)
    assert result[0]["params"]["text"] == "🚀"
    assert result[1] == body  # nothing to repair: forwarded byte for byte


def test_dumps_never_fails_on_a_lone_surrogate() -> None:
    data = dumps({"jsonrpc": "2.0", "id": "\ud800", "error": {"code": 1, "message": "\udfff"}})
    assert json.loads(data)["id"] == "\ud800"


# -- client messages read for routing only (peek) ---------------------------------------------

_CHARS = st.sampled_from(["a", "é", "🚀", '"', "\\", "\n", "\x00", "\ud800", "\udc00", "/", "Z"])
_TEXT = st.lists(_CHARS, max_size=6).map("".join)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _TEXT,
)
_JSON = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=12,
)
#: a field of the routing schema: usually the right type, sometimes anything at all
_URI = st.one_of(st.just("file:///p/m.py"), _TEXT, _JSON)
_DOCUMENT = st.fixed_dictionaries(
    {}, optional={"uri": _URI, "version": st.one_of(st.integers(-5, 2**40), _JSON), "x": _JSON}
)
_PARAMS = st.one_of(
    _JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "textDocument": st.one_of(_DOCUMENT, _JSON),
            "contentChanges": st.one_of(st.lists(_JSON, max_size=3), _JSON),
            "text": st.one_of(_TEXT, _JSON),
            "position": _JSON,
        },
    ),
)
_MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.just("2.0"),
        "id": st.one_of(st.integers(-(2**80), 2**80), _TEXT, _JSON),
        "method": st.one_of(st.just("textDocument/hover"), _TEXT, _JSON),
        "params": _PARAMS,
        "result": _JSON,
    },
)


@given(_MESSAGE, st.booleans())
def test_what_peek_reads_is_what_decode_reads_and_the_bytes_go_unchanged(
    message: dict[str, Any], ascii_only: bool
) -> None:
    try:
        body = json.dumps(message, ensure_ascii=ascii_only).encode()
    except UnicodeEncodeError:  # a lone surrogate can only travel escaped
        body = json.dumps(message).encode()
    head = peek(body)
    decoded = decode(body)
    if head is None:
        return  # decode decides, as it always did
    assert not isinstance(decoded, BadMessage)
    whole, forwarded = decoded
    assert forwarded is body  # nothing was repaired: the bytes are relayed as sent
    assert head.method == whole.get("method")
    if "id" in whole:
        assert head.id == whole["id"] and type(head.id) is type(whole["id"])  # exact
    if head.params is None:
        assert whole.get("params") is None
    else:
        params: dict[str, Any] = whole["params"]
        if head.params.textDocument is None:
            assert params.get("textDocument") is None
        else:
            document: dict[str, Any] = params["textDocument"]
            assert head.params.textDocument.uri == document.get("uri")
            assert head.params.textDocument.version == document.get("version")
        assert head.params.contentChanges == params.get("contentChanges")
        assert head.params.text == params.get("text")


_PUBLISH = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0"),
        "method": st.sampled_from(["textDocument/publishDiagnostics", "x"]),
    },
    optional={
        "id": _JSON,
        "params": st.one_of(
            _JSON,
            st.fixed_dictionaries(
                {},
                optional={
                    "uri": _URI,
                    "version": st.one_of(st.integers(-5, 2**40), _JSON),
                    "diagnostics": st.one_of(st.lists(_JSON, max_size=3), _JSON),
                },
            ),
        ),
    },
)


@given(_PUBLISH)
def test_what_peek_backend_reads_is_what_decode_reads(message: dict[str, Any]) -> None:
    body = json.dumps(message).encode()
    head = peek_backend(body)
    if head is None:
        return
    decoded = decode(body)
    assert not isinstance(decoded, BadMessage) and decoded[1] is body
    whole = decoded[0]
    assert head.method == whole["method"]
    if head.params is not None:
        params: dict[str, Any] = whole["params"]
        assert head.params.uri == params.get("uri")
        assert head.params.version == params.get("version")
        assert bool(head.params.diagnostics) == bool(params.get("diagnostics"))
        if head.params.diagnostics is not None:  # each one's bytes, as sent
            assert [json.loads(bytes(d)) for d in head.params.diagnostics] == params["diagnostics"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"id":null,"method":"m"}',  # a null id: InvalidRequest is decode's
        b'{"id":1.0,"method":"m"}',
        b'{"id":true,"method":"m"}',
        b'{"id":1,"method":"m","params":[1]}',  # params by position
        b'{"id":1,"method":"m","params":{"textDocument":{"uri":7}}}',
        b'{"id":1,"method":"m","params":{"textDocument":{"uri":"\\ud800"}}}',  # repaired
        b'{"id":"\\udc00","method":"m"}',  # an id kept exactly, as only decode can
        b'{"method":"m","params":{"a":' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}}",
        b'{"method":"m","params":{"a":NaN}}',
        b'{"method":"m"} trailing',
        b'{"method":"\xff"}',
        b"[]",
    ],
)
def test_peek_leaves_every_unusual_message_to_decode(body: bytes) -> None:
    assert peek(body) is None


@pytest.mark.parametrize("msg_id", [0, -1, 2**31, 2**53 + 1, 10**30, -(10**30), "", "x"])
def test_peek_reads_any_integer_or_string_id_exactly(msg_id: int | str) -> None:
    head = peek(json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "m"}).encode())
    assert head is not None and head.id == msg_id and type(head.id) is type(msg_id)


def test_peek_reads_the_routing_fields_and_nothing_else() -> None:
    body = (
        b'{"jsonrpc":"2.0","method":"textDocument/didChange","params":{"textDocument":'
        b'{"uri":"file:///p/m.py","version":3},"contentChanges":[{"text":"\\ud83d\\ude80"}],'
        b'"unknown":{"deep":[[[1]]]}},"extra":null}'
    )
    head = peek(body)
    assert head is not None and head.method == "textDocument/didChange"
    assert head.params is not None and head.params.textDocument is not None
    assert head.params.textDocument.uri == "file:///p/m.py"
    assert head.params.textDocument.version == 3
    assert head.params.contentChanges == [{"text": "🚀"}]


# -- responses read without parsing ----------------------------------------------------------------


@given(st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=20)))
def test_peek_response_agrees_with_json(msg_id: int | str) -> None:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": msg_id, "result": None}, separators=(",", ":")
    ).encode()
    peeked = peek_response(body)
    assert peeked is None or peeked[0] == json.loads(body)["id"]


def test_peek_refuses_requests_and_other_shapes() -> None:
    assert peek_response(b'{"jsonrpc":"2.0","id":1,"method":"x"}') is None
    assert peek_response(b'{"id":1,"jsonrpc":"2.0","result":null}') is None
    assert peek_response(b'{"jsonrpc":"2.0","id":7,"result":null}') == (7, 23)
    assert peek_response(b'{"jsonrpc":"2.0","id":"a","error":{}}') == ("a", 25)


@pytest.mark.parametrize("client_id", [0, -1, 2**31, 2**53 + 1, 10**30, "x", "\ud800", 'é"\\'])
def test_splice_puts_any_client_id_back_exactly(client_id: Any) -> None:
    body = b'{"jsonrpc":"2.0","id":-17,"result":{"contents":"x"}}'
    peeked = peek_response(body)
    assert peeked is not None
    answer = json.loads(splice_id(body, peeked[1], client_id))
    assert answer == {"jsonrpc": "2.0", "id": client_id, "result": {"contents": "x"}}
