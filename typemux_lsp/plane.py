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
