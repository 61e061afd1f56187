"""A typemux-lsp rule that names the environment: `environment = "path"` or `"none"`.

A relative path is relative to the project directory the rule matched; it may name the
prefix or its interpreter. A rule from a repository's own pyproject.toml may only name an
environment inside that repository (checked on the real path, so a symlink cannot lead out).
"""

from __future__ import annotations

from .._fs import within_canonical
from ..model import Missing, prefix_of
from ..project import Context
from . import Found, Locator

NONE = "none"


def locate(ctx: Context) -> Found:
    project = ctx.project
    rule = project.rule if project is not None else None
    if project is None or rule is None or rule.environment is None:
        return None
    directory = project.directory
    if rule.environment == NONE:
        return Missing(
            "config",
            directory,
            f'the rule at {rule.source} says this project has none (environment = "none")',
            (),
            f"remove that rule's environment key, or point it at the project's environment "
            f'(environment = "{directory}/.venv")',
        )
    target = ctx.expand(rule.environment, directory)
    if rule.confine is not None and not within_canonical(target, rule.confine):
        return Missing(
            "config",
            directory,
            f"the rule at {rule.source} names {target}, which is outside the repository "
            f"{rule.confine}; a repository's own configuration may only name an environment "
            "inside it",
            (target,),
            "set this environment in your user config (config.toml) instead",
        )
    prefix = target if not ctx.seen.is_file(target) else prefix_of(target)
    found = ctx.environment(
        prefix, directory, "config", f"environment = {rule.environment!r} in {rule.source}"
    )
    if found is not None:
        return found
    return Missing(
        "config",
        directory,
        f"the rule at {rule.source} names {prefix}, which is not a Python environment "
        "(it has neither pyvenv.cfg nor conda-meta/)",
        (prefix,),
        f"create the environment there, or correct environment in {rule.source}",
    )


LOCATOR = Locator("config", locate)
