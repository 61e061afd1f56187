"""`.venv` in the project directory: a directory, a symlink to one, or a PEP 832 redirect file.

PEP 832 (draft): the first `.venv` entry found wins, directory or file. A redirect file holds
one line, the environment's path (relative to the file's directory, or absolute); the target
must be verified to exist before it is used. Pipenv also reads a `.venv` file, and takes a
bare name (no path separator) as a directory in WORKON_HOME: honoured in a Pipfile project.

A manager's own setting that puts the project's environment elsewhere beats a `.venv`: the
first manager the project declares decides (uv, whose `uv sync` always uses `.venv`; then
pixi, Poetry, PDM, Hatch, Pipenv, in the locators' order), by its `dotvenv_ignored`, and its
locator answers instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..model import Missing
from ..project import DOT_VENV, Context
from . import Found, Locator, hatch, pdm, pipenv, pixi, poetry
from .pipenv import workon_home

_REDIRECT_LIMIT = 4096


def locate(ctx: Context) -> Found:
    project = ctx.project
    if project is None or not project.has(DOT_VENV):
        return None
    if ignored_by_manager(ctx) is not None:
        return None
    directory = project.directory
    entry = directory / DOT_VENV
    if ctx.seen.is_dir(entry):
        link = f" (a symlink to {os.path.realpath(entry)})" if os.path.islink(entry) else ""
        found = ctx.environment(entry, directory, "venv", f".venv directory in {directory}{link}")
        if found is not None:
            return found
        return Missing(
            "venv",
            directory,
            f"{entry}{link} is not a virtual environment (it has no pyvenv.cfg)",
            (entry,),
            f"recreate it: `cd {directory} && rm -rf .venv && uv sync` (or `python -m venv "
            ".venv` and install the dependencies)",
        )
    if not ctx.seen.is_file(entry):
        return Missing(
            "venv",
            directory,
            f"{entry} is a symlink to {os.path.realpath(entry)}, which does not exist",
            (entry,),
            f"recreate the environment it points to, or remove the link: `cd {directory} && "
            "rm .venv && uv sync`",
        )
    return _redirect(ctx, entry, directory)


def _redirect(ctx: Context, entry: Path, directory: Path) -> Found:
    text = ctx.seen.read_text(entry, _REDIRECT_LIMIT) or ""
    lines = text.removeprefix("\ufeff").rstrip("\r\n").splitlines()
    raw = lines[0].strip() if len(lines) == 1 else ""
    fix = (
        f"write the environment's path on the one line of {entry}, or create the environment "
        "it names"
    )
    if not text.strip() and project_uses_pipenv(ctx):
        return None  # pipenv: an empty .venv file leaves the environment in WORKON_HOME
    if not raw:
        why = "is empty" if not lines else "does not hold exactly one line"
        return Missing("pep832", directory, f"the .venv redirect file {entry} {why}", (entry,), fix)
    if project_uses_pipenv(ctx) and "/" not in raw and os.sep not in raw:
        target = workon_home(ctx) / raw  # pipenv's convention: a name in WORKON_HOME
    else:
        target = ctx.expand(raw, directory)
    found = ctx.environment(
        target, directory, "pep832", f".venv redirect file in {directory} pointing to {target}"
    )
    if found is not None:
        return found
    return Missing(
        "pep832",
        directory,
        f"the .venv redirect file {entry} points to {target}, which is not a Python environment",
        (target,),
        fix,
    )


def ignored_by_manager(ctx: Context) -> str | None:
    """Why the project's manager does not use its `.venv`, or None when it does."""
    project = ctx.project
    if project is None or project.has("uv.lock") or project.tool("uv") is not None:
        return None  # uv syncs the project's .venv (UV_PROJECT_ENVIRONMENT: the uv locator)
    if pixi.declares(ctx):
        return pixi.dotvenv_ignored(ctx)
    if poetry.declares(ctx):
        return poetry.dotvenv_ignored(ctx)
    if project.has(pdm.SAVED) or project.has("pdm.lock") or project.tool("pdm") is not None:
        return pdm.dotvenv_ignored(ctx)
    if project.has("hatch.toml") or project.tool("hatch", "envs") is not None:
        return hatch.dotvenv_ignored(ctx)
    if project.has("Pipfile"):
        return pipenv.dotvenv_ignored(ctx)
    return None


def project_uses_pipenv(ctx: Context) -> bool:
    return ctx.project is not None and ctx.project.has("Pipfile")


LOCATOR = Locator("venv", locate)
