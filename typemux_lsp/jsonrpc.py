"""JSON-RPC over LSP's Content-Length framing, on asyncio pipes.

The relay sits on the hot path of every message, so the wire layer is built on
`asyncio.Protocol` callbacks: a frame is decoded and dispatched inside
`data_received`, with no task, future or thread hop per message. pygls's own
`start_io` reads stdin through a thread pool and its typed round trip re-serialises
every payload; both cost several times the relay's latency budget (see
`bench/relay.py`). Bodies are kept as the original bytes so a message the proxy
does not need to change is forwarded byte for byte.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from pygls.exceptions import (
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcMethodNotFound,
    JsonRpcParseError,
    JsonRpcRequestCancelled,
)

logger = logging.getLogger(__name__)

# JSON-RPC and LSP error codes, named once; pygls's exception classes carry the same numbers.
PARSE_ERROR: Final = JsonRpcParseError.CODE
INVALID_REQUEST: Final = JsonRpcInvalidRequest.CODE
METHOD_NOT_FOUND: Final = JsonRpcMethodNotFound.CODE
INVALID_PARAMS: Final = JsonRpcInvalidParams.CODE
INTERNAL_ERROR: Final = JsonRpcInternalError.CODE
REQUEST_CANCELLED: Final = JsonRpcRequestCancelled.CODE
SERVER_NOT_INITIALIZED: Final = -32002
CONTENT_MODIFIED: Final = -32801
REQUEST_FAILED: Final = -32803

#: Below DEBUG: every message body is logged (document text included), nothing else is.
TRACE: Final = 5
logging.addLevelName(TRACE, "TRACE")

#: A single message larger than this is refused (and skipped) rather than buffered.
MAX_MESSAGE_BYTES: Final = 256 * 1024 * 1024

MsgId = int | str
Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FrameError:
    """A frame that could not be decoded; the stream resynchronises after it."""

    reason: str


class FrameDecoder:
    """Incremental decoder of Content-Length frames.

    Never raises on bad input: a header block without a usable Content-Length is
    reported as a `FrameError` and skipped, so one bad frame cannot take down the
    connection (the reference tool exits on it).
    """

    __slots__ = ("_buf", "_need")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = -1  # body length once the header is parsed, else -1

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        buf = self._buf
        if not buf and self._need < 0:
            # The common case: exactly one whole frame with the usual header, no copy.
            match = _PLAIN_HEADER.match(data)
            if match is not None and len(data) - match.end() == int(match[1]):
                return [data[match.end() :]]
        buf += data
        out: list[bytes | FrameError] = []
        pos = 0
        while True:
            if self._need < 0:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if len(buf) - pos > 64 * 1024:  # a "header" this long is garbage
                        out.append(FrameError("header too long, no blank line"))
                        pos = len(buf)
                    break
                length = _content_length(bytes(buf[pos:end]))
                pos = end + 4
                if isinstance(length, FrameError):
                    out.append(length)
                    continue
                self._need = length
            if len(buf) - pos < self._need:
                break
            out.append(bytes(buf[pos : pos + self._need]))
            pos += self._need
            self._need = -1
        if pos:
            del buf[:pos]
        return out


_PLAIN_HEADER = re.compile(rb"Content-Length: (\d{1,9})\r\n\r\n")


def _content_length(header: bytes) -> int | FrameError:
    if header.startswith(b"Content-Length: ") and header[16:].isdigit():
        length = int(header[16:])
        if length <= MAX_MESSAGE_BYTES:
            return length
    for line in header.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return FrameError(f"bad Content-Length {value.strip()[:40]!r}")
            if length < 0 or length > MAX_MESSAGE_BYTES:
                return FrameError(f"Content-Length {length} out of range")
            return length
    return FrameError(f"no Content-Length in header {header[:80]!r}")


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def dumps(message: Message) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def response(msg_id: MsgId | None, result: Any) -> Message:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def error_response(msg_id: MsgId | None, code: int, message: str, data: Any = None) -> Message:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": err}


def notification(method: str, params: Any) -> Message:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def request(msg_id: MsgId, method: str, params: Any) -> Message:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}


#: json.loads without its per-call encoding sniffing: LSP bodies are UTF-8.
_decode = json.JSONDecoder().decode

_RESPONSE_PREFIX: Final = b'{"jsonrpc":"2.0","id":'


def peek_response_id(body: bytes) -> MsgId | None:
    """The id of a compact response body, without parsing the (possibly huge) result.

    Backends serialise responses as ``{"jsonrpc":"2.0","id":N,"result"|"error":...}``.
    Recognising that prefix lets the relay forward a 1 MB completion list without
    decoding it; any other shape returns None and the caller parses the body.
    """
    if not body.startswith(_RESPONSE_PREFIX):
        return None
    start = len(_RESPONSE_PREFIX)
    comma = body.find(b",", start, start + 80)
    if comma < 0:
        return None
    rest = body[comma + 1 : comma + 10]
    if not (rest.startswith(b'"result"') or rest.startswith(b'"error"')):
        return None
    token = body[start:comma]
    if token[:1] == b'"':
        if len(token) < 2 or token[-1:] != b'"' or b"\\" in token:
            return None
        return token[1:-1].decode()
    try:
        return int(token)
    except ValueError:
        return None


class Channel:
    """One LSP peer on a pair of byte streams: decode frames in, encode frames out.

    `on_message(body, message)` gets each body with its decoded JSON. With
    `on_response`, a response whose id `peek_response_id` can read goes there as
    `(body, id)` undecoded: the relay forwards it without parsing the result.
    `on_bad_frame(code, reason)` gets undecodable frames (ParseError) and bodies that
    are JSON but not a JSON-RPC object (InvalidRequest).
    """

    __slots__ = ("_decoder", "_on_bad", "_on_message", "_on_response", "_write", "closed")

    def __init__(
        self,
        write: Callable[[bytes], None],
        on_message: Callable[[bytes, Message], None],
        on_bad_frame: Callable[[int, str], None],
        *,
        on_response: Callable[[bytes, MsgId], bool] | None = None,
    ) -> None:
        self._decoder = FrameDecoder()
        self._write = write
        self._on_message = on_message
        self._on_response = on_response
        self._on_bad = on_bad_frame
        self.closed = False

    def data_received(self, data: bytes) -> None:
        on_response = self._on_response
        for item in self._decoder.feed(data):
            if isinstance(item, FrameError):
                self._on_bad(PARSE_ERROR, item.reason)
                continue
            if on_response is not None:
                msg_id = peek_response_id(item)
                if msg_id is not None and on_response(item, msg_id):
                    continue
            try:
                message = _decode(item.decode())
            except ValueError as exc:  # UnicodeDecodeError is one too
                self._on_bad(PARSE_ERROR, f"body is not JSON ({exc})")
                continue
            if not isinstance(message, dict):
                self._on_bad(INVALID_REQUEST, f"JSON but not a JSON-RPC message: {item[:80]!r}")
                continue
            try:
                self._on_message(item, message)
            except Exception:  # a handler bug must not kill the connection
                logger.exception("error handling message %.200r", item)

    def send_raw(self, body: bytes) -> None:
        if not self.closed:
            self._write(frame(body))

    def send(self, message: Message) -> None:
        self.send_raw(dumps(message))
