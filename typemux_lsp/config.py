"""The proxy's settings: one model, filled from defaults, config files, environment and flags.

Precedence, field by field: flag > environment (`TYPEMUX_LSP_<FIELD>`) > project config
(`[tool.typemux-lsp]` in the pyproject.toml at the git toplevel of the working directory) >
user config (`config.toml` in the user config directory, or `--config` / `TYPEMUX_LSP_CONFIG`) >
default. A field's value always comes from exactly one level (lists and tables are replaced,
not merged), so `--doctor` can name one source per field.

A configuration mistake never stops the proxy: an invalid value is reported as a
`ConfigProblem` (file, line, what is wrong, how to fix it) and the field falls back to the next
level. An editor that cannot start its language server shows nothing at all, which is worse
than running with a default and saying why.

Two fields cannot come from a project's pyproject.toml: `backend-command` and `log-file`.
Opening a repository must not make typemux-lsp run a program or write a file the repository
chooses (the same rule that keeps backends out of a project's `.venv/bin`).
"""

from __future__ import annotations

import argparse
import copy
import difflib
import fnmatch
import functools
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import platformdirs

from .backends import DEFAULT_KIND, KINDS
from .environments import canonical, git_toplevel
from .tree import deep_merge

ENV_PREFIX = "TYPEMUX_LSP_"
#: the environment variable that points at a user config file elsewhere
CONFIG_ENV = "TYPEMUX_LSP_CONFIG"
CONFIG_FILE = "config.toml"
PROJECT_FILE = "pyproject.toml"
#: the table in pyproject.toml that holds the project's settings
PROJECT_TABLE = ("tool", "typemux-lsp")
LOG_LEVELS = ("trace", "debug", "info", "warning", "error")
EVENT_LOOPS = ("auto", "uvloop", "asyncio")

Level = Literal["user", "project"]


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
    name one inside `confine` (the repository).
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

    def matches(self, project_dir: Path) -> bool:
        pattern = os.path.expanduser(self.path)
        target = canonical(project_dir)
        if os.path.isabs(pattern):
            return _glob_match(_glob_parts(pattern), target.parts[1:])
        try:
            relative = target.relative_to(self.base)
        except ValueError:
            return False
        return _glob_match(_glob_parts(pattern), relative.parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "base": str(self.base),
            "backend": self.backend,
            "settings": self.settings,
            "environment": self.environment,
            "source": self.source,
        }


