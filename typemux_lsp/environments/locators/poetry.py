"""Poetry: the in-project `.venv`, or `<virtualenvs.path>/<name>-<hash>-py<X.Y>`.

As Poetry 2.x decides (src/poetry/utils/env/env_manager.py, `EnvManager.get` and
`in_project_venv_exists`): with `virtualenvs.in-project` unset or true, an existing `.venv`
directory is the environment (found by the `.venv` locator before this one); with it true,
only `.venv` is; with it false, a `.venv` in the project is not Poetry's (`dotvenv_ignored`
tells the `.venv` locator so) and the environment is in the cache. Otherwise the environment is
in `virtualenvs.path` (default `{cache-dir}/virtualenvs`), named by `names.poetry_env_name`
plus `-py<minor>`, the minor version taken from `envs.toml` there (written by `poetry env use`)
or, without it, the one environment of that name. Settings are read as Poetry reads them:
`POETRY_*` environment variables, then the project's `poetry.toml`, then the user's
`config.toml` (in `POETRY_CONFIG_DIR` or the platform's config directory).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs

from .._fs import canonical, string, table
from ..model import Missing
from ..names import poetry_env_name
from ..project import DOT_VENV, Context
from . import Found, Locator

_TRUE = ("true", "1")  # poetry.config.config.boolean_normalizer
_PLACEHOLDER = re.compile(r"{(.+?)}")


def declares(ctx: Context) -> bool:
    project = ctx.project
    return project is not None and (
        project.tool("poetry") is not None
        or project.build_backend.startswith("poetry")
        or project.has("poetry.lock")
    )


def locate(ctx: Context) -> Found:
    project = ctx.project
    if project is None or not declares(ctx):
        return None
    directory = project.directory
    config = PoetryConfig(ctx, directory)
    in_project, source = config.flag("virtualenvs.in-project")
    if in_project:
        return Missing(
            "poetry",
            directory,
            f"it is a Poetry project with virtualenvs.in-project = true ({source}) and has no "
            ".venv",
            (directory / DOT_VENV,),
            f"`cd {directory} && poetry install`",
            final=False,
        )
    create, create_source = config.flag("virtualenvs.create")
    if create is False:
        return Missing(
            "poetry",
            directory,
            f"Poetry is configured with virtualenvs.create = false ({create_source}), so it "
            "installs into whichever environment is active, which typemux-lsp cannot know",
            (),
            "name the environment in a [[projects]] rule of your typemux-lsp user config "
            '(environment = "/path/to/env")',
            final=False,
        )
    ignored = (
        f" (the .venv in {directory} is not Poetry's: virtualenvs.in-project = false, {source})"
        if in_project is False and project.has(DOT_VENV)
        else ""
    )
    venvs = config.virtualenvs_path()
    name = poetry_env_name(package_name(project.pyproject), str(canonical(directory)))
    selected = table(ctx.seen.toml(venvs / "envs.toml"), name)
    minor = selected.get("minor") if selected is not None else None
    if isinstance(minor, str):
        candidates = [venvs / f"{name}-py{minor.strip()}"]
        how = f"selected in {venvs / 'envs.toml'}"
    else:
        listed = ctx.seen.listing(venvs)
        candidates = sorted(venvs / n for n in listed if n.startswith(f"{name}-py"))
        how = "the project's only one"
    found = [c for c in candidates if ctx.is_environment(c)]
    if len(found) == 1:
        return ctx.environment(
            found[0], directory, "poetry", f"Poetry environment in {venvs} ({how}){ignored}"
        )
    if len(found) > 1:
        return Missing(
            "poetry",
            directory,
            f"it is a Poetry project with several environments "
            f"({', '.join(p.name for p in found)}) and none is selected in envs.toml",
            tuple(found),
            f"`cd {directory} && poetry env use <python version>`",
            final=False,
        )
    looked: tuple[Path, ...] = (venvs / f"{name}-py*",)
    if in_project is not False:
        looked = (directory / DOT_VENV, *looked)
    return Missing(
        "poetry",
        directory,
        f"it is a Poetry project and Poetry has not created its environment{ignored}",
        looked,
        f"`cd {directory} && poetry install`",
        final=False,
    )


def dotvenv_ignored(ctx: Context) -> str | None:
    """Why the project's `.venv` is not Poetry's environment (`in_project_venv_exists()` is
    false: `virtualenvs.in-project = false`), or None when it is."""
    project = ctx.project
    if project is None:
        return None
    in_project, source = PoetryConfig(ctx, project.directory).flag("virtualenvs.in-project")
    if in_project is False:
        return f"Poetry is configured with virtualenvs.in-project = false ({source})"
    return None


def package_name(pyproject: Mapping[str, Any] | None) -> str:
    """The name Poetry gives the package (poetry-core's Factory)."""
    return (
        string(pyproject, "project", "name")
        or string(pyproject, "tool", "poetry", "name")
        or "non-package-mode"
    )


class PoetryConfig:
    """Poetry's settings for one project, in Poetry's precedence."""

    def __init__(self, ctx: Context, directory: Path) -> None:
        self.ctx = ctx
        config_dir = ctx.environ.get("POETRY_CONFIG_DIR") or platformdirs.user_config_path(
            "pypoetry", appauthor=False, roaming=True
        )
        self.files = [
            (directory / "poetry.toml", ctx.seen.toml(directory / "poetry.toml")),
            (Path(config_dir) / "config.toml", ctx.seen.toml(Path(config_dir) / "config.toml")),
        ]

    def raw(self, key: str) -> tuple[Any, str]:
        """The setting's value and where it comes from; (None, "default") when unset."""
        parts = key.split(".")
        var = "POETRY_" + "_".join(p.upper().replace("-", "_") for p in parts)
        if var in self.ctx.environ:
            return self.ctx.environ[var], f"env {var}"
        for path, data in self.files:
            node: Any = data
            for part in parts:
                node = node.get(part) if isinstance(node, Mapping) else None
            if node is not None:
                return node, str(path)
        return None, "default"

    def flag(self, key: str) -> tuple[bool | None, str]:
        value, source = self.raw(key)
        if isinstance(value, str):
            return value.lower() in _TRUE, source
        return (value if isinstance(value, bool) else None), source

    def text(self, key: str, default: str) -> str:
        value, _ = self.raw(key)
        text = value if isinstance(value, str) else default
        return _PLACEHOLDER.sub(lambda m: self._placeholder(m.group(1)), text)

    def _placeholder(self, key: str) -> str:
        if key == "cache-dir":
            return self.cache_dir()
        value, _ = self.raw(key)
        return str(value) if value is not None else "{" + key + "}"

    def cache_dir(self) -> str:
        default = str(platformdirs.user_cache_path("pypoetry", appauthor=False))
        return self.text("cache-dir", default)

    def virtualenvs_path(self) -> Path:
        return Path(self.text("virtualenvs.path", "{cache-dir}/virtualenvs")).expanduser()


LOCATOR = Locator("poetry", locate)
