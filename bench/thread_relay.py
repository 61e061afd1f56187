"""The floor for a Python hop: two blocking threads that copy bytes and parse nothing.

`relay.py` runs it as the `floor` path (`python bench/thread_relay.py CMD...`, with the
backend's cwd and environment): what any Python process in the middle costs on this
machine when no event loop is involved, so the proxy's added cost splits into the hop
itself and what its own logic adds. (`byte_relay.py` is the same on asyncio.)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable

#: the proxy's read size: a read of 128 KiB or more costs an mmap and a munmap each
CHUNK = 64 * 1024

Pump = Callable[[int, int], None]


def pump(src: int, dst: int) -> None:
    while data := os.read(src, CHUNK):
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view) :]


def run(cmd: list[str], to_backend: Pump = pump, to_client: Pump = pump) -> int:
    """Start `cmd` and pump stdin to it and its stdout back, one thread each way."""
    child = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        bufsize=0,
    )
    assert child.stdin is not None and child.stdout is not None
    out = threading.Thread(target=to_client, args=(child.stdout.fileno(), 1), daemon=True)
    out.start()
    with contextlib.suppress(OSError):
        to_backend(0, child.stdin.fileno())
    child.stdin.close()
    try:
        child.wait(5)
    except subprocess.TimeoutExpired:
        child.kill()
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: thread_relay.py COMMAND [ARG...]")
    raise SystemExit(run(sys.argv[1:]))