@dataclass(slots=True)
class Settings:
    #: backend kind: pyright, basedpyright, ty or pyrefly
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
    #: per-project backend choice and settings; the first rule that matches wins
    projects: list[ProjectRule] = field(default_factory=list)
    #: event loop: "auto" (uvloop when installed), "uvloop" or "asyncio"
    event_loop: str = "auto"

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

        The first matching rule chooses the kind (its `backend`, else the global one) and its
        `settings` are merged over the global `backend_settings` (nested tables merge, the
        rule's values win). The result is a fresh copy: callers may change it.
        """
        found = self.rule_for(project_dir)
        if found is None:
            return self.backend, copy.deepcopy(self.backend_settings)
        rule = found[1]
        merged: dict[str, Any] = deep_merge(self.backend_settings, rule.settings)
        return rule.backend or self.backend, merged

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


# -- problems and the loader's result ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """A configuration mistake: where it is, what is wrong, how to fix it.

    `file` is a path, or "environment" / "command line"; `line` is 1-based when known.
    """

    file: str | None
    line: int | None
    message: str
    fix: str

    @property
    def location(self) -> str:
        if self.file is None:
            return "configuration"
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        return f"{self.location}: {self.message} Fix: {self.fix}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message, "fix": self.fix}


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A config file the loader looked at (shown by `--doctor`)."""

    level: Level
    path: Path
    #: the file exists
    found: bool
    #: named by `--config` / TYPEMUX_LSP_CONFIG rather than the default location
    explicit: bool = False
    #: it holds typemux-lsp settings (for pyproject.toml: a [tool.typemux-lsp] table)
    used: bool = False


@dataclass(slots=True)
class LoadedSettings:
    settings: Settings
    #: per field: "default", "user config PATH:LINE", "project config PATH:LINE",
    #: "env TYPEMUX_LSP_X" or "flag --x"
    sources: dict[str, str]
    problems: list[ConfigProblem]
    config_files: list[ConfigFile]
    #: git toplevel of the working directory the settings were loaded for
    git_toplevel: Path | None


# -- field specifications ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    kind: Literal["str", "int", "float", "bool", "table", "rules"]
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    #: the value must be greater than `minimum`, not equal
    exclusive: bool = False
    optional: bool = False
    #: why a project's pyproject.toml may not set it (None: it may)
    not_in_project: str | None = None


_NOT_IN_PROJECT = (
    "a repository must not choose a program or file that typemux-lsp runs or writes when it "
    "is opened"
)

_SPECS: dict[str, _Spec] = {
    "backend": _Spec("str", choices=tuple(sorted(KINDS))),
    "max_backends": _Spec("int", minimum=1),
    "backend_ttl": _Spec("float", minimum=0),
    "warmup_timeout": _Spec("float", minimum=0),
    "start_timeout": _Spec("float", minimum=0, exclusive=True),
    "request_timeout": _Spec("float", minimum=0),
    "freshness": _Spec("bool"),
    "freshness_debounce_ms": _Spec("int", minimum=10),
    "log_file": _Spec("str", optional=True, not_in_project=_NOT_IN_PROJECT),
    "log_level": _Spec("str", choices=LOG_LEVELS),
    "no_venv_diagnostic": _Spec("bool"),
    "backend_command": _Spec("str", optional=True, not_in_project=_NOT_IN_PROJECT),
    "backend_settings": _Spec("table"),
    "projects": _Spec("rules"),
    "event_loop": _Spec("str", choices=EVENT_LOOPS),
}

_EXPECTED = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "table": "a table",
    "rules": "an array of tables ([[...projects]])",
}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class _Invalid(Exception):
    """A value that cannot be used, with the reason and the fix (without the location)."""

    def __init__(self, message: str, fix: str, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        #: the offending key inside a rule, to point at its line
        self.key = key


def _describe(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a whole number",
        float: "a number",
        str: "a string",
        dict: "a table",
        list: "an array",
    }.get(type(value), type(value).__name__)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value) if isinstance(value, dict | list) else repr(value)


def _example(name: str) -> str:
    """A correct line for the field, to show in a fix."""
    spec = _SPECS[name]
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
        value = _toml(default)
    return f"{toml_key(name)} = {value}"


def flag_type(name: str) -> Callable[[str], Any]:
    """The argparse `type` of a setting's flag: parsed and checked by the same rules as its
    environment variable and its TOML key, but refused at once, as flags are."""

    def parse(raw: str) -> Any:
        try:
            value = _Loader.parse_env(name, raw)
            return value if _SPECS[name].kind == "rules" else _structure(name, value)
        except _Invalid as error:
            raise argparse.ArgumentTypeError(error.message) from None

    parse.__name__ = _SPECS[name].kind  # argparse names the type in its messages
    return parse


