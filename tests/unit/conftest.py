"""Fixtures for the environment discovery tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from typemux_lsp.environments import clear_cache

#: variables through which the developer's own tools' configuration would leak into a test
_TOOL_VARS = ("POETRY_", "PIPENV_", "HATCH_", "PDM_", "CONDA", "MAMBA", "UV_", "PIXI")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private home: the tools' user config, data and cache directories are in it, and no
    variable of the developer's own poetry/conda/... configuration is set."""
    home = tmp_path / "home"
    home.mkdir()
    for var in list(os.environ):
        if var.startswith(_TOOL_VARS) or var in ("VIRTUAL_ENV", "WORKON_HOME", "CONDARC"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    clear_cache()
    yield home
    clear_cache()


@pytest.fixture
def repo(tmp_path: Path, home: Path) -> Path:
    """An empty git repository (its toplevel bounds every search)."""
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    return root
