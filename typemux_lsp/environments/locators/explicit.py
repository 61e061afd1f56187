"""A typemux-lsp rule that names the environment: `environment = "path"` or `"none"`.

A relative path is relative to the project directory the rule matched; it may name the
prefix or its interpreter. A rule from a repository's own pyproject.toml may only name an
environment inside that repository (checked on the real path, so a symlink cannot lead out).
The rules of every level apply, the repository's before the user config's: the first matching
rule whose environment may be used gives it. A refused one (`rule.refused`, found when the
configuration was read, or leading out of the repository through `..` or a symlink) is passed
over, so a user rule can name what the repository may not; when no rule gives one, the file
gets an error naming the refused rule, its file:line and why.
"""

from __future__ import annotations

from pathlib import Path

from .._fs import within_canonical
from ..model import Missing, prefix_of
from ..project import Context, EnvironmentRule
from . import Found, Locator

NONE = "none"
_REFUSED_FIX = (
    "set this environment in a [[projects]] rule of your user config (config.toml) instead; "
    "user rules apply after the repository's, and the first matching rule whose environment "
    "may be used gives it"
)


def locate(ctx: Context) -> Found:
    project = ctx.project
    if project is None or not project.rules:
        return None
    directory = project.directory
    refused: list[tuple[EnvironmentRule, str, Path | None]] = []
    for rule in project.rules:
        if rule.environment is None:
            continue
        if rule.refused is not None:
            refused.append((rule, rule.refused, None))
            continue
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
            refused.append(
                (
                    rule,
                    f"it names {target}, which is outside the repository {rule.confine}; a "
                    "repository's own configuration may only name an environment inside it",
                    target,
                )
            )
            continue
        return _named(ctx, rule, target, directory)
    if not refused:
        return None
    first, why, named = refused[0]
    return Missing(
        "config",
        directory,
        f"the rule at {first.source} (path = {_path(first)!r}) is refused: {why}",
        (named,) if named is not None else (),
        _REFUSED_FIX,
    )


def _named(ctx: Context, rule: EnvironmentRule, target: Path, directory: Path) -> Found:
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


def _path(rule: EnvironmentRule) -> str:
    return str(getattr(rule, "path", "?"))


LOCATOR = Locator("config", locate)
