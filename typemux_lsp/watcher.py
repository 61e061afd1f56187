"""OS file watching for freshness: what changed on disk under each backend's roots, in batches.

Built on `watchfiles` (the Rust `notify` crate: inotify, FSEvents, ReadDirectoryChangesW;
maintained, used by uvicorn, typed). Each key (one per live backend) gets one OS watch
instance and one thread that sleeps in Rust between checks, so the idle cost is one
wake-up per `debounce_ms` per key and no Python work.

Why directories are listed here rather than watched recursively by `notify`: a recursive
OS watch cannot exclude anything, so `.git`, `node_modules`, `__pycache__` and nested
venvs would each cost inotify watches (a per-user budget) and wake the thread. We walk
the roots with the filter and watch each kept directory on its own; when a batch creates
or deletes directories, the key is re-armed (the new watch is in place before the old
one is dropped, so nothing falls in between) and files already inside a new directory
are reported as created (an installer writes them faster than any watch can be added).

Debounce: a batch is delivered once no change has been seen for `debounce_ms` (so a
`uv sync` rewriting thousands of files is one batch), or after `max_batch_ms` of
continuous change.

Threads: `on_changes(key, changes)` is called on the key's watcher thread, never on the
caller's event loop; an asyncio user hops over with `loop.call_soon_threadsafe`. The call
must be quick. After `unwatch(key)` (or `watch(key, ...)` with new roots) returns, no batch
of the old watch is delivered. `watch`, `unwatch` and `status` never wait for the OS:
arming (walking a large site-packages, adding watches) happens on the key's thread.

When the OS refuses more watches (inotify's `max_user_watches`, `max_user_instances`, or
the open-file limit), the roots that could not be watched are reported by `status()` with
the fix, logged once, and the rest stays watched: never a crash.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .platform import fs_clock_ns, inotify_limits

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SKIP_DIRS",
    "Change",
    "Changes",
    "Root",
    "WatchFilter",
    "Watcher",
    "fs_clock_ns",
    "os_limits",
]


class Change(enum.IntEnum):
    """What happened to a path; the values are LSP's `FileChangeType`."""

    CREATED = 1
    CHANGED = 2
    DELETED = 3


#: Directory names never watched: VCS metadata, caches, bytecode, JS dependencies.
DEFAULT_SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".jj",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        ".tox",
        ".nox",
        ".cache",
        ".idea",
        ".vscode",
    }
)

#: File suffixes never reported: bytecode and editor droppings.
DEFAULT_SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", "~")

LIMIT_FIX = (
    "raise the limit, e.g. `sudo sysctl fs.inotify.max_user_watches=524288` (persist it in "
    "/etc/sysctl.d/), then restart typemux-lsp"
)
INSTANCES_FIX = (
    "raise `fs.inotify.max_user_instances` (e.g. `sudo sysctl fs.inotify.max_user_instances=1024`) "
    "or the open-file limit (`ulimit -n`), or stop other programs that watch files, then "
    "restart typemux-lsp"
)


def os_limits() -> dict[str, int]:
    """The OS watch limits in force (Linux inotify), for `--doctor`; empty elsewhere.

    A process in a user namespace is bound by its namespace's `/proc/sys/user` limits as
    well as the machine's `fs.inotify` ones: the lower of each pair is shown.
    """
    return inotify_limits()


@dataclass(frozen=True, slots=True)
class Root:
    """A directory to watch; `recursive=False` watches its own entries only (e.g. a venv's
    top directory, for `pyvenv.cfg`)."""

    path: Path
    recursive: bool = True


@dataclass(frozen=True, slots=True)
class WatchFilter:
    """Which directories are walked and which files are reported.

    `skip_dirs` are directory names never entered, `skip_paths` exact directories never
    entered (other projects), `skip_markers` names of files that make a directory one never
    entered (`pyvenv.cfg`: another environment). `suffixes`/`names` restrict the files
    reported (None: every file not skipped by `skip_suffixes`). A root is always watched,
    and its own creation or deletion always reported, whatever the filter says.
    """

    skip_dirs: frozenset[str] = DEFAULT_SKIP_DIRS
    skip_paths: frozenset[Path] = frozenset()
    suffixes: tuple[str, ...] | None = None
    names: frozenset[str] = frozenset()
    skip_suffixes: tuple[str, ...] = DEFAULT_SKIP_SUFFIXES
    skip_markers: tuple[str, ...] = ()

    def include_dir(self, path: Path) -> bool:
        if path.name in self.skip_dirs or path in self.skip_paths or path.name.startswith("~"):
            return False  # "~name": pip's stash of a package it is replacing
        return not any(os.path.lexists(path / marker) for marker in self.skip_markers)

    def include_file(self, path: Path) -> bool:
        return path.parent.name not in self.skip_dirs and self.include_name(path.name)

    def include_name(self, name: str) -> bool:
        """`include_file` for a file in a directory that is watched."""
        if name.endswith(self.skip_suffixes):
            return False
        if self.suffixes is None:
            return True
        return name.endswith(self.suffixes) or name in self.names


