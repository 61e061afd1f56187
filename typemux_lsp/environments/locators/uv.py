"""uv: a workspace member uses the workspace root's environment, never a `.venv` of its own.

uv finds the workspace from a project by walking up to the first pyproject.toml with
`[tool.uv.workspace]`; the project is a member when a `members` glob matches its directory
and no `exclude` glob does. Every member shares one environment, `.venv` at the workspace
root (or `UV_PROJECT_ENVIRONMENT`, relative to that root). `uv sync` never uses a member's
own `.venv`, so one left over from before the workspace existed must not win: this locator
runs before `.venv` is looked at.
"""

from __future__ import annotations

from pathlib import Path

from .._fs import glob_match, strings, table, walk_up
from ..model import Missing
from ..project import DOT_VENV, PYPROJECT, Context
from . import Found, Locator

ENV_VAR = "UV_PROJECT_ENVIRONMENT"


def locate(ctx: Context) -> Found:
    project = ctx.project
    if project is None:
        return None
    root = _workspace_root(ctx, project.directory)
    if root is None:
        return _project_environment(ctx)
    prefix = _environment_path(ctx, root)
    directory = project.directory
    member = (
        "it is the root of the uv workspace"
        if root == directory
        else (f"{directory} is a member of the uv workspace at {root}")
    )
    found = ctx.environment(prefix, root, "uv-workspace", f"{member}; its environment is {prefix}")
    if found is not None:
        return found
    stale = (
        f" ({directory / DOT_VENV} is not used: uv never uses a member's own .venv)"
        if root != directory and project.has(DOT_VENV)
        else ""
    )
    return Missing(
        "uv-workspace",
        directory,
        f"{member}, whose environment {prefix} does not exist{stale}",
        (prefix,),
        f"`cd {root} && uv sync`",
    )


def _workspace_root(ctx: Context, directory: Path) -> Path | None:
    """The uv workspace `directory` belongs to (itself if it is a root), or None."""
    if PYPROJECT not in ctx.seen.names(directory, frozenset({PYPROJECT})):
        return None  # uv projects, members included, have a pyproject.toml
    for candidate in walk_up(directory, ctx.boundary):
        if PYPROJECT not in ctx.seen.names(candidate, frozenset({PYPROJECT})):
            continue
        data = ctx.seen.toml(candidate / PYPROJECT)
        workspace = table(data, "tool", "uv", "workspace")
        if workspace is None:
            continue
        if (table(data, "tool", "uv") or {}).get("managed") is False:
            return None
        if candidate == directory:
            return candidate
        relative = directory.relative_to(candidate).parts
        members = strings(workspace, "members")
        excluded = strings(workspace, "exclude")
        if any(glob_match(g, relative) for g in members) and not any(
            glob_match(g, relative) for g in excluded
        ):
            return candidate
        return None  # uv stops at the first workspace it meets
    return None


def _environment_path(ctx: Context, root: Path) -> Path:
    raw = ctx.environ.get(ENV_VAR)
    return ctx.expand(raw, root) if raw else root / DOT_VENV


def _project_environment(ctx: Context) -> Found:
    """A uv project outside a workspace, when UV_PROJECT_ENVIRONMENT moves its environment."""
    project = ctx.project
    raw = ctx.environ.get(ENV_VAR)
    if project is None or not raw:
        return None
    if not (project.has("uv.lock") or project.tool("uv") is not None):
        return None
    prefix = ctx.expand(raw, project.directory)
    found = ctx.environment(
        prefix, project.directory, "venv", f"uv project; {ENV_VAR}={raw} names {prefix}"
    )
    if found is not None:
        return found
    return Missing(
        "uv",
        project.directory,
        f"it is a uv project and {ENV_VAR}={raw} names {prefix}, which does not exist",
        (prefix,),
        f"`cd {project.directory} && uv sync`",
    )


LOCATOR = Locator("uv-workspace", locate)
