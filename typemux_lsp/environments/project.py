"""What "the project" of a file is, and what a locator is told about it.

The project of a file is the nearest directory, walking up from the file as spelled, that
declares a project:

- a `.venv` entry (a directory, a symlink or a PEP 832 redirect file);
- a `pyproject.toml` with `[project]`, `[build-system]`, `[dependency-groups]` or a table of a
  manager (`[tool.poetry]`, `[tool.pdm]`, `[tool.hatch]`, `[tool.pixi]`, `[tool.uv]`); a
  pyproject.toml that only configures tools (ruff, pytest, a type checker) is not a project;
- a manager's own file: `setup.py`, `Pipfile`, `pixi.toml`, `environment.yml`/`.yaml`,
  `hatch.toml`, `.pdm-python`, or a lock file (`uv.lock`, `poetry.lock`, `pdm.lock`,
  `pixi.lock`);
- a directory matched by a typemux-lsp rule that sets `environment`.

A project template is not a project: a directory whose name, or whose pyproject.toml's
project name, holds an unexpanded placeholder (`$pkg`, `${pkg}`, `{{ cookiecutter.name }}`,
`{% ... %}`), or whose pyproject.toml is not TOML because of one. Its files belong to the
project around it.

The walk stops there: a project without an environment of its own never gets an enclosing
directory's, unless that environment has the project installed (a uv workspace member, an
editable install) or a rule says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ._fs import Seen, table
from .model import CONDA_META, PYVENV_CFG, Environment, Lookup, interpreter

DOT_VENV = ".venv"
PYPROJECT = "pyproject.toml"
GIT = ".git"
#: files whose presence alone makes a directory a project
PROJECT_FILES = frozenset(
    {
        "setup.py",
        "Pipfile",
        "pixi.toml",
        "environment.yml",
        "environment.yaml",
        "hatch.toml",
        ".pdm-python",
        "uv.lock",
        "poetry.lock",
        "pdm.lock",
        "pixi.lock",
    }
)
#: every entry name the walk looks for in a directory
WANTED = PROJECT_FILES | {DOT_VENV, PYPROJECT, GIT, "poetry.toml"}
#: an unexpanded placeholder of a project template (string.Template, cookiecutter, copier, Jinja)
PLACEHOLDER = re.compile(r"\$\{?[A-Za-z_]\w*\}?|\{\{.*?\}\}|\{%.*?%\}")
_DECLARING_TABLES = ("project", "build-system", "dependency-groups")
_DECLARING_TOOLS = ("poetry", "pdm", "hatch", "pixi", "uv")


class EnvironmentRule(Protocol):
    """A configured project rule, as far as environments are concerned (config.ProjectRule)."""

    @property
    def environment(self) -> str | None: ...

    @property
    def source(self) -> str: ...

    @property
    def confine(self) -> Path | None: ...

    @property
    def refused(self) -> str | None: ...

    def matches(self, project_dir: Path) -> bool: ...


@dataclass(frozen=True, slots=True)
class Project:
    """A directory that declares a project, with what it declares."""

    directory: Path
    #: which of `WANTED` are in the directory
    markers: frozenset[str]
    #: the parsed pyproject.toml ({} if it is not valid TOML), None without one
    pyproject: Mapping[str, Any] | None
    #: the rules that match the directory and set `environment`, in order (the first whose
    #: environment may be used gives it)
    rules: tuple[EnvironmentRule, ...] = ()

    @property
    def rule(self) -> EnvironmentRule | None:
        return self.rules[0] if self.rules else None

    def has(self, name: str) -> bool:
        return name in self.markers

    def tool(self, *keys: str) -> Mapping[str, Any] | None:
        return table(self.pyproject, "tool", *keys)

    @property
    def name(self) -> str | None:
        """`[project].name`, if the pyproject.toml has one."""
        value = (table(self.pyproject, "project") or {}).get("name")
        return value if isinstance(value, str) else None

    @property
    def build_backend(self) -> str:
        value = (table(self.pyproject, "build-system") or {}).get("build-backend")
        return value if isinstance(value, str) else ""

    def describe(self) -> str:
        """The files that make it a project, for messages."""
        shown = sorted(self.markers - {GIT, "poetry.toml"})
        return ", ".join(shown) if shown else "a typemux-lsp rule"


def declares_project(pyproject: Mapping[str, Any] | None) -> bool:
    if pyproject is None:
        return False
    if not pyproject:  # not valid TOML: it may well declare one
        return True
    if any(key in pyproject for key in _DECLARING_TABLES):
        return True
    return any(table(pyproject, "tool", tool) is not None for tool in _DECLARING_TOOLS)


def is_template(seen: Seen, directory: Path, pyproject: Mapping[str, Any] | None) -> bool:
    """Whether `directory` is a project template, not a project (see the module docstring)."""
    if PLACEHOLDER.search(directory.name):
        return True
    if pyproject is None:
        return False
    if not pyproject:  # not valid TOML: a template's `{% if %}` lines make it so
        text = seen.read_text(directory / PYPROJECT)
        return text is not None and PLACEHOLDER.search(text) is not None
    names = (
        (table(pyproject, "project") or {}).get("name"),
        (table(pyproject, "tool", "poetry") or {}).get("name"),
    )
    return any(isinstance(n, str) and PLACEHOLDER.search(n) for n in names)


def environment_rules(
    rules: Sequence[EnvironmentRule], directory: Path
) -> tuple[EnvironmentRule, ...]:
    """The rules matching `directory` that set an environment, in order: the rules of every
    level apply, each key from the first matching rule that sets it."""
    return tuple(r for r in rules if r.environment is not None and r.matches(directory))


def project_at(
    seen: Seen, directory: Path, rules: Sequence[EnvironmentRule]
) -> tuple[Project | None, frozenset[str]]:
    """The project `directory` declares (or None), and the marker names found in it."""
    markers = seen.names(directory, WANTED)
    matched = environment_rules(rules, directory) if rules else ()
    pyproject = seen.toml(directory / PYPROJECT) if PYPROJECT in markers else None
    if not matched and is_template(seen, directory, pyproject):
        return None, markers
    if matched or markers & PROJECT_FILES or DOT_VENV in markers or declares_project(pyproject):
        return Project(directory, markers, pyproject, matched), markers
    return None, markers


def is_project(directory: Path, rules: Sequence[EnvironmentRule] = ()) -> bool:
    """Whether `directory` declares a project (the rule above), for listings such as
    --doctor's."""
    project, _ = project_at(Seen(), directory, rules)
    return project is not None


