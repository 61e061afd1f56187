"""Probe documents: how a shared pyright, basedpyright or ty process is asked about a symbol as
one of its folders sees it.

Such a process answers a question about a file from ONE workspace folder (pyright's
`_getBestWorkspaceForFile`: the folder whose root holds the file), and searches references,
renames and call hierarchies in that folder's program only (ty 1.2.0: references, rename
and implementation; its hierarchies span every folder: `BackendKind.probes`). A library
installed editable into several projects is under none of the consumers' roots, so asking at
the library's file answers the library's own view. A probe is a document that exists only
in the backend (opened, never written to disk) under the consumer's folder, so that folder's
program owns it: `from core.x import Cls` then `Cls.meth`, asked at `meth`, gives the
consumer's view of the symbol (measured on pyright 1.1.414, basedpyright 1.40.2 and ty 1.2.0,
whose probe is checked with its folder's interpreter and whose references from it span its
folder's project, files not open included; tests/e2e/test_across.py).

The symbol must be reachable by import: a module-level name, or an attribute of module-level
classes. A name bound inside a function body cannot be named from another module (nothing
is missing when it is not asked); a parameter (keyword arguments name it), a name of a class
nested in a function, or a file not importable by a dotted name cannot be probed: the caller
reports a gap.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Reach:
    """How the symbol defined at a position is named from another module."""

    #: the attribute path from its module: ("Greeter", "greet"); empty when not reachable
    path: tuple[str, ...] = ()
    #: bound inside a function body: no other module can name it (nothing to ask)
    local: bool = False
    #: why it cannot be probed, when neither
    why: str = ""


@functools.lru_cache(maxsize=64)
def reach(text: str, line: int, name: str) -> Reach:
    """How the name `name` bound on `line` (0-based) of the module `text` is reached from
    another module (kept for the questions asked again about the same text: parsing a
    large module takes tens of ms)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError) as exc:
        return Reach(why=f"its file does not parse here ({exc.__class__.__name__})")
    finder = _Finder(line + 1, name)
    finder.visit(tree)
    if finder.found is not None:
        return finder.found
    return Reach(why=f"`{name}` is not a name bound at module or class level")


class _Finder(ast.NodeVisitor):
    """Finds the binding of `name` on `lineno`, with the scopes it is in."""

    def __init__(self, lineno: int, name: str) -> None:
        self.lineno = lineno
        self.name = name
        #: (kind, name, names declared global there) from the module down
        self.scopes: list[tuple[str, str, set[str]]] = []
        self.found: Reach | None = None

    def _bound(self, node: ast.AST, name: str) -> bool:
        return (
            self.found is None and getattr(node, "lineno", 0) == self.lineno and (name == self.name)
        )

    def _record(self, *, parameter: bool = False) -> None:
        kinds = [kind for kind, _, _ in self.scopes]
        if parameter:
            self.found = Reach(why=f"`{self.name}` is a parameter (keyword arguments name it)")
        elif "function" not in kinds:
            self.found = Reach(path=(*(n for _, n, _ in self.scopes), self.name))
        elif self.name in self.scopes[-1][2]:  # `global name` in the innermost function
            self.found = Reach(path=(self.name,))
        elif kinds[-1] == "function":
            self.found = Reach(local=True)
        else:
            self.found = Reach(why=f"`{self.name}` belongs to a class defined in a function")

    def _scope(self, node: ast.AST, kind: str, name: str) -> None:
        declared = {
            n
            for child in ast.walk(node)
            if isinstance(child, ast.Global | ast.Nonlocal)
            for n in child.names
        }
        self.scopes.append((kind, name, declared if kind == "function" else set()))
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.expr) or kind != "class":
                self.visit(child)
        self.scopes.pop()

    def _definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        if self._bound(node, node.name):
            self._record()
        self._scope(node, "class" if isinstance(node, ast.ClassDef) else "function", node.name)

    visit_FunctionDef = _definition
    visit_AsyncFunctionDef = _definition
    visit_ClassDef = _definition

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._scope(node, "function", "<lambda>")

    def visit_arg(self, node: ast.arg) -> None:
        if self._bound(node, node.arg):
            self._record(parameter=True)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store) and self._bound(node, node.id):
            self._record()


def module_name(root: Path, path: Path) -> str | None:
    """The dotted module name of the source file `path` imported from the root `root`."""
    try:
        parts = list(path.relative_to(root).with_suffix("").parts)
    except ValueError:
        return None
    if parts and parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def pyright_settings(project: Path, kind: str) -> dict[str, object] | None:
    """The project's own pyright (basedpyright) configuration, as that kind reads it:
    `pyrightconfig.json` (basedpyright: `basedpyrightconfig.json` first), else pyproject's
    `[tool.pyright]` (basedpyright: `[tool.basedpyright]` first); empty when there is none,
    None when it cannot be read."""
    names = ["pyrightconfig.json"]
    if kind == "basedpyright":
        names.insert(0, "basedpyrightconfig.json")
    try:
        for name in names:
            if (project / name).is_file():
                found = json.loads((project / name).read_text(encoding="utf-8"))
                return found if isinstance(found, dict) else None
        pyproject = project / "pyproject.toml"
        if pyproject.is_file():
            tools = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
            sections = ["basedpyright", "pyright"] if kind == "basedpyright" else ["pyright"]
            for section in sections:
                if isinstance(tools.get(section), dict):
                    return dict(tools[section])
    except (OSError, ValueError, AttributeError):
        return None  # (tomllib's and json's errors are ValueErrors)
    return {}


def probe_dir(project: Path, kind: str) -> Path | None:
    """Where a probe goes to be the folder's own: pyright answers a file from the folder whose
    program tracks it (its `include`, the project when none is set; measured: a probe outside
    `include = ["src"]` got an empty answer from another workspace). The project itself, or its
    first `include` entry that is a plain directory; None when its config cannot be read or
    names none (only patterns). ty answers a file from the folder whose root holds it, its
    `[tool.ty.src] include` aside (ty 1.2.0: a probe at the root of a project whose include is
    `src` finds the uses in `src`): the project itself."""
    if kind not in ("pyright", "basedpyright"):
        return project
    settings = pyright_settings(project, kind)
    if settings is None:
        return None
    include = settings.get("include")
    if include is None:
        return project
    for entry in include if isinstance(include, list) else []:
        if isinstance(entry, str) and not any(c in entry for c in "*?["):
            directory = Path(os.path.normpath(project / entry))  # (symlinks kept: the root's)
            if directory.is_dir() and directory.is_relative_to(project):
                return directory
    return None


def probe_text(module: str, path: tuple[str, ...]) -> tuple[str, dict[str, int]]:
    """The probe's text and the position (line 1) of the symbol's last name in it."""
    head, *rest = path
    expression = ".".join(path)
    text = f"from {module} import {head}\n{expression}\n"
    column = len(expression) - len(path[-1]) if rest else 0
    return text, {"line": 1, "character": column}
