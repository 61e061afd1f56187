"""What each backend kind is told about its venv."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from typemux_lsp.backends import KINDS, pyrefly_config_dir, safe_path
from typemux_lsp.documents import Encoding
from typemux_lsp.environments import Environment
from typemux_lsp.venv import Venv

VENV = Venv(Path("/w/api/.venv"))


@pytest.mark.parametrize("kind", ["pyright", "basedpyright", "pyrefly"])
def test_python_section_names_the_venv_interpreter_over_user_settings(kind: str) -> None:
    settings = {"python": {"pythonPath": "/usr/bin/python3", "analysis": {"x": 1}}}
    answer = KINDS[kind].configuration("python", VENV, settings)
    assert answer == {"pythonPath": "/w/api/.venv/bin/python", "analysis": {"x": 1}}


def test_ty_gets_the_venv_in_its_configuration_environment() -> None:
    answer = KINDS["ty"].configuration("ty", VENV, {"ty": {"configuration": {"rules": {"a": 1}}}})
    assert answer == {
        "configuration": {"rules": {"a": 1}, "environment": {"python": "/w/api/.venv"}}
    }


def test_other_sections_come_from_settings_or_null() -> None:
    assert KINDS["pyright"].configuration("pyright", VENV, None) is None
    assert KINDS["pyright"].configuration("python.analysis", VENV, {"python": {"analysis": 1}}) == 1


PROXY_ENV = {
    "PATH": "/usr/bin",
    "PYTHONPATH": "/proxy",
    "PYTHONHOME": "/x",
    "VIRTUAL_ENV": "/me",
    "CONDA_PREFIX": "/opt/conda",
    "CONDA_DEFAULT_ENV": "base",
}


def test_environment_points_at_the_venv_and_drops_the_proxys_python_settings(
    tmp_path: Path,
) -> None:
    prefix = tmp_path / "api" / ".venv"
    prefix.mkdir(parents=True)
    (prefix / "pyvenv.cfg").write_text("version = 3.11.7\n")
    env = KINDS["ty"].environment(Environment(prefix), PROXY_ENV)
    assert env["VIRTUAL_ENV"] == str(prefix)
    assert env["PATH"] == "/usr/bin"
    assert not {"PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX", "CONDA_DEFAULT_ENV"} & set(env)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_conda_prefix_is_not_passed_off_as_a_virtualenv(tmp_path: Path, kind: str) -> None:
    """conda/pixi prefixes have no pyvenv.cfg: CONDA_PREFIX, as `conda activate` sets it."""
    prefix = tmp_path / ".pixi" / "envs" / "default"
    (prefix / "conda-meta").mkdir(parents=True)
    found = Environment(prefix, None, tmp_path, None, "pixi", "test")
    env = KINDS[kind].environment(found, PROXY_ENV)
    assert env["CONDA_PREFIX"] == str(prefix)
    assert "VIRTUAL_ENV" not in env and "CONDA_DEFAULT_ENV" not in env
    assert env["PATH"] == "/usr/bin"
    setting = KINDS[kind].interpreter_setting(found)
    expected = str(prefix) if kind == "ty" else str(prefix / "bin" / "python")
    assert expected in str(setting)


def test_path_holds_nothing_of_the_project(tmp_path: Path) -> None:
    """An activated venv, a repository's bin/, an empty or relative entry (= the backend's
    cwd, the project): none may stay on a backend's PATH."""
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    project = tmp_path / "repo" / "api"
    project.mkdir()
    path = ":".join(
        [
            str(project / ".venv" / "bin"),
            "",
            "bin",
            str(tmp_path / "repo" / "tools"),
            "/usr/local/bin",
            "/usr/bin",
        ]
    )
    assert safe_path(path, project) == "/usr/local/bin:/usr/bin"


