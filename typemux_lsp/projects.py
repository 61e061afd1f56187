"""The projects under a directory: each with its environment, or what it is missing.

Walked the way the router resolves files (each directory's project and environment, each PEP
723 script on its own), bounded in size and skipping what never holds a project's sources (VCS
metadata, caches, installed packages, environments themselves). `--doctor` reports it;
workspace-wide requests (`workspace/symbol`) search every environment it finds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .environments import (
    Environment,
    EnvironmentRule,
    Lookup,
    find_environment,
    is_environment,
    is_project,
    project_dir_hint,
)
from .environments.project import PLACEHOLDER
from .venv import VENV_DIR

#: directories the walk visits at most, so the doctor stays quick on huge trees
MAX_DIRECTORIES = 20_000
PYTHON_SUFFIXES = (".py", ".pyi")
#: bytes of each Python file read to recognise a PEP 723 script
SCRIPT_SNIFF = 64 * 1024
#: never searched: VCS metadata, caches, JavaScript dependencies, installed packages
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".hypothesis",
        "site-packages",
        VENV_DIR,
        ".pixi",
    }
)
_ROOT = Path("/")


@dataclass(slots=True)
class Scan:
    """What the walk found, looked up as the server looks files up."""

    roots: tuple[Path, ...]
    rules: Sequence[EnvironmentRule]
    #: environment key -> (the environment, Python files under the root it serves)
    environments: dict[Path, tuple[Environment, int]] = field(default_factory=dict)
    #: project directory -> its lookup
    projects: dict[Path, Lookup] = field(default_factory=dict)
    #: Python files of each project
    project_files: dict[Path, int] = field(default_factory=dict)
    #: directory whose files have no environment (their project, else where one should go)
    #: -> (a lookup of one of them, file count)
    orphans: dict[Path, tuple[Lookup, int]] = field(default_factory=dict)
    truncated: bool = False

    def lookup(self, path: Path) -> Lookup:
        return find_environment(path, roots=self.roots, rules=self.rules)

    def served(self, lookup: Lookup, count: int) -> None:
        env = lookup.environment
        if env is not None:
            first, files = self.environments.get(env.key, (env, 0))
            self.environments[env.key] = (first, files + count)
        project = lookup.project_dir
        if project is not None:
            self.project_files[project] = self.project_files.get(project, 0) + count
        if env is None and count:
            where = project or project_dir_hint(lookup.searched[0] if lookup.searched else _ROOT)
            _, orphans = self.orphans.get(where, (lookup, 0))
            self.orphans[where] = (lookup, orphans + count)


def scan(root: Path, *, rules: Sequence[EnvironmentRule] = ()) -> Scan:
    """Walk `root`: every project, every environment a Python file resolves to, and the
    files that have none. `root` is the workspace folder the lookups are bounded by."""
    found = Scan((root,) if root.is_dir() else (root.parent,), rules)
    if root.is_file():
        lookup = found.lookup(root)
        if lookup.project_dir is not None:
            found.projects[lookup.project_dir] = lookup
        found.served(lookup, 1 if root.suffix in PYTHON_SUFFIXES else 0)
        return found
    for visited, (current, dirs, files) in enumerate(os.walk(root), start=1):
        here = Path(current)
        if is_project(here, rules):
            found.projects[here] = found.lookup(here)
            found.served(found.projects[here], 0)
        # An environment's inside (a venv whatever its name, a conda prefix) is not searched,
        # nor a project template's (`{{ cookiecutter.name }}/`, `$pkg/`): no project's files.
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in SKIP_DIRS and not PLACEHOLDER.search(d) and not is_environment(here / d)
        )
        python_files = [name for name in files if name.endswith(PYTHON_SUFFIXES)]
        scripts = [name for name in python_files if _is_script(here / name)]
        for name in scripts:
            found.served(found.lookup(here / name), 1)
        if len(python_files) > len(scripts):
            rest = len(python_files) - len(scripts)
            found.served(found.lookup(here / "__doctor__.py"), rest)
        if visited >= MAX_DIRECTORIES:
            found.truncated = True
            break
    return found


def _is_script(path: Path) -> bool:
    """A PEP 723 script (its environment is its own, so it is looked up on its own)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(SCRIPT_SNIFF)
    except OSError:
        return False
    return b"# /// script" in head


def a_python_file(project: Path) -> Path | None:
    """One of the project's own Python files (not its environment's), if it has any."""
    for current, dirs, files in os.walk(project):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not is_environment(here / d))
        for name in sorted(files):
            if name.endswith(PYTHON_SUFFIXES):
                return here / name
    return None


def importers(project: Path, module: str, *, limit: int = 50) -> list[Path]:
    """The project's own Python files that import `module` (or a submodule of it), by a
    textual match of `import module` / `from module`: at most `limit` of them."""
    top = re.escape(module)
    pattern = re.compile(rf"^\s*(?:from\s+{top}(?:\.|\s)|import\s+(?:.*,\s*)?{top}\b)", re.M)
    found: list[Path] = []
    for current, dirs, files in os.walk(project):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not is_environment(here / d))
        for name in sorted(files):
            if not name.endswith(PYTHON_SUFFIXES):
                continue
            try:
                with open(here / name, encoding="utf-8", errors="replace") as handle:
                    head = handle.read(SCRIPT_SNIFF)
            except OSError:
                continue
            if pattern.search(head):
                found.append(here / name)
                if len(found) >= limit:
                    return found
    return found