def _structure(name: str, value: Any) -> Any:
    """Check one field's value (already decoded from TOML/JSON) and return it, typed."""
    spec = _SPECS[name]
    try:
        if value is None and spec.optional:
            return None
        typed = _HOOKS[spec.kind](value, None)
    except (TypeError, ValueError):
        raise _Invalid(
            f"{toml_key(name)} = {_toml(value)} is {_describe(value)}, expected "
            f"{_EXPECTED[spec.kind]}.",
            f"write it as {_example(name)}.",
        ) from None
    if spec.choices and typed not in spec.choices:
        close = difflib.get_close_matches(typed, spec.choices, n=1)
        hint = f'did you mean "{close[0]}"? ' if close else ""
        raise _Invalid(
            f'{toml_key(name)} = "{typed}" is not one of {", ".join(spec.choices)}.',
            f"{hint}set it to one of {', '.join(spec.choices)}.",
        )
    if spec.minimum is not None and (
        typed < spec.minimum or (spec.exclusive and typed == spec.minimum)
    ):
        bound = f"greater than {spec.minimum:g}" if spec.exclusive else f"at least {spec.minimum:g}"
        raise _Invalid(
            f"{toml_key(name)} = {_toml(value)} is out of range: it must be {bound}.",
            f"use a value {bound}, e.g. {_example(name)}.",
        )
    return typed


def _strict(kind: type[Any], *accepted: type[Any]) -> Any:
    """A cattrs hook that refuses values TOML/JSON decoded to another type (no "8" -> 8)."""

    def hook(value: Any, _type: Any) -> Any:
        if isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted):
            return kind(value)
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")

    return hook


def _table_hook(value: Any, _type: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a table, got {type(value).__name__}")
    return value


#: One check per kind of setting, shared by the scalar settings and cattrs (for the rules).
_HOOKS: dict[str, Any] = {
    "bool": _strict(bool, bool),
    "int": _strict(int, int),
    "float": _strict(float, int, float),
    "str": _strict(str, str),
    "table": _table_hook,
}


@functools.cache
def _converter() -> Any:
    """cattrs, for the project rules (tables with known keys). Imported on first use: a
    scalar setting needs no converter, and start-up is on the client's clock."""
    import cattrs

    converter = cattrs.Converter(forbid_extra_keys=True)
    for kind, python_type in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        converter.register_structure_hook(python_type, _HOOKS[kind])
    converter.register_structure_hook_func(lambda t: t == dict[str, Any], _table_hook)
    return converter


@dataclass(slots=True)
class _RuleFields:
    """The keys a `[[projects]]` entry may have; cattrs checks types and unknown keys."""

    path: str
    backend: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    environment: str | None = None


# -- TOML positions ----------------------------------------------------------------------------

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_ARRAY_HEADER = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]")
_TABLE_HEADER = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=(.*)$")
_KEY_PART = re.compile(_KEY)
_SYNTAX_AT = re.compile(r"at line (\d+), column (\d+)")

KeyPath = tuple[str | int, ...]


def _split_dotted(dotted: str) -> tuple[str, ...]:
    parts: list[str] = []
    for raw in _KEY_PART.findall(dotted):
        if raw.startswith('"'):
            try:
                parts.append(str(json.loads(raw)))
            except ValueError:
                parts.append(raw[1:-1])
        elif raw.startswith("'"):
            parts.append(raw[1:-1])
        else:
            parts.append(raw)
    return tuple(parts)


def _open_brackets(text: str) -> tuple[int, str | None]:
    """Bracket depth left open by a value, and a multi-line string it leaves open, if any."""
    depth = 0
    i = 0
    while i < len(text):
        for delim in ('"""', "'''"):
            if text.startswith(delim, i):
                end = text.find(delim, i + 3)
                if end < 0:
                    return depth, delim
                i = end + 3
                break
        else:
            char = text[i]
            if char in "\"'":
                end = i + 1
                while end < len(text) and text[end] != char:
                    end += 2 if char == '"' and text[end] == "\\" else 1
                i = end + 1
                continue
            if char == "#":
                break
            depth += (char in "[{") - (char in "]}")
            i += 1
    return depth, None


