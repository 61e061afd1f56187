"""The floor for a Python hop that routes: two blocking threads that frame every message
and read what any router must read, and nothing else.

`relay.py --parse-floor` runs it as the `parse-floor` path. Client -> backend, each
message is read with the proxy's own decoder (`jsonrpc.peek`: the method, id and
document uri, msgspec with a minimal schema, the whole `decode` for anything else — a
router must find the document's uri) and looked up in a dict under a lock; backend ->
client, each response's id is read from its prefix and looked up the same way (the
proxy's own `peek_response`). What one read yields goes out
in one write, as the proxy does. So `proxy - parse-floor` is what typemux-lsp's logic
costs beyond the least a correct router in Python must do, and `parse-floor - floor`
what reading the messages costs.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from msgspec import UNSET
from thread_relay import CHUNK, run

from typemux_lsp.jsonrpc import BadMessage, decode, peek, peek_response

_lock = threading.Lock()
_pending: dict[object, str] = {}


def framed(look: Callable[[bytes], None]) -> Callable[[int, int], None]:
    """A pump that frames what it reads and shows each body to `look`."""
    return lambda src, dst: pump(src, dst, look)


def pump(src: int, dst: int, look: Callable[[bytes], None]) -> None:
    buffer = b""
    while data := os.read(src, CHUNK):
        buffer += data
        out: list[bytes] = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            length = 0
            for line in buffer[:end].split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            start = end + 4
            if len(buffer) - start < length:
                break
            body = buffer[start : start + length]
            look(body)
            out.append(buffer[:start])
            out.append(body)
            buffer = buffer[start + length :]
        if out:
            os.writev(dst, out)


def from_client(body: bytes) -> None:
    head = peek(body)
    if head is None:  # not the common shape: parsed whole, as the proxy does
        decoded = decode(body)
        if isinstance(decoded, BadMessage) or "id" not in decoded[0]:
            return
        with _lock:
            _pending[decoded[0]["id"]] = ""
        return
    params = head.params
    document = params.textDocument if params is not None else None
    uri = document.uri if document is not None else None
    with _lock:
        if head.id is not UNSET:
            _pending[head.id] = str(uri)


def from_backend(body: bytes) -> None:
    peeked = peek_response(body)
    if peeked is not None:
        with _lock:
            _pending.pop(peeked[0], None)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: parse_relay.py COMMAND [ARG...]")
    raise SystemExit(run(sys.argv[1:], framed(from_client), framed(from_backend)))
