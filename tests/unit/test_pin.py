"""pin.py: the module name that ties a library file to its environment's folder, the pin's
text, and whether the backend's answer shows the import resolved to that file."""

from __future__ import annotations

from pathlib import Path

from typemux_lsp.pin import module_of, pin_text, reaches
from typemux_lsp.venv import Venv


def _env(tmp_path: Path) -> tuple[Venv, Path]:
    prefix = tmp_path / "envs" / "beta"
    site = prefix / "lib" / "python3.11" / "site-packages"
    (site / "pkg" / "sub").mkdir(parents=True)
    (prefix / "bin").mkdir()
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    src = tmp_path / "src"
    src.mkdir()
    (site / "local.pth").write_text(f"{src}\n")
    return Venv(prefix, project_dir=tmp_path / "beta"), site


def test_the_module_name_comes_from_the_import_root_that_holds_the_file(tmp_path: Path) -> None:
    venv, site = _env(tmp_path)
    assert module_of(venv, site / "extra_b.py") == "extra_b"
    assert module_of(venv, site / "pkg" / "sub" / "mod.pyi") == "pkg.sub.mod"
    assert module_of(venv, site / "pkg" / "__init__.py") == "pkg"
    assert module_of(venv, tmp_path / "src" / "lib.py") == "lib"  # (a .pth directory)


def test_a_file_no_import_names_has_no_module(tmp_path: Path) -> None:
    venv, site = _env(tmp_path)
    assert module_of(venv, venv.path / "share" / "tool.py") is None
    assert module_of(venv, site / "my-tool.py") is None
    assert module_of(venv, tmp_path / "elsewhere.py") is None


def test_the_pin_asks_at_the_modules_last_name() -> None:
    assert pin_text("pkg.sub.mod") == ("import pkg.sub.mod\n", {"line": 0, "character": 15})
    assert pin_text("extra_b") == ("import extra_b\n", {"line": 0, "character": 7})


def test_the_pin_is_resolved_only_when_the_answer_names_the_file(tmp_path: Path) -> None:
    file = tmp_path / "extra_b.py"
    start = {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}
    assert reaches([{"uri": file.as_uri(), "range": start}], file)
    assert reaches({"uri": file.as_uri(), "range": start}, file)
    link = {"targetUri": file.as_uri(), "targetSelectionRange": start, "targetRange": start}
    assert reaches([link], file)
    other = tmp_path / "beta" / "extra_b.py"
    assert not reaches([{"uri": other.as_uri(), "range": start}], file)
    assert not reaches(None, file)
    assert not reaches([], file)


def test_a_stub_of_the_bundled_typeshed_is_named_as_every_folder_imports_it(
    tmp_path: Path,
) -> None:
    venv, _ = _env(tmp_path)
    typeshed = tmp_path / "tool" / "pyright" / "dist" / "typeshed-fallback"
    assert module_of(venv, typeshed / "stdlib" / "builtins.pyi") == "builtins"
    assert module_of(venv, typeshed / "stdlib" / "os" / "__init__.pyi") == "os"
    assert module_of(venv, typeshed / "stubs" / "requests" / "requests" / "api.pyi") == (
        "requests.api"
    )
    assert module_of(venv, typeshed / "commit.txt") is None