def test_an_env_shebang_script_gets_its_interpreter_by_absolute_path(tmp_path: Path) -> None:
    script = tmp_path / "pyright-langserver"
    script.write_text("#!/usr/bin/env node\nrequire('x')\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    node = bin_dir / "node"
    node.write_text("#!/bin/sh\n")
    node.chmod(0o755)
    assert KINDS["pyright"].command(script, str(bin_dir)) == [str(node), str(script), "--stdio"]


def test_encoding_choice_matches_what_each_backend_picks() -> None:
    assert KINDS["ty"].choose_encoding(["utf-8", "utf-16"]) is Encoding.UTF8
    assert KINDS["ty"].choose_encoding(["utf-16"]) is Encoding.UTF16
    assert KINDS["pyrefly"].choose_encoding(["utf-8", "utf-16"]) is Encoding.UTF16
    assert KINDS["pyright"].choose_encoding(None) is Encoding.UTF16


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_recorded_profile(kind: str) -> None:
    caps = KINDS[kind].initialize_profile()["capabilities"]
    assert caps["hoverProvider"] and caps["definitionProvider"]


def test_the_backend_comes_from_the_proxys_own_environment_before_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project's `.venv/bin/ty` on PATH (an activated venv) must not win over our own."""
    project_bin = tmp_path / "project" / ".venv" / "bin"
    project_bin.mkdir(parents=True)
    (project_bin / "ty").write_text("#!/bin/sh\n")
    (project_bin / "ty").chmod(0o755)
    monkeypatch.setenv("PATH", str(project_bin))
    exe = KINDS["ty"].resolve_executable(str(project_bin))
    assert exe is not None and exe.parent == Path(sys.executable).parent


def test_a_missing_executable_resolves_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    missing = dataclasses.replace(KINDS["ty"], executable="definitely-not-installed-ls")
    assert missing.resolve_executable("") is None
    assert f"{sys.executable} -m pip install 'ty'" in missing.install_hint()


def test_the_initialize_answer_follows_what_the_client_declares() -> None:
    """As measured on the real servers (scripts/capture_profiles.py records the variants)."""
    # (pyrefly 1.4 added semantic tokens only for clients that augment syntax tokens; 1.5.1
    # always does: no variant left)
    pull = {"textDocument": {"diagnostic": {"dynamicRegistration": True}}}
    assert "diagnosticProvider" in KINDS["ty"].initialize_profile()["capabilities"]
    assert "diagnosticProvider" not in KINDS["ty"].initialize_profile(pull)["capabilities"]
    # a copy each time: callers adjust it
    KINDS["ty"].initialize_profile()["capabilities"].clear()
    assert KINDS["ty"].initialize_profile()["capabilities"]


def _write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_pyrefly_takes_the_nearest_real_config_before_a_nearer_marker(tmp_path: Path) -> None:
    """pyrefly's three upward searches, each to the root before the next: its own configs,
    then a pyproject.toml of ruff/mypy/pyright, then any marker."""
    app = tmp_path / "repo" / "app"
    app.mkdir(parents=True)
    assert pyrefly_config_dir(app) is None
    _write(tmp_path / "repo" / "mypy.ini")
    assert pyrefly_config_dir(app) == tmp_path / "repo"
    _write(app / "pyproject.toml", "[project]\nname = 'app'\n")
    assert pyrefly_config_dir(app) == app
    _write(tmp_path / "repo" / "pyproject.toml", "[tool.ruff]\n")
    assert pyrefly_config_dir(app) == tmp_path / "repo"  # a Python tool's config first
    _write(app / "pyproject.toml", "[tool.mypy]\n")
    assert pyrefly_config_dir(app) == app
    _write(tmp_path / "pyrefly.toml")
    assert pyrefly_config_dir(app) == tmp_path  # pyrefly's own config above all
    _write(app / "pyproject.toml", "[tool.pyrefly]\n")
    assert pyrefly_config_dir(app) == app
    _write(app / "pyproject.toml", "not toml [")
    assert pyrefly_config_dir(app) == app  # (pyrefly reads it as its own, failing to parse)


def test_only_pyrefly_keeps_a_project_under_anothers_config_out_of_a_shared_process(
    tmp_path: Path,
) -> None:
    app = tmp_path / "app"
    _write(app / "pyproject.toml", "[project]\nname = 'app'\n")
    _write(tmp_path / "pyrefly.toml")
    assert not KINDS["pyrefly"].can_share(app)
    assert all(KINDS[k].can_share(app) for k in ("pyright", "basedpyright", "ty"))
    _write(app / "pyrefly.toml")
    assert KINDS["pyrefly"].can_share(app)


@pytest.mark.parametrize(
    ("config", "text", "shares"),
    [
        ("pyproject.toml", "[project]\nname = 'a'\n", True),
        ("pyproject.toml", "[tool.pyright]\nstrict = ['src']\n", True),
        ("pyproject.toml", "[tool.pyright]\nexclude = ['scripts']\n", False),
        ("pyproject.toml", "[tool.pyright]\ninclude = ['src']\n", False),
        ("pyrightconfig.json", '{"exclude": ["build"]}', False),
        ("pyrightconfig.json", "{not json", False),
    ],
)
def test_a_pyright_project_whose_config_moves_its_tracked_files_does_not_share(
    tmp_path: Path, config: str, text: str, shares: bool
) -> None:
    """A file its own include/exclude leaves out of its folder, a shared pyright answers from
    another folder's environment: such a project (or one whose config cannot be read) gets a
    process of its own; ty, which places files by folder root, shares either way."""
    (tmp_path / config).write_text(text)
    assert KINDS["pyright"].can_share(tmp_path) is shares
    assert KINDS["basedpyright"].can_share(tmp_path) is shares
    assert KINDS["ty"].can_share(tmp_path)


def test_basedpyright_reads_its_own_section_first(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.basedpyright]\nreportAny = false\n[tool.pyright]\nexclude = ['x']\n"
    )
    assert KINDS["basedpyright"].can_share(tmp_path)
    assert not KINDS["pyright"].can_share(tmp_path)
