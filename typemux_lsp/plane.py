"""The control plane: the event loop, and the one lock that orders every state change.

The relay's reader threads handle the common messages themselves (see relay.py); all
else — starting and stopping backends, warm-up queues, fan-out, configuration answers,
timers — runs on the event loop, one callback at a time. Both sides change the same
state (the documents, the sessions, the ledger of pending requests), so both hold
`lock` while they do: a reader thread for the few microseconds of a decision, the
control plane for each callback it runs. Nothing blocks while holding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVarTuple

logger = logging.getLogger(__name__)

Ts = TypeVarTuple("Ts")

#: Seconds a reader thread waits for its backlog to clear before it hands off anyway.
BACKLOG_WAIT = 1.0


class Backlog:
    """What one peer's reader thread handed to the control plane that the control plane has
    not handled yet (counted holding the plane's lock).

    While there is any, the reader hands off every message, so none overtakes one handed
    off before it. A message the reader could relay itself first waits for the backlog to
    clear (`settle`, not holding the lock): it could not go out before those anyway, and
    otherwise one message that needed the control plane (a route due for its check, a
    didOpen) would send the whole burst after it there, one event-loop wake-up each.
    """

    __slots__ = ("_clear", "_plane_thread", "count")

    def __init__(self) -> None:
        self.count = 0
        self._clear = threading.Event()
        self._clear.set()
        #: made by the control plane: waiting on its own thread would wait for nothing
        self._plane_thread = threading.get_ident()

    def add(self) -> None:
        self.count += 1
        self._clear.clear()

    def done(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._clear.set()

    def settle(self) -> None:
        """Wait (bounded by `BACKLOG_WAIT`) until the control plane has handled it all."""
        if self.count and threading.get_ident() != self._plane_thread:
            self._clear.wait(BACKLOG_WAIT)


class Plane:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.RLock()
        self._tasks: set[asyncio.Task[Any]] = set()

    def submit(self, fn: Callable[[*Ts], object], *args: *Ts) -> None:
        """Run `fn(*args)` on the control plane, in submission order; from any thread."""
        with contextlib.suppress(RuntimeError):  # a closed loop: the proxy is exiting
            self.loop.call_soon_threadsafe(self.run, fn, *args)

    def later(self, delay: float, fn: Callable[[*Ts], object], *args: *Ts) -> asyncio.TimerHandle:
        """Run `fn(*args)` on the control plane after `delay` seconds."""
        return self.loop.call_later(delay, self.run, fn, *args)

    def run(self, fn: Callable[[*Ts], object], *args: *Ts) -> None:
        """Run `fn` holding the lock; an exception is logged, never propagated."""
        with self.lock:
            try:
                fn(*args)
            except Exception:
                logger.exception("control plane: %s failed", getattr(fn, "__qualname__", fn))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A tracked task; its steps take the lock themselves where they change state."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("control plane task failed", exc_info=task.exception())