@dataclass(slots=True)
class Context:
    """What a locator is given: the file, its project, and the means to look at the disk."""

    #: the file being looked up, absolute, as spelled (None when looking up a directory)
    file: Path | None
    project: Project | None
    #: the workspace folder or git toplevel that bounds the search
    boundary: Path | None
    rules: Sequence[EnvironmentRule]
    seen: Seen
    #: looks up the environment of another directory (for the editable-install locator)
    lookup_directory: Callable[[Path], Lookup]
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @property
    def home(self) -> Path:
        return Path(os.path.expanduser("~"))

    def expand(self, raw: str, base: Path | None = None) -> Path:
        """A configured path: `~` and `$VARS` expanded, relative to `base` (if given)."""
        path = Path(os.path.expanduser(os.path.expandvars(raw)))
        if base is not None and not path.is_absolute():
            path = base / path
        return Path(os.path.normpath(path))

    def is_environment(self, prefix: Path) -> bool:
        """Whether `prefix` holds an environment, observed (so a cached answer notices when
        it is deleted)."""
        return self.seen.is_file(prefix / PYVENV_CFG) or self.seen.is_dir(prefix / CONDA_META)

    def environment(
        self, prefix: Path, project_dir: Path, manager: str, found_by: str
    ) -> Environment | None:
        """The environment at `prefix`, or None when there is none."""
        if not self.is_environment(prefix):
            return None
        return Environment(prefix, None, project_dir, interpreter(prefix), manager, found_by)
