"""pixi: `pixi.toml` (or `[tool.pixi]` in pyproject.toml); the default environment is the
conda-style prefix `.pixi/envs/default` in the project.

Not supported: pixi's `detached-environments` setting, which moves environments out of the
project (the error then says where it looked).
"""

from __future__ import annotations

from ..model import Missing
from ..project import Context
from . import Found, Locator


def locate(ctx: Context) -> Found:
    project = ctx.project
    if project is None or not (project.has("pixi.toml") or project.tool("pixi") is not None):
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
