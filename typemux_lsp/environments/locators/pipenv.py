"""Pipenv: `Pipfile`; the environment is in WORKON_HOME, named after the project's path.

As pipenv computes it (pipenv/utils/venv_locator.py): `.venv` in the project when
`PIPENV_VENV_IN_PROJECT` (or the Pipfile's `[pipenv] venv_in_project`) says so, or when one
exists (found by the `.venv` locator); else `<WORKON_HOME>/<name>` with WORKON_HOME defaulting
to `$XDG_DATA_HOME/virtualenvs` (`~/.local/share/virtualenvs`) and the name from
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
    for var, negate in (("PIPENV_VENV_IN_PROJECT", False), ("PIPENV_NO_VENV_IN_PROJECT", True)):
        raw = ctx.environ.get(var, "").strip().lower()
        if raw in _TRUE or raw in _FALSE:
            return (raw in _TRUE) != negate
    pipfile = ctx.seen.toml(directory / "Pipfile") or {}
    section = pipfile.get("pipenv")
    value = section.get("venv_in_project") if isinstance(section, dict) else None
    return bool(value) if value is not None else None


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
    name = pipenv_env_name(
        real,
        custom=ctx.environ.get("PIPENV_CUSTOM_VENV_NAME"),
        python=ctx.environ.get("PIPENV_PYTHON", ""),
    )
    home = workon_home(ctx)
    prefix = home / name
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
    found = ctx.environment(prefix, directory, "pipenv", f"Pipenv environment in {home}")
    if found is not None:
        return found
    return Missing(
        "pipenv",
        directory,
        "it is a Pipenv project (Pipfile) and pipenv has not created its environment",
        (directory / DOT_VENV, prefix),
        fix,
        final=False,
    )


LOCATOR = Locator("pipenv", locate)
