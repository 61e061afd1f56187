"""PDM: `.pdm-python` names the interpreter PDM uses for the project.

PDM (src/pdm/project/core.py) saves the chosen interpreter in `.pdm-python` at the project
root; its environment is that interpreter's prefix, and it beats an in-project `.venv` (PDM's
`resolve_interpreter` takes the saved interpreter first; `dotvenv_ignored` tells the `.venv`
locator so; `PDM_IGNORE_SAVED_PYTHON` turns it off). Without the file, PDM's default is the
in-project `.venv` (found by the `.venv` locator; PDM uses it whatever `venv.in_project`
says, which only decides where `pdm venv create` puts a new one); a central environment lives in
`venv.location` (PDM's global config, default `<user data dir>/pdm/venvs`) and is named
`<dir>-<hash>-<suffix>` (`names.pdm_env_prefix`). PDM's `__pypackages__` mode (PEP 582, an
interpreter outside any environment) is not supported: the error says so.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs

from .._fs import canonical, string, table
from ..model import Missing, prefix_of
from ..names import pdm_env_prefix
from ..project import DOT_VENV, Context
from . import Found, Locator

SAVED = ".pdm-python"


def locate(ctx: Context) -> Found:
    project = ctx.project
    if project is None:
        return None
    if not (project.has(SAVED) or project.has("pdm.lock") or project.tool("pdm") is not None):
        return None
    directory = project.directory
    if project.has(SAVED) and not _ignore_saved(ctx):
        saved = directory / SAVED
        raw = (ctx.seen.read_text(saved, 4096) or "").strip()
        python = ctx.expand(raw, directory) if raw else None
        if python is not None and ctx.seen.exists(python):
            prefix = prefix_of(python)
            ignored = (
                f" (the .venv in {directory} is not used)"
                if project.has(DOT_VENV) and dotvenv_ignored(ctx)
                else ""
            )
            found = ctx.environment(prefix, directory, "pdm", f"{saved} names {python}{ignored}")
            if found is not None:
                return found
            return Missing(
                "pdm",
                directory,
                f"{saved} names {python}, which is not inside a virtual environment (PDM's "
                "__pypackages__ mode is not supported)",
                (prefix,),
                f"`cd {directory} && pdm venv create && pdm use --venv in-project && pdm install`",
                final=False,
            )
    central = _central_location(ctx)
    start = pdm_env_prefix(str(canonical(directory)))
    candidates = [central / n for n in sorted(ctx.seen.listing(central)) if n.startswith(start)]
    found_envs = [c for c in candidates if ctx.is_environment(c)]
    if len(found_envs) == 1:
        return ctx.environment(
            found_envs[0], directory, "pdm", f"PDM's central environment in {central}"
        )
    looked = (directory / SAVED, directory / DOT_VENV, central / f"{start}*")
    if len(found_envs) > 1:
        return Missing(
            "pdm",
            directory,
            "it is a PDM project with several central environments and no .pdm-python to "
            "choose one",
            tuple(found_envs),
            f"`cd {directory} && pdm use <interpreter>`",
            final=False,
        )
    return Missing(
        "pdm",
        directory,
        "it is a PDM project and PDM has not created its environment",
        looked,
        f"`cd {directory} && pdm install`",
        final=False,
    )


def dotvenv_ignored(ctx: Context) -> str | None:
    """Why the project's `.venv` is not PDM's environment: `.pdm-python` names another
    environment's interpreter."""
    project = ctx.project
    if project is None or not project.has(SAVED) or _ignore_saved(ctx):
        return None
    directory = project.directory
    raw = (ctx.seen.read_text(directory / SAVED, 4096) or "").strip()
    if not raw:
        return None
    python = ctx.expand(raw, directory)
    prefix = prefix_of(python)
    if not ctx.is_environment(prefix) or canonical(prefix) == canonical(directory / DOT_VENV):
        return None
    return f"{directory / SAVED} names {python}"


def _ignore_saved(ctx: Context) -> bool:
    """`PDM_IGNORE_SAVED_PYTHON`, as PDM's `ensure_boolean` reads it."""
    raw = ctx.environ.get("PDM_IGNORE_SAVED_PYTHON")
    return raw is not None and bool(raw) and raw.lower() not in ("false", "no", "0")


def _central_location(ctx: Context) -> Path:
    default = platformdirs.user_config_path("pdm") / "config.toml"
    config = ctx.seen.toml(Path(ctx.environ.get("PDM_CONFIG_FILE") or default))
    raw = string(table(config, "venv"), "location")
    if raw:
        return Path(raw).expanduser()
    return Path(platformdirs.user_data_dir("pdm")) / "venvs"


LOCATOR = Locator("pdm", locate)
