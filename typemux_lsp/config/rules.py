"""Project rules (`[[tool.typemux-lsp.projects]]`): which backend, settings and environment a
group of projects gets, and the checks a rule must pass to be used."""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import KINDS
from ..environments import canonical
from .positions import KeyLines, KeyPath
from .problems import Invalid, describe, toml_value
from .values import converter

#: reports a problem: file, line, message, fix
Report = Callable[[str | None, int | None, str, str], None]


@dataclass(frozen=True, slots=True)
class ProjectRule:
    """One `[[tool.typemux-lsp.projects]]` entry: the backend, settings and environment of a
    group of projects.

    `path` is a glob over project directories (the directory holding `.venv` or the manager's
    files): `*` stays within one path segment, `**` spans any number, `.` is the base
    directory itself. A relative glob is relative to `base` (the directory of the
    pyproject.toml that holds the rule; for rules from the user config, environment or flags,
    the git toplevel of the working directory). A project outside `base` matches only
    absolute globs.

    `environment` names the project's environment (a prefix or its interpreter; relative to
    the project directory) or is "none"; a rule from a repository's pyproject.toml may only
    name one inside `confine` (the repository). One that names an absolute path outside it is
    kept, with `refused` saying why its environment is not used: its backend and settings
    still apply, and the projects it matches get an error naming it unless a later rule (in
    the user config) names their environment.
    """

    path: str
    base: Path
    backend: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    #: where the rule was written, e.g. "project config /repo/pyproject.toml:12"
    source: str = ""
    #: the environment of the matching projects, or "none"; None: discovered
    environment: str | None = None
    #: the directory `environment` must stay inside (rules from a repository's own file)
    confine: Path | None = None
    #: why `environment` is not used (named outside the repository), None when it may be
    refused: str | None = None

    def matches(self, project_dir: Path) -> bool:
        pattern = os.path.expanduser(self.path)
        target = canonical(project_dir)
        if os.path.isabs(pattern):
            return glob_match(glob_parts(pattern), target.parts[1:])
        try:
            relative = target.relative_to(self.base)
        except ValueError:
            return False
        return glob_match(glob_parts(pattern), relative.parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "base": str(self.base),
            "backend": self.backend,
            "settings": self.settings,
            "environment": self.environment,
            "environmentRefused": self.refused,
            "source": self.source,
        }


@dataclass(slots=True)
class RuleFields:
    """The keys a `[[projects]]` entry may have; cattrs checks types and unknown keys."""

    path: str
    backend: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    environment: str | None = None


# -- TOML positions ----------------------------------------------------------------------------


def glob_parts(pattern: str) -> tuple[str, ...]:
    return tuple(part for part in pattern.replace("\\", "/").split("/") if part not in ("", "."))


