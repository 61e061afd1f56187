"""Freshness policy: what to watch for a backend, what a batch of changes means, what to do.

Pure functions over paths and `watcher.Changes`, tested without processes. The core wires
them: `plan_watch` -> `Watcher.watch`; each batch -> `classify` -> `decide` -> either a
`workspace/didChangeWatchedFiles` to the backend or a transparent restart, logged with
`Action.cause`.

Why not events alone: no backend watches files itself (each waits for the client's
events, which Claude Code never sends), and events are not always enough. Measured on
one-module fixture packages (`bench/freshness.py`, 2026-11) and on real releases swapped
by `uv pip install` (`bench/freshness_packages.py`, 2026-12: redis 6.4 <-> 7.4, ~150
files; pyright 1.1.414, basedpyright 1.40.2, ty 1.2.0, pyrefly 1.5.1):
- pyright/basedpyright hear of library changes through their library watcher, which
  re-resolves only 5 s after the last event (a timer in pyright itself): a real upgrade
  told by events alone shows after 6-8 s (a one-module fixture inside the project looked
  fast only because pyright also marks files of its own include root dirty at once); a
  config file created where none was is never acted on. Followed by
  `workspace/didChangeConfiguration`, they re-resolve imports and re-read configs at
  once: 1.2-3 s on the real package (load-dependent), ~0.5 s on fixtures, faster than a
  restart (8-12 s on the real package: the whole cold analysis) with nothing replayed.
  So every library change outside the project is reconfigured, with the library files
  left out of the events (each would re-arm the timer: a second full re-analysis 5 s
  later). A `.venv` inside the project is pyright's own include root: told by events, it
  re-reads changed files there at once (0.6-0.9 s for the real package at load 1.5-5;
  reconfigured 0.8 s at load 1.5 but 1.7-1.9 s at load 5: it re-analyses everything, so
  a busy machine slows it more), so there events are used, unless a new package came
  (a module created outside a replaced directory): that still waits for the timer
  (5.5-5.7 s), so it is reconfigured. Project sources and existing configs are
  plain events. Memory: each swap leaves ~40 MB behind in pyright's process, which only a
  restart gives back;
- ty acts at once (30-60 ms on the real package), but resolves a new package only when
  told about its *directories* too;
- pyrefly acts within ~0.3 s on file events for a fixture, but 0.9-2.6 s for the real
  package, and pyrefly 1.5.1 panics (exit 101) now and then when a large package is
  swapped under it; restarted, it answers in 0.7-1 s and holds half the memory (60-75 MB
  against 110-135 after downs and ups). So library changes restart it; sources and
  configs are events.
A restart also covers what no event does: the venv itself replaced.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pygls.uris import from_fs_path

from .environments import model
from .environments.model import is_environment
from .watcher import DEFAULT_SKIP_DIRS, Change, Changes, Root, WatchFilter

#: Type-checker configuration files, by name (pyproject.toml holds several tools' tables).
CONFIG_FILES = frozenset({"pyproject.toml", "pyrightconfig.json", "ty.toml", "pyrefly.toml"})
#: Files that decide how a package imports, besides sources.
_ENV_SUFFIXES = (".py", ".pyi", ".pth", ".so", ".pyd")
_ENV_NAMES = frozenset({"pyvenv.cfg", "py.typed", "METADATA", "RECORD"})
SOURCE_SUFFIXES = (".py", ".pyi")

#: Directories of a project never watched, on top of the watcher's defaults: build output
#: (copies of sources) and packaging metadata.
PROJECT_SKIP_DIRS = DEFAULT_SKIP_DIRS | {"build", "dist", ".eggs", "site-packages"}

#: A directory holding one of these is an environment (venv, conda/pixi prefix), or another
#: project with its own venv (whose files another backend serves): never walked as this
#: project's sources.
BOUNDARY_MARKERS = ("pyvenv.cfg", "conda-meta", ".venv/pyvenv.cfg")


# -- what to watch -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Environment:
    """What a backend's imports resolve from, read from the disk (nothing is run)."""

    prefix: Path
    site_packages: tuple[Path, ...]
    #: extra import roots named by `.pth` files (editable installs), outside site-packages
    import_roots: tuple[Path, ...] = ()

    @property
    def cfg(self) -> Path:
        return self.prefix / "pyvenv.cfg"


