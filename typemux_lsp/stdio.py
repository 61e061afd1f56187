"""The client's stdin and stdout, whatever they are.

An editor gives the server pipes, which go to the event loop (non-blocking, no thread).
A recorded session replayed from a file, output to /dev/null or a terminal do not: asyncio
refuses regular files and uvloop aborts the process on /dev/null, so those get a blocking
writer and a reader thread.
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import Callable


def is_pipe(fd: int) -> bool:
    """Pipes and sockets go to the event loop; files, /dev/null and terminals do not (uvloop
    aborts on some of them, asyncio refuses regular files)."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


async def open_writer(fd: int) -> Callable[[bytes], None]:
    """A non-blocking writer on a pipe; a blocking one on anything else."""
    if is_pipe(fd):
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(fd, "wb", buffering=0, closefd=False)
        transport, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)
        return transport.write

    def write_blocking(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    return write_blocking


async def open_reader(fd: int, protocol: asyncio.Protocol) -> None:
    """Feed `protocol` from a pipe through the event loop, or from a file (a recorded
    session, /dev/null) through a thread."""
    loop = asyncio.get_running_loop()
    if is_pipe(fd):
        pipe = os.fdopen(fd, "rb", buffering=0, closefd=False)
        await loop.connect_read_pipe(lambda: protocol, pipe)
        return

    def pump() -> None:
        while chunk := os.read(fd, 65536):
            loop.call_soon_threadsafe(protocol.data_received, chunk)
        loop.call_soon_threadsafe(protocol.connection_lost, None)

    threading.Thread(target=pump, name="typemux-stdin", daemon=True).start()
