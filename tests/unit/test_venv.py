"""Venv discovery: the nearest `.venv` up to the git toplevel, canonical, never a stale miss."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from typemux_lsp.venv import fallback_venv, find_venv, git_toplevel, no_venv_message


def make_venv(directory: Path) -> Path:
    venv = directory / ".venv"
    venv.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.7\n")
    return venv


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "services" / "api" / "src").mkdir(parents=True)
    return root


def test_nearest_venv_wins(repo: Path) -> None:
    make_venv(repo)
    api = make_venv(repo / "services" / "api")
    found = find_venv(repo / "services" / "api" / "src" / "main.py")
    assert found.venv is not None and found.venv.path == api.resolve()
    assert found.venv.project_dir == (repo / "services" / "api").resolve()


def test_search_stops_at_the_git_toplevel(tmp_path: Path, repo: Path) -> None:
    make_venv(tmp_path)  # above the repository: must not be used
    lookup = find_venv(repo / "services" / "api" / "src" / "main.py")
    assert lookup.venv is None
    assert lookup.boundary == repo.resolve()
    assert lookup.searched[-1] == repo.resolve()


def test_a_directory_named_venv_without_pyvenv_cfg_is_not_a_venv(repo: Path) -> None:
    (repo / "services" / "api" / ".venv").mkdir()
    assert find_venv(repo / "services" / "api" / "x.py").venv is None


def test_symlinked_paths_give_one_canonical_venv(tmp_path: Path, repo: Path) -> None:
    make_venv(repo / "services" / "api")
    link = tmp_path / "link"
    link.symlink_to(repo / "services")
    via_link = find_venv(link / "api" / "src" / "m.py").venv
    direct = find_venv(repo / "services" / "api" / "src" / ".." / "src" / "m.py").venv
    assert via_link is not None and via_link == direct


def test_symlinked_venv_is_canonicalised(tmp_path: Path, repo: Path) -> None:
    real = make_venv(tmp_path / "elsewhere")
    os.symlink(real, repo / "services" / "api" / ".venv")
    found = find_venv(repo / "services" / "api" / "m.py").venv
    assert found is not None and found.path == real.resolve()


def test_a_venv_created_later_is_found_by_the_next_lookup(repo: Path) -> None:
    target = repo / "services" / "api" / "src" / "main.py"
    assert find_venv(target).venv is None
    make_venv(repo / "services" / "api")
    assert find_venv(target).venv is not None


def test_fallback_prefers_the_git_toplevel_then_cwd(repo: Path) -> None:
    cwd = repo / "services" / "api"
    assert fallback_venv(cwd) is None
    local = make_venv(cwd)
    fb = fallback_venv(cwd)
    assert fb is not None and fb.path == local.resolve()
    top = make_venv(repo)
    fb = fallback_venv(cwd)
    assert fb is not None and fb.path == top.resolve()
    assert git_toplevel(cwd) == repo.resolve()


def test_identity_changes_when_the_venv_is_recreated(repo: Path) -> None:
    venv_dir = make_venv(repo)
    venv = find_venv(repo / "a.py").venv
    assert venv is not None
    before = venv.identity()
    (venv_dir / "pyvenv.cfg").unlink()
    assert venv.identity() is None
    (venv_dir / "pyvenv.cfg").write_text("version = 3.12.1\n")
    assert venv.identity() not in (None, before)
    assert venv.python_version() == "3.12.1"


def test_no_venv_message_names_file_search_and_fix(repo: Path) -> None:
    (repo / "services" / "api" / "pyproject.toml").write_text("[project]\nname='api'\n")
    target = repo / "services" / "api" / "src" / "main.py"
    msg = no_venv_message(target, target.as_uri(), find_venv(target))
    assert str(target) in msg
    assert "git toplevel" in msg
    assert f"cd {(repo / 'services' / 'api').resolve()} && uv sync" in msg
    assert "python -m venv .venv" in msg
    untitled = no_venv_message(None, "untitled:Untitled-1", None)
    assert "untitled:Untitled-1" in untitled and "not a file" in untitled