def read_environment(environment: Path | model.Environment) -> Environment:
    """What a backend's imports resolve from, as the environment model reads it
    (`model.Environment.site_packages`: its site-packages and the directories its `.pth`
    files and editable finders name, read, never run), in real paths as the OS watcher
    reports them. A prefix alone is taken as a venv at that path."""
    env = (
        environment
        if isinstance(environment, model.Environment)
        else model.Environment(environment)
    )
    sites: list[Path] = []
    for site in env.site_dirs():
        real = Path(os.path.realpath(site))
        if real not in sites:
            sites.append(real)
    roots: list[Path] = []
    for path in env.site_packages():
        real = Path(os.path.realpath(path))
        if real not in roots and not any(_inside(real, s) for s in sites):
            roots.append(real)
    return Environment(env.path, tuple(sites), tuple(roots))


@dataclass(frozen=True, slots=True)
class WatchPlan:
    """The roots and filter for `Watcher.watch`, and what each root is for `classify`."""

    environment: Environment
    project: Path
    roots: tuple[Root, ...]
    filter: WatchFilter


def plan_watch(environment: Environment, project: Path, *, skip: Iterable[Path] = ()) -> WatchPlan:
    """What to watch for a backend serving `project` from `environment`.

    Roots, in order of importance (the last ones are dropped first when the OS watch limit
    is reached): the venv's own directory (its `pyvenv.cfg`: recreated, deleted), the
    project's sources and configs, editable import roots, site-packages. The venv inside
    the project tree is walked as the environment, not as sources; other environments and
    nested projects with their own `.venv` (another backend serves them), directories in
    `skip`, and `.git`, `node_modules`, caches, build output are never walked.
    """
    roots = [Root(environment.prefix, recursive=False), Root(project)]
    roots += [Root(r) for r in environment.import_roots if not _inside(r, project)]
    roots += [Root(s) for s in environment.site_packages]
    flt = WatchFilter(
        skip_dirs=PROJECT_SKIP_DIRS - {"site-packages"},
        skip_paths=frozenset(skip),
        suffixes=_ENV_SUFFIXES,
        names=_ENV_NAMES | CONFIG_FILES,
        skip_markers=BOUNDARY_MARKERS,
    )
    return WatchPlan(environment, project, tuple(roots), flt)


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


# -- what a batch means ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Classification:
    """One batch of changes for one backend, sorted by what they mean to it."""

    #: files and directories under site-packages or an editable import root
    environment: tuple[tuple[Change, Path], ...] = ()
    #: `.py`/`.pyi` files (and directories) of the project, outside the environment
    sources: tuple[tuple[Change, Path], ...] = ()
    #: type-checker configuration files of the project
    configs: tuple[tuple[Change, Path], ...] = ()
    #: `pyvenv.cfg` created, changed or deleted, or the venv directory itself replaced
    environment_replaced: bool = False
    #: the venv is gone now (no `pyvenv.cfg`)
    environment_deleted: bool = False
    #: package -> (old version, new version), from `.dist-info` names; None = absent
    packages: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    #: the environment's prefix (for messages)
    prefix: Path | None = None
    #: every environment change lies inside the project's tree (a `.venv` in the project:
    #: pyright's own include root, whose files it re-reads when told)
    environment_in_project: bool = False

    def __bool__(self) -> bool:
        return bool(self.environment or self.sources or self.configs or self.environment_replaced)


_DIST_INFO = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+?)\.(?:dist|egg)-info$")


def classify(plan: WatchPlan, changes: Changes) -> Classification:
    """Sort a batch by meaning. A path matters once: environment first, then project."""
    env = plan.environment
    env_roots = (*env.site_packages, *env.import_roots)
    environment: list[tuple[Change, Path]] = []
    sources: list[tuple[Change, Path]] = []
    configs: list[tuple[Change, Path]] = []
    replaced = False
    versions: dict[str, list[set[str]]] = {}
    for change, path in changes:
        if path == env.cfg or path == env.prefix:
            replaced = True
            continue
        if any(_inside(path, root) for root in env_roots):
            environment.append((change, path))
            for part in (path.name, path.parent.name):
                match = _DIST_INFO.match(part)
                if match:
                    name = match["name"].lower().replace("_", "-")
                    slot = versions.setdefault(name, [set(), set()])
                    slot[0 if change is Change.DELETED else 1].add(match["version"])
                    break
            continue
        if _inside(path, env.prefix):
            continue  # bin/, include/: not what imports resolve from
        if not _inside(path, plan.project):
            continue
        if path.name in CONFIG_FILES:
            configs.append((change, path))
        elif path.suffix in SOURCE_SUFFIXES or path.suffix == "":
            sources.append((change, path))
    packages: dict[str, tuple[str | None, str | None]] = {}
    for name, (gone, came) in sorted(versions.items()):
        old = min(gone - came, default=None)
        new = max(came, default=None)
        if old != new:
            packages[name] = (old, new)
    return Classification(
        tuple(environment),
        tuple(sources),
        tuple(configs),
        replaced,
        replaced and not is_environment(env.prefix),  # (a conda prefix has no pyvenv.cfg)
        packages,
        env.prefix,
        bool(environment) and all(_inside(p, plan.project) for _, p in environment),
    )


