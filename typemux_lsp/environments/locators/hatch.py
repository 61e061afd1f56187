"""Hatch: the default environment of type `virtual`, where Hatch puts it.

As Hatch 1.x computes it (src/hatch/env/virtual.py, `VirtualEnvironment.__init__`, and
src/hatch/cli/application.py, `get_env_directory`):

- an explicit `path` of the environment (`[tool.hatch.envs.default]` in pyproject.toml or
  `[envs.default]` in hatch.toml; `HATCH_ENV_TYPE_VIRTUAL_PATH`), relative to the project;
- else in the environment directory: `[dirs.env] virtual = ...` of Hatch's user config
  (relative to the project), default `<data dir>/env/virtual` (`HATCH_DATA_DIR`, `[dirs]
  data`, the platform's data directory), as `<project name>/<project id>/<project name>`,
  or flat `<dir>/<project name>` when the directory is `~/.virtualenvs` or inside the project.

The project name is `[project].name` normalised, or `<project id>-unmanaged` without
`[project]`; the id hashes the project's real path (`names.hatch_project_id`). Hatch counts
as the project's manager when the project configures Hatch environments (hatch.toml or
`[tool.hatch.envs]`); a project that only builds with hatchling uses Hatch's environment only
if one exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs

from .._fs import canonical, string, table
from ..model import Missing
from ..names import canonicalize_name, hatch_project_id
from ..project import DOT_VENV, Context
from . import Found, Locator

DEFAULT = "default"


def _default(ctx: Context) -> tuple[bool, Mapping[str, Any]] | None:
    """Whether the project declares Hatch environments, and its `default` environment's
    table; None when Hatch is not its manager or the default is not a `virtual` one."""
    project = ctx.project
    if project is None:
        return None
    hatch_toml = (
        ctx.seen.toml(project.directory / "hatch.toml") if project.has("hatch.toml") else None
    )
    envs = table(hatch_toml, "envs") or project.tool("hatch", "envs")
    declared = hatch_toml is not None or envs is not None
    if not declared and project.tool("hatch") is None and "hatch" not in project.build_backend:
        return None
    default: Mapping[str, Any] = table(envs, DEFAULT) or {}
    if default.get("type", "virtual") != "virtual":
        return None  # a plugin's environment (a container, ...): not a prefix on this disk
    return declared, default


def dotvenv_ignored(ctx: Context) -> str | None:
    """Why the project's `.venv` is not Hatch's environment: Hatch never uses a `.venv` it
    was not told to. A project that declares Hatch environments and configures where the
    default one is (its `path`, `HATCH_ENV_TYPE_VIRTUAL_PATH`, `dirs.env.virtual`), or whose
    default environment Hatch has created, is answered from that environment."""
    known = _default(ctx)
    project = ctx.project
    if known is None or project is None or not known[0]:
        return None
    directory = project.directory
    prefix, how, configured = _location(ctx, project.pyproject, directory, known[1])
    if canonical(prefix) == canonical(directory / DOT_VENV):
        return None
    if configured:
        return f"Hatch's default environment is {prefix} ({how})"
    if ctx.is_environment(prefix):
        return f"Hatch has created its default environment at {prefix}"
    return None


def locate(ctx: Context) -> Found:
    known = _default(ctx)
    project = ctx.project
    if known is None or project is None:
        return None
    declared, default = known
    directory = project.directory
    prefix, how = environment_path(ctx, project.pyproject, directory, default)
    ignored = dotvenv_ignored(ctx) if project.has(DOT_VENV) else None
    note = f"; the .venv in {directory} is not Hatch's" if ignored else ""
    found = ctx.environment(
        prefix, directory, "hatch", f"Hatch's default environment ({how}{note})"
    )
    if found is not None or not declared:
        return found
    return Missing(
        "hatch",
        directory,
        "it is a Hatch project and Hatch has not created its default environment",
        (prefix,),
        f"`cd {directory} && hatch env create`",
        final=False,
    )


def environment_path(
    ctx: Context,
    pyproject: Mapping[str, Any] | None,
    directory: Path,
    default: Mapping[str, Any],
) -> tuple[Path, str]:
    """Where Hatch puts the project's default environment, and why there."""
    prefix, how, _ = _location(ctx, pyproject, directory, default)
    return prefix, how


def _location(
    ctx: Context,
    pyproject: Mapping[str, Any] | None,
    directory: Path,
    default: Mapping[str, Any],
) -> tuple[Path, str, bool]:
    """`environment_path`, and whether a setting put it there (not Hatch's default)."""
    root = canonical(directory)
    explicit = ctx.environ.get("HATCH_ENV_TYPE_VIRTUAL_PATH") or default.get("path")
    if isinstance(explicit, str) and explicit:
        path = Path(explicit)
        resolved = path if path.is_absolute() else (root / path).resolve()
        return resolved, f"path = {explicit!r}", True
    project_id = hatch_project_id(str(root))
    name = string(pyproject, "project", "name")
    project_name = canonicalize_name(name) if name is not None else f"{project_id}-unmanaged"
    config = _user_config(ctx)
    env_dir, how = _env_directory(ctx, config, root)
    configured = how.startswith("dirs.env.virtual")
    if env_dir == ctx.home / ".virtualenvs" or root in env_dir.resolve().parents:
        return env_dir / project_name, how, configured
    return env_dir / project_name / project_id / project_name, how, configured


def _user_config(ctx: Context) -> Mapping[str, Any] | None:
    file = ctx.environ.get("HATCH_CONFIG") or (
        Path(platformdirs.user_config_dir("hatch", appauthor=False)) / "config.toml"
    )
    return ctx.seen.toml(Path(file))


def _env_directory(ctx: Context, config: Mapping[str, Any] | None, root: Path) -> tuple[Path, str]:
    configured = string(table(config, "dirs", "env"), "virtual")
    if configured:
        path = ctx.expand(configured)
        return (path if path.is_absolute() else root / path), f"dirs.env.virtual = {configured!r}"
    data = ctx.environ.get("HATCH_DATA_DIR") or string(table(config, "dirs"), "data")
    base = ctx.expand(data) if data else Path(platformdirs.user_data_dir("hatch", appauthor=False))
    return base / "env" / "virtual", f"in {base / 'env' / 'virtual'}"


LOCATOR = Locator("hatch", locate)
