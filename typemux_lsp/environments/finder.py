"""From a file to its environment: find the project, ask the locators, cache what is found.

The walk starts at the file's directory as the client spells it (no symlink resolved) and
stops at the boundary: the git toplevel of the file or the innermost workspace folder holding
it, whichever is higher (a session started in a subdirectory of a monorepo still finds the
environment at the repository's root; a workspace folder that holds several repositories
bounds them all). The first directory that declares a project (see `project.py`) is the
file's project, and the locators are asked about it in order. A project reached through a
symlink that leads outside the boundary gets no environment: no backend is ever rooted in a
directory the workspace does not contain.

Answers are cached per file with what the lookup observed (`_fs.Seen`): a cached answer costs
one stat() per observed path (the directories walked, the files read, the environment's
marker), so a late, deleted or recreated environment takes effect on the next lookup. Only
environments found are cached, never their absence.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pygls.uris import to_fs_path

from ._fs import Seen, absolute, canonical, walk_up, within, within_canonical
from .locators import LOCATORS
from .model import CONDA_META, PYVENV_CFG, Environment, Lookup, Missing
from .project import (
    DOT_VENV,
    GIT,
    PROJECT_FILES,
    PYPROJECT,
    WANTED,
    Context,
    EnvironmentRule,
    Project,
    project_at,
)

#: entries that mark a directory as the inside of an environment
_PREFIX_MARKERS = frozenset({PYVENV_CFG, CONDA_META})
_WALK_NAMES = WANTED | _PREFIX_MARKERS
#: cached lookups kept before the cache is cleared
CACHE_LIMIT = 4096


@dataclass(slots=True)
class _Cached:
    lookup: Lookup
    seen: Seen


_lookups: dict[tuple[Any, ...], _Cached] = {}
_rule_keys: dict[int, tuple[Sequence[EnvironmentRule], tuple[Any, ...]]] = {}


def clear_cache() -> None:
    """Forget every cached lookup and read (for tests that change environment variables)."""
    from . import _fs
    from .locators import pep723

    _lookups.clear()
    _rule_keys.clear()
    _fs.clear_caches()
    pep723.clear()


def find_environment(
    file_path: Path | str,
    *,
    roots: Sequence[Path | str] = (),
    rules: Sequence[EnvironmentRule] = (),
) -> Lookup:
    """The environment of the file (or directory) at `file_path`.

    `roots` are the client's workspace folders; `rules` the configured project rules
    (`config.ProjectRule`), whose `environment` key names an environment explicitly.
    """
    spelled = os.path.abspath(file_path)
    key = (spelled, tuple(str(r) for r in roots), _rules_key(rules))
    cached = _lookups.get(key)
    if cached is not None and cached.seen.unchanged():
        return cached.lookup
    path = Path(spelled)
    seen = Seen()
    lookup = _Finder([absolute(r) for r in roots], rules, seen).find(path)
    if lookup.environment is not None and not seen.racy:
        if len(_lookups) >= CACHE_LIMIT:
            _lookups.clear()
        _lookups[key] = _Cached(lookup, seen)
    else:
        _lookups.pop(key, None)
    return lookup


def _rules_key(rules: Sequence[EnvironmentRule]) -> tuple[Any, ...]:
    if not rules:
        return ()
    known = _rule_keys.get(id(rules))
    if known is not None and known[0] is rules:
        return known[1]
    key = tuple(
        (getattr(r, "path", None), str(getattr(r, "base", "")), r.environment, r.source, r.refused)
        for r in rules
    )
    if len(_rule_keys) > 64:
        _rule_keys.clear()
    _rule_keys[id(rules)] = (rules, key)  # the reference keeps the id from being reused
    return key


class _Finder:
    def __init__(self, roots: list[Path], rules: Sequence[EnvironmentRule], seen: Seen) -> None:
        self.roots = roots
        self.rules = rules
        self.seen = seen

    def find(self, path: Path) -> Lookup:
        is_dir = os.path.isdir(path)
        directory = path if is_dir else path.parent
        boundary = self.boundary(directory)
        searched: list[Path] = []
        project: Project | None = None
        inside: Path | None = None
        for current in walk_up(directory, boundary):
            searched.append(current)
            project, _ = project_at(self.seen, current, self.rules)
            if project is not None:
                break
            if self.seen.names(current, _PREFIX_MARKERS):
                inside = current
                break
        found = tuple(searched)
        if inside is not None:
            env = _inside_environment(inside)
            return Lookup(env, found, boundary, None, env.project_dir)
        if project is not None and boundary is not None:
            escape = _escape(project.directory, boundary)
            if escape is not None:
                return Lookup(None, found, boundary, escape, project.directory)
        ctx = Context(None if is_dir else path, project, boundary, self.rules, self.seen, self.find)
        project_dir = project.directory if project is not None else None
        first: Missing | None = None
        for locator in LOCATORS:
            if locator.needs_project and project is None:
                continue
            answer = locator.locate(ctx)
            if answer is None:
                continue
            if isinstance(answer, Environment):
                return Lookup(answer, found, boundary, None, project_dir)
            if answer.final:
                return Lookup(None, found, boundary, answer, project_dir)
            first = first or answer
        if first is None and project is not None:
            first = _plain_project_missing(project)
        return Lookup(None, found, boundary, first, project_dir)

    def boundary(self, directory: Path) -> Path | None:
        """The higher of the file's git toplevel and its innermost workspace folder."""
        candidates: list[Path] = []
        holding = [r for r in self.roots if within(directory, r)]
        if holding:
            candidates.append(max(holding, key=lambda r: len(r.parts)))
        for current in walk_up(directory, None):
            if GIT in self.seen.names(current, _WALK_NAMES):
                candidates.append(current)
                break
        return min(candidates, key=lambda p: len(p.parts)) if candidates else None


