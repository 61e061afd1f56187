"""uv: a workspace member uses the workspace root's environment, never a `.venv` of its own.

As uv 0.13 discovers a workspace (crates/uv-workspace/src/workspace.rs, `find_workspace`):

- a project with `[tool.uv] managed = false` is in no workspace;
- a project with `[tool.uv.workspace]` is a workspace root;
- else the *first* `pyproject.toml` above the project decides, whatever it holds: with
  `[tool.uv.workspace]` the project is a member when a `members` glob matches it and no
  `exclude` glob does; with `[project]` (an example or test project nested in another
  project: "Project is contained in non-workspace project") or with neither, the project is a
  project of its own. A workspace further up is never reached past it.

Globs are matched as uv 0.13 matches them (confirmed with the real uv in
tests/unit/test_environments_tools.py): in `members` a `*` stops at `/`; in `exclude` it does
not (`packages/*` excludes `packages/group/api`); `**` spans any number of directories; a
leading `./` is dropped.

Every member shares one environment, `.venv` at the workspace root (or
`UV_PROJECT_ENVIRONMENT`, relative to that root). `uv sync` never uses a member's own `.venv`,
so one left over from before the workspace existed must not win: this locator runs before
`.venv` is looked at. `UV_PROJECT_ENVIRONMENT` also moves a standalone uv project's
environment, and then beats its `.venv`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .._fs import glob_match, strings, table, walk_up
from ..model import Missing
from ..project import DOT_VENV, PYPROJECT, Context
from . import Found, Locator

ENV_VAR = "UV_PROJECT_ENVIRONMENT"
_PYPROJECT = frozenset({PYPROJECT})


def locate(ctx: Context) -> Found:
    project = ctx.project
    if project is None:
        return None
    found = discover(ctx, project.directory)
    if found.root is None:
        return _project_environment(ctx, found)
    root = found.root
    prefix = _environment_path(ctx, root)
    directory = project.directory
    member = (
        "it is the root of the uv workspace"
        if root == directory
        else (f"{directory} is a member of the uv workspace at {root}")
    )
    env = ctx.environment(prefix, root, "uv-workspace", f"{member}; its environment is {prefix}")
    if env is not None:
        return env
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


@dataclass(frozen=True, slots=True)
class Discovery:
    """What uv's workspace discovery says of a project directory."""

    #: the workspace root it belongs to (itself for a root), None: a project of its own
    root: Path | None
    #: why it is not a member of a workspace above it whose `members` match it, if so
    standalone: str | None = None


def discover(ctx: Context, directory: Path) -> Discovery:
    """The uv workspace `directory` belongs to, by uv's own rules (the module docstring)."""
    if PYPROJECT not in ctx.seen.names(directory, _PYPROJECT):
        return Discovery(None)  # uv projects, members included, have a pyproject.toml
    own = ctx.seen.toml(directory / PYPROJECT)
    if (table(own, "tool", "uv") or {}).get("managed") is False:
        return Discovery(
            None, _beneath(ctx, directory, f"{directory} sets [tool.uv] managed = false")
        )
    if table(own, "tool", "uv", "workspace") is not None:
        return Discovery(directory)
    if directory == ctx.boundary:
        return Discovery(None)
    for candidate in walk_up(directory.parent, ctx.boundary):
        if not within_boundary(candidate, ctx.boundary):
            break
        if PYPROJECT not in ctx.seen.names(candidate, _PYPROJECT):
            continue
        data = ctx.seen.toml(candidate / PYPROJECT)
        workspace = table(data, "tool", "uv", "workspace")
        if workspace is None:
            what = "a project" if table(data, "project") is not None else "no [project] table"
            reason = (
                f"{candidate / PYPROJECT} ({what}) is the first pyproject.toml above it, so uv "
                f"treats {directory} as a project of its own"
            )
            return Discovery(None, _beneath(ctx, candidate, reason, directory))
        if is_member(candidate, workspace, directory):
            return Discovery(candidate)
        return Discovery(None)  # uv stops at the first workspace it meets
    return Discovery(None)


def within_boundary(path: Path, boundary: Path | None) -> bool:
    return boundary is None or path == boundary or boundary in path.parents


