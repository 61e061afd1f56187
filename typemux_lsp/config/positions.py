"""Where a key is in a TOML text, so a problem can name its line."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping

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
