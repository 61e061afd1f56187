"""The floor for a Python hop: an asyncio relay that copies bytes and parses nothing.

`relay.py` runs it as a third path (`python bench/byte_relay.py CMD...`, with the
backend's cwd and environment) so the proxy's added cost splits into what any
asyncio process in the middle costs on this machine and what the proxy's own
logic adds on top.
"""

from __future__ import annotations

import asyncio
import os
import sys


class _Forward(asyncio.Protocol):
    """Everything read goes straight to `sink`; end of input ends the relay."""

    def __init__(self, sink: asyncio.WriteTransport, done: asyncio.Future[None]) -> None:
        self._sink = sink
        self._done = done

    def data_received(self, data: bytes) -> None:
        self._sink.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)


class _Child(asyncio.SubprocessProtocol):
    def __init__(self, stdout: asyncio.WriteTransport, done: asyncio.Future[None]) -> None:
        self._stdout = stdout
        self._done = done

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._stdout.write(data)

    def process_exited(self) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def relay(cmd: list[str]) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    out_pipe = os.fdopen(1, "wb", buffering=0, closefd=False)
    stdout, _ = await loop.connect_write_pipe(asyncio.Protocol, out_pipe)
    assert isinstance(stdout, asyncio.WriteTransport)
    child, _ = await loop.subprocess_exec(
        lambda: _Child(stdout, done),
        *cmd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    child_stdin = child.get_pipe_transport(0)
    assert isinstance(child_stdin, asyncio.WriteTransport)
    in_pipe = os.fdopen(0, "rb", buffering=0, closefd=False)
    await loop.connect_read_pipe(lambda: _Forward(child_stdin, done), in_pipe)
    await done
    child_stdin.close()
    for _ in range(50):  # up to 5 s for the backend to exit on its own
        if child.get_returncode() is not None:
            break
        await asyncio.sleep(0.1)
    else:
        child.kill()
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: byte_relay.py COMMAND [ARG...]")
    raise SystemExit(asyncio.run(relay(sys.argv[1:])))
