"""The client's side of the wire: its stdin read by a thread, its stdout written by an outbox.

Frames are decoded in the reader thread and handed to the relay there; replies from any
thread go through one `Outbox`, so they are never interleaved and never block the event
loop. When the client stops reading, the outbox holds at most `CLIENT_BUFFER` bytes
before backend readers wait (see transport.py): memory stays bounded, nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from . import jsonrpc
from .jsonrpc import FrameDecoder, FrameError, Message
from .transport import Outbox, Reader

logger = logging.getLogger(__name__)

#: Bytes queued for a client that does not read before backends are made to wait.
CLIENT_BUFFER: Final = 8 * 1024 * 1024


class ClientConnection:
    def __init__(
        self,
        stdin: int,
        stdout: int,
        *,
        on_body: Callable[[bytes], None],
        on_bad_frame: Callable[[FrameError], None],
        on_eof: Callable[[], None],
        on_gone: Callable[[], None],
        buffer: int = CLIENT_BUFFER,
    ) -> None:
        self._decoder = FrameDecoder()
        self._on_body = on_body
        self._on_bad_frame = on_bad_frame
        self._tracing = logger.isEnabledFor(jsonrpc.TRACE)
        self.outbox = Outbox(stdout, "client-stdout", limit=buffer, on_closed=lambda _: on_gone())
        self._reader = Reader(stdin, self._on_data, on_eof, "client-stdin")

    def start(self) -> None:
        self._reader.start()

    def _on_data(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if isinstance(item, FrameError):
                self._on_bad_frame(item)
            else:
                if self._tracing:
                    logger.log(jsonrpc.TRACE, "client -> proxy: %s", item.decode(errors="replace"))
                self._on_body(item)

    def send_body(self, body: bytes) -> None:
        if self._tracing:
            logger.log(jsonrpc.TRACE, "proxy -> client: %s", body.decode(errors="replace"))
        self.outbox.send_frame(jsonrpc.frame_header(body), body)

    def send(self, message: Message) -> None:
        self.send_body(jsonrpc.dumps(message))

    def wait_for_room(self) -> None:
        """Called by backend readers before each message: blocks while the client lags."""
        self.outbox.wait_for_room()
