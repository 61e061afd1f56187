"""The settings model: every field, its type, its bounds and how it is spelled as a flag, an
environment variable and a TOML key."""

from __future__ import annotations

import argparse
import copy
import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from ..backends import AUTO, DEFAULT_KIND, KINDS
from ..tree import deep_merge
from .problems import Invalid, describe, toml_value
from .rules import ProjectRule
from .values import HOOKS

ENV_PREFIX = "TYPEMUX_LSP_"
LOG_LEVELS = ("trace", "debug", "info", "warning", "error")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


@dataclass(slots=True)
class Settings:
    #: backend kind: pyright, basedpyright, ty or pyrefly; "auto" (the default) is resolved by
    #: `load_settings`: the one installed when only one is, else pyright
    backend: str = DEFAULT_KIND
    #: most backends alive at once; the least recently used idle one is evicted
    max_backends: int = 8
    #: seconds without client traffic after which a backend is stopped (0 = never)
    backend_ttl: float = 1800.0
    #: seconds index-dependent requests wait for a new backend to be ready (0 = off)
    warmup_timeout: float = 2.0
    #: seconds a backend has to answer initialize
    start_timeout: float = 30.0
    #: seconds a backend has to answer a request (0 = no deadline); below Claude Code's 60 s
    request_timeout: float = 45.0
    #: keep answers in step with the disk: watch each backend's environment, sources, configs
    freshness: bool = True
    #: milliseconds the disk must stay quiet before a batch of changes is acted on
    freshness_debounce_ms: int = 300
    #: log file (default: stderr)
    log_file: str | None = None
    #: log level: trace, debug, info, warning, error
    log_level: str = "info"
    #: publish an informational diagnostic on files that have no .venv
    no_venv_diagnostic: bool = True
    #: command that starts a backend instead of the kind's own (e.g. a wrapper script)
    backend_command: str | None = None
    #: settings every backend gets in its `workspace/configuration` answers
    backend_settings: dict[str, Any] = field(default_factory=dict)
    #: per-project backend, settings and environment: the rules of every level, the highest
    #: level's first (flags, environment, the repository's pyproject.toml, the user config);
    #: each key from the first matching rule that sets it
    projects: list[ProjectRule] = field(default_factory=list)
    #: event loop: "auto" (uvloop when installed), "uvloop" or "asyncio"
    event_loop: str = "auto"
    #: which kinds serve several environments from one process, a workspace folder each:
    #: "auto" (each kind's measured default), "all", "none", or kinds separated by commas
    backend_sharing: str = "auto"
    #: MiB of the backends' resident memory past which the least recently used project is
    #: evicted before another is served (0 = no budget)
    max_backend_memory: float = 0.0

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def rule_for(self, project_dir: Path) -> tuple[int, ProjectRule] | None:
        """The first project rule that matches `project_dir`, with its index."""
        for index, rule in enumerate(self.projects):
            if rule.matches(project_dir):
                return index, rule
        return None

    def backend_for(self, project_dir: Path) -> tuple[str, dict[str, Any]]:
        """The backend kind and backend settings for the project in `project_dir`.

        Every matching rule applies, each key from the first that sets it (`projects` holds
        the rules of every level, the highest first): the kind is the first matching rule's
        `backend` that is set, else the global one; the `settings` of every matching rule are
        merged over the global `backend_settings` (nested tables merge, earlier rules win).
        The result is a fresh copy: callers may change it.
        """
        matching = [rule for rule in self.projects if rule.matches(project_dir)]
        merged: dict[str, Any] = copy.deepcopy(self.backend_settings)
        for rule in reversed(matching):
            merged = deep_merge(merged, rule.settings)
        kind = next((rule.backend for rule in matching if rule.backend), self.backend)
        return kind, merged

    def sharing_kinds(self) -> frozenset[str]:
        """The kinds whose environments share a backend process (`backend_sharing`)."""
        return sharing_kinds(self.backend_sharing)

    def to_json(self, name: str) -> Any:
        """A field's value as plain JSON data (for `--doctor --json`)."""
        value = getattr(self, name)
        if name == "projects":
            return [rule.to_json() for rule in value]
        return copy.deepcopy(value)


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def toml_key(name: str) -> str:
    """The documented spelling of a field in TOML (`max_backends` -> `max-backends`)."""
    return name.replace("_", "-")


@dataclass(frozen=True, slots=True)
class Spec:
    kind: Literal["str", "int", "float", "bool", "table", "rules"]
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    #: the value must be greater than `minimum`, not equal
    exclusive: bool = False
    optional: bool = False
    #: why a project's pyproject.toml may not set it (None: it may)
    not_in_project: str | None = None
    #: a further check of the typed value: raises `Invalid`
    check: Callable[[Any], None] | None = None


_NOT_IN_PROJECT = (
    "a repository must not choose a program or file that typemux-lsp runs or writes when it "
    "is opened"
)

