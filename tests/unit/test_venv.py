"""The `.venv`-era names still answer, through `typemux_lsp.environments`."""

from __future__ import annotations

from pathlib import Path

from envkit import fake_venv

from typemux_lsp.environments import Environment
from typemux_lsp.venv import Venv, fallback_venv, find_venv, no_venv_message


def test_venv_is_the_environment_and_find_venv_delegates(repo: Path) -> None:
    venv = fake_venv(repo / "api" / ".venv")
    lookup = find_venv(repo / "api" / "m.py")
    assert Venv is Environment
    assert lookup.venv is lookup.environment and lookup.venv is not None
    assert (lookup.venv.path, lookup.venv.project_dir, lookup.venv.cfg) == (
        venv,
        venv.parent,
        venv / "pyvenv.cfg",
    )
    assert lookup.venv.bin_dir == venv / "bin" and lookup.venv.exists()


def test_venv_of_a_path_alone_is_the_venv_there(tmp_path: Path) -> None:
    old_style = Venv(tmp_path / "api" / ".venv")
    assert old_style.project_dir == tmp_path / "api"
    assert old_style.python == tmp_path / "api" / ".venv" / "bin" / "python"
    assert old_style.key == (tmp_path / "api" / ".venv").resolve()


def test_fallback_and_message(repo: Path) -> None:
    assert fallback_venv(repo) is None
    fake_venv(repo / ".venv")
    assert fallback_venv(repo) is not None
    assert "no .venv found" in no_venv_message(repo / "x.py", "file:///x", None)
