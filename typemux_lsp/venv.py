"""Which `.venv` a file belongs to.

The nearest `.venv/pyvenv.cfg` walking up from the file's directory, stopping at
the git toplevel of that file (the filesystem root outside git). Paths are
canonical (symlinks and `..` resolved) so one venv never gets two backends.
Nothing negative is cached: a `.venv` created after the file was opened is found
by the next lookup.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pygls.uris import to_fs_path

VENV_DIR = ".venv"
_BIN = "Scripts" if sys.platform == "win32" else "bin"
_PYTHON = "python.exe" if sys.platform == "win32" else "python"


@dataclass(frozen=True, slots=True)
class Venv:
    """A virtual environment, by the canonical path of its directory."""

    path: Path

    @property
    def project_dir(self) -> Path:
        """The directory that holds `.venv`: the backend's root and working directory."""
        return self.path.parent

    @property
    def bin_dir(self) -> Path:
        return self.path / _BIN

    @property
    def python(self) -> Path:
        return self.bin_dir / _PYTHON

    @property
    def cfg(self) -> Path:
        return self.path / "pyvenv.cfg"

    def exists(self) -> bool:
        return self.cfg.is_file()

    def identity(self) -> tuple[int, int] | None:
        """Changes when the venv is deleted and recreated at the same path."""
        try:
            st = os.stat(self.cfg)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def python_version(self) -> str | None:
        """The `version`/`version_info` line of pyvenv.cfg, for status and doctor output."""
        try:
            text = self.cfg.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in ("version", "version_info"):
                return value.strip()
        return None

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True, slots=True)
class Lookup:
    """The result of a search, with where it looked (for error messages)."""

    venv: Venv | None
    searched: tuple[Path, ...]
    boundary: Path | None  # the git toplevel the search stopped at, if any


def canonical(path: Path | str) -> Path:
    return Path(os.path.realpath(path))


def uri_to_path(uri: str) -> Path | None:
    """The filesystem path of a `file:` URI; None for `untitled:`, notebook cells, etc."""
    if not uri.startswith("file:"):
        return None
    path = to_fs_path(uri)
    return Path(path) if path else None


def find_venv(file_path: Path) -> Lookup:
    """The `.venv` nearest to `file_path`, up to the file's git toplevel."""
    start = canonical(file_path)
    directory = start if start.is_dir() else start.parent
    searched: list[Path] = []
    for current in (directory, *directory.parents):
        searched.append(current)
        candidate = current / VENV_DIR
        if (candidate / "pyvenv.cfg").is_file():
            return Lookup(Venv(canonical(candidate)), tuple(searched), None)
        if (current / ".git").exists():
            return Lookup(None, tuple(searched), current)
    return Lookup(None, tuple(searched), None)


def git_toplevel(path: Path) -> Path | None:
    """The nearest ancestor holding `.git` (a directory, or a file for worktrees)."""
    start = canonical(path)
    for current in (start, *start.parents):
        if (current / ".git").exists():
            return current
    return None


def fallback_venv(cwd: Path) -> Venv | None:
    """The venv to pre-start: `.venv` at the git toplevel, else at cwd."""
    top = git_toplevel(cwd)
    for base in (top, canonical(cwd)):
        if base is not None and (base / VENV_DIR / "pyvenv.cfg").is_file():
            return Venv(canonical(base / VENV_DIR))
    return None


def no_venv_message(file_path: Path | None, uri: str, lookup: Lookup | None) -> str:
    """The strict-mode error: the file, where we looked, and how to fix it."""
    if file_path is None:
        return (
            f"typemux-lsp: {uri} is not a file on disk, so it has no .venv and no backend "
            "can answer for it without guessing the environment. Save it under a project "
            "that has a .venv, then retry."
        )
    where = ""
    if lookup is not None and lookup.searched:
        top, bottom = lookup.searched[0], lookup.searched[-1]
        stop = "the git toplevel" if lookup.boundary is not None else "the filesystem root"
        where = f" Looked for .venv/pyvenv.cfg from {top} up to {bottom} ({stop})."
    project = project_dir_hint(file_path.parent)
    return (
        f"typemux-lsp: no .venv found for {file_path}.{where} "
        "typemux-lsp answers only from a file's own virtual environment, never another one. "
        f"Fix: create it in the project directory, e.g. `cd {project} && uv sync` "
        "(or `python -m venv .venv` and install the dependencies); "
        "the next request picks it up, no restart needed."
    )


def project_dir_hint(directory: Path) -> Path:
    """Where a `.venv` for this file should go: the nearest directory with a project file."""
    start = canonical(directory)
    for current in (start, *start.parents):
        if any((current / name).exists() for name in ("pyproject.toml", "setup.py", "setup.cfg")):
            return current
        if (current / ".git").exists():
            break
    return start
