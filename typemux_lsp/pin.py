"""Pins: a document a shared pyright or basedpyright would answer from another environment,
made its own environment's.

Such a process sends a request (and a didOpen, a didChange) about a file to the workspace
folder that tracks it (under its root, in its `include`), else to the folder whose program
already has the file (an import of one of its files resolved to it), else to its DEFAULT
workspace (pyright 1.1.414, `_getBestWorkspaceForFile`), which is checked with the
interpreter of no folder in particular. A library file of an environment kept outside its
project (pdm's, a conda prefix) or in an excluded `.venv`, that no file of the project
imports, goes there: `Circle: Unknown` where the environment says `Circle`.

A pin is a document that exists only in the backend (never on disk, its diagnostics never
relayed), in the environment's folder, that imports the file's module. Once the backend has
resolved it (a definition asked at the module's name names the file), the folder's program
has the file, and the client's didOpen, its edits and its requests go there. It stays open
while the client's document is. A file no import names (under none of the environment's
import roots) cannot be pinned: the session never opens it and its requests get an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .merge import location_of
from .probe import module_name
from .venv import Venv, canonical, uri_to_path


def module_of(venv: Venv, path: Path) -> str | None:
    """The dotted name `venv` imports the file `path` by: its path relative to the innermost
    of the environment's import roots (site-packages, the directories its `.pth` files add)
    that holds it; a stub of the typeshed the backend bundles by its own root's."""
    real = canonical(path)
    bundled = _typeshed_module(real)
    if bundled is not None:
        return bundled
    roots = sorted({canonical(root) for root in venv.site_packages()}, key=lambda r: -len(r.parts))
    for root in roots:
        if real.is_relative_to(root):
            return module_name(root, real)
    return None


def _typeshed_module(real: Path) -> str | None:
    """The module name of a stub of the typeshed the backend bundles (where "go to
    definition" of `print` leads: `typeshed-fallback/stdlib/builtins.pyi`, or a third-party
    stub under `typeshed-fallback/stubs/<distribution>/`): every folder imports it so."""
    parts = real.parts
    if "typeshed-fallback" not in parts:
        return None
    at = len(parts) - 1 - parts[::-1].index("typeshed-fallback")
    rest = parts[at + 1 :]
    if rest[:1] == ("stdlib",):
        return module_name(Path(*parts[: at + 2]), real)
    if rest[:1] == ("stubs",) and len(rest) > 2:
        return module_name(Path(*parts[: at + 3]), real)
    return None


def pin_text(module: str) -> tuple[str, dict[str, int]]:
    """The pin's text, and the position of the module's last name in it (a definition asked
    there names the module's file)."""
    statement = f"import {module}"
    last = module.rsplit(".", 1)[-1]
    return statement + "\n", {"line": 0, "character": len(statement) - len(last)}


def reaches(answer: Any, path: Path) -> bool:
    """Whether a definition answer (Location, a list of Locations or LocationLinks) names the
    file `path`: the import resolved to it, not to a module of the folder's own by that name."""
    real = canonical(path)
    for item in answer if isinstance(answer, list) else [answer]:
        found = location_of(item)
        if found is None:
            continue
        target = uri_to_path(found[0])
        if target is not None and canonical(target) == real:
            return True
    return False
