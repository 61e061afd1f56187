"""The real managers create an environment; typemux-lsp must find exactly the one each uses.

The strongest check of the computed names and locations: poetry, pipenv, hatch and pdm run
for real (offline: environments without packages), each is asked where its environment is,
and typemux-lsp, which never runs them, must give the same answer. Needs the managers: `pip
install -e '.[managers]'` or `tox -e managers`; a manager that is not installed is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from typemux_lsp.environments import Environment, clear_cache, find_environment

PYTHON = os.path.realpath(sys.executable)


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[managers]')")
    return found


def run(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env.update(PIPENV_YES="1", PDM_CHECK_UPDATE="false", PIPENV_VERBOSITY="-1")
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout.strip()


def found(path: Path) -> Environment:
    clear_cache()
    lookup = find_environment(path)
    assert lookup.environment is not None, lookup
    return lookup.environment


def project(directory: Path, pyproject: str) -> Path:
    directory.mkdir(parents=True)
    (directory / "pyproject.toml").write_text(pyproject)
    return directory


def test_poetry(repo: Path) -> None:
    poetry = tool("poetry")
    proj = project(
        repo / "svc",
        '[project]\nname = "Svc_Poetry"\nversion = "0.1"\n[tool.poetry]\npackage-mode = false\n',
    )
    lookup = find_environment(proj / "m.py")
    assert lookup.missing is not None and lookup.missing.manager == "poetry"
    run(poetry, "env", "use", PYTHON, cwd=proj)
    expected = Path(run(poetry, "env", "info", "--path", cwd=proj))
    assert ".cache/pypoetry/virtualenvs" in str(expected)
    env = found(proj / "m.py")
    assert (env.path, env.manager, env.project_dir) == (expected, "poetry", proj)


def test_poetry_virtualenvs_path_from_the_project(repo: Path) -> None:
    poetry = tool("poetry")
    proj = project(repo / "svc", '[tool.poetry]\nname = "svc"\npackage-mode = false\n')
    run(poetry, "config", "--local", "virtualenvs.path", str(repo.parent / "venvs"), cwd=proj)
    run(poetry, "env", "use", PYTHON, cwd=proj)
    expected = Path(run(poetry, "env", "info", "--path", cwd=proj))
    assert expected.parent == repo.parent / "venvs"
    assert found(proj / "m.py").path == expected


def test_pipenv(repo: Path) -> None:
    pipenv = tool("pipenv")
    proj = repo / "My Pipenv Proj"
    proj.mkdir()
    (proj / "Pipfile").write_text("[packages]\n")
    run(pipenv, "--python", PYTHON, cwd=proj)
    expected = Path(run(pipenv, "--venv", cwd=proj))
    assert ".local/share/virtualenvs" in str(expected)
    env = found(proj / "m.py")
    assert (env.path, env.manager) == (expected, "pipenv")


def test_hatch(repo: Path) -> None:
    hatch = tool("hatch")
    proj = project(
        repo / "svc",
        '[project]\nname = "Svc.Hatch"\nversion = "0.1"\n'
        "[tool.hatch.envs.default]\nskip-install = true\ndependencies = []\n",
    )
    run(hatch, "env", "create", cwd=proj)
    expected = Path(run(hatch, "env", "find", "default", cwd=proj))
    env = found(proj / "m.py")
    assert (env.path, env.manager) == (expected, "hatch")


def test_pdm_central_environment_and_pdm_python(repo: Path, home: Path) -> None:
    pdm = tool("pdm")
    config = home / ".config" / "pdm" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[venv]\nin_project = false\nlocation = "' + str(home / "pdm-venvs") + '"\n')
    proj = project(
        repo / "svc",
        '[project]\nname = "svc"\nversion = "0.1"\nrequires-python = ">=3.11"\n'
        "[tool.pdm]\ndistribution = false\n",
    )
    run(pdm, "venv", "create", PYTHON, cwd=proj)
    created = found(proj / "m.py")  # no .pdm-python yet: the one central environment
    assert created.path.parent == home / "pdm-venvs"
    run(pdm, "use", "-f", str(created.python), cwd=proj)
    assert (proj / ".pdm-python").is_file()
    expected = Path(run(pdm, "info", "--python", cwd=proj))
    env = found(proj / "m.py")
    assert env.python == expected or env.python.resolve() == expected.resolve()
    assert env.manager == "pdm" and ".pdm-python" in env.found_by
