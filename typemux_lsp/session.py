"""One backend process for one environment (or, shared, for several: one workspace folder
each), and the LSP session with it.

A session owns the process (in its own process group, so a backend's children die
with it), its pipes (a reader thread on stdout, one draining stderr, one waiting for
the exit), the handshake, the table of requests in flight and the warm-up queue.

It knows nothing of the client. What the backend writes goes, frame by frame, to
`Upstream.backend_body` on the reader thread (the relay answers the common case
there); its lifecycle is reported through `Upstream` on the control plane. States:

    WAITING -> STARTING -> WARMING -> READY -> STOPPING -> STOPPED
    (for a pool slot) (handshake) (index)                   (any state can fail to STOPPED)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import logging
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pygls.uris import from_fs_path

from . import jsonrpc, pin, probe
from .backends import BackendKind
from .documents import Document
from .freshness import RecentEvents
from .jsonrpc import FrameDecoder, FrameError, Message, MsgId
from .ledger import Pending, proxy_id, record_sent
from .plane import Backlog, Plane
from .platform import fs_clock_ns, group_alive, kill_group, new_group
from .reaper import Reaper
from .transport import Outbox, Reader
from .venv import Venv, canonical

logger = logging.getLogger(__name__)

#: Requests whose answer depends on the backend's cross-file index: held while it warms up.
WARMUP_METHODS = frozenset(
    {
        "textDocument/definition",
        "textDocument/references",
        "textDocument/implementation",
        "textDocument/typeDefinition",
        "textDocument/declaration",
        "textDocument/prepareCallHierarchy",
        "callHierarchy/incomingCalls",
        "callHierarchy/outgoingCalls",
    }
)

_STDERR_TAIL_BYTES = 8 * 1024
#: How a Rust backend (ty, pyrefly) reports a bug of its own before exiting 101: `thread
#: 'NAME' panicked at FILE:LINE:COL:` then the message (Rust >= 1.73), or `panicked at
#: 'MESSAGE', FILE:LINE:COL` (older).
_PANIC = re.compile(
    r"thread '(?P<thread>[^']*)' panicked at (?:'(?P<old>.*)', (?P<oldat>\S+)|(?P<at>\S+?):?\n"
    r"(?P<message>[^\n]*))"
)


def backend_bug(stderr: str) -> str | None:
    """The panic a backend reported on stderr, in words, or None: what to tell its authors."""
    found = _PANIC.search(stderr)
    if found is None:
        return None
    message = (found["message"] if found["at"] else found["old"]).strip()
    where = found["at"] or found["oldat"]
    return f"{message!r} at {where}" if message else f"at {where}"


_session_ids = iter(range(1, 1 << 62))


class State(enum.Enum):
    WAITING = "waiting"
    STARTING = "starting"
    WARMING = "warming"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"


#: States in which the session takes requests (sends them or queues them).
ALIVE = frozenset({State.WAITING, State.STARTING, State.WARMING, State.READY})


class BackendError(Exception):
    """A backend could not start or died; the message says what to do about it."""


class BackendAnswered(BackendError):
    """A backend answered a request of the proxy's own with an error: its code and message,
    to give a client asking through the proxy as the backend gave them."""

    def __init__(self, code: Any, message: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(slots=True)
class Timeouts:
    start: float = 30.0
    warmup: float = 2.0
    stop: float = 2.0


class Upstream(Protocol):
    """What a session needs from the rest of the proxy."""

    def initialize_params(self, session: BackendSession) -> Message: ...

    def session_started(self, session: BackendSession) -> None:
        """Handshake done (control plane): replay the session's documents."""

    def folder_added(self, session: BackendSession, venv: Venv) -> None:
        """A running shared session now serves `venv` too (control plane): open its documents."""

    def folder_removed(self, session: BackendSession, venv: Venv) -> None:
        """A shared session no longer serves `venv` (control plane): close its documents."""

    def request_failed(self, session: BackendSession, entry: Pending, why: str) -> None:
        """The session gives up on a request it held (control plane): answer it with `why`."""

    def folder_requests(
        self, session: BackendSession, venv: Venv
    ) -> list[tuple[Pending, Message | None, bytes]]:
        """The client requests `session` holds (in flight or queued) about `venv`'s files."""

    def backend_body(self, session: BackendSession, body: bytes) -> None:
        """One frame from the backend (reader thread)."""

    def backend_bad_frame(self, session: BackendSession, error: FrameError) -> None:
        """Output that is not LSP (reader thread)."""

    def session_ended(self, session: BackendSession, error: BackendError) -> None:
        """The session stopped (control plane): fail what it still held."""


def _hidden(path: Path, project: Path) -> bool:
    """Whether `path` (real) lies in a directory of `project` whose name starts with a dot,
    which pyright's default `exclude` (`**/.*`) leaves out of the project's folder."""
    try:
        parts = path.relative_to(canonical(project)).parts[:-1]
    except ValueError:
        return False
    return any(part.startswith(".") for part in parts)


@dataclass(slots=True)
class Queued:
    entry: Pending
    #: None: the relay did not decode it whole (its id is sent as it is)
    message: Message | None
    body: bytes
    #: the environment (key) whose document it is about; None: not known (then it waits
    #: for every folder still joining, `BackendSession.joining`)
    scope: Path | None = None


@dataclass(slots=True)
class Renewal:
    """A folder removed and added again because its environment was recreated: its requests
    wait until the backend has asked for its configuration anew (the new interpreter is in
    effect), and index-dependent ones until its documents' first diagnostics after that."""

    queue: deque[Queued]
    #: the configuration of its folder was asked and answered since it was added again
    configured: bool = False
    timer: asyncio.TimerHandle | None = None


