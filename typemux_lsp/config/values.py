"""How a value decoded from TOML or JSON becomes a typed setting: one strict check per kind,
shared by the scalar settings and cattrs (for the project rules)."""

from __future__ import annotations

import functools
from typing import Any


def strict(kind: type[Any], *accepted: type[Any]) -> Any:
    """A cattrs hook that refuses values TOML/JSON decoded to another type (no "8" -> 8)."""

    def hook(value: Any, _type: Any) -> Any:
        if isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted):
            return kind(value)
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")

    return hook


def table_hook(value: Any, _type: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a table, got {type(value).__name__}")
    return value


#: One check per kind of setting, shared by the scalar settings and cattrs (for the rules).
HOOKS: dict[str, Any] = {
    "bool": strict(bool, bool),
    "int": strict(int, int),
    "float": strict(float, int, float),
    "str": strict(str, str),
    "table": table_hook,
}


@functools.cache
def converter() -> Any:
    """cattrs, for the project rules (tables with known keys). Imported on first use: a
    scalar setting needs no converter, and start-up is on the client's clock."""
    import cattrs

    converter = cattrs.Converter(forbid_extra_keys=True)
    for kind, python_type in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        converter.register_structure_hook(python_type, HOOKS[kind])
    converter.register_structure_hook_func(lambda t: t == dict[str, Any], table_hook)
    return converter