Changes = list[tuple[Change, Path]]
OnChanges = Callable[[str, Changes], None]


class Notify(Protocol):
    """The part of `watchfiles._rust_notify.RustNotify` used here (injectable for tests)."""

    def watch(
        self, debounce_ms: int, step_ms: int, timeout_ms: int, stop_event: Any
    ) -> set[tuple[int, str]] | str: ...

    def close(self) -> None: ...


NotifyFactory = Callable[[list[str]], Notify]


def rust_notify(paths: list[str]) -> Notify:
    """One `watchfiles` OS watch of `paths`, each non-recursively.

    `ignore_permission_denied=False`: with True, watchfiles ignores every error while
    adding watches, the watch limit included, and the limit must be seen.
    """
    from watchfiles._rust_notify import RustNotify  # only when watching

    notify: Notify = RustNotify(paths, False, False, 300, False, False)
    return notify


@dataclass
class _Degraded:
    root: Path
    reason: str
    fix: str

    def as_json(self) -> dict[str, str]:
        return {"root": str(self.root), "reason": self.reason, "fix": self.fix}


@dataclass
class _Key:
    """One key's watch: its roots, its thread, and what status() shows."""

    key: str
    roots: tuple[Root, ...]
    filter: WatchFilter
    stop: threading.Event = field(default_factory=threading.Event)
    #: set once the first arming ended (watching, degraded, failed or stopped)
    armed: threading.Event = field(default_factory=threading.Event)
    state: str = "starting"
    directories: frozenset[Path] = frozenset()
    degraded: list[_Degraded] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)
    batches: int = 0
    changes: int = 0
    last_batch_at: float | None = None
    thread: threading.Thread | None = None
    #: wall-clock ns from which changes made before the watch was armed are caught up
    since_ns: int | None = None


@dataclass(frozen=True)
class _Limit:
    reason: str
    fix: str


def classify_os_error(exc: BaseException) -> _Limit | None:
    """The errors watchfiles raises when an OS watch limit is reached, as a reason + fix.

    Reproduced with watchfiles 1.3 under a lowered per-namespace inotify limit: a plain
    `OSError("OS file watch limit reached. about [path] (Error { kind: MaxFilesWatch ..."`
    for ENOSPC (`max_user_watches`), and `WatchfilesRustInternalError("Error creating
    recommended watcher: Too many open files (os error 24)")` for EMFILE
    (`max_user_instances` or the fd limit). Older releases raised FileNotFoundError with
    the first message: the text, not the type, decides.
    """
    text = str(exc)
    errno = getattr(exc, "errno", None)
    if "watch limit" in text or errno == 28 or "os error 28" in text:
        return _Limit("the OS file watch limit is reached (inotify max_user_watches)", LIMIT_FIX)
    if "Too many open files" in text or errno == 24 or "os error 24" in text:
        return _Limit(
            "no OS watch can be created: inotify max_user_instances or the open-file "
            "limit is reached",
            INSTANCES_FIX,
        )
    return None


