"""The floor for a Python hop that routes: two blocking threads that frame every message
and read what any router must read, and nothing else.

`relay.py --parse-floor` runs it as the `parse-floor` path. Client -> backend, each
message is parsed (`json.loads`: a router must find the document's uri) and looked up in
a dict under a lock; backend -> client, each response's id is read from its prefix and
looked up the same way (the proxy's own `peek_response`). What one read yields goes out
in one write, as the proxy does. So `proxy - parse-floor` is what typemux-lsp's logic
costs beyond the least a correct router in Python must do, and `parse-floor - floor`
what reading the messages costs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable

_CHUNK = 64 * 1024  # the proxy's read size (larger reads cost an mmap per read)
_lock = threading.Lock()
_pending: dict[object, str] = {}


def pump(src: int, dst: int, look: Callable[[bytes], None]) -> None:
    buffer = b""
    while data := os.read(src, _CHUNK):
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
    message = json.loads(body)
    params = message.get("params")
    document = params.get("textDocument") if isinstance(params, dict) else None
    uri = document.get("uri") if isinstance(document, dict) else None
    with _lock:
        if "id" in message:
            _pending[message["id"]] = str(uri)


_PREFIX = b'{"jsonrpc":"2.0","id":'


def from_backend(body: bytes) -> None:
    if body.startswith(_PREFIX):
        comma = body.find(b",", len(_PREFIX), len(_PREFIX) + 80)
        with contextlib.suppress(ValueError), _lock:
            _pending.pop(int(body[len(_PREFIX) : comma]), None)


def main(cmd: list[str]) -> int:
    child = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        bufsize=0,
    )
    assert child.stdin is not None and child.stdout is not None
    out = threading.Thread(target=pump, args=(child.stdout.fileno(), 1, from_backend), daemon=True)
    out.start()
    with contextlib.suppress(OSError):
        pump(0, child.stdin.fileno(), from_client)
    child.stdin.close()
    try:
        child.wait(5)
    except subprocess.TimeoutExpired:
        child.kill()
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: parse_relay.py COMMAND [ARG...]")
    raise SystemExit(main(sys.argv[1:]))
