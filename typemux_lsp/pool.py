"""The backends alive now: a session per environment, or one shared by several (a workspace
folder each), started on demand, never more than `max_backends` processes at any instant
and, past `max_memory` MiB of the backends' resident memory, the least recently used
project evicted before a new one is served.

Shared: a kind that serves several environments from one process, each as a workspace
folder with its own interpreter (`share` names the group an environment may join: its kind
and settings), gets one process per group; `sessions` maps each environment to the session
serving it, so the hot path's lookup is the same in both modes. Projects nested in one
another never share a process. Evicting a project removes its folder, or stops the process
when it was the last.

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
from collections.abc import Callable, Hashable
from pathlib import Path

from .jsonrpc import CONTENT_MODIFIED
from .plane import Plane
from .platform import group_rss_bytes
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
        make_session: Callable[..., BackendSession],
        *,
        max_backends: int = 8,
        share: Callable[[Venv], Hashable | None] | None = None,
        max_memory: float = 0,
        measure: Callable[[list[BackendSession]], dict[BackendSession, int | None]] | None = None,
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
        #: the group an environment's backend may share a process with (None: its own)
        self._share = share or (lambda venv: None)
        #: MiB of backends' resident memory past which projects are evicted (0: no budget)
        self.max_memory = max_memory
        self._measure = measure or _measure
        #: the group of each shared session
        self._groups: dict[BackendSession, Hashable] = {}
        #: the current session of each environment (by canonical path); a shared session
        #: is the value of every environment it serves
        self.sessions: dict[Path, BackendSession] = {}
        #: every session whose process may still exist, or that waits for a slot
        self._every: set[BackendSession] = set()
        self._waiting: deque[BackendSession] = deque()
        self._crashes: dict[Path, deque[float]] = {}
        self._last_error: dict[Path, BackendError] = {}
        self._crash_totals: dict[Path, int] = {}
        #: per environment, how often its backend was restarted (a recreated environment, a
        #: frozen backend) and how often its folder alone was renewed in a shared one
        self.restart_totals: dict[Path, int] = {}
        self.renewal_totals: dict[Path, int] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    # -- lookups -------------------------------------------------------------------------

    def get(self, venv: Venv) -> BackendSession | None:
        session = self.sessions.get(venv.key)
        return session if session is not None and session.alive else None

    def live(self) -> list[BackendSession]:
        """The sessions alive, each once (a shared one serves several environments)."""
        return list(dict.fromkeys(s for s in self.sessions.values() if s.alive))

    def memory(self) -> dict[BackendSession, int | None]:
        """Resident bytes of each live backend's process group (None where unknown)."""
        return self._measure([s for s in self.live() if s.has_process])

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
        if not session.venv_recreated(time.monotonic(), venv, every):
            return session
        return self.renew(session, venv, f"the environment {venv} was deleted or recreated")

    def renew(self, session: BackendSession, venv: Venv, cause: str) -> BackendSession:
        """`venv` was recreated under `session`. A shared backend that serves other projects
        too renews that folder alone (`BackendSession.renew_venv`): the others are not held
        for a cold start. A kind that does not re-read a folder added again
        (`BackendKind.renews_folders`), a backend not up yet, or one serving `venv` alone is
        restarted."""
        if not (
            session.shared
            and session.kind.renews_folders
            and len(session.venvs) > 1
            and venv.key in session.venvs
            and session.state in (State.WARMING, State.READY)
        ):
            return self.restart(session, cause)
        session.log.info("renewing the folder of %s alone: %s", venv, cause)
        self.renewal_totals[venv.key] = self.renewal_totals.get(venv.key, 0) + 1

        def overdue() -> None:
            if self.sessions.get(venv.key) is session and session.alive:
                self.restart(session, f"{cause}; its folder added again was not configured")

        session.renew_venv(venv, overdue)
        return session

    def get_or_start(self, venv: Venv) -> BackendSession:
        """The venv's session, started if needed; raises `CrashLoop` while it cools down."""
        session = self.current(venv)
        if session is not None:
            return session
        self._check_crash_loop(venv)
        group = self._share(venv)
        host = self._host(group, venv) if group is not None else None
        if host is not None:
            self.sessions[venv.key] = host
            host.add_venv(venv)
            host.log.info("serving %s too (%d projects)", venv, len(host.venvs))
            # Past the budget, the least recently used project goes: `venv`'s own host only
            # loses folders (it serves `venv`), another backend loses a folder or stops.
            self._within_memory(venv)
            return host
        session = self._add(venv, group)
        if not session.alive:  # it could not even be spawned
            raise session.error or BackendError(f"typemux-lsp: the backend for {venv} failed")
        return session

    def restart(self, old: BackendSession, cause: str, *, graceful: bool = True) -> BackendSession:
        """Replace `old` with a fresh backend for the same environment. The client never
        learns of it: requests `old` was answering are sent again to the new one, ahead of
        those it queued (ContentModified only for a request that may not be sent twice)."""
        old.log.info("restarting: %s", cause)
        for key in old.venvs:
            self.restart_totals[key] = self.restart_totals.get(key, 0) + 1
        old.abandon_renewals()
        group = self._groups.get(old)
        moved: list[Queued] = []
        for entry in list(old.inflight.values()):
            if entry.resendable():
                wire = entry.wire_id
                message, body = entry.unsend()
                moved.append(Queued(entry, message, body))
                if old.alive and wire is not None:
                    old.notify("$/cancelRequest", {"id": wire})
        moved += old.queued()
        old.queue.clear()
        old.joining_queue.clear()
        self.stop(
            old,
            graceful=graceful,
            error=Restarted(
                f"typemux-lsp: the {old.kind.name} backend for {old.venv} was restarted "
                f"({cause}) while this request was in flight; retry it."
            ),
        )
        new = self._add(old.venv, group, budget=False)
        for venv in old.venvs.values():  # a shared backend comes back with all its folders
            if venv.key != old.venv.key:
                self.sessions[venv.key] = new
                new.add_venv(venv)
        for item in moved:
            item.entry.session = new
        new.queue.extend(moved)
        return new

    def _host(self, group: Hashable, venv: Venv) -> BackendSession | None:
        """A running shared session of `group` that may serve `venv` too (no folder of its
        nested with `venv`'s project)."""
        for session, its in self._groups.items():
            if its == group and session.alive and session.nested_with(venv) is None:
                return session
        return None

    def _add(
        self, venv: Venv, group: Hashable | None = None, *, budget: bool = True
    ) -> BackendSession:
        """A new session for `venv`. It waits for a slot; the least recently used sessions are
        evicted so that no more than `max_backends` are alive (running or waiting), and it
        starts once fewer than `max_backends` processes exist."""
        if budget:
            self._within_memory(venv)
        session = self._make(venv, shared=True) if group is not None else self._make(venv)
        if group is not None:
            self._groups[session] = group
        session.on_end(self._ended)
        session.on_gone(self._gone)
        self.sessions[venv.key] = session
        self._every.add(session)
        self._waiting.append(session)
        while True:
            others = [s for s in self.live() if s is not session]
            if len(others) < self.max_backends:
                break
            idle = [s for s in others if not s.inflight and not s.queued()]
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
        self._forget(session)
        group = self._groups.pop(session, None)
        if session in self._waiting:
            self._waiting.remove(session)
        if session.crashed:  # every project it served saw it crash
            now = time.monotonic()
            for path in session.venvs:
                self._crashes.setdefault(path, deque(maxlen=self.crash_limit)).append(now)
                self._last_error[path] = error
                self._crash_totals[path] = self._crash_totals.get(path, 0) + 1
            if group is not None and session.served and len(session.venvs) > 1:
                # Its projects did nothing to deserve the crash: the process comes back at
                # once with every folder and every open document.
                self._plane.later(0, self._respawn, session, group)

    def _respawn(self, crashed: BackendSession, group: Hashable) -> None:
        """A crashed shared backend again, with all its folders (if none came back since)."""
        venvs = [v for v in crashed.venvs.values() if v.key not in self.sessions]
        if self.closed or not venvs:
            return
        try:
            self._check_crash_loop(venvs[0])
        except CrashLoop as exc:
            crashed.log.error("not restarted: %s", exc)
            return
        crashed.log.info("restarting after a crash, with %d projects", len(venvs))
        new = self._add(venvs[0], group, budget=False)
        for venv in venvs[1:]:
            self.sessions[venv.key] = new
            new.add_venv(venv)

    def _forget(self, session: BackendSession) -> None:
        """Every environment `session` served is served by nothing now."""
        for path in list(session.venvs):
            if self.sessions.get(path) is session:
                del self.sessions[path]

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
        self._forget(session)
        self._groups.pop(session, None)
        if session in self._waiting:
            self._waiting.remove(session)
        shutdown = session.begin_stop(graceful=graceful, error=error)
        self._plane.spawn(session.finish_stop(shutdown))

    def evict(self, venv: Venv, why: str) -> None:
        """Serve `venv` no more: its folder is removed from a shared backend that serves
        others, or its backend is stopped."""
        session = self.sessions.get(venv.key)
        if session is None:
            return
        if len(session.venvs) > 1:
            del self.sessions[venv.key]
            session.log.info("no longer serving %s: %s", venv, why)
            session.remove_venv(venv)
        else:
            session.log.info("stopped: %s", why)
            self.stop(session)

    def _within_memory(self, venv: Venv) -> None:
        """As `venv` is served: while the backends' resident memory is past the budget, the
        least recently used project other than `venv` is evicted. Memory a removed folder
        frees is not visible at once (the backend's heap shrinks later): it is counted as
        that process's share per folder."""
        if self.max_memory <= 0:
            return
        sizes = self.memory()
        total = sum(size or 0 for size in sizes.values())
        budget = self.max_memory * (1 << 20)
        gone: set[Path] = set()
        while total > budget:
            projects = [
                (s, key)
                for s in sizes
                if s.alive
                for key in s.venvs
                if key not in gone and key != venv.key
            ]
            if not projects:
                return
            session, key = min(
                projects,
                key=lambda p: (bool(p[0].inflight or p[0].queued()), self._used(p[0], p[1])),
            )
            share = (sizes[session] or 0) // max(1, len(session.venvs))
            total -= share if len(session.venvs) > 1 else (sizes[session] or 0)
            gone.add(key)
            self.evict(
                session.venvs[key],
                f"the backends use {total / (1 << 20) + share / (1 << 20):.0f} MiB, past "
                f"--max-backend-memory {self.max_memory:g}, and {venv} needs a backend",
            )

    @staticmethod
    def _used(session: BackendSession, key: Path) -> float:
        """When the project last had client traffic."""
        return session.used.get(key, session.last_used) if session.shared else session.last_used

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
            if session.state is not State.READY:
                continue
            for venv in list(session.venvs.values()):  # per project: a shared one's folders
                idle = now - self._used(session, venv.key)
                if idle >= self.ttl and session.alive:
                    self.evict(venv, f"{idle:.0f} s idle")
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


def _measure(sessions: list[BackendSession]) -> dict[BackendSession, int | None]:
    sizes = group_rss_bytes({s.pid for s in sessions if s.pid is not None})
    return {s: sizes.get(s.pid) if s.pid is not None else None for s in sessions}
