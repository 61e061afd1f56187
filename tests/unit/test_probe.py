"""How a symbol is named from another module (the probe documents a shared pyright is asked
through): which definitions an import reaches, which need none, which cannot be probed."""

from __future__ import annotations

from pathlib import Path

import pytest

from typemux_lsp.probe import Reach, module_name, probe_dir, probe_text, reach

MODULE = """import os

LIMIT: int = 3
a, (b, c) = 1, (2, 3)


def greet(name: str) -> str:
    loud = name.upper()
    return loud


class Greeter:
    level = 1

    class Inner:
        def deep(self) -> None: ...

    @staticmethod
    def greet(name: str) -> str:
        return name


def factory() -> object:
    global REGISTRY
    REGISTRY = {}

    class Made:
        field = 1

    return Made


if os.name == "nt":
    WINDOWS = True
"""


def line_of(text: str) -> int:
    return next(i for i, line in enumerate(MODULE.splitlines()) if line.strip().startswith(text))


@pytest.mark.parametrize(
    ("line", "name", "expected"),
    [
        ("LIMIT", "LIMIT", Reach(path=("LIMIT",))),
        ("a, (b, c)", "c", Reach(path=("c",))),
        ("def greet", "greet", Reach(path=("greet",))),
        ("class Greeter", "Greeter", Reach(path=("Greeter",))),
        ("level = 1", "level", Reach(path=("Greeter", "level"))),
        ("def deep", "deep", Reach(path=("Greeter", "Inner", "deep"))),
        ("def greet(name: str) -> str:\n        return", "greet", Reach(path=("Greeter", "greet"))),
        ("REGISTRY = {}", "REGISTRY", Reach(path=("REGISTRY",))),
        ("WINDOWS", "WINDOWS", Reach(path=("WINDOWS",))),
        ("loud =", "loud", Reach(local=True)),
        ("class Made", "Made", Reach(local=True)),
    ],
)
def test_what_an_import_reaches(line: str, name: str, expected: Reach) -> None:
    if "\n" in line:  # the method, not the function of the same name
        number = MODULE.splitlines().index("    def greet(name: str) -> str:")
    else:
        number = line_of(line)
    assert reach(MODULE, number, name) == expected


@pytest.mark.parametrize(
    ("line", "name", "why"),
    [
        ("def greet", "name", "parameter"),
        ("field = 1", "field", "class defined in a function"),
        ("import os", "os", "not a name bound at module or class level"),
    ],
)
def test_what_cannot_be_probed_says_why(line: str, name: str, why: str) -> None:
    found = reach(MODULE, line_of(line), name)
    assert not found.path and not found.local and why in found.why, found


def test_a_file_that_does_not_parse_cannot_be_probed() -> None:
    assert "does not parse" in reach("def (:\n", 0, "x").why


def test_module_names_and_probe_text() -> None:
    root = Path("/r/src")
    assert module_name(root, root / "core/__init__.py") == "core"
    assert module_name(root, root / "core/x/y.pyi") == "core.x.y"
    assert module_name(root, root / "my-lib/x.py") is None
    assert module_name(root, Path("/elsewhere/x.py")) is None
    assert probe_text("core", ("greet",)) == (
        "from core import greet\ngreet\n",
        {"line": 1, "character": 0},
    )
    assert probe_text("core.x", ("Cls", "meth")) == (
        "from core.x import Cls\nCls.meth\n",
        {"line": 1, "character": 4},
    )


def test_a_probe_goes_where_the_folders_program_includes_it(tmp_path: Path) -> None:
    """pyright answers a file from the folder whose `include` holds it: the project when none
    is set, else its first plain directory; None when only patterns are named."""
    (tmp_path / "src").mkdir()
    assert probe_dir(tmp_path, "pyright") == tmp_path
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.pyright]\ninclude = ["missing", "src"]\n', encoding="utf-8")
    assert probe_dir(tmp_path, "pyright") == tmp_path / "src"
    pyproject.write_text('[tool.basedpyright]\ninclude = ["**/*.py"]\n', encoding="utf-8")
    assert probe_dir(tmp_path, "pyright") == tmp_path  # (pyright does not read that section)
    assert probe_dir(tmp_path, "basedpyright") is None
    (tmp_path / "pyrightconfig.json").write_text('{"include": ["src/"]}', encoding="utf-8")
    assert probe_dir(tmp_path, "pyright") == tmp_path / "src"
    (tmp_path / "pyrightconfig.json").write_text('{"include": ["../elsewhere"]}', encoding="utf-8")
    assert probe_dir(tmp_path, "pyright") is None
    (tmp_path / "pyrightconfig.json").write_text("{not json", encoding="utf-8")
    assert probe_dir(tmp_path, "pyright") is None
