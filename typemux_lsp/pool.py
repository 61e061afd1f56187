"""The backends alive now: one session per environment, started on demand, never more than
`max_backends` processes at any instant.

A backend occupies a slot from its spawn until its process group is gone — starting and
stopping ones included. A new session that finds the pool full evicts the least
recently used one (idle ones first; a starting one is killed at once, a running one is
shut down) and waits for the slot, its requests queued. Starting is a background task,
so a backend that takes a second to boot never stalls traffic for the others.

The pool learns of a session's end and its process's exit by listening to the session;
nothing above it has to tell it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from .jsonrpc import CONTENT_MODIFIED
from .plane import Plane
from .session import BackendError, BackendSession, Queued, State
from .venv import Venv

logger = logging.getLogger(__name__)


class CrashLoop(BackendError):
    """A venv whose backend keeps dying is not respawned for a while."""


class Restarted(BackendError):
    """A backend was replaced (its environment changed, it froze): what it held is answered
    with this error's `code`."""

    def __init__(self, message: str, code: int = CONTENT_MODIFIED) -> None:
        super().__init__(message)
        self.code = code


class Pool:
    def __init__(
        self,
        plane: Plane,
        make_session: Callable[[Venv], BackendSession],
        *,
        max_backends: int = 8,
        ttl: float = 1800.0,
        crash_limit: int = 3,
        crash_window: float = 60.0,
        crash_cooldown: float = 30.0,
    ) -> None:
        self._plane = plane
        self._make = make_session
        self.max_backends = max(1, max_backends)
        self.ttl = ttl
        self.crash_limit = crash_limit
        self.crash_window = crash_window
        self.crash_cooldown = crash_cooldown
        #: the current session of each environment (by canonical path)
        self.sessions: dict[Path, BackendSession] = {}
        #: every session whose process may still exist, or that waits for a slot
        self._every: set[BackendSession] = set()
        self._waiting: deque[BackendSession] = deque()
        self._crashes: dict[Path, deque[float]] = {}
        self._last_error: dict[Path, BackendError] = {}
        self._crash_totals: dict[Path, int] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    # -- lookups -------------------------------------------------------------------------

    def get(self, venv: Venv) -> BackendSession | None:
        session = self.sessions.get(venv.key)
        return session if session is not None and session.alive else None

    def live(self) -> list[BackendSession]:
        return [s for s in self.sessions.values() if s.alive]

    def processes(self) -> int:
        """Backend processes that exist or may still exist: what the cap bounds."""
        return sum(1 for s in self._every if s.has_process)

    def crash_count(self, venv: Venv) -> int:
        """How many times this venv's backend failed since the proxy started."""
        return self._crash_totals.get(venv.key, 0)

    # -- starting ------------------------------------------------------------------------

    def current(self, venv: Venv, every: float = 1.0) -> BackendSession | None:
        """The venv's live session, replaced first if its environment was deleted or recreated
        (checked at most once `every` seconds); None if none runs (nothing is started)."""
        session = self.sessions.get(venv.key)
        if session is None or not session.alive:
            return None
        if not session.venv_recreated(time.monotonic(), every):
            return session
        return self.restart(session, "its environment was deleted or recreated")

    def get_or_start(self, venv: Venv) -> BackendSession:
        """The venv's session, started if needed; raises `CrashLoop` while it cools down."""
        session = self.current(venv)
        if session is not None:
            return session
        self._check_crash_loop(venv)
        session = self._add(venv)
        if not session.alive:  # it could not even be spawned
            raise session.error or BackendError(f"typemux-lsp: the backend for {venv} failed")
        return session

    def restart(self, old: BackendSession, cause: str, *, graceful: bool = True) -> BackendSession:
        """Replace `old` with a fresh backend for the same environment. The client never
        learns of it: requests `old` was answering are sent again to the new one, ahead of
        those it queued (ContentModified only for a request that may not be sent twice)."""
        old.log.info("restarting: %s", cause)
        moved: list[Queued] = []
        for entry in list(old.inflight.values()):
            if entry.resendable():
                wire = entry.wire_id
                message, body = entry.unsend()
                moved.append(Queued(entry, message, body))
                if old.alive and wire is not None:
                    old.notify("$/cancelRequest", {"id": wire})
        moved += old.queue
        old.queue.clear()
        self.stop(
            old,
            graceful=graceful,
            error=Restarted(
                f"typemux-lsp: the {old.kind.name} backend for {old.venv} was restarted "
                f"({cause}) while this request was in flight; retry it."
            ),
        )
        new = self._add(old.venv)
        for item in moved:
            item.entry.session = new
        new.queue.extend(moved)
        return new

    def _add(self, venv: Venv) -> BackendSession:
        """A new session for `venv`. It waits for a slot; the least recently used sessions are
        evicted so that no more than `max_backends` are alive (running or waiting), and it
        starts once fewer than `max_backends` processes exist."""
        session = self._make(venv)
        session.on_end(self._ended)
        session.on_gone(self._gone)
        self.sessions[venv.key] = session
        self._every.add(session)
        self._waiting.append(session)
        while True:
            others = [s for s in self.sessions.values() if s.alive and s is not session]
            if len(others) < self.max_backends:
                break
            idle = [s for s in others if not s.inflight and not s.queue]
            victim = min(idle or others, key=lambda s: s.last_used)
            victim.log.info("evicted: the pool is full (%d backends)", self.max_backends)
            self.stop(victim)
        self._launch_waiting()
        if session.state is State.WAITING:
            session.log.info(
                "waiting for a slot: %d backend processes still exist", self.processes()
            )
        self._arm_sweeper()
        return session

    def _launch_waiting(self) -> None:
        while self._waiting and self.processes() < self.max_backends and not self.closed:
            session = self._waiting.popleft()
            if session.state is State.WAITING:
                session.launch()

    def _gone(self, session: BackendSession) -> None:
        """A backend process group is gone: its slot goes to the longest-waiting session."""
        self._every.discard(session)
        self._launch_waiting()

    def _ended(self, session: BackendSession, error: BackendError) -> None:
        """A session ended: count it if it crashed; its slot frees when its process is gone."""
        path = session.venv.key
        if self.sessions.get(path) is session:
            del self.sessions[path]
        if session in self._waiting:
            self._waiting.remove(session)
        if session.crashed:
            now = time.monotonic()
            self._crashes.setdefault(path, deque(maxlen=self.crash_limit)).append(now)
            self._last_error[path] = error
            self._crash_totals[path] = self._crash_totals.get(path, 0) + 1

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

    # -- stopping ------------------------------------------------------------------------

    def stop(
        self,
        session: BackendSession,
        *,
        graceful: bool = True,
        error: BackendError | None = None,
    ) -> None:
        """Stop `session` now (one that is not up yet is killed at once), finishing in the
        background."""
        if self.sessions.get(session.venv.key) is session:
            del self.sessions[session.venv.key]
        if session in self._waiting:
            self._waiting.remove(session)
        shutdown = session.begin_stop(graceful=graceful, error=error)
        self._plane.spawn(session.finish_stop(shutdown))

    def _arm_sweeper(self) -> None:
        if self._sweeper is None and self.ttl > 0 and not self.closed:
            interval = max(0.05, min(60.0, self.ttl / 4))
            self._sweeper = self._plane.later(interval, self._sweep)

    def _sweep(self) -> None:
        """Stop backends that had no client traffic for `ttl` seconds."""
        self._sweeper = None
        now = time.monotonic()
        for session in self.live():
            # Idle is judged by client traffic only: a request the backend never answers,
            # or a server->client request, does not keep it alive.
            if session.state is State.READY and now - session.last_used >= self.ttl:
                session.log.info("stopped after %.0f s idle", now - session.last_used)
                self.stop(session)
        if self.sessions:
            self._arm_sweeper()

    async def stop_all(self) -> None:
        with self._plane.lock:
            self.closed = True
            if self._sweeper is not None:
                self._sweeper.cancel()
            sessions = list(self._every)
            self.sessions.clear()
            self._waiting.clear()
        await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)

    def kill_all(self) -> None:
        """Last resort on the way out: no backend outlives the proxy."""
        for session in list(self._every):
            session.kill()
