"""JSON trees (settings, params): lookup by path, deep merge, nesting by section name."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def get_path(obj: Any, *keys: str) -> Any:
    """`obj[k1][k2]...`, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def deep_merge(base: Any, over: Any) -> Any:
    """`over` on top of `base`, recursively for nested tables; neither is modified.

    Where `over` has nothing to say (None, or an empty table) `base` stands.
    """
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        merged = copy.deepcopy(dict(base))
        for key, value in over.items():
            merged[key] = deep_merge(merged.get(key), value)
        return merged
    if over is None or (isinstance(over, Mapping) and not over):
        return copy.deepcopy(base)
    return copy.deepcopy(over)


def nest(section: Any, value: Any) -> Any:
    """`value` for `section` (e.g. "python.analysis") as a whole settings tree."""
    if not isinstance(section, str) or not section:
        return value
    for part in reversed(section.split(".")):
        value = {part: value}
    return value


def lookup(settings: Any, section: str | None) -> Any:
    """The subtree of `settings` at a dotted `section` (all of it for None or "")."""
    if section is None or section == "":
        return settings if settings else None
    node = settings
    for part in section.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