class KeyLines:
    """Line numbers of the keys and table headers of a TOML text.

    tomllib reports positions only for syntax errors; this scanner finds the line of
    `a.b.c = ...`, `[a.b]` and `[[a.b]]` (the n-th array element is path + (n,)) so a problem
    can point at the line to change. Keys inside inline tables and multi-line arrays are not
    indexed: `line()` then falls back to the enclosing key.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[KeyPath, int] = {}
        arrays: dict[tuple[str, ...], int] = {}
        prefix: KeyPath = ()
        depth = 0
        in_string: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if in_string in line:
                    depth, in_string = _open_brackets(line.split(in_string, 1)[1])
                continue
            if depth > 0:
                more, in_string = _open_brackets(line)
                depth = max(0, depth + more)
                continue
            if match := _ARRAY_HEADER.match(line):
                path = _split_dotted(match.group(1))
                index = arrays.get(path, 0)
                arrays[path] = index + 1
                prefix = (*self._resolve(path[:-1], arrays), path[-1], index)
                self._define(prefix, number)
            elif match := _TABLE_HEADER.match(line):
                prefix = self._resolve(_split_dotted(match.group(1)), arrays)
                self._define(prefix, number)
            elif match := _ASSIGN.match(line):
                key = _split_dotted(match.group(1))
                for end in range(1, len(key) + 1):
                    self.lines.setdefault((*prefix, *key[:end]), number)
                depth, in_string = _open_brackets(match.group(2))
                depth = max(0, depth)

    def _define(self, path: KeyPath, number: int) -> None:
        """A header defines its table and, implicitly, every parent not seen before."""
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], number)

    @staticmethod
    def _resolve(path: tuple[str, ...], arrays: Mapping[tuple[str, ...], int]) -> KeyPath:
        """Insert the current index after each array-of-tables in `path`."""
        resolved: list[str | int] = []
        for end in range(1, len(path) + 1):
            resolved.append(path[end - 1])
            count = arrays.get(path[:end])
            if count:
                resolved.append(count - 1)
        return tuple(resolved)

    def line(self, path: KeyPath) -> int | None:
        """The line of `path`, else of its nearest enclosing key or table."""
        for end in range(len(path), 0, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None


def syntax_error_position(error: tomllib.TOMLDecodeError) -> tuple[int | None, int | None]:
    line = getattr(error, "lineno", None)  # Python 3.14+
    column = getattr(error, "colno", None)
    if isinstance(line, int):
        return line, column if isinstance(column, int) else None
    match = _SYNTAX_AT.search(str(error))
    return (int(match.group(1)), int(match.group(2))) if match else (None, None)


# -- globs -------------------------------------------------------------------------------------


def _glob_parts(pattern: str) -> tuple[str, ...]:
    return tuple(part for part in pattern.replace("\\", "/").split("/") if part not in ("", "."))


def _glob_match(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_glob_match(rest, parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _glob_match(rest, parts[1:])


# -- the loader --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Layer:
    """The valid values one level contributes, with their sources."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)