class Watcher:
    """Watches each key's roots and calls `on_changes(key, changes)` once per settled batch.

    `changes` is a list of `(Change, Path)` sorted by path, one entry per path (a path
    deleted and recreated in one batch is CHANGED). See the module docstring for threads.
    """

    def __init__(
        self,
        on_changes: OnChanges,
        debounce_ms: int = 300,
        *,
        max_batch_ms: int = 10_000,
        notify_factory: NotifyFactory = rust_notify,
    ) -> None:
        self._on_changes = on_changes
        self.debounce_ms = max(10, int(debounce_ms))
        self.max_batch_ms = max(self.debounce_ms, int(max_batch_ms))
        self._factory = notify_factory
        self._lock = threading.RLock()
        self._keys: dict[str, _Key] = {}
        self._logged: set[tuple[str, str]] = set()
        self._closed = False

    # -- the caller's side ----------------------------------------------------------------

    def watch(
        self,
        key: str,
        roots: Sequence[Path | Root],
        filter: WatchFilter | None = None,
        *,
        since_ns: int | None = None,
    ) -> None:
        """Watch `roots` for `key`, replacing what `key` watched before. Never blocks.

        A plain `Path` is watched recursively. Roots are in order of importance: when the
        OS watch limit is reached, the later ones are dropped first. With `since_ns` (a
        `time.time_ns()`), what changed from then until the watch is armed — arming walks
        the roots, which takes a moment — is found by its timestamps and delivered as the
        first batch: a package installed while a backend starts is not missed.
        """
        spec = _Key(
            key,
            tuple(r if isinstance(r, Root) else Root(Path(r)) for r in roots),
            filter or WatchFilter(),
            since_ns=since_ns,
        )
        with self._lock:
            if self._closed:
                raise RuntimeError("the watcher is closed")
            old = self._keys.pop(key, None)
            if old is not None:
                old.stop.set()
            self._keys[key] = spec
            spec.thread = threading.Thread(
                target=self._run, args=(spec,), name=f"typemux-watch:{key}", daemon=True
            )
            spec.thread.start()

    def unwatch(self, key: str) -> None:
        """Stop watching `key`; no batch of it is delivered after this returns."""
        with self._lock:
            spec = self._keys.pop(key, None)
            if spec is not None:
                spec.stop.set()

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._keys)

    def status(self) -> dict[str, Any]:
        """What is watched, per key: JSON for `typemux/status` and `--doctor`."""
        now = time.monotonic()
        with self._lock:
            keys = {
                spec.key: {
                    "state": spec.state,
                    "roots": [{"path": str(r.path), "recursive": r.recursive} for r in spec.roots],
                    "watchedDirectories": len(spec.directories),
                    "degraded": [d.as_json() for d in spec.degraded],
                    "missing": [str(p) for p in spec.missing],
                    "batches": spec.batches,
                    "changes": spec.changes,
                    "secondsSinceLastBatch": (
                        None if spec.last_batch_at is None else round(now - spec.last_batch_at, 3)
                    ),
                }
                for spec in self._keys.values()
            }
        return {"debounceMs": self.debounce_ms, "keys": keys}

    def wait_armed(self, key: str, timeout: float = 10.0) -> bool:
        """Wait until `key`'s first arming ended (for tests and start-up); False if `key`
        is not watched or the time ran out."""
        with self._lock:
            spec = self._keys.get(key)
        if spec is None or not spec.armed.wait(timeout):
            return False
        with self._lock:
            return self._keys.get(key) is spec

    def close(self, timeout: float = 2.0) -> None:
        """Stop every key and wait (briefly) for the threads to end."""
        with self._lock:
            self._closed = True
            specs = list(self._keys.values())
            self._keys.clear()
        for spec in specs:
            spec.stop.set()
        deadline = time.monotonic() + timeout
        for spec in specs:
            if spec.thread is not None and spec.thread is not threading.current_thread():
                spec.thread.join(max(0.0, deadline - time.monotonic()))

    # -- the key's thread -----------------------------------------------------------------

    def _current(self, spec: _Key) -> bool:
        return self._keys.get(spec.key) is spec and not spec.stop.is_set()

    def _run(self, spec: _Key) -> None:
        notify: Notify | None = None
        try:
            try:
                notify = self._arm(spec)
                if notify is not None and spec.since_ns is not None:
                    missed = self._changed_since(spec, spec.since_ns)
                    if missed:
                        self._deliver(spec, missed)
            finally:
                spec.armed.set()
            while notify is not None and not spec.stop.is_set():
                raw = notify.watch(self.max_batch_ms, self.debounce_ms, 0, spec.stop)
                if isinstance(raw, str):  # "stop" ("signal"/"timeout" never on this thread)
                    continue
                changes = self._digest(spec, raw)
                if any(p in spec.directories or p.is_dir() for _, p in changes):
                    changes, notify = self._rearm(spec, notify, changes)
                if changes:
                    self._deliver(spec, changes)
        except Exception as exc:
            # an error watchfiles does not document: say so, keep the proxy running
            with self._lock:
                if self._current(spec):
                    spec.state = "failed"
                    spec.degraded = [
                        _Degraded(r.path, f"file watching failed: {exc}", "restart typemux-lsp")
                        for r in spec.roots
                    ]
            self._log_once(spec, "failed", f"file watching of {spec.key} stopped: {exc}")
        finally:
            if notify is not None:
                with contextlib.suppress(Exception):
                    notify.close()

    def _deliver(self, spec: _Key, changes: Changes) -> None:
        with self._lock:
            if not self._current(spec):
                return
            spec.batches += 1
            spec.changes += len(changes)
            spec.last_batch_at = time.monotonic()
            try:
                self._on_changes(spec.key, changes)
            except Exception:
                logger.exception("the file change callback failed for %s", spec.key)

    def _arm(self, spec: _Key) -> Notify | None:
        """Walk the roots and start one OS watch of the kept directories, degrading what the
        OS refuses. None when stopped or when nothing exists to be watched."""
        for _attempt in range(5):
            if spec.stop.is_set():
                return None
            dirs_by_root, missing, denied = self._walk(spec)
            try:
                notify, degraded, watched = self._start(dirs_by_root)
            except FileNotFoundError:
                continue  # a directory vanished between the walk and the watch: walk again
            degraded += [_Degraded(p, "permission denied", "make it readable") for p in denied]
            with self._lock:
                if not self._current(spec):
                    if notify is not None:
                        notify.close()
                    return None
                spec.directories = watched
                spec.missing = missing
                spec.degraded = degraded
                spec.state = "degraded" if degraded else "watching" if notify else "idle"
            for item in degraded:
                self._log_once(
                    spec,
                    str(item.root),
                    f"not watching {item.root} for {spec.key}: {item.reason}; answers may "
                    f"not follow changes there. Fix: {item.fix}",
                )
            if missing:
                logger.info("%s: not watching missing roots %s", spec.key, missing)
            return notify
        raise RuntimeError("the watched directories keep changing while being listed")

    def _changed_since(self, spec: _Key, since: int) -> Changes:
        """What the watched directories gained or changed since `since` (`fs_clock_ns`), by
        timestamps (a removal shows as its directory changed). Every entry is looked at: a
        file rewritten in place leaves its directory's times alone."""
        found: dict[Path, Change] = {}
        roots = {r.path for r in spec.roots}
        known = {str(d) for d in spec.directories}  # (included by the walk)
        root_names = {str(r) for r in roots}
        keep = spec.filter
        for directory in sorted(spec.directories):
            try:
                st = directory.stat()
                if max(st.st_mtime_ns, st.st_ctime_ns) >= since and directory not in roots:
                    found.setdefault(directory, Change.CHANGED)  # (CREATED, seen from above)
                files_kept = directory.name not in keep.skip_dirs
                with os.scandir(directory) as entries:
                    for entry in entries:  # (strings, not Paths: 30,000 entries is common)
                        is_dir = entry.is_dir(follow_symlinks=False)  # (no stat: d_type)
                        if is_dir:
                            if entry.path in root_names:
                                continue  # (a root's own times change with its entries)
                            if entry.path not in known and not keep.include_dir(Path(entry.path)):
                                continue
                        elif not (files_kept and keep.include_name(entry.name)):
                            continue
                        est = entry.stat(follow_symlinks=False)
                        if max(est.st_mtime_ns, est.st_ctime_ns) >= since:
                            found[Path(entry.path)] = Change.CREATED if is_dir else Change.CHANGED
            except OSError:
                continue
        return sorted(((change, path) for path, change in found.items()), key=lambda c: c[1])

    def _start(
        self, dirs_by_root: list[tuple[Path, list[Path]]]
    ) -> tuple[Notify | None, list[_Degraded], frozenset[Path]]:
        """One OS watch over every root's directories; when the OS refuses, root by root,
        keeping the roots (in the given order of importance) that fit."""
        everything = [d for _, dirs in dirs_by_root for d in dirs]
        if not everything:
            return None, [], frozenset()
        try:
            return self._factory([str(d) for d in everything]), [], frozenset(everything)
        except Exception as exc:
            if classify_os_error(exc) is None:
                raise
        kept: list[Path] = []
        degraded: list[_Degraded] = []
        notify: Notify | None = None
        for root, dirs in dirs_by_root:
            try:
                candidate = self._factory([str(d) for d in [*kept, *dirs]])
            except Exception as exc:
                limit = classify_os_error(exc)
                if limit is None:
                    raise
                degraded.append(_Degraded(root, limit.reason, limit.fix))
                continue
            if notify is not None:
                notify.close()
            notify = candidate
            kept += dirs
        return notify, degraded, frozenset(kept)

    def _walk(self, spec: _Key) -> tuple[list[tuple[Path, list[Path]]], list[Path], list[Path]]:
        """Per root, the directories to watch; the missing roots; unreadable directories."""
        seen: set[Path] = set()
        out: list[tuple[Path, list[Path]]] = []
        missing: list[Path] = []
        denied: list[Path] = []
        roots = {r.path for r in spec.roots}
        for root in spec.roots:
            if not root.path.is_dir():
                missing.append(root.path)
                continue
            found = _directories(root.path, root.recursive, spec.filter, roots, denied)
            dirs = [d for d in found if d not in seen]
            seen.update(dirs)
            out.append((root.path, dirs))
        return out, missing, denied

    def _rearm(self, spec: _Key, notify: Notify, changes: Changes) -> tuple[Changes, Notify | None]:
        """Directories came or went: watch the new set before dropping the old watch, then
        report what the new directories already hold and what the old watch saw meanwhile."""
        fresh = self._arm(spec)
        with contextlib.suppress(Exception):
            late = notify.watch(self.debounce_ms, 1, 1, None)
            if not isinstance(late, str):
                changes = _merge(changes, self._digest(spec, late))
        notify.close()
        known = {p for _, p in changes}
        inside: Changes = []
        for change, directory in list(changes):
            # a directory created, or replaced (deleted and created: an installer moving the
            # old one aside): what it holds now was never seen by a watch
            if change is not Change.DELETED and directory.is_dir():
                for path in _tree(directory, spec.filter):
                    if path not in known:
                        known.add(path)
                        inside.append((change, path))
        return sorted([*changes, *inside], key=lambda c: str(c[1])), fresh

    def _digest(self, spec: _Key, raw: Iterable[tuple[int, str]]) -> Changes:
        """watchfiles' set of (kind, path) as one filtered change per path."""
        kinds: dict[Path, set[int]] = {}
        for kind, text in raw:
            kinds.setdefault(Path(text), set()).add(kind)
        out: Changes = []
        roots = {r.path for r in spec.roots}
        for path, seen in kinds.items():
            exists = os.path.lexists(path)
            if path in roots:
                if exists and Change.CREATED not in seen:
                    continue  # a root's own metadata
                # a root created or deleted: always news, whatever the filter says
            elif path in spec.directories or (exists and path.is_dir()):
                if not spec.filter.include_dir(path):
                    continue
                if exists and Change.CREATED not in seen:
                    continue  # a directory's own metadata: its entries report themselves
            elif not spec.filter.include_file(path):
                continue
            if not exists:
                change = Change.DELETED
            elif Change.CREATED in seen:
                change = Change.CHANGED if Change.DELETED in seen else Change.CREATED
            else:
                change = Change.CHANGED
            out.append((change, path))
        return sorted(out, key=lambda c: str(c[1]))

    def _log_once(self, spec: _Key, what: str, message: str) -> None:
        with self._lock:
            if (spec.key, what) in self._logged:
                return
            self._logged.add((spec.key, what))
        logger.warning("%s", message)