# -- what to do --------------------------------------------------------------------------------


#: "notify": `workspace/didChangeWatchedFiles`; "reconfigure": the same, then
#: `workspace/didChangeConfiguration`; "restart": a transparent restart.
How = Literal["notify", "reconfigure", "restart"]
_STRENGTH: dict[str, int] = {"notify": 0, "reconfigure": 1, "restart": 2}


@dataclass(frozen=True, slots=True)
class Strategy:
    """How one backend kind is best brought up to date, per kind of change (measured)."""

    #: files (and directories) created under site-packages, outside `.dist-info`: a module
    #: or package that can now be imported
    environment_created: How
    #: only changed or deleted files under site-packages
    environment_changed: How
    #: a config file changed that existed when the backend started
    config_changed: How
    #: a config file created or deleted
    config_created: How
    #: whether library files are named in the events of a "reconfigure" (pyright: each one
    #: re-arms its 5 s library timer, a second full re-analysis after the one
    #: `workspace/didChangeConfiguration` already made)
    library_events: bool = True
    #: for changed or deleted library files inside the project's tree (a `.venv` in the
    #: project), when that differs from `environment_changed`
    environment_in_project: How | None = None


#: From bench/freshness.py (see the module docstring and the README's figures).
STRATEGIES: dict[str, Strategy] = {
    "pyright": Strategy("reconfigure", "reconfigure", "notify", "reconfigure", False, "notify"),
    "basedpyright": Strategy(
        "reconfigure", "reconfigure", "notify", "reconfigure", False, "notify"
    ),
    "ty": Strategy("notify", "notify", "notify", "notify"),
    "pyrefly": Strategy("restart", "restart", "notify", "notify"),
}
#: A kind not measured: restarting is always right, if slower.
SAFE_STRATEGY = Strategy("restart", "restart", "restart", "restart")


@dataclass(frozen=True, slots=True)
class Action:
    """What the core does with a batch.

    - "notify": send `workspace/didChangeWatchedFiles` with `params`;
    - "reconfigure": the same, then `workspace/didChangeConfiguration` with the client's
      last settings (`{"settings": null}` if it sent none: the backend then asks
      `workspace/configuration` again, which the proxy answers as at start);
    - "restart": a transparent restart (documents replayed, requests answered once);
    - "stop": the environment is gone: stop the backend; requests for its files then get
      the no-venv error.
    """

    kind: Literal["notify", "reconfigure", "restart", "stop"]
    #: for the log: what changed, in words
    cause: str
    #: `workspace/didChangeWatchedFiles` params, for "notify" and "reconfigure"
    params: Mapping[str, Any] | None = None