def _inside_environment(prefix: Path) -> Environment:
    """A file inside an environment (a library opened from site-packages) belongs to it."""
    manager = "venv" if (prefix / PYVENV_CFG).is_file() else "conda"
    project = prefix.parent
    if prefix.parent.name == "envs" and prefix.parent.parent.name == ".pixi":
        project, manager = prefix.parents[2], "pixi"  # <project>/.pixi/envs/<name>
    return Environment(
        prefix, None, project, None, manager, f"the file is inside the environment {prefix}"
    )


def _escape(project_dir: Path, boundary: Path) -> Missing | None:
    """A project reached through a symlink that leads outside the boundary."""
    if within_canonical(project_dir, boundary):
        return None
    return Missing(
        "symlink",
        project_dir,
        f"{project_dir} is reached through a symlink and is really {canonical(project_dir)}, "
        f"outside {boundary}; typemux-lsp does not start a backend in a directory the "
        "workspace does not contain",
        (project_dir,),
        f"open the file from its real location ({canonical(project_dir)}), or add that "
        "directory to the workspace",
    )


def _plain_project_missing(project: Project) -> Missing:
    """A project with no manager that finds its environment elsewhere, and no `.venv`."""
    directory = project.directory
    uses_uv = project.has("uv.lock") or project.tool("uv") is not None
    return Missing(
        "uv" if uses_uv else "venv",
        directory,
        f"its project {directory} ({project.describe()}) has no .venv of its own, and an "
        "enclosing directory's environment is never used in its place unless it has this "
        "project installed",
        (directory / DOT_VENV,),
        f"create it: `cd {directory} && uv sync` (or `python -m venv .venv` and install the "
        "dependencies; or install this project into the enclosing environment with `pip "
        "install -e`)",
        final=False,
    )


# -- paths and URIs ------------------------------------------------------------------------------


def uri_to_path(uri: str) -> Path | None:
    """The filesystem path of a `file:` URI (`file:///p`, `file://localhost/p`); None for
    `untitled:`, notebook cells, other hosts, relative or invalid paths."""
    if not uri.startswith("file:"):
        return None
    if sys.platform == "win32":
        fs_path = to_fs_path(uri)
        return Path(fs_path) if fs_path else None
    parts = urlsplit(uri)
    if parts.netloc.lower() not in ("", "localhost"):
        return None  # another host's file is not on this disk
    path = unquote(parts.path, errors="surrogateescape")
    if not path.startswith("/") or "\x00" in path:
        return None
    return Path(path)


def git_toplevel(path: Path | str) -> Path | None:
    """The nearest ancestor (symlinks resolved) holding `.git` (a directory, or a file for
    worktrees and submodules)."""
    start = canonical(path)
    for current in walk_up(start, None):
        if (current / GIT).exists():
            return current
    return None


def project_dir_hint(directory: Path) -> Path:
    """Where a `.venv` for files in `directory` should go: the nearest directory with a
    project file, else `directory` itself (the walk stops at the git toplevel)."""
    start = absolute(directory)
    names = (PYPROJECT, "setup.cfg", *sorted(PROJECT_FILES))
    for current in walk_up(start, None):
        if any((current / name).exists() for name in names):
            return current
        if (current / GIT).exists():
            break
    return start


def fallback_environment(
    cwd: Path | str, *, rules: Sequence[EnvironmentRule] = ()
) -> Environment | None:
    """The environment to start before any file is opened: the project at the git toplevel
    of `cwd`, else the project at `cwd` itself."""
    base = absolute(cwd)
    top = git_toplevel(base)
    for candidate in (top, base):
        if candidate is None:
            continue
        lookup = find_environment(candidate, rules=rules)
        if lookup.environment is not None and lookup.project_dir == candidate:
            return lookup.environment
    return None


def no_environment_message(file_path: Path | None, uri: str, lookup: Lookup | None) -> str:
    """The strict-mode error: the file, where it looked, what is missing and the fix."""
    if file_path is None:
        return (
            f"typemux-lsp: {uri} is not a file on disk, so it has no .venv and no backend "
            "can answer for it without guessing the environment. Save it under a project "
            "that has a .venv, then retry."
        )
    if lookup is not None and lookup.missing is not None:
        return lookup.missing.message(file_path)
    where = ""
    if lookup is not None and lookup.searched:
        top, bottom = lookup.searched[0], lookup.searched[-1]
        stop = "the filesystem root"
        if lookup.boundary is not None and bottom == lookup.boundary:
            stop = "the git toplevel" if (bottom / GIT).exists() else "the workspace folder"
        where = (
            f" Looked for .venv or a project file (pyproject.toml, Pipfile, pixi.toml, "
            f"environment.yml, ...) from {top} up to {bottom} ({stop})."
        )
    project = project_dir_hint(file_path.parent)
    return (
        f"typemux-lsp: no .venv found for {file_path}.{where} "
        "typemux-lsp answers only from a file's own environment, never another one. "
        f"Fix: create it in the project directory, e.g. `cd {project} && uv sync` "
        "(or `python -m venv .venv` and install the dependencies); "
        "the next request picks it up, no restart needed."
    )
