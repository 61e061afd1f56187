"""Where settings come from, and which wins: defaults < user config < project config <
environment < flags, field by field, each value with its source."""

from __future__ import annotations

import argparse
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import platformdirs

from ..backends import AUTO, choose_auto, safe_path
from ..environments import canonical, git_toplevel
from .positions import KeyLines, syntax_error_position
from .problems import ConfigProblem, Invalid, describe
from .rules import parse_rules
from .settings import (
    ENV_PREFIX,
    EXPECTED,
    FALSE,
    SPECS,
    TRUE,
    Settings,
    env_var,
    flag,
    parse_text,
    structure,
    toml_key,
)

#: the environment variable that points at a user config file elsewhere
CONFIG_ENV = "TYPEMUX_LSP_CONFIG"
CONFIG_FILE = "config.toml"
PROJECT_FILE = "pyproject.toml"
#: the table in pyproject.toml that holds the project's settings
PROJECT_TABLE = ("tool", "typemux-lsp")

Level = Literal["user", "project"]


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
    #: why `settings.backend` is that kind when it was chosen by `backend = "auto"`
    backend_reason: str | None = None


# -- field specifications ----------------------------------------------------------------------


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
                f"tool.typemux-lsp is {describe(table)}, not a table; it is ignored.",
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
            if name not in SPECS:
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
            spec = SPECS[name]
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
                rules = parse_rules(
                    value,
                    source,
                    base,
                    str(path),
                    lines,
                    (*prefix, key),
                    level == "project",
                    self.problem,
                )
                if rules is None:
                    continue
                layer.values[name] = rules
            else:
                try:
                    layer.values[name] = structure(name, value)
                except Invalid as error:
                    self.problem(str(path), line, f"{error.message} It is ignored.", error.fix)
                    continue
            layer.sources[name] = source
        return layer

    # -- environment and flags -------------------------------------------------------------

    def env_layer(self) -> _Layer:
        layer = _Layer()
        known = {env_var(name): name for name in SPECS}
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
                value = self.typed(name, parse_text(name, raw), f"env {var}", "environment")
                if value is None:
                    continue
            except Invalid as error:
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
            return parse_rules(value, source, self.workspace, where, None, (), False, self.problem)
        return structure(name, value)

    def flag_layer(self, args: argparse.Namespace | Mapping[str, Any] | None) -> _Layer:
        layer = _Layer()
        given = _args_dict(args)
        for name in SPECS:
            value = given.get(name)
            if value is None:
                continue
            source = f"flag {flag(name)}"
            try:
                value = self.typed(name, value, source, "command line")
                if value is None:
                    continue
            except Invalid as error:
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


def _unknown_key(key: str, header: str) -> tuple[str, str]:
    names = [toml_key(name) for name in SPECS]
    close = difflib.get_close_matches(key.replace("_", "-"), names, n=1)
    fix = (
        f'rename it to "{close[0]}".'
        if close
        else f"remove it; the settings are: {', '.join(names)}."
    )
    return f'unknown setting "{key}" in {header}; it is ignored.', fix


def _env_fix(error: Invalid, var: str, name: str) -> str:
    spec = SPECS[name]
    if spec.kind == "bool":
        return f"set {var} to one of {', '.join(TRUE + FALSE)}, or unset it."
    if spec.kind in ("table", "rules"):
        sample = '{"python": {"analysis": {}}}' if spec.kind == "table" else '[{"path": "x/*"}]'
        return f"set {var} to JSON, e.g. {var}='{sample}', or unset it."
    if spec.kind in ("int", "float") and not error.fix:
        return f"set {var} to {EXPECTED[spec.kind]}, e.g. {var}={getattr(Settings(), name)}."
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
        for name, value in layer.values.items():
            if name == "projects" and sources[name] != "default":
                # Rules merge: a higher level's rules come first, the lower level's still
                # apply (a user rule names the environment a repository's rule may not).
                values[name] = [*value, *values[name]]
                sources[name] = f"{layer.sources[name]}, then {sources[name]}"
            else:
                values[name] = value
                sources[name] = layer.sources[name]
    reason = None
    if values["backend"] == AUTO:
        values["backend"], reason = choose_auto(safe_path(env.get("PATH", ""), loader.cwd))
    return LoadedSettings(
        Settings(**values), sources, loader.problems, loader.files, loader.toplevel, reason
    )
