"""The backends alive now: one session per venv, started on demand, bounded in number.

Starting is a background task, so a backend that takes a second to boot never
stalls traffic for the others; requests for it wait in its own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from .session import BackendError, BackendSession, State
from .venv import Venv

logger = logging.getLogger(__name__)


class CrashLoop(BackendError):
    """A venv whose backend keeps dying is not respawned for a while."""


class Pool:
    def __init__(
        self,
        make_session: Callable[[Venv], BackendSession],
        *,
        max_backends: int = 8,
        ttl: float = 1800.0,
        crash_limit: int = 3,
        crash_window: float = 60.0,
        crash_cooldown: float = 30.0,
    ) -> None:
        self._make = make_session
        self.max_backends = max(1, max_backends)
        self.ttl = ttl
        self.crash_limit = crash_limit
        self.crash_window = crash_window
        self.crash_cooldown = crash_cooldown
        self.sessions: dict[Path, BackendSession] = {}
        #: every session not yet stopped, including ones being evicted
        self._every: set[BackendSession] = set()
        self._crashes: dict[Path, deque[float]] = {}
        self._last_error: dict[Path, BackendError] = {}
        self._crash_totals: dict[Path, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def get(self, venv: Venv) -> BackendSession | None:
        session = self.sessions.get(venv.key)
        return session if session is not None and session.alive else None

    def live(self) -> list[BackendSession]:
        return [s for s in self.sessions.values() if s.alive]

    def get_or_start(self, venv: Venv) -> BackendSession:
        """The venv's session, started if needed; raises `CrashLoop` while it cools down."""
        session = self.sessions.get(venv.key)
        if session is not None and session.alive:
            if not session.venv_recreated():
                return session
            session.log.info("the venv was deleted or recreated: restarting its backend")
            self._stop_in_background(session)
        self._check_crash_loop(venv)
        if len(self.live()) >= self.max_backends:
            self._evict_one()
        session = self._make(venv)
        self.sessions[venv.key] = session
        self._every.add(session)
        self._spawn(session.start())
        if self._sweeper is None and self.ttl > 0:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return session

    def forget(self, session: BackendSession, error: BackendError) -> None:
        """A session ended: count it if it crashed, and free its slot."""
        path = session.venv.key
        self._every.discard(session)
        if self.sessions.get(path) is session:
            del self.sessions[path]
        if session.crashed:
            now = time.monotonic()
            self._crashes.setdefault(path, deque(maxlen=self.crash_limit)).append(now)
            self._last_error[path] = error
            self._crash_totals[path] = self._crash_totals.get(path, 0) + 1

    def crash_count(self, venv: Venv) -> int:
        """How many times this venv's backend failed since the proxy started."""
        return self._crash_totals.get(venv.key, 0)

    def _check_crash_loop(self, venv: Venv) -> None:
        times = self._crashes.get(venv.key)
        if not times or len(times) < self.crash_limit:
            return
        now = time.monotonic()
        if times[-1] - times[0] <= self.crash_window and now - times[-1] < self.crash_cooldown:
            last = self._last_error.get(venv.key)
            raise CrashLoop(
                f"typemux-lsp: the backend for {venv} failed {len(times)} times within "
                f"{self.crash_window:g} s; not restarting it for another "
                f"{self.crash_cooldown - (now - times[-1]):.0f} s. Last failure: {last}"
            )

    def _evict_one(self) -> None:
        live = self.live()
        idle = [s for s in live if not s.inflight and not s.queue]
        victim = min(idle or live, key=lambda s: s.last_used)
        victim.log.info("evicted: the pool is full (%d backends)", self.max_backends)
        self._stop_in_background(victim)

    def _stop_in_background(self, session: BackendSession) -> None:
        if self.sessions.get(session.venv.key) is session:
            del self.sessions[session.venv.key]
        self._spawn(session.stop())

    def _spawn(self, coro: object) -> None:
        assert asyncio.iscoroutine(coro)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        """Stop backends that had no client traffic for `ttl` seconds."""
        interval = max(0.05, min(60.0, self.ttl / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for session in self.live():
                # Idle is judged by client traffic only: a request the backend never
                # answers, or a server->client request, does not keep it alive.
                if session.state is not State.STARTING and now - session.last_used >= self.ttl:
                    session.log.info("stopped after %.0f s idle", now - session.last_used)
                    self._stop_in_background(session)

    async def stop_all(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        sessions = list(self._every)
        self.sessions.clear()
        await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def kill_all(self) -> None:
        """Last resort on the way out: no backend outlives the proxy."""
        for session in list(self._every):
            with contextlib.suppress(Exception):
                session.kill()
