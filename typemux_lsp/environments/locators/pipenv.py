"""Pipenv: `Pipfile`; the environment is in WORKON_HOME, named after the project's path.

As pipenv computes it (pipenv/utils/venv_locator.py, `VenvLocator.get_location`): a `.venv`
file is read (by the `.venv` locator); `.venv` in the project when `PIPENV_VENV_IN_PROJECT`
(else the Pipfile's `[pipenv] venv_in_project`) says so; when neither says anything, an
existing `.venv` directory unless pipenv already made the project's environment in
WORKON_HOME, which it then prefers; when either says false, never the `.venv`
(`dotvenv_ignored` tells the `.venv` locator so). Else `<WORKON_HOME>/<name>` with WORKON_HOME
defaulting to `$XDG_DATA_HOME/virtualenvs` (`~/.local/share/virtualenvs`) and the name from
`names.pipenv_env_name` (`PIPENV_CUSTOM_VENV_NAME` and `PIPENV_PYTHON` honoured). The
environment's `.project` file, which pipenv writes with the project's path, must name this
project if it is there.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._fs import canonical
from ..model import Missing
from ..names import pipenv_env_name
from ..project import DOT_VENV, Context
from . import Found, Locator

_TRUE = ("1", "true", "yes", "on")  # pipenv.utils.constants.TRUE_VALUES
_FALSE = ("0", "false", "no", "off")


def workon_home(ctx: Context) -> Path:
    raw = ctx.environ.get("WORKON_HOME")
    if raw:
        return ctx.expand(raw)
    data = ctx.environ.get("XDG_DATA_HOME") or "~/.local/share"
    return ctx.expand(data) / "virtualenvs"


def _in_project(ctx: Context, directory: Path) -> bool | None:
    return _in_project_setting(ctx, directory)[0]


def _in_project_setting(ctx: Context, directory: Path) -> tuple[bool | None, str]:
    """`PIPENV_VENV_IN_PROJECT` as pipenv reads it (`get_from_env`: the variable if set, else
    `PIPENV_NO_VENV_IN_PROJECT` negated; a value that is not a boolean counts as unset), else
    the Pipfile's `[pipenv] venv_in_project`; and where it comes from."""
    for var, negate in (("PIPENV_VENV_IN_PROJECT", False), ("PIPENV_NO_VENV_IN_PROJECT", True)):
        if var not in ctx.environ:
            continue
        raw = ctx.environ[var].strip().lower()
        if raw in _TRUE or raw in _FALSE:
            return (raw in _TRUE) != negate, f"{var}={ctx.environ[var]}"
        break
    pipfile = ctx.seen.toml(directory / "Pipfile") or {}
    section = pipfile.get("pipenv")
    value = section.get("venv_in_project") if isinstance(section, dict) else None
    if value is None:
        return None, "unset"
    return bool(value), f"venv_in_project = {value!r} in {directory / 'Pipfile'}"


def _prefix(ctx: Context, directory: Path) -> Path:
    name = pipenv_env_name(
        str(canonical(directory)),
        custom=ctx.environ.get("PIPENV_CUSTOM_VENV_NAME"),
        python=ctx.environ.get("PIPENV_PYTHON", ""),
    )
    return workon_home(ctx) / name


def dotvenv_ignored(ctx: Context) -> str | None:
    """Why pipenv does not use the project's `.venv` directory, or None when it does."""
    project = ctx.project
    if project is None or not ctx.seen.is_dir(project.directory / DOT_VENV):
        return None  # a `.venv` file is read by pipenv too
    directory = project.directory
    setting, source = _in_project_setting(ctx, directory)
    if setting is False:
        return f"Pipenv is set to keep its environment outside the project ({source})"
    if setting is None and ctx.seen.exists(_prefix(ctx, directory)):
        return (
            "pipenv prefers the environment it already made in WORKON_HOME "
            "when nothing sets PIPENV_VENV_IN_PROJECT"
        )
    return None


def locate(ctx: Context) -> Found:
    project = ctx.project
    if project is None or not project.has("Pipfile"):
        return None
    directory = project.directory
    fix = f"`cd {directory} && pipenv install`"
    if _in_project(ctx, directory):
        return Missing(
            "pipenv",
            directory,
            "it is a Pipenv project set to keep its environment in the project, and it has no "
            ".venv",
            (directory / DOT_VENV,),
            fix,
            final=False,
        )
    real = str(canonical(directory))
    home = workon_home(ctx)
    prefix = _prefix(ctx, directory)
    ignored = dotvenv_ignored(ctx)
    note = f" (the .venv in {directory} is not used: {ignored})" if ignored else ""
    owner = (ctx.seen.read_text(prefix / ".project", 4096) or "").strip()
    if owner and os.path.realpath(owner) != real:
        return Missing(
            "pipenv",
            directory,
            f"{prefix} belongs to another project ({prefix / '.project'} names {owner})",
            (prefix,),
            fix,
            final=False,
        )
    found = ctx.environment(prefix, directory, "pipenv", f"Pipenv environment in {home}{note}")
    if found is not None:
        return found
    return Missing(
        "pipenv",
        directory,
        f"it is a Pipenv project (Pipfile) and pipenv has not created its environment{note}",
        (prefix,) if ignored else (directory / DOT_VENV, prefix),
        fix,
        final=False,
    )


LOCATOR = Locator("pipenv", locate)
