"""The projects under a directory: every environment that serves Python files there.

Walked the way the router resolves files (each directory's environment), bounded in size
and skipping what never holds a project's sources (VCS metadata, caches, installed
packages, environments themselves). `--doctor` reports it; workspace-wide requests
(`workspace/symbol`) search every environment it finds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .venv import VENV_DIR, canonical, find_venv

#: directories the walk visits at most, so the doctor stays quick on huge trees
MAX_DIRECTORIES = 20_000
PYTHON_SUFFIXES = (".py", ".pyi")
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
    }
)


@dataclass(slots=True)
class Scan:
    #: venv path -> Python files under PATH that it serves
    venvs: dict[Path, int] = field(default_factory=dict)
    #: directory -> Python files in it that have no venv
    orphans: dict[Path, int] = field(default_factory=dict)
    truncated: bool = False


def scan(root: Path) -> Scan:
    """Walk `root` the way the router resolves files: each directory's nearest `.venv`."""
    found = Scan()
    if root.is_file():
        lookup = find_venv(root)
        if lookup.venv is not None:
            found.venvs[lookup.venv.path] = 1
        elif root.suffix in PYTHON_SUFFIXES:
            found.orphans[root.parent] = 1
        return found
    for visited, (current, dirs, files) in enumerate(os.walk(root), start=1):
        here = Path(current)
        if (here / VENV_DIR / "pyvenv.cfg").is_file():
            found.venvs.setdefault(canonical(here / VENV_DIR), 0)
        # Any directory holding pyvenv.cfg is a venv's inside, whatever its name.
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not _is_venv(here / d))
        count = sum(1 for name in files if name.endswith(PYTHON_SUFFIXES))
        if count:
            lookup = find_venv(here / "__doctor__.py")
            if lookup.venv is not None:
                found.venvs[lookup.venv.path] = found.venvs.get(lookup.venv.path, 0) + count
            else:
                found.orphans[canonical(here)] = count
        if visited >= MAX_DIRECTORIES:
            found.truncated = True
            break
    return found


def _is_venv(directory: Path) -> bool:
    return (directory / "pyvenv.cfg").is_file()


def a_python_file(project: Path) -> Path | None:
    """One of the project's own Python files (not its environment's), if it has any."""
    for current, dirs, files in os.walk(project):
        here = Path(current)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not _is_venv(here / d))
        for name in sorted(files):
            if name.endswith(PYTHON_SUFFIXES):
                return here / name
    return None