class BackendSession:
    def __init__(
        self,
        kind: BackendKind,
        venv: Venv,
        upstream: Upstream,
        plane: Plane,
        timeouts: Timeouts,
        command: list[str] | None = None,
        reaper: Reaper | None = None,
        *,
        shared: bool = False,
        neutral_dir: Path | None = None,
    ) -> None:
        self.id = next(_session_ids)
        self.kind = kind
        #: the environment it was started for (the first folder, when shared)
        self.venv = venv
        #: shared: one process for several environments, one workspace folder each, every
        #: interpreter given per folder (`workspace/configuration` by scopeUri), none by the
        #: process environment
        self.shared = shared
        #: the environments it serves, by key, in the order they were added
        self.venvs: dict[Path, Venv] = {venv.key: venv}
        #: a shared process's cwd: a directory with nothing in it, so no backend finds an
        #: environment from its cwd (ty and pyrefly look there)
        self._neutral_dir = neutral_dir
        #: the folders the backend has been told of (initialize, didChangeWorkspaceFolders)
        self._told: list[Path] = []
        self.upstream = upstream
        self.plane = plane
        self.timeouts = timeouts
        #: overrides the kind's command (`--backend-command`)
        self.command = command
        self._reaper = reaper
        self.state = State.WAITING
        self.created_at = time.monotonic()
        self.started_at = self.created_at
        #: last client traffic (idle TTL and LRU eviction)
        self.last_used = self.created_at
        #: last byte from the backend (a frozen backend hears nothing)
        self.last_heard = self.created_at
        self.pid: int | None = None
        self.spawned_ns: int | None = None
        self.capabilities: dict[str, Any] = {}
        #: its `serverInfo` (name and version), once initialized
        self.server_info: dict[str, Any] = {}
        #: stderr from a panic report on (a Rust backend's own bug), kept for the log
        self.panic_text: bytearray | None = None
        self._identities: dict[Path, Any] = {venv.key: venv.identity()}
        self._checked_at: dict[Path, float] = {venv.key: self.created_at}
        #: the oldest check of any of its environments' identity (the relay looks again after
        #: a second)
        self.identity_checked_at = self.created_at
        #: last client traffic per environment (a shared session's LRU and TTL are per project)
        self.used: dict[Path, float] = {venv.key: self.created_at}
        #: when each environment joined (a folder added to a running backend is indexed from
        #: then on, as a backend from its start)
        self.joined: dict[Path, float] = {venv.key: self.created_at}
        #: client requests sent to the backend: wire id -> entry
        self.inflight: dict[MsgId, Pending] = {}
        #: monotonic time the proxy last changed the backend's view on its own (a change of
        #: the disk it was told of, a document of its own opened: ty 1.2.0 shared answers the
        #: other folders' requests in flight ContentModified): requests sent before and
        #: cancelled by the backend for it are sent again (relay.py)
        self.disturbed_at = 0.0
        #: client requests held until the backend is started (all) or warm (index-dependent)
        self.queue: deque[Queued] = deque()
        #: environments (keys, with the monotonic time each began) whose folder's interpreter
        #: is not in effect in the backend yet: a kind that applies a folder's configuration
        #: answer in a recheck of its own (`applies_configuration_in_recheck`) checks it with
        #: its default interpreter until then. Their requests wait in `joining_queue`, their
        #: diagnostics are not relayed; the other folders are answered meanwhile
        self.joining: dict[Path, float] = {}
        #: requests about a joining folder's documents, held until its interpreter is in effect
        self.joining_queue: deque[Queued] = deque()
        #: of the joining folders, those whose interpreter the backend was answered
        self._answered: set[Path] = set()
        #: rechecks the backend began after an answer (`$/progress` token, as JSON) -> the
        #: joining folders in effect once it ends
        self._rechecks: dict[str, frozenset[Path]] = {}
        #: resolved while no folder is joining
        self.settled: asyncio.Future[None] = plane.loop.create_future()
        self.settled.set_result(None)
        #: environments whose folder is being renewed (`renew_venv`), with their held requests
        self.renewals: dict[Path, Renewal] = {}
        #: uris of the documents this backend has open
        self.open_docs: set[str] = set()
        #: of those, the ones the proxy opened itself (the client never did): their
        #: diagnostics are not the client's business
        self.proxy_docs: set[str] = set()
        #: the uris of the probe documents opened in it (across.py, probe.py): files that
        #: exist nowhere but in the backend, whose diagnostics never reach the client
        self.probes: set[str] = set()
        #: client documents pinned to their environment's folder (pin.py): uri -> the pin's
        #: uri. Their didOpen waits until the pin is resolved (`pinning`)
        self.pins: dict[str, str] = {}
        #: uri of a client document being pinned -> done once its didOpen was sent, or once
        #: it cannot be (`unpinned`): requests about it wait for that (server.py)
        self.pinning: dict[str, asyncio.Future[None]] = {}
        #: uri of a client document that cannot be pinned -> why (its requests get an error,
        #: it is never opened here: the backend would answer it from another environment)
        self.unpinned: dict[str, str] = {}
        #: path of a pinned client document -> its environment's key (`venv_for_scope`)
        self._pinned_paths: dict[Path, Path] = {}
        #: uri of a pinned client document -> its path there
        self._pinned_at: dict[str, Path] = {}
        #: uris this backend published non-empty diagnostics for (cleared if it goes away)
        self.diagnosed: set[str] = set()
        #: set when the session ended by failing rather than by being stopped
        self.crashed = False
        #: whether other environments see files this one sees (across.py): its references,
        #: renames and call hierarchies are then merged on the control plane; until known, yes
        self.crosses = True
        #: set once the handshake is done (it served; a failed start did not)
        self.served = False
        #: backend settings for this venv (config `backend-settings`, per-project rules)
        self.settings: dict[str, Any] = {}
        #: what freshness watches for it (freshness.WatchPlan), once it runs
        self.watch_plan: Any = None
        #: the same per environment served (a shared backend has several)
        self.watch_plans: dict[Path, Any] = {}
        #: file events told to it lately, from the client or the watcher: each told once
        self.recent = RecentEvents()
        #: capabilities it registered dynamically: method -> registerOptions
        self.registered: dict[str, Any] = {}
        #: progress tokens the proxy accepted on the client's behalf (JSON of the token)
        self.local_tokens: set[str] = set()
        #: progress tokens forwarded to the client: JSON of the token -> the client's token
        self.remote_tokens: dict[str, Any] = {}
        #: requests of the proxy's own: wire id -> future of the result
        self.internal: dict[int, asyncio.Future[Any]] = {}
        #: frames handed to the control plane and not handled yet: while there are any,
        #: the reader thread hands off every frame, so the backend's order is kept
        self.handoffs = Backlog()
        #: why the session ended, once it has
        self.error: BackendError | None = None
        self.tag = f"{kind.name}#{self.id}"
        self.log = _SessionLog(logger, f"[{self.tag} {venv}]")
        self._proc: subprocess.Popen[bytes] | None = None
        self._outbox: Outbox | None = None
        self._decoder = FrameDecoder()
        self._stdout_reader: Reader | None = None
        self._stderr_reader: Reader | None = None
        self._stderr_tail = bytearray()
        self._stderr_line = bytearray()
        self._warmup_timer: asyncio.TimerHandle | None = None
        #: when the warm-up's upper bound started (the first document open), 0 before
        self._warmup_armed_at = 0.0
        #: the warm-up's own references request (`diagnostics_published`)
        self._populate: asyncio.Future[Any] | None = None
        self._stop_error: BackendError | None = None
        self._tracing = logger.isEnabledFor(jsonrpc.TRACE)
        loop = plane.loop
        #: resolved once the backend can take requests, or has failed to start
        self.started: asyncio.Future[None] = loop.create_future()
        #: resolved once it is warm (its index built), or has ended
        self.ready: asyncio.Future[None] = loop.create_future()
        #: resolved (with the exit code) once the process group is gone, or was never there
        self.gone: asyncio.Future[int | None] = loop.create_future()
        self._gone_listeners: list[Callable[[BackendSession], None]] = []
        self._end_listeners: list[Callable[[BackendSession, BackendError], None]] = []
        self._join(venv)  # (the handshake's first folder)

    # -- observers (the pool listens; data still flows pool -> session) --------------------

    def on_end(self, listener: Callable[[BackendSession, BackendError], None]) -> None:
        self._end_listeners.append(listener)

    def on_gone(self, listener: Callable[[BackendSession], None]) -> None:
        self._gone_listeners.append(listener)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.state in ALIVE

    @property
    def has_process(self) -> bool:
        """Whether a process exists or may still exist: what the pool's cap counts."""
        return self._proc is not None and not self.gone.done()

    @property
    def venv_identity(self) -> Any:
        return self._identities.get(self.venv.key)

    def serves_current(self, venv: Venv) -> bool:
        """Whether it was started, or `venv`'s folder added, with the environment on disk now
        (its pyvenv.cfg unchanged since): a replacement seen later is one it has read."""
        identity = venv.identity()
        return identity is not None and self._identities.get(venv.key) == identity

    def venv_recreated(self, now: float, venv: Venv | None = None, every: float = 1.0) -> bool:
        """Whether `venv`'s (default: the first) pyvenv.cfg changed since it was added; the
        filesystem is asked once `every` seconds per environment."""
        key = (venv or self.venv).key
        if key not in self.venvs or now - self._checked_at.get(key, 0.0) < every:
            return False
        self._checked_at[key] = now
        self.identity_checked_at = min(self._checked_at.values())
        return self.venvs[key].identity() != self._identities.get(key)

    def serves(self, venv: Venv | None) -> bool:
        return venv is not None and venv.key in self.venvs

    def venv_for_scope(self, path: Path | None) -> Venv:
        """The environment whose folder holds `path` (the innermost), for a per-scope
        question; the first environment when there is no scope or none holds it."""
        if path is not None and len(self.venvs) > 1:
            if self._pinned_paths:
                pinned = self.venvs.get(self._pinned_paths.get(canonical(path), Path()))
                if pinned is not None:
                    return pinned
            best: Venv | None = None
            for venv in self.venvs.values():
                root = venv.project_dir
                if (path == root or root in path.parents) and (
                    best is None or len(root.parts) > len(best.project_dir.parts)
                ):
                    best = venv
            if best is not None:
                return best
        return self.venv

    def nested_with(self, venv: Venv) -> Venv | None:
        """An environment served here whose folder is `venv`'s, or holds it, or is held by it:
        such projects are kept in separate processes (which folder a backend picks for a
        file of the inner one is not the proxy's to decide)."""
        root = venv.project_dir
        for other in self.venvs.values():
            mine = other.project_dir
            if mine == root or mine in root.parents or root in mine.parents:
                return other
        return None

    def add_venv(self, venv: Venv, *, rewarm: bool = True) -> None:
        """Serve `venv` too, as a workspace folder: told now if the backend runs, else with
        the handshake. Its documents are opened by `Upstream.folder_added`; index-dependent
        requests wait for the backend's index again (`rewarm`; a renewal holds its own)."""
        assert self.shared, "only a shared session serves several environments"
        now = time.monotonic()
        self.venvs[venv.key] = venv
        self._identities[venv.key] = venv.identity()
        self._checked_at[venv.key] = now
        self.used[venv.key] = now
        self.joined[venv.key] = now
        self._join(venv)
        if self.state in (State.WARMING, State.READY):
            self._tell_folders()
            self.upstream.folder_added(self, venv)
            if rewarm:
                self._rewarm()

    def remove_venv(self, venv: Venv) -> None:
        """No longer serve `venv`: its documents are closed, its folder removed."""
        if venv.key not in self.venvs or (venv.key == self.venv.key and len(self.venvs) == 1):
            return
        self.upstream.folder_removed(self, venv)
        for uri, path in list(self._pinned_at.items()):  # (one still being pinned included)
            if self._pinned_paths.get(path) == venv.key:
                self.close_document(uri)
        renewal = self.renewals.pop(venv.key, None)  # (what it held was answered just now)
        if renewal is not None and renewal.timer is not None:
            renewal.timer.cancel()
        del self.venvs[venv.key]
        self._identities.pop(venv.key, None)
        self._checked_at.pop(venv.key, None)
        self.used.pop(venv.key, None)
        self.joined.pop(venv.key, None)
        if venv.key in self.joining:  # (its own held requests were failed by folder_removed)
            self._settle([venv.key], "it left")
        if venv.key == self.venv.key:  # the first one leaves: another names the process
            self.venv = next(iter(self.venvs.values()))
            self.log.prefix = f"[{self.tag} {self.venv}]"
        if self.state in (State.WARMING, State.READY):
            self._tell_folders()

    def renew_venv(self, venv: Venv, overdue: Callable[[], object]) -> None:
        """`venv` was recreated: its folder is removed and added again, its documents closed
        and opened again, so the backend reads its interpreter and site-packages anew
        (measured per kind: bench/readd_habits.py) while the other folders are answered as
        before. Its requests (those in flight are withdrawn and sent again) wait until the
        backend asked for the folder's configuration and was answered, index-dependent ones
        until its first diagnostics after that or the warm-up bound; an environment still
        missing keeps them waiting. If the backend has not asked within the start timeout,
        `overdue` is called (the pool restarts it: always right, if slower)."""
        assert venv.key in self.venvs and len(self.venvs) > 1
        held: deque[Queued] = deque()
        previous = self.renewals.pop(venv.key, None)
        if previous is not None:  # recreated again before the last renewal took effect
            held.extend(previous.queue)
            if previous.timer is not None:
                previous.timer.cancel()
        for entry, message, body in self.upstream.folder_requests(self, venv):
            if self.cancel_queued(entry):
                held.append(Queued(entry, message, body, venv.key))
            elif entry.resendable():
                wire = entry.wire_id
                message, body = entry.unsend()
                held.append(Queued(entry, message, body, venv.key))
                if wire is not None:
                    self.notify("$/cancelRequest", {"id": wire})
            # else: not to be sent twice; `folder_removed` answers it ContentModified
        self.remove_venv(venv)
        renewal = self.renewals[venv.key] = Renewal(held)
        self.add_venv(venv, rewarm=False)
        renewal.timer = self.plane.later(self.timeouts.start, self._renewal_overdue, venv, overdue)

    def folder_diagnostics(self, key: Path) -> None:
        """The backend published diagnostics for a document of `key`'s folder (control
        plane): once its configuration is in effect, its index is too."""
        renewal = self.renewals.get(key)
        if renewal is not None and renewal.configured:
            self._renewed(key)

    def _renewed(self, key: Path) -> None:
        renewal = self.renewals.pop(key, None)
        if renewal is None:
            return
        if renewal.timer is not None:
            renewal.timer.cancel()
        for item in renewal.queue:
            self.forward(item.entry, item.message, item.body)

    def _renewal_overdue(self, venv: Venv, overdue: Callable[[], object]) -> None:
        renewal = self.renewals.get(venv.key)
        if renewal is None or renewal.configured or not self.alive:
            return
        self.log.warning(
            "the backend did not ask for the configuration of %s within %g s of its folder "
            "being added again",
            venv,
            self.timeouts.start,
        )
        overdue()

    def abandon_renewals(self) -> None:
        """Renewals end with the session (or its restart): what they held joins the queue,
        to be answered by whatever answers the queue."""
        for renewal in self.renewals.values():
            if renewal.timer is not None:
                renewal.timer.cancel()
            self.queue.extend(renewal.queue)
        self.renewals.clear()

    def folders(self) -> list[dict[str, str]]:
        """The workspace folders for the environments served now."""
        return [_folder(v) for v in self.venvs.values()]

    def _tell_folders(self) -> None:
        """didChangeWorkspaceFolders for what changed since the backend was last told."""
        now = [v.project_dir for v in self.venvs.values()]
        added = [p for p in now if p not in self._told]
        removed = [p for p in self._told if p not in now]
        self._told = now
        if added or removed:
            self.notify(
                "workspace/didChangeWorkspaceFolders",
                {
                    "event": {
                        "added": [_folder_at(p) for p in added],
                        "removed": [_folder_at(p) for p in removed],
                    }
                },
            )

    def _rewarm(self) -> None:
        """A folder added to a running backend is indexed from now: index-dependent requests
        wait for it as for a new backend (first diagnostics or the warm-up timeout)."""
        if self.state is not State.READY or self.timeouts.warmup <= 0:
            return
        self.state = State.WARMING
        self.ready = self.plane.loop.create_future()
        self._warmup_timer = self.plane.later(self.timeouts.warmup, self.mark_ready, "timeout")

    def accepts(self, method: str) -> bool:
        """Whether a request for `method` goes to the backend now (else it is queued, or
        held while a folder joins: the control plane then says which folder it is about)."""
        return not self.joining and self._sendable(method)

    def _sendable(self, method: str) -> bool:
        return not self.queue and (
            self.state is State.READY
            or (self.state is State.WARMING and method not in WARMUP_METHODS)
        )

    # -- a folder joining (a kind that applies its configuration in a recheck) --------------

    def _join(self, venv: Venv) -> None:
        """`venv`'s folder is checked with the backend's default interpreter from now until
        its configuration answer is in effect: its requests wait (`holds`)."""
        if not (self.shared and self.kind.applies_configuration_in_recheck):
            return
        self.joining[venv.key] = time.monotonic()
        self._answered.discard(venv.key)
        if self.settled.done():
            self.settled = self.plane.loop.create_future()

    def holds(self, scope: Path | None) -> bool:
        """Whether a request about environment `scope` (None: not known) waits for a folder
        still joining."""
        return bool(self.joining) and (scope is None or scope in self.joining)

    def configuration_answered(self, scoped: Iterable[Venv]) -> None:
        """The backend was answered the interpreters of the folders of `scoped` (one per
        item with a scopeUri): a joining folder's is in effect once a recheck the backend
        begins from now has ended. (A folder's interpreter never changes in a session: a
        recreated environment renews the folder, `renew_venv`, or restarts the process,
        another environment for the same project is another process, `nested_with`;
        answered again, the same interpreter answers right throughout the recheck:
        tests/e2e/test_sharing.py.) A folder being renewed whose environment exists has its
        new interpreter in effect now: a kind that re-reads a folder added again
        (`renews_folders`) applies the answer before it answers that folder
        (bench/readd_habits.py)."""
        keys = {venv.key for venv in scoped}
        for key in keys & self.joining.keys():
            self._answered.add(key)
        for key in keys & self.renewals.keys():
            renewal = self.renewals[key]
            venv = self.venvs.get(key)
            if renewal.configured or venv is None or venv.identity() is None:
                continue
            self.log.info("the recreated %s is in effect: sending its requests", venv)
            renewal.configured = True
            if renewal.timer is not None:
                renewal.timer.cancel()
            renewal.timer = self.plane.later(max(self.timeouts.warmup, 0.0), self._renewed, key)
            held, renewal.queue = renewal.queue, deque()
            for item in held:
                self.forward(item.entry, item.message, item.body, key)

    def progress_reported(self, params: Any) -> None:
        """A `$/progress` from the backend: the end of a recheck begun after a configuration
        answer puts the answered folders' interpreters in effect (measured on pyrefly 1.5.1:
        bench/join_race.py; it ends after the recheck's commit, so every later request is
        answered from the folder's own environment)."""
        if not self.joining or not isinstance(params, dict):
            return
        value = params.get("value")
        kind = value.get("kind") if isinstance(value, dict) else None
        token = json.dumps(params.get("token"))
        if kind == "begin" and self._answered:
            self._rechecks[token] = frozenset(self._answered)
        elif kind == "end":
            settled = self._rechecks.pop(token, None)
            if settled:
                self._settle(settled, "its configuration answer was applied")

    def _settle(self, keys: Iterable[Path], why: str) -> None:
        now = time.monotonic()
        for key in keys:
            began = self.joining.pop(key, None)
            self._answered.discard(key)
            if began is not None and key in self.venvs:
                self.log.info(
                    "%s: its interpreter is in effect (%s) after %.0f ms",
                    self.venvs[key],
                    why,
                    (now - began) * 1e3,
                )
        if not self.joining:
            self._rechecks.clear()
            if not self.settled.done():
                self.settled.set_result(None)
        held, self.joining_queue = self.joining_queue, deque()
        for item in held:
            if self.holds(item.scope):
                self.joining_queue.append(item)
            elif self._sendable(item.entry.method):
                self._send_request(item.entry, item.message, item.body)
            else:
                self.queue.append(item)
                if item.entry.method in WARMUP_METHODS:
                    self._arm_warmup()

    def _hold(self, item: Queued) -> None:
        item.entry.session = self
        self.joining_queue.append(item)
        self.plane.later(self.timeouts.start, self._held_too_long, item)

    def _held_too_long(self, item: Queued) -> None:
        if not any(held is item for held in self.joining_queue):
            return
        self.joining_queue.remove(item)
        self.upstream.request_failed(self, item.entry, self.not_in_effect(item.scope))

    def not_in_effect(self, scope: Path | None) -> str:
        """Why a request about `scope` was not answered: its interpreter is not in effect."""
        venv = self.venvs.get(scope) if scope is not None else None
        which = str(venv) if venv is not None else "a project joining it"
        return (
            f"typemux-lsp: the shared {self.kind.name} backend has not put the interpreter of "
            f"{which} in effect {self.timeouts.start:g} s after that project joined it, so it "
            "would answer from another environment (its default interpreter). Fix: retry; if "
            f"it persists, give {self.kind.name} a process per environment (backend-sharing = "
            f'"none") and report it to typemux-lsp.'
        )

    async def wait_joined(self) -> None:
        """Until no folder is joining: a question of the proxy's own (across projects, a
        fan-out) asked meanwhile could be answered from another environment."""
        if self.settled.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.settled), self.timeouts.start)
        except TimeoutError:
            raise BackendError(self.not_in_effect(next(iter(self.joining), None))) from None

    def queued(self) -> list[Queued]:
        """Every request it holds: queued for its start or warm-up, for a joining folder or
        for a renewed one."""
        return [
            *self.queue,
            *self.joining_queue,
            *(item for renewal in self.renewals.values() for item in renewal.queue),
        ]

    def launch(self) -> None:
        """Spawn the backend and begin the handshake (the pool calls this once it has a slot).
        A failure to spawn ends the session at once."""
        if self.state is not State.WAITING:
            return
        try:
            self._spawn()
        except BackendError as exc:
            self.fail(exc)
            return
        answer = self.request("initialize", self.upstream.initialize_params(self))
        self.plane.spawn(self._handshake(answer))

    async def _handshake(self, answer: asyncio.Future[Any]) -> None:
        try:
            try:
                result = await asyncio.wait_for(answer, self.timeouts.start)
            except TimeoutError:
                raise BackendError(
                    f"typemux-lsp: {self.kind.name} for {self.venv} did not answer initialize "
                    f"within {self.timeouts.start:g} s.{self._stderr_hint()} Fix: check the "
                    "backend runs by hand, or raise --start-timeout."
                ) from None
            with self.plane.lock:
                if self.state is not State.STARTING:
                    return
                caps = result.get("capabilities") if isinstance(result, dict) else None
                self.capabilities = caps if isinstance(caps, dict) else {}
                info = result.get("serverInfo") if isinstance(result, dict) else None
                self.server_info = info if isinstance(info, dict) else {}
                self.notify("initialized", {})
                self.served = True
                if self.shared:  # folders added while it started
                    self._tell_folders()
                self.state = State.WARMING
                self.upstream.session_started(self)
                if self.timeouts.warmup <= 0:
                    self.mark_ready("warm-up disabled")
                elif self.open_docs:
                    self._arm_warmup()
                self._flush()
                if not self.started.done():
                    self.started.set_result(None)
        except BackendError as exc:
            with self.plane.lock:
                self.fail(exc)
        except Exception as exc:
            self.log.exception("backend start failed")
            with self.plane.lock:
                self.fail(BackendError(f"typemux-lsp: {self.kind.name} for {self.venv}: {exc}"))

    def _spawn(self) -> None:
        if self.shared:
            env = self.kind.shared_environment(self.venvs.values())
            cwd = self._neutral_dir or self.venv.project_dir
        else:
            env = self.kind.environment(self.venv)
            cwd = self.venv.project_dir
        cmd = list(self.command) if self.command else self._kind_command(env["PATH"])
        spawned_ns = fs_clock_ns()  # before: the backend may read the disk before Popen returns
        try:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                bufsize=0,
                **new_group(),
            )
        except OSError as exc:
            raise BackendError(
                f"typemux-lsp: cannot start {self.kind.name} ({' '.join(cmd)}) for {self.venv}: "
                f"{exc}. Fix: {self.kind.install_hint()}."
            ) from exc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self._proc = proc
        self.pid = proc.pid
        self.state = State.STARTING
        self.started_at = self.last_heard = time.monotonic()
        #: when the backend started reading the disk (freshness catches up from it)
        self.spawned_ns = spawned_ns
        if self._reaper is not None:
            self._reaper.add(proc.pid)
        self._outbox = Outbox(
            proc.stdin.fileno(), f"{self.tag}-stdin", limit=1 << 62, on_closed=self._stdin_closed
        )
        self._stdout_reader = Reader(
            proc.stdout.fileno(), self._on_stdout, lambda: None, f"{self.tag}-stdout"
        )
        self._stdout_reader.start()
        self._stderr_reader = Reader(
            proc.stderr.fileno(), self._on_stderr, lambda: None, f"{self.tag}-stderr"
        )
        self._stderr_reader.start()
        threading.Thread(target=self._wait, name=f"{self.tag}-wait", daemon=True).start()
        self.log.info("started %s (pid %s) in %s", " ".join(cmd), proc.pid, cwd)

    def _kind_command(self, path: str) -> list[str]:
        executable = self.kind.resolve_executable(path)
        if executable is None:
            raise BackendError(
                f"typemux-lsp: cannot start {self.kind.name} for {self.venv}: the executable "
                f"`{self.kind.executable}` was not found next to typemux-lsp or on PATH. "
                f"Fix: {self.kind.install_hint()}."
            )
        return self.kind.command(executable, path)

    def _arm_warmup(self) -> None:
        """Start the warm-up's upper bound: from the first document the backend has open (or
        the first request held), since a backend analyses nothing before. Measured on every
        kind (pyright, basedpyright, ty, pyrefly): its first publishDiagnostics after an open
        is the signal that index-dependent answers are whole (pyrefly's `$/progress` ends
        within ms, before its index: references asked then find nothing)."""
        if self.state is State.WARMING and self._warmup_timer is None:
            self._warmup_armed_at = time.monotonic()
            self._warmup_timer = self.plane.later(self.timeouts.warmup, self.mark_ready, "timeout")

    def diagnostics_published(self) -> None:
        """A publishDiagnostics while warming up: the backend analysed what it has open, the
        signal that index-dependent answers are whole. For a kind that reads its project
        only when asked for references (pyrefly), the warm-up asks that first, and the
        diagnostics it publishes after (the open files rechecked) are the signal."""
        if self.state is not State.WARMING:
            return
        if not self.kind.populates_on_references:
            self.mark_ready("first diagnostics")
            return
        if self._populate is None:
            uri = next(iter(sorted(self.open_docs)), None)
            if uri is None:
                self.mark_ready("first diagnostics")
                return
            self._populate = self.request(
                "textDocument/references",
                {
                    "textDocument": {"uri": uri},
                    "position": {"line": 0, "character": 0},
                    "context": {"includeDeclaration": False},
                },
            )
            # (its answer is not needed, only that it came; an error is no news either)
            self._populate.add_done_callback(lambda f: f.cancelled() or f.exception())
        elif self._populate.done():
            self.mark_ready("diagnostics after the project was read")

    def mark_ready(self, reason: str) -> None:
        if self.state is not State.WARMING:
            return
        now = time.monotonic()
        armed = self._warmup_armed_at
        self.log.info(
            "ready (%s) after %.0f ms%s",
            reason,
            (now - self.started_at) * 1e3,
            f", {(now - armed) * 1e3:.0f} ms after its first document" if armed else "",
        )
        self.state = State.READY
        if self._warmup_timer is not None:
            self._warmup_timer.cancel()
            self._warmup_timer = None
        if not self.ready.done():
            self.ready.set_result(None)
        self._flush()

    def begin_stop(
        self, *, graceful: bool = True, error: BackendError | None = None
    ) -> asyncio.Future[Any] | None:
        """Start stopping now: a running backend is asked to shut down (the shutdown answer
        is returned), anything else is killed at once. What the session holds is failed
        with `error` when it ends."""
        if self.state in (State.STOPPING, State.STOPPED):
            return None
        running = self.state in (State.WARMING, State.READY)
        self.state = State.STOPPING
        self._stop_error = error
        if self._warmup_timer is not None:
            self._warmup_timer.cancel()
        if self._proc is None:  # still waiting for a slot: nothing runs
            self._finish(error or self._stopped_error())
            return None
        if graceful and running:
            return self.request("shutdown", None)
        self.kill()
        return None

    async def stop(self, *, graceful: bool = True, error: BackendError | None = None) -> None:
        """Stop and wait (bounded) until the process group is gone: shutdown and exit when the
        backend is up, then the group is killed whatever it did."""
        with self.plane.lock:
            shutdown = self.begin_stop(graceful=graceful, error=error)
        await self.finish_stop(shutdown)

    async def finish_stop(self, shutdown: asyncio.Future[Any] | None) -> None:
        """The waiting half of `stop`, after `begin_stop`."""
        if shutdown is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(shutdown, self.timeouts.stop)
            with self.plane.lock:
                self.notify("exit", None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.gone), self.timeouts.stop)
        with self.plane.lock:
            self.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.gone), self.timeouts.stop)
        with self.plane.lock:
            self._finish(self._stop_error or self._stopped_error())

    def _stopped_error(self) -> BackendError:
        return BackendError(
            f"typemux-lsp: the {self.kind.name} backend for {self.venv} was stopped."
        )

    def kill(self) -> None:
        """Kill the backend's whole process group (basedpyright's wrapper leaves node behind)."""
        if self._proc is not None and not self.gone.done():
            kill_group(self._proc.pid)

    def fail(self, error: BackendError) -> None:
        """The one way a session ends badly (failed start, exit, garbage, frozen): it counts as
        a crash for the pool's crash-loop guard."""
        if self.state is State.STOPPED:
            return
        self.log.error("%s", error)
        self.crashed = True
        self._finish(error)

    def _finish(self, error: BackendError) -> None:
        if self.state is State.STOPPED:
            return
        self.state = State.STOPPED
        self.error = error
        if self._warmup_timer is not None:
            self._warmup_timer.cancel()
        if not self.started.done():
            self.started.set_result(None)
        if not self.ready.done():
            self.ready.set_result(None)
        if self._outbox is not None:
            self._outbox.close()
        self.kill()
        if self._proc is None and not self.gone.done():
            self._gone(None)  # never spawned: nothing to wait for
        for fut in self.internal.values():
            if not fut.done():
                fut.set_exception(error)
        self.internal.clear()
        self.abandon_renewals()
        self.upstream.session_ended(self, error)
        self.inflight.clear()
        self.queue.clear()
        self.joining_queue.clear()
        self.joining.clear()
        if not self.settled.done():
            self.settled.set_result(None)
        for listener in self._end_listeners:
            listener(self, error)

    def _wait(self) -> None:
        """Waiter thread: the exit, after stdout is drained (a last answer is not lost),
        then the whole group gone."""
        proc = self._proc
        assert proc is not None
        code = proc.wait()
        # What it wrote last (an answer, why it died) is read before the exit is reported;
        # a child still holding the pipes open dies with the group first.
        readers = [r for r in (self._stdout_reader, self._stderr_reader) if r is not None]
        for reader in readers:
            reader.join(0.2)
        kill_group(proc.pid)
        for reader in readers:
            reader.join(0.5)
        deadline = time.monotonic() + 2.0
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
            kill_group(proc.pid)
        self.plane.submit(self._exited, code)

    def _exited(self, code: int | None) -> None:
        if self.state is State.STOPPING:
            self._finish(self._stop_error or self._stopped_error())
        elif self.state is not State.STOPPED:
            bug = self.panic()
            if bug is not None:
                version = str(self.server_info.get("version") or "").strip()
                which = f"{self.kind.name} {version}".strip()
                why = (
                    f"panicked (exit code {code}): a bug in {which}, not in typemux-lsp: {bug}. "
                    f"Report it to {self.kind.name}'s authors with that message."
                )
            else:
                why = f"exited (code {code}) while handling requests.{self._stderr_hint()}"
            self.fail(
                BackendError(
                    f"typemux-lsp: the {self.kind.name} backend for {self.venv} {why} "
                    "The next request for this environment starts a fresh backend."
                )
            )
        if self._reaper is not None and self.pid is not None:
            self._reaper.remove(self.pid)
        self._gone(code)

    def _gone(self, code: int | None) -> None:
        if not self.gone.done():
            self.gone.set_result(code)
        for listener in self._gone_listeners:
            listener(self)

    def _stdin_closed(self, exc: OSError) -> None:
        """The backend stopped reading its stdin: it is exiting; its exit is reported."""
        self.log.debug("stdin closed: %s", exc)

    # -- traffic to the backend ----------------------------------------------------------

    def send_body(self, body: bytes) -> None:
        if self._outbox is not None:
            if self._tracing:
                self.log.log(jsonrpc.TRACE, "proxy -> backend: %s", body.decode(errors="replace"))
            self._outbox.send_frame(jsonrpc.frame_header(body), body)

    def send(self, message: Message) -> None:
        self.send_body(jsonrpc.dumps(message))

    def notify(self, method: str, params: Any) -> None:
        self.send(jsonrpc.notification(method, params))

    def request(self, method: str, params: Any) -> asyncio.Future[Any]:
        """A request of the proxy's own (a negative id no client request is sent with)."""
        msg_id = proxy_id()
        fut: asyncio.Future[Any] = self.plane.loop.create_future()
        self.internal[msg_id] = fut
        self.send(jsonrpc.request(msg_id, method, params))
        return fut

    def cancel_internal(self, fut: asyncio.Future[Any]) -> None:
        """Withdraw a request of the proxy's own (a fan-out the client cancelled)."""
        for msg_id, known in list(self.internal.items()):
            if known is fut:
                del self.internal[msg_id]
                if self.alive:
                    self.notify("$/cancelRequest", {"id": msg_id})
        fut.cancel()

    def initialize_folders(self) -> list[dict[str, str]]:
        """The folders the initialize request names (the backend knows them from then on)."""
        self._told = [v.project_dir for v in self.venvs.values()]
        return [_folder_at(p) for p in self._told]

    def forward(
        self, entry: Pending, message: Message | None, body: bytes, scope: Path | None = None
    ) -> None:
        """Send a client request, or hold it until the backend can answer it well. `message`
        may be None (not decoded whole) when the request's id is sent as it is; `scope` is
        the environment (key) of the document it is about, when known: held while that
        folder joins (`holds`) or is renewed (`renew_venv`)."""
        self.last_used = now = time.monotonic()
        if scope is not None and self.renewals:
            renewal = self.renewals.get(scope)
            if renewal is not None and (not renewal.configured or entry.method in WARMUP_METHODS):
                entry.session = self
                renewal.queue.append(Queued(entry, message, body, scope))
                return
        if self.holds(scope):
            self._hold(Queued(entry, message, body, scope))
        elif self._sendable(entry.method):
            self._send_request(entry, message, body, now)
        else:
            entry.session = self
            self.queue.append(Queued(entry, message, body, scope))
            if entry.method in WARMUP_METHODS:
                self._arm_warmup()  # (a request for a document the backend does not have)

    def _send_request(
        self, entry: Pending, message: Message | None, body: bytes, now: float | None = None
    ) -> None:
        wire = record_sent(entry, self, message, body, time.monotonic() if now is None else now)
        if wire != entry.client_id:
            decoded = (message, body) if message is not None else jsonrpc.decode(body)
            if isinstance(decoded, jsonrpc.BadMessage):  # (never: it was read to route it)
                raise ValueError(f"a request that cannot be decoded: {decoded.reason}")
            message = dict(decoded[0])
            message["id"] = wire
            body = jsonrpc.dumps(message)
        self.send_body(body)

    def cancel_queued(self, entry: Pending) -> bool:
        for queue in (self.queue, self.joining_queue, *(r.queue for r in self.renewals.values())):
            for item in queue:
                if item.entry is entry:
                    queue.remove(item)
                    return True
        return False

    def _flush(self) -> None:
        held: deque[Queued] = deque()
        queue, self.queue = self.queue, held
        while queue:
            item = queue.popleft()
            if self.holds(item.scope):
                self._hold(item)
                continue
            if self.state is State.WARMING and item.entry.method in WARMUP_METHODS:
                held.append(item)
                continue
            self._send_request(item.entry, item.message, item.body)

    def open_document(self, doc: Document) -> None:
        if self._pinned_open(doc):
            return
        self._send_open(doc)

    def _send_open(self, doc: Document) -> None:
        if doc.uri in self.proxy_docs:  # the client opens what the proxy had open: its text wins
            self.close_document(doc.uri)
        self.open_docs.add(doc.uri)
        self._arm_warmup()
        self.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": doc.uri,
                    "languageId": doc.language_id,
                    "version": doc.sync_version,
                    "text": doc.backend_text,
                }
            },
        )

    def open_file(self, path: Path) -> None:
        """Open a project file of the proxy's own (never the client's): some backends index
        a project only once one of its files is open (pyrefly for workspace/symbol)."""
        uri = path.as_uri()
        if uri in self.open_docs:
            return
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return
        self.open_text(uri, text)

    def open_text(self, uri: str, text: str) -> None:
        """Open a document of the proxy's own with `text` (a file another environment owns,
        for a question asked across projects)."""
        self.open_docs.add(uri)
        self.proxy_docs.add(uri)
        self.disturbed_at = time.monotonic()  # (a shared ty gives up on the folders' requests)
        self._arm_warmup()
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}},
        )

    def close_document(self, uri: str) -> None:
        if uri in self.open_docs:
            self.open_docs.discard(uri)
            self.proxy_docs.discard(uri)
            self.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        pin = self.pins.pop(uri, None)
        if pin is not None:
            self.close_document(pin)
            self.probes.discard(pin)
        self.unpinned.pop(uri, None)
        waiting = self.pinning.pop(uri, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)  # (its held requests go on: to a closed document)
        gone = self._pinned_at.pop(uri, None)
        if gone is not None:
            self._pinned_paths.pop(gone, None)

    # -- pins (pin.py) ------------------------------------------------------------------------

    def _pinned_open(self, doc: Document) -> bool:
        """Whether the client's document `doc` is opened through a pin (pin.py): its didOpen
        is sent once the pin is resolved, or never when it cannot be pinned. A shared backend
        of a kind that answers untracked files from elsewhere, a document of one of its
        environments outside every folder or inside the environment's own prefix (which a
        folder's default `exclude` leaves out)."""
        if not (self.shared and self.kind.pins_untracked) or doc.venv is None:
            return False
        venv = self.venvs.get(doc.venv.key)
        if venv is None or doc.path is None:
            return False
        waiting = self.pinning.get(doc.uri)
        if waiting is not None:  # (resolved: opened again, e.g. resynced; else it waits)
            return not waiting.done() or doc.uri in self.unpinned
        if len(self.venvs) == 1:
            # One folder: pyright sends a file no folder tracks to the one folder when every
            # folder has the same root, and once open there it stays that folder's program's
            # (its third rule) when others join.
            return False
        path = canonical(doc.path)
        inside = any(path.is_relative_to(canonical(v.project_dir)) for v in self.venvs.values())
        if inside and not path.is_relative_to(venv.key) and not _hidden(path, venv.project_dir):
            return False
        self._pin(doc, venv, path)
        return True

    def _pin(self, doc: Document, venv: Venv, path: Path) -> None:
        done: asyncio.Future[None] = self.plane.loop.create_future()
        self.pinning[doc.uri] = done
        self._pinned_paths[path] = venv.key
        self._pinned_at[doc.uri] = path
        module = pin.module_of(venv, path)
        directory = probe.probe_dir(venv.project_dir, self.kind.name)
        if module is None:
            hidden = _hidden(path, venv.project_dir) and not path.is_relative_to(venv.key)
            self._unpin(
                doc.uri,
                path,
                venv,
                "its folder leaves it out (pyright's default `exclude` names every directory "
                "whose name starts with a dot) and no import names it"
                if hidden
                else "no import names it (it lies under none of that environment's import "
                "roots: site-packages and the directories its .pth files add)",
            )
            return
        if directory is None:
            self._unpin(
                doc.uri,
                path,
                venv,
                f"its {self.kind.name} configuration (`include`) names no directory to put "
                "an import of it in, or cannot be read",
            )
            return
        for n in itertools.count(1):
            where = directory / f"__typemux_pin_{n}__.py"
            pin_uri = where.as_uri()
            if pin_uri not in self.open_docs and not where.exists():
                break
        self.pins[doc.uri] = pin_uri
        self.probes.add(pin_uri)
        text, position = pin.pin_text(module)
        self.open_text(pin_uri, text)
        answer = self.request(
            "textDocument/definition", {"textDocument": {"uri": pin_uri}, "position": position}
        )
        self.plane.spawn(self._pinned(doc, venv, path, module, done, answer, time.monotonic()))

    async def _pinned(
        self,
        doc: Document,
        venv: Venv,
        path: Path,
        module: str,
        done: asyncio.Future[None],
        answer: asyncio.Future[Any],
        began: float,
    ) -> None:
        """The pin's definition answered: the folder's program has the file when it names
        the file; then the client's didOpen goes (with its text as it is now)."""
        why = None
        result: Any = None
        try:
            result = await asyncio.wait_for(answer, self.timeouts.start)
        except TimeoutError:
            limit = self.timeouts.start
            why = f"{self.kind.name} did not resolve `import {module}` within {limit:g} s"
        except BackendError as exc:
            why = f"asked to resolve `import {module}`, {self.kind.name} failed ({exc})"
        except asyncio.CancelledError:
            if not answer.cancelled():
                raise
            why = "its backend stopped"
        with self.plane.lock:
            if self.pinning.get(doc.uri) is not done or done.done() or not self.alive:
                # (closed meanwhile, or the backend is gone: its requests are routed again,
                # to the backend started in its place, which pins it anew)
                if not done.done():
                    done.set_result(None)
                return
            if why is None and not pin.reaches(result, path):
                why = (
                    f"`import {module}` in that project does not resolve to it (a module of "
                    "the project's own may have that name)"
                )
            if why is not None:
                self._unpin(doc.uri, path, venv, why)
                return
            self.log.info(
                "%s pinned to %s's folder (import %s) in %.0f ms",
                path,
                venv,
                module,
                (time.monotonic() - began) * 1e3,
            )
            if not doc.desynced:
                self._send_open(doc)
            done.set_result(None)

    def _unpin(self, uri: str, path: Path, venv: Venv, why: str) -> None:
        """`uri` cannot be pinned: never opened here, its requests get an error saying so."""
        pin_uri = self.pins.pop(uri, None)
        if pin_uri is not None:
            self.close_document(pin_uri)
            self.probes.discard(pin_uri)
        self.unpinned[uri] = (
            f"typemux-lsp: no project folder of the shared {self.kind.name} backend tracks "
            f"{path} (of the environment {venv}), so it would answer it from another "
            f"environment (its default workspace), and it cannot be tied to that project's "
            f"folder: {why}. Fix: give "
            f'{self.kind.name} a process per environment (backend-sharing = "none", or list '
            "the kinds to share without it)."
        )
        self.log.warning("%s", self.unpinned[uri])
        waiting = self.pinning.get(uri)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    # -- traffic from the backend (reader threads) -------------------------------------------

    def _on_stdout(self, data: bytes) -> None:
        self.last_heard = time.monotonic()
        for item in self._decoder.feed(data):
            if isinstance(item, FrameError):
                self.upstream.backend_bad_frame(self, item)
            else:
                if self._tracing:
                    self.log.log(
                        jsonrpc.TRACE, "backend -> proxy: %s", item.decode(errors="replace")
                    )
                self.upstream.backend_body(self, item)

    def resolve_internal(self, message: Message) -> bool:
        """An answer to a request of the proxy's own (control plane); False if it is not."""
        msg_id = message.get("id")
        fut = self.internal.pop(msg_id, None) if isinstance(msg_id, int) else None
        if fut is None:
            return False
        if not fut.done():
            if "error" in message:
                err = message["error"] if isinstance(message["error"], dict) else {}
                fut.set_exception(BackendAnswered(err.get("code"), err.get("message")))
            else:
                fut.set_result(message.get("result"))
        return True

    def output_not_lsp(self, reason: str) -> None:
        """A backend whose output is not LSP cannot be trusted with another request."""
        if self.alive:
            self.fail(
                BackendError(
                    f"typemux-lsp: the {self.kind.name} backend for {self.venv} wrote output "
                    f"that is not LSP ({reason}), so it was stopped.{self._stderr_hint()} The "
                    "next request for this environment starts a fresh backend."
                )
            )

    def _on_stderr(self, data: bytes) -> None:
        """Drained always; logged at debug (pyrefly writes two lines per request); the tail is
        kept for error messages."""
        tail = self._stderr_tail
        seen = len(tail)
        tail += data
        if self.panic_text is not None:
            if len(self.panic_text) < 2048:
                self.panic_text += data[:2048]
        elif b"panicked at" in tail[max(0, seen - 64) :]:
            start = tail.rfind(b"thread '", 0, tail.index(b"panicked at", max(0, seen - 64)))
            self.panic_text = bytearray(tail[max(0, start) :][:2048])
        if len(tail) > _STDERR_TAIL_BYTES:
            del tail[: len(tail) - _STDERR_TAIL_BYTES]
        if not self.log.isEnabledFor(logging.DEBUG):
            return
        line = self._stderr_line
        line += data
        while (nl := line.find(b"\n")) >= 0:
            text = line[:nl].decode(errors="replace").rstrip()
            del line[: nl + 1]
            if text:
                self.log.debug("stderr: %s", text)
        if len(line) > 4096:
            self.log.debug("stderr: %s", line.decode(errors="replace"))
            line.clear()

    def panic(self) -> str | None:
        """The panic the backend reported on stderr (its own bug), in words, or None."""
        if self.panic_text is None:
            return None
        return backend_bug(bytes(self.panic_text).decode(errors="replace"))

    def stderr_tail(self, max_chars: int = 800) -> str:
        return bytes(self._stderr_tail).decode(errors="replace")[-max_chars:].strip()

    def _stderr_hint(self) -> str:
        tail = self.stderr_tail()
        return f" Its stderr ended with: {tail!r}." if tail else ""

    def __repr__(self) -> str:
        return f"<BackendSession {self.tag} {self.state.value} {self.venv}>"


def _folder(venv: Venv) -> dict[str, str]:
    return _folder_at(venv.project_dir)


def _folder_at(root: Path) -> dict[str, str]:
    return {"uri": from_fs_path(str(root)) or root.as_uri(), "name": root.name}


class _SessionLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the session and its venv."""

    def __init__(self, base: logging.Logger, prefix: str) -> None:
        super().__init__(base, {})
        self.prefix = prefix

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{self.prefix} {msg}", kwargs
