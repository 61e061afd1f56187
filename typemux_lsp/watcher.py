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
import stat
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
                # the catch-up reads the entries the arming walk listed: one listing
                listing: _Listing | None = {} if spec.since_ns is not None else None
                notify = self._arm(spec, listing)
                if notify is not None and spec.since_ns is not None:
                    missed = self._changed_since(spec, spec.since_ns, listing or {})
                    # a directory created after the walk listed its parent: neither listed
                    # nor watched yet; followed as any directory a batch brings
                    came = {p for c, p in missed if c is Change.CREATED} - spec.directories
                    if came:
                        missed, notify = self._rearm(spec, notify, missed, came)
                    if missed:
                        self._deliver(spec, missed)
                del listing
            finally:
                spec.armed.set()
            while notify is not None and not spec.stop.is_set():
                raw = notify.watch(self.max_batch_ms, self.debounce_ms, 0, spec.stop)
                if isinstance(raw, str):  # "stop" ("signal"/"timeout" never on this thread)
                    continue
                changes, directories = self._digest(spec, raw)
                if directories:
                    changes, notify = self._rearm(spec, notify, changes, directories)
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

    def _arm(self, spec: _Key, listing: _Listing | None = None) -> Notify | None:
        """Walk the roots and start one OS watch of the kept directories, degrading what the
        OS refuses. None when stopped or when nothing exists to be watched. With `listing`,
        the entries of every directory walked are kept there (for the catch-up)."""
        for _attempt in range(5):
            if spec.stop.is_set():
                return None
            if listing is not None:
                listing.clear()
            dirs_by_root, missing, denied = self._walk(spec, listing)
            try:
                notify, degraded, watched = self._start(dirs_by_root)
            except FileNotFoundError:
                continue  # a directory vanished between the walk and the watch: walk again
            degraded += [_Degraded(p, "permission denied", "make it readable") for p in denied]
            if not self._install(spec, notify, watched, degraded, missing):
                return None
            return notify
        raise RuntimeError("the watched directories keep changing while being listed")

    def _install(
        self,
        spec: _Key,
        notify: Notify | None,
        watched: frozenset[Path],
        degraded: list[_Degraded],
        missing: list[Path],
    ) -> bool:
        """Record a new OS watch as `spec`'s; False (and the watch closed) when `spec` was
        replaced or stopped meanwhile."""
        with self._lock:
            if not self._current(spec):
                if notify is not None:
                    notify.close()
                return False
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
        return True

    def _changed_since(self, spec: _Key, since: int, listing: _Listing) -> Changes:
        """What the watched directories gained or changed since `since` (`fs_clock_ns`), by
        timestamps (a removal shows as its directory changed). Every entry is looked at: a
        file rewritten in place leaves its directory's times alone.

        A directory's entries are those the arming walk listed (`listing`) unless the
        directory itself changed since `since` (an entry came or went: listed again); one
        that changes after this looked at it is the armed watch's to report."""
        found: dict[Path, Change] = {}
        roots = {r.path for r in spec.roots}
        known = {str(d) for d in spec.directories}  # (included by the walk)
        root_names = {str(r) for r in roots}
        keep = spec.filter
        for directory in sorted(spec.directories):
            try:
                st = os.stat(directory)
                moved = max(st.st_mtime_ns, st.st_ctime_ns) >= since
                if moved and directory not in roots:
                    found.setdefault(directory, Change.CHANGED)  # (CREATED, seen from above)
                entries = None if moved else listing.get(directory)
                if entries is None:
                    entries = _list(directory)
            except OSError:
                continue
            files_kept = directory.name not in keep.skip_dirs
            for name, path, is_dir in entries:  # (strings, not Paths: 30,000 is common)
                if is_dir:
                    if path in root_names:
                        continue  # (a root's own times change with its entries)
                    if path not in known and not keep.include_dir(Path(path)):
                        continue
                elif not (files_kept and keep.include_name(name)):
                    continue
                try:
                    est = os.lstat(path)
                except OSError:
                    continue
                if max(est.st_mtime_ns, est.st_ctime_ns) >= since:
                    found[Path(path)] = Change.CREATED if is_dir else Change.CHANGED
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

    def _walk(
        self, spec: _Key, listing: _Listing | None = None
    ) -> tuple[list[tuple[Path, list[Path]]], list[Path], list[Path]]:
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
            found = _directories(root.path, root.recursive, spec.filter, roots, denied, listing)
            dirs = [d for d in found if d not in seen]
            seen.update(dirs)
            out.append((root.path, dirs))
        return out, missing, denied

    def _rearm(
        self, spec: _Key, notify: Notify, changes: Changes, directories: set[Path]
    ) -> tuple[Changes, Notify | None]:
        """Directories came or went: watch the new set before dropping the old watch, then
        report what the new directories already hold and what the old watch saw meanwhile
        (directories it saw come meanwhile are followed the same way, a few times at most:
        a longer churn is the next batch's).

        Only what changed is walked: the directories gone (and those below them) leave the
        set, the ones created or replaced are walked for theirs. A root come or gone, or a
        watch degraded before, walks every root again."""
        walked: list[tuple[Path, list[Path], list[Path]]] = []  # (directory, dirs, files)
        fresh: Notify | None = None
        for _round in range(3):
            fresh = self._rewatch(spec, changes, directories, walked)
            late: Any = None
            with contextlib.suppress(Exception):
                late = notify.watch(self.debounce_ms, 1, 1, None)
            notify.close()
            directories = set()
            if late is not None and not isinstance(late, str):
                more, directories = self._digest(spec, late)
                changes = _merge(changes, more)
            if fresh is None or not directories:
                break
            notify = fresh
        return self._with_contents(changes, walked), fresh

    def _rewatch(
        self,
        spec: _Key,
        changes: Changes,
        directories: set[Path],
        walked: list[tuple[Path, list[Path], list[Path]]],
    ) -> Notify | None:
        """A new OS watch for `spec` once `directories` came, went or were replaced; what
        they hold now is added to `walked`. None when stopped or nothing is left to watch."""
        roots = {r.path for r in spec.roots}
        # a directory created, or replaced (deleted and created: an installer moving the old
        # one aside): what it holds now was never seen by a watch
        new = [p for c, p in changes if p in directories and c is not Change.DELETED]
        if not (spec.degraded or directories & (roots | set(spec.missing))):
            kept = {
                d
                for d in spec.directories
                if d not in directories and directories.isdisjoint(d.parents)
            }
            recursive = {r.path: r.recursive for r in spec.roots}
            found = []
            for path in new:
                dirs, files = _below(path, spec.filter, roots)
                found.append((path, dirs, files))
                root = next((p for p in path.parents if p in recursive), None)
                if root is not None and recursive[root]:
                    kept.update([path, *dirs])
            try:
                fresh, degraded, watched = self._start(_by_root(kept, spec.roots))
            except FileNotFoundError:
                pass  # a directory vanished between the walk and the watch: walk it all
            else:
                walked += found
                return (
                    fresh if self._install(spec, fresh, watched, degraded, spec.missing) else None
                )
        armed = self._arm(spec)
        walked += [(path, *_below(path, spec.filter, roots)) for path in new]
        return armed

    @staticmethod
    def _with_contents(
        changes: Changes, walked: list[tuple[Path, list[Path], list[Path]]]
    ) -> Changes:
        """`changes` and everything below the directories walked, with their change."""
        change_of = {p: c for c, p in changes}
        known = set(change_of)
        inside: Changes = []
        for directory, dirs, files in walked:
            for path in [*dirs, *files]:
                if path not in known:
                    known.add(path)
                    inside.append((change_of[directory], path))
        return sorted([*changes, *inside], key=lambda c: str(c[1]))

    def _digest(self, spec: _Key, raw: Iterable[tuple[int, str]]) -> tuple[Changes, set[Path]]:
        """watchfiles' set of (kind, path) as one filtered change per path, and which of
        those paths are directories now or were watched ones (the watch must follow them).
        Each path is looked at once (one `lstat`)."""
        kinds: dict[Path, set[int]] = {}
        for kind, text in raw:
            kinds.setdefault(Path(text), set()).add(kind)
        out: Changes = []
        directories: set[Path] = set()
        roots = {r.path for r in spec.roots}
        for path, seen in kinds.items():
            try:
                exists, is_dir = True, stat.S_ISDIR(os.lstat(path).st_mode)
            except OSError:
                exists, is_dir = False, False
            if path in roots:
                if exists and Change.CREATED not in seen:
                    continue  # a root's own metadata
                # a root created or deleted: always news, whatever the filter says
                directories.add(path)
            elif path in spec.directories or is_dir:
                if not spec.filter.include_dir(path):
                    continue
                if exists and Change.CREATED not in seen:
                    continue  # a directory's own metadata: its entries report themselves
                directories.add(path)
            elif not spec.filter.include_file(path):
                continue
            if not exists:
                change = Change.DELETED
            elif Change.CREATED in seen:
                change = Change.CHANGED if Change.DELETED in seen else Change.CREATED
            else:
                change = Change.CHANGED
            out.append((change, path))
        return sorted(out, key=lambda c: str(c[1])), directories

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