def glob_match(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(glob_match(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and glob_match(rest, parts[1:])


# -- the loader --------------------------------------------------------------------------------


_RULE_FIX = (
    'write the rule as { path = "services/*", backend = "ty", settings = { ... }, '
    'environment = ".venv" }.'
)
_RULE_TYPES: dict[str, tuple[tuple[type[Any], ...], str]] = {
    "path": ((str,), "a string (a glob)"),
    "backend": ((str,), "a string (a backend kind)"),
    "settings": ((dict,), "a table"),
    "environment": ((str,), 'a string (a path, or "none")'),
}


def structure_rule(entry: Mapping[str, Any], where: str) -> RuleFields:
    """cattrs checks the keys and types; the messages name the key and the fix."""
    import cattrs
    from cattrs.errors import ForbiddenExtraKeysError

    try:
        spec: RuleFields = converter().structure(dict(entry), RuleFields)
    except (cattrs.BaseValidationError, TypeError, ValueError) as error:
        extra = [
            e for e in getattr(error, "exceptions", ()) if isinstance(e, ForbiddenExtraKeysError)
        ]
        if extra:
            unknown = sorted(extra[0].extra_fields)
            raise Invalid(
                f"{where} has unknown key(s) {', '.join(unknown)}.",
                "a rule has only path (a glob), backend, settings (a table) and environment.",
                key=unknown[0],
            ) from None
        if "path" not in entry:
            raise Invalid(
                f"{where} has no path.",
                'add path = "<glob of project directories>", e.g. path = "services/*".',
            ) from None
        for key, (types, expected) in _RULE_TYPES.items():
            if key in entry and not isinstance(entry[key], types):
                raise Invalid(
                    f"{where}: {key} = {toml_value(entry[key])} is {describe(entry[key])}, "
                    f"expected {expected}.",
                    _RULE_FIX,
                    key=key,
                ) from None
        raise Invalid(f"{where} is not a valid rule ({error}).", _RULE_FIX) from None
    if not spec.path.strip():
        raise Invalid(
            f"{where} has an empty path.", 'use "." for the base directory itself.', key="path"
        )
    return spec


def check_environment(value: str, where: str) -> None:
    """An `environment` value that cannot work drops the rule when the configuration is read
    (`refusal` says which ones a repository may not name; the real path of a relative one is
    checked again at each lookup)."""
    if not value.strip():
        raise Invalid(
            f"{where} has an empty environment.",
            'name the environment\'s directory (e.g. environment = ".venv"), or "none".',
            key="environment",
        )


#: the fix for an environment a repository's rule may not name
REFUSED_FIX = (
    "set this environment in a [[projects]] rule of your user config (config.toml) instead; "
    "user rules apply after the repository's, and the first matching rule whose environment "
    "may be used gives it."
)


def refusal(value: str, base: Path, from_repository: bool) -> str | None:
    """Why a repository's rule may not name the environment `value`, or None."""
    if not from_repository or value == "none":
        return None
    target = Path(os.path.expanduser(value))
    if value.startswith("~") or (target.is_absolute() and not _inside(target, base)):
        return (
            f'environment = "{value}" is outside the repository {base}, and a repository\'s own '
            "pyproject.toml may only name an environment inside it"
        )
    return None


def _inside(path: Path, base: Path) -> bool:
    normal = Path(os.path.normpath(path))
    return normal == base or base in normal.parents


def _with_line(source: str, line: int | None) -> str:
    base = source.rsplit(":", 1)[0] if re.search(r":\d+$", source) else source
    return f"{base}:{line}" if line else base


def parse_rules(
    value: Any,
    source: str,
    base: Path,
    file: str,
    lines: KeyLines | None,
    path: KeyPath,
    from_repository: bool,
    report: Report,
) -> list[ProjectRule] | None:
    """Valid rules from a `projects` value; each invalid rule is reported and dropped."""
    if not isinstance(value, list):
        report(
            file,
            lines.line(path) if lines else None,
            f"projects is {describe(value)}, expected an array of tables; it is ignored.",
            'write each rule as [[tool.typemux-lsp.projects]] with path = "..." and '
            'backend = "..." (in config.toml: [[projects]]).',
        )
        return None
    rules: list[ProjectRule] = []
    for index, entry in enumerate(value):
        line = lines.line((*path, index)) if lines else None
        where = f"rule {index + 1} of projects"
        try:
            if not isinstance(entry, dict):
                raise Invalid(
                    f"{where} is {describe(entry)}, not a table.",
                    'write it as { path = "services/*", backend = "ty" }.',
                )
            spec = structure_rule(entry, where)
            rule_source = source if lines is None else _with_line(source, line)
            if spec.backend is not None and spec.backend not in KINDS:
                close = difflib.get_close_matches(spec.backend, KINDS, n=1)
                raise Invalid(
                    f'{where} names backend "{spec.backend}", which typemux-lsp does not know.',
                    (f'did you mean "{close[0]}"? ' if close else "")
                    + f"use one of {', '.join(sorted(KINDS))}.",
                    key="backend",
                )
            refused = None
            if spec.environment is not None:
                check_environment(spec.environment, where)
                refused = refusal(spec.environment, base, from_repository)
            if ".." in glob_parts(spec.path) and not os.path.isabs(spec.path):
                raise Invalid(
                    f'{where} has path = "{spec.path}", which leaves {base}; relative globs '
                    "are relative to that directory.",
                    "use a glob inside it, or an absolute path.",
                    key="path",
                )
        except Invalid as error:
            if lines is not None and error.key is not None:
                line = lines.line((*path, index, error.key))
            report(file, line, f"{error.message} The rule is ignored.", error.fix)
            continue
        if refused is not None:
            report(
                file,
                lines.line((*path, index, "environment")) if lines else line,
                f"{where}: {refused}. Its environment is not used (its path, backend and "
                "settings are); files of the projects it matches get an error naming it unless "
                "a later rule names their environment.",
                REFUSED_FIX,
            )
        rules.append(
            ProjectRule(
                spec.path,
                base,
                spec.backend,
                spec.settings,
                rule_source,
                spec.environment,
                base if from_repository else None,
                refused,
            )
        )
    return rules
