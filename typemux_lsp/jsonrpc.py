"""JSON-RPC over LSP's Content-Length framing: bytes in, messages or errors out.

This layer knows no LSP. It never raises on input: a frame that cannot be decoded
becomes a `FrameError` (the caller answers ParseError with id null) and the decoder
resynchronises at the next valid header, wherever that is — even inside what a wrong
Content-Length made it take for a body. That is safe because a JSON body can never
hold `Content-Length: N` followed by a raw line end: outside strings JSON has no
letters, and inside strings line ends are escaped.

Bodies are kept as the original bytes so a message the proxy does not change is
forwarded byte for byte. Two readers decode only what routing needs: `peek` reads a
client message's method, id and document (msgspec, a minimal typed schema: everything
else is validated and skipped, never built), and `peek_response` a response's id
without parsing a possibly huge result. Whatever they do not accept is `decode`d whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from msgspec import UNSET, UnsetType

# JSON-RPC and LSP error codes. pygls's exception classes carry the same numbers, but
# importing pygls.exceptions loads lsprotocol: ~0.4 s of start-up.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
SERVER_NOT_INITIALIZED: Final = -32002
REQUEST_FAILED: Final = -32803
CONTENT_MODIFIED: Final = -32801
REQUEST_CANCELLED: Final = -32800

#: Below DEBUG: every message body is logged (document text included), nothing else is.
TRACE: Final = 5

#: A single message larger than this is refused (and skipped) rather than buffered.
MAX_MESSAGE_BYTES: Final = 256 * 1024 * 1024
#: Header bytes without a blank line beyond this are garbage.
MAX_HEADER_BYTES: Final = 4096
#: Nesting deeper than this is refused: no LSP message comes close, and the Rust
#: backends (serde_json stops at 128) would fail on what Python's parser accepts.
MAX_DEPTH: Final = 100

MsgId = int | str
Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FrameError:
    """A frame that could not be decoded; the stream resynchronises after it."""

    reason: str


_PLAIN_HEADER: Final = re.compile(rb"Content-Length: (\d{1,9})\r\n\r\n")
#: The header field that starts a frame: where the decoder resynchronises.
_LENGTH_FIELD: Final = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
#: `Content-Length: N` and a raw line end: never inside a JSON body, so a body holding
#: it was cut short (its Content-Length was too large) and the next frame starts there.
_HEADER_IN_BODY: Final = re.compile(rb"content-length[ \t]*:[ \t]*\d+[ \t]*\r?\n", re.IGNORECASE)
#: The end of a header block: CRLF CRLF, or a malformed variant with bare LFs.
_BLANK_LINE: Final = re.compile(rb"\r?\n\r?\n")
#: The start of a header cut off by the end of a body: any prefix of `Content-Length: N`.
_HEADER_STARTS_AT_END: Final = re.compile(
    b"con"
    + b"".join(b"(?:" + re.escape(bytes([c])) for c in b"tent-length")
    + rb"(?:[ \t]*:[ \t]*\d*[ \t]*\r?)?"
    + b")?" * len(b"tent-length")
    + rb"\Z",
    re.IGNORECASE,
)


class FrameDecoder:
    """Incremental decoder of Content-Length frames that always resynchronises.

    - A header block without a usable Content-Length (missing, negative, not a number,
      too large) is one error; the bytes after it are skipped until a header starts.
    - A header with a usable length but bare-LF line ends is one error; its body is
      skipped.
    - A body that holds the start of the next frame (its Content-Length was too large)
      is one error, and decoding restarts at that frame at once.
    - Garbage right after an error belongs to that error: it is not reported again.
    """

    __slots__ = ("_buf", "_keep", "_need", "_quiet", "_scanned")

    def __init__(self) -> None:
        self._buf = bytearray()
        #: body bytes still to read (or to skip); -1 while reading a header
        self._need = -1
        #: whether the body being read is kept (False: skipping a malformed frame's body)
        self._keep = True
        #: how much of the pending body was already searched for a header
        self._scanned = 0
        self._quiet = False

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        out: list[bytes | FrameError] = []
        if not self._buf and self._need < 0:
            # The common case: whole frames with the usual header (one, or many when the
            # peer pipelines), each body cut straight from `data`. A body the general path
            # would look into (one holding a line end that may start a header, one not
            # ending as a JSON-RPC message does) goes to it, from its header on.
            pos, size = 0, len(data)
            while (match := _PLAIN_HEADER.match(data, pos)) is not None:
                start = match.end()
                end = start + int(match[1])
                if end > size:
                    break
                body = data[start:end]
                if not body.endswith((b"}", b"]")) or (
                    b"\n" in body and _HEADER_IN_BODY.search(body) is not None
                ):
                    break
                out.append(body)
                pos = end
            if out:
                self._quiet = False
                if pos == size:
                    return out
                data = data[pos:]
        self._buf += data
        pos = 0
        while True:
            step = self._body(pos, out) if self._need >= 0 else self._header(pos, out)
            if step is None:
                break
            pos = step
        if pos:
            del self._buf[:pos]
        return out

    def _error(self, out: list[bytes | FrameError], reason: str) -> None:
        if not self._quiet:
            out.append(FrameError(reason))
        self._quiet = True

    def _header(self, pos: int, out: list[bytes | FrameError]) -> int | None:
        """Decode the header block at `pos`; the new position, or None for more input."""
        buf = self._buf
        blank = _BLANK_LINE.search(buf, pos)
        if blank is None:
            if len(buf) - pos <= MAX_HEADER_BYTES:
                return None
            self._error(out, f"{len(buf) - pos} bytes that are not a message header")
            starts = [m.start() for m in _LENGTH_FIELD.finditer(buf, pos)]
            # Keep what may still start a header: the last field name, or a cut-off one.
            keep_from = starts[-1] if starts else len(buf) - 20
            return keep_from if keep_from > pos else None
        block = bytes(buf[pos : blank.start()])
        clean_end = blank.group() == b"\r\n\r\n"
        length = _content_length(block)
        if isinstance(length, int) and clean_end:
            return self._start_body(blank.end(), length, keep=True)
        # A valid header may start later in the block: the bytes before it are garbage.
        starts = [m.start() for m in _LENGTH_FIELD.finditer(block, 1)]
        if starts and clean_end:
            tail_length = _content_length(block[starts[-1] :])
            if isinstance(tail_length, int):
                self._error(out, f"bytes that are not a message: {block[:60]!r}")
                return self._start_body(blank.end(), tail_length, keep=True)
        if isinstance(length, int):
            self._error(out, "header lines must end with CRLF (\\r\\n)")
            return self._start_body(blank.end(), length, keep=False)
        self._error(out, length.reason)
        return blank.end()

    def _start_body(self, pos: int, length: int, *, keep: bool) -> int:
        self._need = length
        self._keep = keep
        self._scanned = 0
        if keep:
            self._quiet = False
        return pos

    def _body(self, pos: int, out: list[bytes | FrameError]) -> int | None:
        buf = self._buf
        end = pos + self._need
        have = min(len(buf), end)
        scan_from = max(pos, pos + self._scanned - 40)
        if buf.find(b"\n", scan_from, have) >= 0:
            cut = _HEADER_IN_BODY.search(buf, scan_from, have)
            if cut is not None:
                if self._keep:
                    self._error(
                        out,
                        f"a body shorter than its Content-Length ({self._need} bytes): the "
                        "next message starts inside it",
                    )
                self._need = -1
                self._quiet = False
                return cut.start()
        if len(buf) < end:
            self._scanned = have - pos
            return None
        body = bytes(buf[pos:end])
        if self._keep and not body.rstrip().endswith((b"}", b"]")):
            # Not a JSON-RPC message; if it ends with the start of a header, the next frame
            # was cut into it: resynchronise there rather than lose that frame too.
            cut_at = _HEADER_STARTS_AT_END.search(body)
            if cut_at is not None:
                self._error(out, f"a body shorter than its Content-Length ({self._need} bytes)")
                self._need = -1
                self._quiet = False
                return pos + cut_at.start()
        if self._keep:
            out.append(body)
        self._need = -1
        self._quiet = False
        return end


def _content_length(header: bytes) -> int | FrameError:
    """The Content-Length of a header block whose fields are well formed, else why not."""
    if header.startswith(b"Content-Length: ") and header[16:].isdigit():
        length = int(header[16:])
        if length <= MAX_MESSAGE_BYTES:
            return length
        return FrameError(f"Content-Length {length} is larger than {MAX_MESSAGE_BYTES}")
    found: int | FrameError = FrameError(f"no Content-Length in header {header[:80]!r}")
    for line in header.replace(b"\r\n", b"\n").split(b"\n"):
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            return FrameError(f"not a header line: {line[:80]!r}")
        if name.strip().lower() == b"content-length":
            text = value.strip()
            if not text.isdigit():
                return FrameError(f"Content-Length {text[:40]!r} is not a number")
            length = int(text)
            if length > MAX_MESSAGE_BYTES:
                return FrameError(f"Content-Length {length} is larger than {MAX_MESSAGE_BYTES}")
            found = length
    return found


# -- bodies ------------------------------------------------------------------------------------

#: json.loads without its per-call encoding sniffing: LSP bodies are UTF-8.
_decode = json.JSONDecoder().decode
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class BadMessage:
    """A body that is not a usable JSON-RPC message: the error to answer with id null."""

    code: int
    reason: str


def decode(body: bytes) -> tuple[Message, bytes] | BadMessage:
    """The message in `body`, and the body to forward (a new one if it had to be repaired).

    Unpaired UTF-16 surrogates (`"\\ud800"` is valid JSON, but no UTF-8 text) are replaced
    by U+FFFD everywhere but in the id: an edit is never lost to an encoding error, and
    positions do not move (both are one UTF-16 unit, three UTF-8 bytes).
    """
    try:
        message = _decode(body.decode("utf-8"))
    except RecursionError:
        return BadMessage(PARSE_ERROR, f"JSON nested more than {MAX_DEPTH} levels deep")
    except ValueError as exc:  # UnicodeDecodeError is one too
        return BadMessage(PARSE_ERROR, f"body is not JSON ({exc})")
    if (body.count(b"[") + body.count(b"{") > MAX_DEPTH) and _too_deep(message):
        return BadMessage(PARSE_ERROR, f"JSON nested more than {MAX_DEPTH} levels deep")
    if not isinstance(message, dict):
        return BadMessage(INVALID_REQUEST, f"JSON but not a JSON-RPC message: {body[:80]!r}")
    if b"\\ud" in body or b"\\uD" in body:
        repaired = _repair_surrogates(message)
        if repaired:
            return message, dumps(message)
    return message, body


class DocumentHead(msgspec.Struct, gc=False):
    """`params.textDocument`, as far as routing and document sync read it."""

    uri: str | None = None
    version: int | None = None


class ParamsHead(msgspec.Struct, gc=False):
    """`params`, as far as routing and document sync read it."""

    textDocument: DocumentHead | None = None
    contentChanges: list[Any] | None = None
    text: str | None = None


class Head(msgspec.Struct, gc=False):
    """What the relay reads of a client message to route it; the rest stays in the bytes."""

    method: str | None = None
    #: the request id, exactly as sent; UNSET for a notification
    id: int | str | UnsetType = UNSET
    params: ParamsHead | None = None


_decode_head = msgspec.json.Decoder(Head).decode


class PublishHead(msgspec.Struct, gc=False):
    """`params` of a backend's publishDiagnostics, as far as relaying it reads them."""

    uri: str | None = None
    version: int | None = None
    #: each diagnostic validated and kept as its bytes, never built
    diagnostics: list[msgspec.Raw] | None = None