class _Loader:
    def __init__(self, environ: Mapping[str, str], cwd: Path) -> None:
        self.environ = environ
        self.cwd = canonical(cwd)
        self.toplevel = git_toplevel(self.cwd)
        #: relative globs from the user config, environment and flags are relative to this
        self.workspace = self.toplevel or self.cwd
        self.problems: list[ConfigProblem] = []
        self.files: list[ConfigFile] = []

    def problem(self, file: str | None, line: int | None, message: str, fix: str) -> None:
        self.problems.append(ConfigProblem(file, line, message, fix))

    # -- files -----------------------------------------------------------------------------

    def read_toml(self, path: Path, level: Level) -> tuple[dict[str, Any], str] | None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            self.problem(
                str(path),
                None,
                f"the {level} config cannot be read: {error.strerror or error}.",
                "make the file readable, or point --config / TYPEMUX_LSP_CONFIG elsewhere.",
            )
            return None
        except UnicodeDecodeError as error:
            self.problem(
                str(path),
                None,
                f"the {level} config is not UTF-8 text ({error.reason}); none of its settings "
                "are used.",
                "save it as UTF-8.",
            )
            return None
        try:
            return tomllib.loads(text), text
        except tomllib.TOMLDecodeError as error:
            line, column = syntax_error_position(error)
            where = f"line {line}" + (f", column {column}" if column else "") if line else ""
            reason = re.sub(r"\s*\(at (?:line \d+, column \d+|end of document)\)", "", str(error))
            what = (
                "none of its [tool.typemux-lsp] settings are used (other tools fail on it too)"
                if level == "project"
                else "none of its settings are used"
            )
            self.problem(
                str(path),
                line,
                f"{path.name} is not valid TOML: {reason}"
                + (f" at {where}" if where else "")
                + f"; {what}.",
                "fix the syntax there: look for an unclosed quote or bracket, a missing `=` or a "
                "key given twice.",
            )
            return None

    def user_layer(self, explicit: str | None) -> _Layer:
        # A relative --config is relative to where the command was typed, not the session.
        path = Path(os.path.expanduser(explicit)).absolute() if explicit else default_config_path()
        found = path.is_file()
        if not found:
            self.files.append(ConfigFile("user", path, False, explicit is not None))
            if explicit:
                self.problem(
                    str(path),
                    None,
                    "the config file named by --config / TYPEMUX_LSP_CONFIG does not exist; "
                    "only defaults, the project config, environment and flags are used.",
                    "create it, or fix the path.",
                )
            return _Layer()
        self.files.append(ConfigFile("user", path, True, explicit is not None, used=True))
        parsed = self.read_toml(path, "user")
        if parsed is None:
            return _Layer()
        data, text = parsed
        if "tool" in data and isinstance(data["tool"], dict) and "typemux-lsp" in data["tool"]:
            lines = KeyLines(text)
            self.problem(
                str(path),
                lines.line(("tool", "typemux-lsp")),
                "the user config has a [tool.typemux-lsp] table; in config.toml the settings "
                "are top-level keys, so this table is ignored.",
                "remove the [tool.typemux-lsp] header and keep its keys at the top of the file.",
            )
            data = {k: v for k, v in data.items() if k != "tool"}
        return self.table_layer(data, (), path, text, "user", self.workspace)

    def project_layer(self) -> _Layer:
        path = (self.toplevel or self.cwd) / PROJECT_FILE
        if not path.is_file():
            self.files.append(ConfigFile("project", path, False))
            return _Layer()
        parsed = self.read_toml(path, "project")
        if parsed is None:
            self.files.append(ConfigFile("project", path, True))
            return _Layer()
        data, text = parsed
        tool = data.get("tool")
        tool = tool if isinstance(tool, dict) else {}
        if "typemux_lsp" in tool:
            self.problem(
                str(path),
                KeyLines(text).line(("tool", "typemux_lsp")),
                "[tool.typemux_lsp] is not read: the table is called [tool.typemux-lsp].",
                "rename the table to [tool.typemux-lsp].",
            )
        table = tool.get("typemux-lsp")
        self.files.append(ConfigFile("project", path, True, used=table is not None))
        if table is None:
            return _Layer()
        if not isinstance(table, dict):
            self.problem(
                str(path),
                KeyLines(text).line(PROJECT_TABLE),
                f"tool.typemux-lsp is {_describe(table)}, not a table; it is ignored.",
                "write the settings under a [tool.typemux-lsp] table header.",
            )
            return _Layer()
        return self.table_layer(table, PROJECT_TABLE, path, text, "project", path.parent)

    def table_layer(
        self,
        table: Mapping[str, Any],
        prefix: tuple[str, ...],
        path: Path,
        text: str,
        level: Level,
        base: Path,
    ) -> _Layer:
        layer = _Layer()
        lines = KeyLines(text)
        header = f"[{'.'.join(prefix)}]" if prefix else str(path.name)
        seen: dict[str, str] = {}
        for key, value in table.items():
            line = lines.line((*prefix, key))
            name = key.replace("-", "_")
            if name not in _SPECS:
                self.problem(str(path), line, *_unknown_key(key, header))
                continue
            if name in seen:
                self.problem(
                    str(path),
                    line,
                    f'"{key}" and "{seen[name]}" in {header} are the same setting; "{key}" is '
                    "ignored.",
                    f'keep only "{toml_key(name)}".',
                )
                continue
            seen[name] = key
            spec = _SPECS[name]
            if level == "project" and spec.not_in_project is not None:
                self.problem(
                    str(path),
                    line,
                    f"{key} cannot be set in a project's pyproject.toml ({spec.not_in_project}); "
                    "it is ignored.",
                    f"set it in your user config, in {env_var(name)} or with {flag(name)}.",
                )
                continue
            source = f"{level} config {path}" + (f":{line}" if line else "")
            if name == "projects":
                rules = self.rules(
                    value, source, base, str(path), lines, (*prefix, key), level == "project"
                )
                if rules is None:
                    continue
                layer.values[name] = rules
            else:
                try:
                    layer.values[name] = _structure(name, value)
                except _Invalid as error:
                    self.problem(str(path), line, f"{error.message} It is ignored.", error.fix)
                    continue
            layer.sources[name] = source
        return layer

    def rules(
        self,
        value: Any,
        source: str,
        base: Path,
        file: str,
        lines: KeyLines | None,
        path: KeyPath,
        from_repository: bool = False,
    ) -> list[ProjectRule] | None:
        """Valid rules from a `projects` value; each invalid rule is reported and dropped."""
        if not isinstance(value, list):
            self.problem(
                file,
                lines.line(path) if lines else None,
                f"projects is {_describe(value)}, expected an array of tables; it is ignored.",
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
                    raise _Invalid(
                        f"{where} is {_describe(entry)}, not a table.",
                        'write it as { path = "services/*", backend = "ty" }.',
                    )
                spec = _structure_rule(entry, where)
                rule_source = source if lines is None else _with_line(source, line)
                if spec.backend is not None and spec.backend not in KINDS:
                    close = difflib.get_close_matches(spec.backend, KINDS, n=1)
                    raise _Invalid(
                        f'{where} names backend "{spec.backend}", which typemux-lsp does not know.',
                        (f'did you mean "{close[0]}"? ' if close else "")
                        + f"use one of {', '.join(sorted(KINDS))}.",
                        key="backend",
                    )
                if spec.environment is not None:
                    _check_environment(spec.environment, where, base, from_repository)
                if ".." in _glob_parts(spec.path) and not os.path.isabs(spec.path):
                    raise _Invalid(
                        f'{where} has path = "{spec.path}", which leaves {base}; relative globs '
                        "are relative to that directory.",
                        "use a glob inside it, or an absolute path.",
                        key="path",
                    )
            except _Invalid as error:
                if lines is not None and error.key is not None:
                    line = lines.line((*path, index, error.key))
                self.problem(file, line, f"{error.message} The rule is ignored.", error.fix)
                continue
            rules.append(
                ProjectRule(
                    spec.path,
                    base,
                    spec.backend,
                    spec.settings,
                    rule_source,
                    spec.environment,
                    base if from_repository else None,
                )
            )
        return rules

    # -- environment and flags -------------------------------------------------------------

    def env_layer(self) -> _Layer:
        layer = _Layer()
        known = {env_var(name): name for name in _SPECS}
        for var in sorted(self.environ):
            if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
                continue
            raw = self.environ[var]
            name = known.get(var)
            if name is None:
                close = difflib.get_close_matches(var, [*known, CONFIG_ENV], n=1)
                self.problem(
                    "environment",
                    None,
                    f"{var} is not a typemux-lsp setting; it is ignored.",
                    f"rename it to {close[0]}, or unset it."
                    if close
                    else "unset it; `typemux-lsp --help` lists the variables.",
                )
                continue
            if raw == "":
                continue
            try:
                value = self.typed(name, self.parse_env(name, raw), f"env {var}", "environment")
                if value is None:
                    continue
            except _Invalid as error:
                self.problem(
                    "environment",
                    None,
                    f"{var}={raw!r}: {error.message} It is ignored.",
                    _env_fix(error, var, name),
                )
                continue
            layer.values[name] = value
            layer.sources[name] = f"env {var}"
        return layer

    def typed(self, name: str, value: Any, source: str, where: str) -> Any:
        """`value` as the setting's type; None for a rule list none of whose rules is valid."""
        if name == "projects":
            return self.rules(value, source, self.workspace, where, None, ())
        return _structure(name, value)

    @staticmethod
    def parse_env(name: str, raw: str) -> Any:
        kind = _SPECS[name].kind
        text = raw.strip()
        if kind == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise _Invalid("it is not a boolean.", "")
        if kind in ("int", "float"):
            try:
                return int(text) if kind == "int" else float(text)
            except ValueError:
                raise _Invalid(f"it is not {_EXPECTED[kind]}.", "") from None
        if kind in ("table", "rules"):
            try:
                return json.loads(text)
            except ValueError as error:
                raise _Invalid(f"it is not valid JSON ({error}).", "") from None
        return raw

    def flag_layer(self, args: argparse.Namespace | Mapping[str, Any] | None) -> _Layer:
        layer = _Layer()
        given = _args_dict(args)
        for name in _SPECS:
            value = given.get(name)
            if value is None:
                continue
            source = f"flag {flag(name)}"
            try:
                value = self.typed(name, value, source, "command line")
                if value is None:
                    continue
            except _Invalid as error:
                self.problem(
                    "command line",
                    None,
                    f"{flag(name)}: {error.message} It is ignored.",
                    error.fix.replace(f"{toml_key(name)} = ", f"{flag(name)} "),
                )
                continue
            layer.values[name] = value
            layer.sources[name] = source
        return layer


def _args_dict(args: argparse.Namespace | Mapping[str, Any] | None) -> dict[str, Any]:
    if args is None:
        return {}
    if isinstance(args, argparse.Namespace):
        return dict(vars(args))
    return dict(args)


def _with_line(source: str, line: int | None) -> str:
    base = source.rsplit(":", 1)[0] if re.search(r":\d+$", source) else source
    return f"{base}:{line}" if line else base


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


def _structure_rule(entry: Mapping[str, Any], where: str) -> _RuleFields:
    """cattrs checks the keys and types; the messages name the key and the fix."""
    import cattrs
    from cattrs.errors import ForbiddenExtraKeysError

    try:
        spec: _RuleFields = _converter().structure(dict(entry), _RuleFields)
    except (cattrs.BaseValidationError, TypeError, ValueError) as error:
        extra = [
            e for e in getattr(error, "exceptions", ()) if isinstance(e, ForbiddenExtraKeysError)
        ]
        if extra:
            unknown = sorted(extra[0].extra_fields)
            raise _Invalid(
                f"{where} has unknown key(s) {', '.join(unknown)}.",
                "a rule has only path (a glob), backend, settings (a table) and environment.",
                key=unknown[0],
            ) from None
        if "path" not in entry:
            raise _Invalid(
                f"{where} has no path.",
                'add path = "<glob of project directories>", e.g. path = "services/*".',
            ) from None
        for key, (types, expected) in _RULE_TYPES.items():
            if key in entry and not isinstance(entry[key], types):
                raise _Invalid(
                    f"{where}: {key} = {_toml(entry[key])} is {_describe(entry[key])}, expected "
                    f"{expected}.",
                    _RULE_FIX,
                    key=key,
                ) from None
        raise _Invalid(f"{where} is not a valid rule ({error}).", _RULE_FIX) from None
    if not spec.path.strip():
        raise _Invalid(
            f"{where} has an empty path.", 'use "." for the base directory itself.', key="path"
        )
    return spec


def _check_environment(value: str, where: str, base: Path, from_repository: bool) -> None:
    """An `environment` value that cannot work is refused when the configuration is read;
    the real path of a relative one is checked again at each lookup."""
    if not value.strip():
        raise _Invalid(
            f"{where} has an empty environment.",
            'name the environment\'s directory (e.g. environment = ".venv"), or "none".',
            key="environment",
        )
    if not from_repository or value == "none":
        return
    target = Path(os.path.expanduser(value))
    if value.startswith("~") or (target.is_absolute() and not _inside(target, base)):
        raise _Invalid(
            f'{where} has environment = "{value}", outside the repository {base}: a '
            "repository's own pyproject.toml may only name an environment inside it.",
            "set it in your user config (config.toml) instead.",
            key="environment",
        )


def _inside(path: Path, base: Path) -> bool:
    normal = Path(os.path.normpath(path))
    return normal == base or base in normal.parents


def _unknown_key(key: str, header: str) -> tuple[str, str]:
    names = [toml_key(name) for name in _SPECS]
    close = difflib.get_close_matches(key.replace("_", "-"), names, n=1)
    fix = (
        f'rename it to "{close[0]}".'
        if close
        else f"remove it; the settings are: {', '.join(names)}."
    )
    return f'unknown setting "{key}" in {header}; it is ignored.', fix


def _env_fix(error: _Invalid, var: str, name: str) -> str:
    spec = _SPECS[name]
    if spec.kind == "bool":
        return f"set {var} to one of {', '.join(_TRUE + _FALSE)}, or unset it."
    if spec.kind in ("table", "rules"):
        sample = '{"python": {"analysis": {}}}' if spec.kind == "table" else '[{"path": "x/*"}]'
        return f"set {var} to JSON, e.g. {var}='{sample}', or unset it."
    if spec.kind in ("int", "float") and not error.fix:
        return f"set {var} to {_EXPECTED[spec.kind]}, e.g. {var}={getattr(Settings(), name)}."
    return error.fix.replace(f"{toml_key(name)} = ", f"{var}=") or f"unset {var}."


def default_config_path() -> Path:
    """Where the user config lives unless --config / TYPEMUX_LSP_CONFIG says otherwise."""
    return Path(platformdirs.user_config_dir("typemux-lsp")) / CONFIG_FILE


def load_settings(
    args: argparse.Namespace | Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
) -> LoadedSettings:
    """Settings from every level, with each field's source and every problem found.

    `args` holds flag values by field name (None = not given) plus `config`; `environ`
    defaults to os.environ and `cwd` to the working directory (whose git toplevel holds the
    project config). Never raises for a configuration mistake: see `LoadedSettings.problems`.
    """
    env = os.environ if environ is None else environ
    loader = _Loader(env, Path.cwd() if cwd is None else Path(cwd))
    explicit = _args_dict(args).get("config") or env.get(CONFIG_ENV) or None
    layers = [
        loader.user_layer(explicit),
        loader.project_layer(),
        loader.env_layer(),
        loader.flag_layer(args),
    ]
    defaults = Settings()
    values: dict[str, Any] = {name: getattr(defaults, name) for name in Settings.names()}
    sources = dict.fromkeys(values, "default")
    for layer in layers:
        values.update(layer.values)
        sources.update(layer.sources)
    return LoadedSettings(
        Settings(**values), sources, loader.problems, loader.files, loader.toplevel
    )


def problems_summary(problems: Iterable[ConfigProblem]) -> str:
    """One message for all problems, for the client's showMessage and the log."""
    items = list(problems)
    if not items:
        return ""
    head = (
        "typemux-lsp: 1 configuration problem"
        if len(items) == 1
        else f"typemux-lsp: {len(items)} configuration problems"
    )
    return head + " (the rest of the configuration is used):\n" + "\n".join(map(str, items))