def _beneath(ctx: Context, start: Path, reason: str, directory: Path | None = None) -> str | None:
    """`reason`, if a workspace above `start` lists `directory` (default: `start`) among its
    members: then uv's treating it as a project of its own is worth saying."""
    target = directory or start
    if start == ctx.boundary:
        return None
    for candidate in walk_up(start.parent, ctx.boundary):
        if not within_boundary(candidate, ctx.boundary):
            break
        if PYPROJECT not in ctx.seen.names(candidate, _PYPROJECT):
            continue
        workspace = table(ctx.seen.toml(candidate / PYPROJECT), "tool", "uv", "workspace")
        if workspace is not None:
            if is_member(candidate, workspace, target):
                return f"{reason}, not as a member of the uv workspace at {candidate}"
            return None
    return None


def is_member(root: Path, workspace: Mapping[str, Any], directory: Path) -> bool:
    """uv's `is_included_in_workspace` and not `is_excluded_from_workspace`, as uv 0.13
    matches them: a `members` glob segment by segment (`*` stops at `/`, `**` spans any
    number of directories); an `exclude` glob with `*` and `?` crossing `/` (`packages/*`
    excludes `packages/group/api` too)."""
    relative = os.path.relpath(directory, root).replace(os.sep, "/")
    parts = tuple(relative.split("/"))
    if not any(glob_match(_normalise(glob), parts) for glob in strings(workspace, "members")):
        return False
    return not any(
        _pattern(_normalise(glob)).fullmatch(relative) for glob in strings(workspace, "exclude")
    )


def _normalise(glob: str) -> str:
    """uv's `normalize_path` of a glob: `.` segments dropped, `..` folded."""
    parts: list[str] = []
    for part in glob.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


@lru_cache(maxsize=256)
def _pattern(glob: str) -> re.Pattern[str]:
    """An `exclude` glob as the `glob` crate matches it with its default options: `*` and `?`
    match any character, `/` included; `**` as a whole segment any number of segments."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**", i) and (i == 0 or glob[i - 1] == "/"):
            end = i + 2
            if end == n:
                out.append(".*")
                i = end
                continue
            if glob[end] == "/":
                out.append("(?:.*/)?")
                i = end + 1
                continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            close = glob.find("]", i + 2)
            if close == -1:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : close]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
                i = close
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _environment_path(ctx: Context, root: Path) -> Path:
    raw = ctx.environ.get(ENV_VAR)
    return ctx.expand(raw, root) if raw else root / DOT_VENV


def _project_environment(ctx: Context, found: Discovery) -> Found:
    """A uv project outside a workspace: where `UV_PROJECT_ENVIRONMENT` moves its
    environment; else, when uv sets it apart from a workspace that lists it, why."""
    project = ctx.project
    if project is None:
        return None
    raw = ctx.environ.get(ENV_VAR)
    uses_uv = project.has("uv.lock") or project.tool("uv") is not None
    if raw and uses_uv:
        prefix = ctx.expand(raw, project.directory)
        env = ctx.environment(
            prefix, project.directory, "venv", f"uv project; {ENV_VAR}={raw} names {prefix}"
        )
        if env is not None:
            return env
        return Missing(
            "uv",
            project.directory,
            f"it is a uv project and {ENV_VAR}={raw} names {prefix}, which does not exist",
            (prefix,),
            f"`cd {project.directory} && uv sync`",
        )
    if found.standalone is not None and not _other_manager(ctx):
        directory = project.directory
        return Missing(
            "uv",
            directory,
            f"{found.standalone}; its environment is its own .venv, which does not exist",
            (directory / DOT_VENV,),
            f"`cd {directory} && uv sync`",
            final=False,
        )
    return None


def _other_manager(ctx: Context) -> bool:
    """The project declares a manager other than uv, whose own error says more."""
    project = ctx.project
    assert project is not None
    return any(project.tool(t) is not None for t in _OTHER_TOOLS) or any(
        project.has(name) for name in _OTHER_FILES
    )


_OTHER_TOOLS = ("poetry", "pdm", "hatch", "pixi")
_OTHER_FILES = ("Pipfile", "pixi.toml", "environment.yml", "environment.yaml", "hatch.toml")


LOCATOR = Locator("uv-workspace", locate)
