"""The `.venv`-era names, kept for the modules that still use them.

Discovery lives in `typemux_lsp.environments` now (every kind of environment, not only
`.venv`); `Venv` is its `Environment` and `find_venv` its `find_environment`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .environments import (
    Environment,
    EnvironmentRule,
    Lookup,
    canonical,
    fallback_environment,
    find_environment,
    git_toplevel,
    project_dir_hint,
    uri_to_path,
)
from .environments import no_environment_message as no_venv_message

VENV_DIR = ".venv"
Venv = Environment

__all__ = [
    "VENV_DIR",
    "Lookup",
    "Venv",
    "canonical",
    "fallback_venv",
    "find_venv",
    "git_toplevel",
    "no_venv_message",
    "project_dir_hint",
    "uri_to_path",
]


def find_venv(
    file_path: Path,
    *,
    roots: Sequence[Path | str] = (),
    rules: Sequence[EnvironmentRule] = (),
) -> Lookup:
    """The environment of `file_path` (see `environments.find_environment`)."""
    return find_environment(file_path, roots=roots, rules=rules)


def fallback_venv(cwd: Path, *, rules: Sequence[EnvironmentRule] = ()) -> Environment | None:
    """The environment to pre-start (see `environments.fallback_environment`)."""
    return fallback_environment(cwd, rules=rules)
