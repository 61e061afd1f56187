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


# -- uv: which projects are workspace members, asked of the real uv -------------------------------

UV_LAYOUT = {
    # path: pyproject.toml (a plain project unless given); uv must accept the workspace
    ".": "[project]\nname = 'root'\nversion = '0.1'\nrequires-python = '>=3.11'\n"
    "[tool.uv.workspace]\nmembers = ['examples/servers/*', 'packages/*', 'packages/group/*',"
    " 'apps/**/svc']\nexclude = ['packages/legacy', 'packages/group*']\n",
    "examples": "[project]\nname = 'examples'\nversion = '0.1'\n",
    "examples/servers/simple-tool": "",  # contained in the non-workspace project examples
    "packages/api": "",  # a member
    "packages/legacy": "",  # excluded
    "packages/group/deep": "",  # `*` crosses `/` in exclude: excluded
    "apps/x/svc": "",  # `**` spans directories: a member
    "packages/unmanaged": "[tool.uv]\nmanaged = false\n",
    "tooling": "[tool.ruff]\n",
    "tooling/inner": "",  # no workspace lists it
}


def test_uv_workspace_membership_is_uv_s_own(repo: Path, tmp_path: Path) -> None:
    """Each project is synced by the real uv (offline, no dependencies); the environment uv
    then runs the project with is the one typemux-lsp finds, member or not."""
    uv = tool("uv")
    for relative, extra in UV_LAYOUT.items():
        directory = repo / relative
        directory.mkdir(parents=True, exist_ok=True)
        name = directory.name.replace("-", "_") if relative != "." else "root"
        text = (
            extra
            if relative in (".", "examples")
            else (
                f"[project]\nname = '{name}'\nversion = '0.1'\nrequires-python = '>=3.11'\n{extra}"
            )
        )
        (directory / "pyproject.toml").write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PYTHON")}
    env.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_PYTHON_DOWNLOADS="never")
    for relative in UV_LAYOUT:
        directory = repo / relative
        if relative in (".", "examples", "tooling"):
            continue
        if "managed = false" in UV_LAYOUT[relative]:  # uv refuses to sync it: a venv of its own
            subprocess.run(
                [uv, "venv", "-q", "--python", PYTHON], cwd=directory, env=env, check=True
            )
        else:
            subprocess.run(
                [uv, "sync", "--offline", "-q", "--python", PYTHON],
                cwd=directory,
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
        done = subprocess.run(
            [uv, "run", "--offline", "--no-sync", "python", "-c", "import sys; print(sys.prefix)"],
            cwd=directory,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        used = Path(done.stdout.strip().splitlines()[-1])
        assert found(directory / "m.py").key == used.resolve(), relative
    # the members really were members, the others not (so the test tells the cases apart)
    assert found(repo / "packages" / "api" / "m.py").path == repo / ".venv"
    assert found(repo / "apps" / "x" / "svc" / "m.py").path == repo / ".venv"
    for own in (
        "examples/servers/simple-tool",
        "packages/legacy",
        "packages/group/deep",
        "packages/unmanaged",
        "tooling/inner",
    ):
        assert found(repo / own / "m.py").path == repo / own / ".venv", own


# -- each manager's own setting beats a stray .venv, asked of the real managers -----------------


def stray_venv(directory: Path) -> Path:
    subprocess.run(
        [PYTHON, "-m", "venv", "--without-pip", str(directory / ".venv")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return directory / ".venv"


def test_poetry_in_project_false_beats_a_stray_venv(repo: Path) -> None:
    poetry = tool("poetry")
    proj = project(repo / "svc", '[tool.poetry]\nname = "svc"\npackage-mode = false\n')
    stray_venv(proj)
    assert Path(run(poetry, "env", "info", "--path", cwd=proj)) == proj / ".venv"
    assert found(proj / "m.py").path == proj / ".venv"
    run(poetry, "config", "--local", "virtualenvs.in-project", "false", cwd=proj)
    run(poetry, "env", "use", PYTHON, cwd=proj)
    expected = Path(run(poetry, "env", "info", "--path", cwd=proj))
    assert expected != proj / ".venv"
    env = found(proj / "m.py")
    assert (env.path, env.manager) == (expected, "poetry")


def test_pipenv_prefers_its_workon_environment_and_obeys_venv_in_project(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipenv = tool("pipenv")
    proj = repo / "app"
    proj.mkdir()
    (proj / "Pipfile").write_text("[packages]\n")
    run(pipenv, "--python", PYTHON, cwd=proj)
    made = Path(run(pipenv, "--venv", cwd=proj))
    stray_venv(proj)
    assert Path(run(pipenv, "--venv", cwd=proj)) == made  # nothing set: pipenv's own wins
    assert found(proj / "m.py").path == made
    monkeypatch.setenv("PIPENV_VENV_IN_PROJECT", "1")
    assert Path(run(pipenv, "--venv", cwd=proj)) == proj / ".venv"
    assert found(proj / "m.py").path == proj / ".venv"
    monkeypatch.setenv("PIPENV_VENV_IN_PROJECT", "0")
    assert Path(run(pipenv, "--venv", cwd=proj)) == made
    assert found(proj / "m.py").path == made


def test_pdm_python_beats_a_stray_venv(repo: Path, home: Path) -> None:
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
    central = next((home / "pdm-venvs").iterdir())
    run(pdm, "use", "-f", str(central / "bin" / "python"), cwd=proj)
    stray_venv(proj)
    expected = Path(run(pdm, "info", "--python", cwd=proj))
    assert expected.parent.parent == central
    env = found(proj / "m.py")
    assert (env.path, env.manager) == (central, "pdm")


def test_hatch_environment_beats_a_stray_venv(repo: Path) -> None:
    hatch = tool("hatch")
    proj = project(
        repo / "svc",
        '[project]\nname = "svc"\nversion = "0.1"\n'
        "[tool.hatch.envs.default]\nskip-install = true\ndependencies = []\n",
    )
    stray_venv(proj)
    run(hatch, "env", "create", cwd=proj)
    expected = Path(run(hatch, "env", "find", "default", cwd=proj))
    assert expected != proj / ".venv"
    env = found(proj / "m.py")
    assert (env.path, env.manager) == (expected, "hatch")