#: a directory's entries as listed: (name, path, is a directory)
_Entries = list[tuple[str, str, bool]]
_Listing = dict[Path, _Entries]


def _list(directory: Path) -> _Entries:
    """One listing of a directory (no stat: the kind comes from d_type)."""
    with os.scandir(directory) as entries:
        return [(e.name, e.path, e.is_dir(follow_symlinks=False)) for e in entries]


def _directories(
    root: Path,
    recursive: bool,
    filter: WatchFilter,
    roots: set[Path],
    denied: list[Path],
    listing: _Listing | None = None,
) -> Iterator[Path]:
    """`root` and (if recursive) every directory below it that the filter keeps; another
    root below this one is left to be walked as its own root. With `listing`, each
    directory's entries are kept there. Lazy: a caller that stops early stops the walk."""
    yield root
    if not recursive:
        return
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            entries = _list(current)
        except PermissionError:
            denied.append(current)
            continue
        except OSError:
            continue
        if listing is not None:
            listing[current] = entries
        for sub in sorted(Path(path) for _, path, is_dir in entries if is_dir):
            if filter.include_dir(sub) and sub not in roots:
                yield sub
                stack.append(sub)


def _below(directory: Path, filter: WatchFilter, roots: set[Path]) -> tuple[list[Path], list[Path]]:
    """The kept directories and files below a new directory, in one walk."""
    listing: _Listing = {}
    dirs = list(_directories(directory, True, filter, roots, [], listing))[1:]
    files = [
        Path(path)
        for entries in listing.values()
        for name, path, is_dir in entries
        if not is_dir and filter.include_file(Path(path))
    ]
    return dirs, sorted(files)


def _by_root(directories: Iterable[Path], roots: Sequence[Root]) -> list[tuple[Path, list[Path]]]:
    """Directories grouped by the root they belong to (the nearest), in the roots' order."""
    index = {r.path: i for i, r in enumerate(roots)}
    groups: list[list[Path]] = [[] for _ in roots]
    for directory in sorted(directories):
        for candidate in (directory, *directory.parents):
            if candidate in index:
                groups[index[candidate]].append(directory)
                break
    return [(r.path, dirs) for r, dirs in zip(roots, groups, strict=True) if dirs]


def planned_directories(
    roots: Sequence[Root], filter: WatchFilter, *, limit: int | None = None
) -> int:
    """How many directories (one OS watch each) watching `roots` takes (for `--doctor`);
    with `limit`, the walk stops there."""
    paths = {r.path for r in roots}
    seen: set[Path] = set()
    for root in roots:
        if root.path.is_dir():
            for directory in _directories(root.path, root.recursive, filter, paths, []):
                if limit is not None and len(seen) >= limit:
                    return len(seen)
                seen.add(directory)
    return len(seen)
