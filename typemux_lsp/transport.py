"""Bytes on pipes, with threads: the I/O under the relay.

An asyncio relay pays an event-loop wake-up per message, which measured as most of the
hop's cost (+0.16 ms per hover against +0.045 ms for two blocking threads). So every
pipe has a blocking reader thread that decides the common case itself, and writes go
straight to the destination from whichever thread has the message:

- `Reader`: a daemon thread that reads a file descriptor until end of input.
- `Outbox`: ordered writes to one file descriptor. Whoever sends writes directly while
  nothing is queued; what the pipe does not take is queued and drained by a thread, so
  a sender never blocks. A sender that can wait (a backend's reader) calls
  `wait_for_room` first: while more than `limit` bytes are queued it blocks, stops
  reading its backend, and the backend's own pipe fills — backpressure, with memory
  bounded by `limit`, when a client stops reading.

The order of writes to one destination is the order in which they were decided (under
the plane's lock), whichever threads decided them. A reader thread holds back what one
read produces, to write it in one writev at the end of the read; it holds it *in the
destination's outbox* (a cork), so a message decided later on another thread (the
control plane's full-text didChange, a diagnostics clear) writes the held parts first
and can never overtake them.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import select
import stat
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from . import platform

try:
    import fcntl as _fcntl

    fcntl: Any = _fcntl
except ImportError:  # Windows: pipe sizes are left as they are
    fcntl = None

logger = logging.getLogger(__name__)

#: What a reader asks for per read. Larger is not better: a fresh bytes object above
#: malloc's mmap threshold costs an mmap and a munmap per read (measured: ~45 µs of CPU per
#: message at 256 KiB on this 2-core VM).
READ_SIZE = 64 * 1024

_local = threading.local()
#: one syscall for many buffers, where the OS has it (platform.py)
_writev = platform.WRITEV or platform.writev
#: buffers one writev takes at most (POSIX IOV_MAX on Linux)
_IOV_MAX = 1024


class _Batch:
    """The outboxes one reader thread has corked while it handles one read."""

    __slots__ = ("outboxes",)

    def __init__(self) -> None:
        self.outboxes: dict[Outbox, None] = {}


#: Pipe capacity asked of the kernel (Linux): a 1 MB response fits without a partial write.
PIPE_SIZE = 1024 * 1024

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # (Linux)


def grow_pipe(fd: int) -> None:
    """Ask for a larger pipe buffer; harmless where the kernel refuses or it is no pipe."""
    if fcntl is None:
        return
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass


class Reader(threading.Thread):
    """Reads `fd` until end of input, handing each chunk to `on_data`, then calls `on_eof`.

    Exceptions from the callbacks are logged and reading goes on: one bad message must not
    stop a connection.
    """

    def __init__(
        self,
        fd: int,
        on_data: Callable[[bytes], None],
        on_eof: Callable[[], None],
        name: str,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._fd = fd
        self._on_data = on_data
        self._on_eof = on_eof

    def run(self) -> None:
        fd = self._fd
        on_data = self._on_data
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:  # an inherited non-blocking descriptor
                select.select([fd], [], [])
                continue
            except InterruptedError:
                continue
            except OSError as exc:
                logger.debug("%s: read failed: %s", self.name, exc)
                data = b""
            if not data:
                break
            # What handling this read writes, to each destination, goes out in one writev
            # after it: with many messages per read (a client pipelining requests, a backend
            # answering them) that is one syscall and one GIL hand-off per read, not per
            # message. The parts wait in their outbox (see `Outbox.send_parts`).
            batch = _local.batch = _Batch()
            try:
                on_data(data)
            except Exception:
                logger.exception("%s: error handling input", self.name)
            finally:
                _local.batch = None
                for outbox in batch.outboxes:
                    outbox.uncork()
        try:
            self._on_eof()
        except Exception:
            logger.exception("%s: error at end of input", self.name)


class Outbox:
    """Ordered, never-blocking writes to one file descriptor, with a bounded queue.

    Pipes and sockets are switched to non-blocking mode; anything else (a file, a
    terminal, /dev/null) is written with blocking writes, which do not wait on a reader.
    `on_closed` is called once when the descriptor stops taking writes (the peer is gone).
    """

    def __init__(
        self,
        fd: int,
        name: str,
        *,
        limit: int = 8 * 1024 * 1024,
        on_closed: Callable[[OSError], None] | None = None,
    ) -> None:
        self.fd = fd
        self.name = name
        self.limit = limit
        self._on_closed = on_closed
        # The hot path takes `_lock` itself (a C-level lock); `_cond` shares it for waiting.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque[memoryview] = deque()
        self._queued = 0
        #: parts reader threads hold back until the end of their read (the cork)
        self._held: list[bytes] = []
        self._closed = False
        self._drainer: threading.Thread | None = None
        mode = os.fstat(fd).st_mode
        self._nonblocking = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        #: a pipe that cannot be non-blocking (platform.py): every write goes through the
        #: writer thread, which may block, so a sender still never does
        self._threaded = self._nonblocking and not platform.NONBLOCKING_PIPES
        if self._nonblocking:
            grow_pipe(fd)
        if self._threaded:
            self._nonblocking = False
        elif self._nonblocking:
            os.set_blocking(fd, False)

    def send_frame(self, header: bytes, body: bytes) -> None:
        """A header and a body in one write; a large body is not copied to join them."""
        if len(body) < 65536:
            self.send_parts(header + body)
        else:
            self.send_parts(header, body)

    def send_parts(self, *parts: bytes) -> None:
        """Write `parts` after everything sent before, from any thread. On a reader thread
        handling a read they are held here (the cork) until the read is handled, or until
        another thread sends: whoever sends next writes them first."""
        batch: _Batch | None = getattr(_local, "batch", None)
        with self._lock:
            if self._closed:
                return
            if batch is not None:
                self._held.extend(parts)
                batch.outboxes[self] = None
                return
            if self._held:
                parts = (*self._held, *parts)
                self._held.clear()
            self._send(parts)

    def uncork(self) -> None:
        """Write what reader threads hold here (the end of a read)."""
        with self._lock:
            if self._held and not self._closed:
                parts = tuple(self._held)
                self._held.clear()
                self._send(parts)

    def wait_for_room(self, timeout: float | None = None) -> bool:
        """Block while more than `limit` bytes are queued; False on timeout."""
        if self._queued <= self.limit:  # the common case, without the lock
            return True
        with self._cond:
            return self._cond.wait_for(
                lambda: self._queued <= self.limit or self._closed, timeout=timeout
            )

    def close(self) -> None:
        """Stop writing; whatever is still queued is dropped."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._queued = 0
            self._held.clear()
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Write what is held, and wait until everything queued is written (or the peer is
        gone)."""
        self.uncork()
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue or self._closed, timeout=timeout)

    # -- inside the lock --------------------------------------------------------------------

    def _send(self, parts: tuple[bytes, ...]) -> None:
        """Write `parts` now, queueing what the descriptor does not take."""
        if not self._queue and not self._threaded:
            written = self._write(parts)
            if written < 0:
                return
        else:
            written = 0
        for part in parts:
            size = len(part)
            if written >= size:
                written -= size
                continue
            view = memoryview(part)[written:]
            written = 0
            self._queue.append(view)
            self._queued += len(view)
        if self._queue:
            self._start_drainer()
            self._cond.notify_all()

    def _write(self, parts: tuple[bytes, ...] | list[memoryview]) -> int:
        """Write as much as the descriptor takes now; bytes written, or -1 once closed."""
        try:
            if self._nonblocking:
                if len(parts) == 1:
                    return os.write(self.fd, parts[0])
                total = 0
                for start in range(0, len(parts), _IOV_MAX):
                    chunk = parts[start : start + _IOV_MAX]
                    written = _writev(self.fd, chunk)
                    total += written
                    if written < sum(len(p) for p in chunk):
                        break  # the pipe is full: the rest is queued
                return total
            total = 0
            for part in parts:
                view = memoryview(part)
                while view:
                    count = os.write(self.fd, view)
                    total += count
                    view = view[count:]
            return total
        except BlockingIOError:
            return 0
        except InterruptedError:
            return 0
        except OSError as exc:
            self._fail(exc)
            return -1

    def _fail(self, exc: OSError) -> None:
        first = not self._closed
        self._closed = True
        self._queue.clear()
        self._queued = 0
        self._held.clear()
        self._cond.notify_all()
        if first:
            if exc.errno not in (errno.EPIPE, errno.EBADF, errno.ECONNRESET):
                logger.warning("%s: write failed: %s", self.name, exc)
            if self._on_closed is not None:
                # Called with the lock held: the callback must only schedule work.
                self._on_closed(exc)

    def _start_drainer(self) -> None:
        if self._drainer is None:
            self._drainer = threading.Thread(
                target=self._drain, name=f"{self.name}-writer", daemon=True
            )
            self._drainer.start()

    def _drain(self) -> None:
        fd = self.fd
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closed)
                if self._closed:
                    return
            with contextlib.suppress(OSError, ValueError):
                select.select([], [fd], [])
            if self._threaded:
                self._drain_blocking()
                continue
            with self._cond:
                while self._queue and not self._closed:
                    batch = list(self._queue)[:64]
                    written = self._write(batch)
                    if written <= 0:
                        break
                    self._consumed(written)
                self._cond.notify_all()

    def _drain_blocking(self) -> None:
        """The writer thread of a pipe that cannot be non-blocking: its writes may wait for
        the reader, so they are made outside the lock (a sender waiting for the lock would
        wait for the reader too). Only this thread writes such a pipe: senders only queue."""
        written = 0
        while True:
            with self._cond:
                if self._closed:
                    return
                if written:
                    self._consumed(written)
                    self._cond.notify_all()
                if not self._queue:
                    return
                batch = list(itertools.islice(self._queue, 64))
            written = 0
            try:
                for view in batch:
                    while view:
                        count = os.write(self.fd, view)
                        written += count
                        view = view[count:]
            except InterruptedError:
                pass
            except OSError as exc:
                with self._cond:
                    self._fail(exc)
                return

    def _consumed(self, written: int) -> None:
        """`written` bytes from the head of the queue are on their way (inside the lock)."""
        self._queued -= written
        while written:
            head = self._queue[0]
            if len(head) <= written:
                written -= len(head)
                self._queue.popleft()
            else:
                self._queue[0] = head[written:]
                written = 0