def decide(
    backend: str, classified: Classification, *, open_uris: Iterable[str] = ()
) -> Action | None:
    """The one action that brings `backend` up to date after `classified`, or None.

    A restart covers everything (the backend re-reads the disk), so it wins over events.
    Events name directories created or deleted as well as files, as an OS watcher reports
    them: ty resolves a new package only when told about its directories, and the others
    accept them. Events for documents the client has open are left out: the backend uses
    the client's text for those (the disk text of an open document is a separate rule:
    `disk_text_wins`); so are library files when a pyright kind is reconfigured (its
    re-analysis covers them; told, it would re-analyse again 5 s later).
    """
    if not classified:
        return None
    strategy = STRATEGIES.get(backend, SAFE_STRATEGY)
    if classified.environment_deleted:
        return Action("stop", f"the environment {classified.prefix or '(unknown)'} was deleted")
    cause = describe(classified)
    if classified.environment_replaced:
        return Action("restart", cause)
    # a new importable thing; a new .dist-info alone (an upgrade) needs no re-resolution
    created = any(
        c is Change.CREATED and not any(part.endswith(".dist-info") for part in p.parts)
        for c, p in classified.environment
    )
    need: list[How] = ["notify"]
    if classified.environment:
        told = strategy.environment_created if created else strategy.environment_changed
        if (
            not created
            and classified.environment_in_project
            and strategy.environment_in_project is not None
        ):
            told = strategy.environment_in_project
        need.append(told)
    if classified.configs:
        config_created = any(c is not Change.CHANGED for c, _ in classified.configs)
        need.append(strategy.config_created if config_created else strategy.config_changed)
    how = max(need, key=_STRENGTH.__getitem__)
    if how == "restart":
        return Action("restart", cause)
    opened = set(open_uris)
    events = []
    library = classified.environment if strategy.library_events or how != "reconfigure" else ()
    for change, path in (*library, *classified.configs, *classified.sources):
        uri = from_fs_path(str(path)) or path.as_uri()
        if uri in opened:
            continue
        events.append({"uri": uri, "type": int(change)})
    if not events and how == "notify":
        return None
    return Action(how, cause, {"changes": events})


def describe(classified: Classification) -> str:
    """The cause in words, for the log: e.g. "site-packages changed: 312 files (shapes 1.0
    -> 2.0)"."""
    parts = []
    if classified.environment_replaced:
        parts.append("the venv was recreated (pyvenv.cfg changed)")
    if classified.environment:
        text = f"site-packages changed: {_count(classified.environment)}"
        if classified.packages:
            names = [
                f"{name} {old or 'new'} -> {new or 'removed'}"
                for name, (old, new) in list(classified.packages.items())[:5]
            ]
            more = len(classified.packages) - len(names)
            text += f" ({', '.join(names)}{f', and {more} more' if more > 0 else ''})"
        parts.append(text)
    if classified.configs:
        parts.append("config changed: " + ", ".join(p.name for _, p in classified.configs[:3]))
    if classified.sources:
        parts.append(f"project sources changed: {_count(classified.sources)}")
    return "; ".join(parts)


def _count(changes: Sequence[tuple[Change, Path]]) -> str:
    created = sum(c is Change.CREATED for c, _ in changes)
    deleted = sum(c is Change.DELETED for c, _ in changes)
    changed = len(changes) - created - deleted
    words = [
        f"{n} {w}"
        for n, w in ((created, "created"), (changed, "changed"), (deleted, "deleted"))
        if n
    ]
    return f"{len(changes)} files ({', '.join(words)})"


# -- documents the client has open -------------------------------------------------------------


def disk_text_wins(
    *, client_text: str, clean_text: str | None, disk_text: str, client_watches_files: bool
) -> bool:
    """Whether the backend should get an open document's disk text (as a full didChange).

    Only when the client cannot see the disk change itself (it does not watch files:
    Claude Code) and has no unsaved edits: its text is still the text it last opened or
    saved (`clean_text`, what was on disk then). Text the client changed and did not save
    is never overwritten; the client's next edit wins again (the core then sends the
    backend the client's whole text, not an incremental edit against the disk text).
    """
    if client_watches_files or clean_text is None:
        return False
    return client_text == clean_text and disk_text != client_text


# -- not doubling a client that watches files itself ------------------------------------------


Source = Literal["client", "watcher"]


class RecentEvents:
    """Events told to a backend lately, so one change is told once whichever of the client
    and the watcher reports it first: an event the *other* source reported within the
    window is the same change, and is dropped once. One source reporting the same file
    again is a second change, always told. `now` is injectable for tests."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._seen: dict[tuple[str, int], tuple[Source, float]] = {}

    def fresh(
        self, events: Iterable[Mapping[str, Any]], source: Source, now: float | None = None
    ) -> list[Any]:
        """The events that are news from `source`; records them as told."""
        now = time.monotonic() if now is None else now
        horizon = now - self.window_s
        self._seen = {k: v for k, v in self._seen.items() if v[1] >= horizon}
        out = []
        for event in events:
            key = (str(event.get("uri")), int(event.get("type", 0)))
            seen = self._seen.get(key)
            if seen is not None and seen[0] != source:
                del self._seen[key]  # the other's report of this very change: told already
                continue
            self._seen[key] = (source, now)
            out.append(event)
        return out