class BackendHead(msgspec.Struct, gc=False):
    """What the relay reads of a backend message that is not a compact response."""

    method: str | None = None
    id: int | str | UnsetType = UNSET
    params: PublishHead | None = None


_decode_backend_head = msgspec.json.Decoder(BackendHead).decode


def peek(body: bytes) -> Head | None:
    """The routing fields of a client message, or None: `decode` it whole.

    None for anything outside the common shapes — fields of other types (an id that is
    null, a float or a bool; params that are an array), more brackets than `MAX_DEPTH`
    (maybe too deep: `decode` measures), a lone surrogate (msgspec refuses it; `decode`
    repairs it), not JSON — so every guard of `decode` holds: what `peek` accepts, `decode`
    would have accepted unchanged. Integer ids of any size are exact.
    """
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        return None
    try:
        return _decode_head(body)
    except (msgspec.DecodeError, RecursionError):  # (a ValidationError is a DecodeError)
        return None


def peek_backend(body: bytes) -> BackendHead | None:
    """`peek` for what a backend sends (a publishDiagnostics is the common case), with the
    same guarantee: None, and `decode` decides, for anything outside the common shapes."""
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        return None
    try:
        return _decode_backend_head(body)
    except (msgspec.DecodeError, RecursionError):
        return None


def _too_deep(obj: Any, limit: int = MAX_DEPTH) -> bool:
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False