def _merge(first: Changes, second: Changes) -> Changes:
    merged = {p: c for c, p in first}
    for c, p in second:
        merged[p] = c
    return sorted(((c, p) for p, c in merged.items()), key=lambda c: str(c[1]))


def _directories(
    root: Path, recursive: bool, filter: WatchFilter, roots: set[Path], denied: list[Path]
) -> Iterator[Path]:
    """`root` and (if recursive) every directory below it that the filter keeps; another
    root below this one is left to be walked as its own root."""
    yield root
    if not recursive:
        return
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                subdirs = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        except PermissionError:
            denied.append(current)
            continue
        except OSError:
            continue
        for sub in sorted(subdirs):
            if filter.include_dir(sub) and sub not in roots:
                yield sub
                stack.append(sub)


def planned_directories(roots: Sequence[Root], filter: WatchFilter) -> int:
    """How many directories (one OS watch each) watching `roots` takes (for `--doctor`)."""
    paths = {r.path for r in roots}
    seen: set[Path] = set()
    for root in roots:
        if root.path.is_dir():
            seen.update(_directories(root.path, root.recursive, filter, paths, []))
    return len(seen)


def _tree(directory: Path, filter: WatchFilter) -> Iterator[Path]:
    """Every kept file and directory below a newly created directory."""
    stack = [directory]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                items = [(Path(e.path), e.is_dir(follow_symlinks=False)) for e in entries]
        except OSError:
            continue
        for path, is_dir in sorted(items):
            if is_dir:
                if filter.include_dir(path):
                    yield path
                    stack.append(path)
            elif filter.include_file(path):
                yield path
