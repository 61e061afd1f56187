"""pixi: `pixi.toml` (or `[tool.pixi]` in pyproject.toml); the default environment is the
conda-style prefix `.pixi/envs/default` in the project. pixi never uses a `.venv`: once pixi
has made its environment, a `.venv` in the project is not the project's (`dotvenv_ignored`).

Not supported: pixi's `detached-environments` setting, which moves environments out of the
project (the error then says where it looked).
"""

from __future__ import annotations

from ..model import Missing
from ..project import Context
from . import Found, Locator


def declares(ctx: Context) -> bool:
    project = ctx.project
    return project is not None and (project.has("pixi.toml") or project.tool("pixi") is not None)


def dotvenv_ignored(ctx: Context) -> str | None:
    """Why the project's `.venv` is not pixi's: pixi has made its own environment."""
    project = ctx.project
    if project is None:
        return None
    prefix = project.directory / ".pixi" / "envs" / "default"
    return f"pixi has made its environment {prefix}" if ctx.is_environment(prefix) else None


def locate(ctx: Context) -> Found:
    project = ctx.project
    if project is None or not declares(ctx):
        return None
    directory = project.directory
    prefix = directory / ".pixi" / "envs" / "default"
    marker = "pixi.toml" if project.has("pixi.toml") else "[tool.pixi] in pyproject.toml"
    found = ctx.environment(
        prefix, directory, "pixi", f"pixi project ({marker}); its default environment"
    )
    if found is not None:
        return found
    return Missing(
        "pixi",
        directory,
        f"it is a pixi project ({marker}) and its default environment does not exist",
        (prefix,),
        f"`cd {directory} && pixi install`",
        final=False,
    )


LOCATOR = Locator("pixi", locate)