def _repair_surrogates(message: Message) -> bool:
    """Replace unpaired surrogates in every string except the id; whether any was found."""
    found = False

    def fix(node: Any) -> Any:
        nonlocal found
        if isinstance(node, str):
            if _LONE_SURROGATE.search(node):
                found = True
                return _LONE_SURROGATE.sub("\ufffd", node)
            return node
        if isinstance(node, dict):
            return {fix(k): fix(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    for key in list(message):
        if key != "id":
            value = fix(message.pop(key))
            message[fix(key)] = value
    return found


def dumps(message: Message) -> bytes:
    """Compact UTF-8 JSON; strings that cannot be UTF-8 (a client's id holding a lone
    surrogate) are written as JSON escapes, so an answer can always be encoded."""
    try:
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode()


def frame_header(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body)


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


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


def valid_id(msg_id: Any) -> bool:
    return isinstance(msg_id, int | str) and not isinstance(msg_id, bool)


# -- responses, unparsed -----------------------------------------------------------------------

_RESPONSE_PREFIX: Final = b'{"jsonrpc":"2.0","id":'
_ID_START: Final = len(_RESPONSE_PREFIX)


def peek_response(body: bytes) -> tuple[MsgId, int] | None:
    """The id of a compact response body and where its token ends, without parsing the
    (possibly huge) result.

    All four backends write responses as ``{"jsonrpc":"2.0","id":N,"result"|"error":...}``.
    Recognising that prefix lets the relay forward a 1 MB completion list without decoding
    it, and put the client's own id in place of the one the backend saw by splicing
    ``body[:_ID_START] + client_id + body[end:]``. Any other shape returns None: the caller
    parses the body.
    """
    if not body.startswith(_RESPONSE_PREFIX):
        return None
    comma = body.find(b",", _ID_START, _ID_START + 80)
    if comma < 0:
        return None
    rest = body[comma + 1 : comma + 9]
    if not (rest.startswith(b'"result"') or rest.startswith(b'"error"')):
        return None
    token = body[_ID_START:comma]
    if token[:1] == b'"':
        if len(token) < 2 or token[-1:] != b'"' or b"\\" in token:
            return None
        return token[1:-1].decode(errors="replace"), comma
    try:
        return int(token), comma
    except ValueError:
        return None


def error_code(body: bytes, id_end: int | None = None) -> int | None:
    """The error code of a response body; None for a result (or no response at all).
    With `id_end` (from `peek_response`) a result is told apart without parsing it."""
    if id_end is not None and not body.startswith(b'"error"', id_end + 1):
        return None
    if b'"error"' not in body:
        return None
    try:
        message = json.loads(body)
    except ValueError:
        return None
    error = message.get("error") if isinstance(message, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def splice_id(body: bytes, id_end: int, msg_id: MsgId) -> bytes:
    """`body` (a response `peek_response` read) with `msg_id` in place of its id."""
    return b"%s%s%s" % (body[:_ID_START], dumps_id(msg_id), body[id_end:])


def dumps_id(msg_id: MsgId | None) -> bytes:
    return json.dumps(msg_id).encode()