SPECS: dict[str, Spec] = {
    "backend": Spec("str", choices=(AUTO, *sorted(KINDS))),
    "max_backends": Spec("int", minimum=1),
    "backend_ttl": Spec("float", minimum=0),
    "warmup_timeout": Spec("float", minimum=0),
    "start_timeout": Spec("float", minimum=0, exclusive=True),
    "request_timeout": Spec("float", minimum=0),
    "freshness": Spec("bool"),
    "freshness_debounce_ms": Spec("int", minimum=10),
    "log_file": Spec("str", optional=True, not_in_project=_NOT_IN_PROJECT),
    "log_level": Spec("str", choices=LOG_LEVELS),
    "no_venv_diagnostic": Spec("bool"),
    "backend_command": Spec("str", optional=True, not_in_project=_NOT_IN_PROJECT),
    "backend_settings": Spec("table"),
    "projects": Spec("rules"),
    "event_loop": Spec("str", choices=EVENT_LOOPS),
    "backend_sharing": Spec("str", check=lambda value: _check_sharing(value)),
    "max_backend_memory": Spec("float", minimum=0),
}

SHARING_WORDS = ("auto", "all", "none")


def sharing_kinds(value: str) -> frozenset[str]:
    """The kinds a `backend-sharing` value makes share ("auto": those measured to win)."""
    words = {w.strip() for w in value.split(",") if w.strip()}
    if "all" in words:
        return frozenset(KINDS)
    kinds = {w for w in words if w in KINDS}
    if "auto" in words:
        kinds |= {name for name, kind in KINDS.items() if kind.shares_by_default}
    return frozenset(kinds)


def _check_sharing(value: str) -> None:
    words = [w.strip() for w in value.split(",") if w.strip()]
    wrong = [w for w in words if w not in KINDS and w not in SHARING_WORDS]
    if wrong or not words:
        raise Invalid(
            f'backend-sharing = "{value}" names '
            + (f"no backend kind: {', '.join(wrong)}." if wrong else "nothing."),
            f'write "auto", "all", "none" or kinds separated by commas, e.g. '
            f'backend-sharing = "pyright,pyrefly" (kinds: {", ".join(sorted(KINDS))}).',
        )


EXPECTED = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "table": "a table",
    "rules": "an array of tables ([[...projects]])",
}

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def example(name: str) -> str:
    """A correct line for the field, to show in a fix."""
    spec = SPECS[name]
    default = getattr(Settings(), name)
    if spec.choices:
        value = f'"{default}"'
    elif spec.kind == "table":
        value = "{ ... }"
    elif spec.kind == "rules":
        value = '[{ path = "services/*", backend = "ty" }]'
    elif default is None:
        value = '"..."'
    else:
        value = toml_value(default)
    return f"{toml_key(name)} = {value}"


def flag_type(name: str) -> Callable[[str], Any]:
    """The argparse `type` of a setting's flag: parsed and checked by the same rules as its
    environment variable and its TOML key, but refused at once, as flags are."""

    def parse(raw: str) -> Any:
        try:
            value = parse_text(name, raw)
            return value if SPECS[name].kind == "rules" else structure(name, value)
        except Invalid as error:
            raise argparse.ArgumentTypeError(error.message) from None

    parse.__name__ = SPECS[name].kind  # argparse names the type in its messages
    return parse


def structure(name: str, value: Any) -> Any:
    """Check one field's value (already decoded from TOML/JSON) and return it, typed."""
    spec = SPECS[name]
    try:
        if value is None and spec.optional:
            return None
        typed = HOOKS[spec.kind](value, None)
    except (TypeError, ValueError):
        raise Invalid(
            f"{toml_key(name)} = {toml_value(value)} is {describe(value)}, expected "
            f"{EXPECTED[spec.kind]}.",
            f"write it as {example(name)}.",
        ) from None
    if spec.choices and typed not in spec.choices:
        close = difflib.get_close_matches(typed, spec.choices, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        raise Invalid(
            f'{toml_key(name)} = "{typed}" is not one of {", ".join(spec.choices)}.',
            f"{hint}set it to one of {', '.join(spec.choices)}.",
        )
    if spec.minimum is not None and (
        typed < spec.minimum or (spec.exclusive and typed == spec.minimum)
    ):
        bound = f"greater than {spec.minimum:g}" if spec.exclusive else f"at least {spec.minimum:g}"
        raise Invalid(
            f"{toml_key(name)} = {toml_value(value)} is out of range: it must be {bound}.",
            f"use a value {bound}, e.g. {example(name)}.",
        )
    if spec.check is not None:
        spec.check(typed)
    return typed


def parse_text(name: str, raw: str) -> Any:
    """A setting's value from the text of an environment variable or a flag."""
    kind = SPECS[name].kind
    text = raw.strip()
    if kind == "bool":
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        raise Invalid("it is not a boolean.", "")
    if kind in ("int", "float"):
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise Invalid(f"it is not {EXPECTED[kind]}.", "") from None
    if kind in ("table", "rules"):
        try:
            return json.loads(text)
        except ValueError as error:
            raise Invalid(f"it is not valid JSON ({error}).", "") from None
    return raw
