"""What a configuration mistake is, and how values are written in the messages about it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


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


class Invalid(Exception):
    """A value that cannot be used, with the reason and the fix (without the location)."""

    def __init__(self, message: str, fix: str, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        #: the offending key inside a rule, to point at its line
        self.key = key


def describe(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a whole number",
        float: "a number",
        str: "a string",
        dict: "a table",
        list: "an array",
    }.get(type(value), type(value).__name__)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value) if isinstance(value, dict | list) else repr(value)


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
