"""One section per locator: where each manager keeps a project's environment, and the strict
error (manager, where it looked, the exact fix) when the project declares it but it is not
there. Every test runs in a private home (the `home` fixture): no configuration of the
developer's own tools can leak in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from envkit import VERSION, fake_conda, fake_venv, real_venv

from typemux_lsp.environments import Environment, Lookup, clear_cache, find_environment
from typemux_lsp.environments.locators import LOCATORS, pep723
from typemux_lsp.environments.names import (
    hatch_project_id,
    pdm_env_prefix,
    pipenv_env_name,
    poetry_env_name,
)


def env_of(path: Path) -> Environment:
    lookup = find_environment(path)
    assert lookup.environment is not None, lookup
    return lookup.environment


def missing(path: Path, manager: str, fix: str) -> Lookup:
    lookup = find_environment(path)
    assert lookup.environment is None, lookup.environment
    assert lookup.missing is not None, lookup
    assert lookup.missing.manager == manager, lookup.missing
    message = lookup.missing.message(path)
    assert fix in message, message
    return lookup


def project(directory: Path, pyproject: str = "", **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if pyproject:
        (directory / "pyproject.toml").write_text(pyproject)
    for name, text in files.items():
        (directory / name.replace("__", ".")).write_text(text)
    return directory


def test_the_registry_is_in_the_documented_order() -> None:
    assert [loc.manager for loc in LOCATORS] == [
        "config",
        "pep723",
        "uv-workspace",
        "venv",
        "pixi",
        "poetry",
        "pdm",
        "hatch",
        "conda",
        "pipenv",
        "editable",
    ]


# -- uv workspaces ---------------------------------------------------------------------------------

WORKSPACE = """\
[project]
name = "root"

[tool.uv.workspace]
members = ["packages/*"]
exclude = ["packages/legacy"]
"""


def test_a_workspace_member_uses_the_root_environment_not_its_stale_venv(repo: Path) -> None:
    project(repo, WORKSPACE)
    root_env = fake_venv(repo / ".venv")
    member = project(repo / "packages" / "api", "[project]\nname = 'api'\n")
    fake_venv(member / ".venv")  # stale, from before the workspace: uv never uses it
    found = env_of(member / "api.py")
    assert (found.path, found.manager, found.project_dir) == (root_env, "uv-workspace", repo)
    assert f"{member} is a member of the uv workspace at {repo}" in found.found_by
    assert env_of(repo / "main.py").manager == "uv-workspace"


def test_a_member_whose_workspace_has_no_environment_gets_the_error(repo: Path) -> None:
    project(repo, WORKSPACE)
    member = project(repo / "packages" / "api", "[project]\nname = 'api'\n")
    fake_venv(member / ".venv")
    lookup = missing(member / "api.py", "uv-workspace", f"`cd {repo} && uv sync`")
    assert lookup.missing is not None and "is not used" in lookup.missing.reason


def test_an_excluded_or_unmatched_directory_is_not_a_member(repo: Path) -> None:
    project(repo, WORKSPACE)
    fake_venv(repo / ".venv")
    legacy = project(repo / "packages" / "legacy", "[project]\nname = 'legacy'\n")
    own = fake_venv(legacy / ".venv")
    assert env_of(legacy / "l.py").path == own
    tool = project(repo / "tools" / "x", "[project]\nname = 'x'\n")
    assert find_environment(tool / "x.py").environment is None


def test_uv_project_environment_moves_the_workspace_environment(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(repo, WORKSPACE)
    fake_venv(repo / ".venv")
    moved = fake_venv(repo / "build" / "env")
    member = project(repo / "packages" / "api", "[project]\nname = 'api'\n")
    monkeypatch.setenv("UV_PROJECT_ENVIRONMENT", "build/env")
    assert env_of(member / "api.py").path == moved


def test_a_project_nested_in_a_non_workspace_project_is_its_own(repo: Path) -> None:
    """The MCP python-sdk layout: the root's members glob matches examples/servers/x, but
    examples/pyproject.toml (a project, no workspace) is the first pyproject.toml above it, so
    uv says "Project is contained in non-workspace project" and makes x a project of its own."""
    project(
        repo, "[project]\nname = 'sdk'\n[tool.uv.workspace]\nmembers = ['examples/servers/*']\n"
    )
    fake_venv(repo / ".venv")
    project(repo / "examples", "[project]\nname = 'examples'\n")
    tool = project(repo / "examples" / "servers" / "simple-tool", "[project]\nname = 't'\n")
    lookup = missing(tool / "server.py", "uv", f"`cd {tool} && uv sync`")
    assert lookup.missing is not None
    assert f"{repo / 'examples' / 'pyproject.toml'} (a project)" in lookup.missing.reason
    assert f"not as a member of the uv workspace at {repo}" in lookup.missing.reason
    own = fake_venv(tool / ".venv")
    found = env_of(tool / "server.py")
    assert (found.path, found.project_dir) == (own, tool)


def test_a_tool_only_pyproject_between_member_and_root_also_sets_it_apart(repo: Path) -> None:
    project(repo, WORKSPACE)
    fake_venv(repo / ".venv")
    (repo / "packages" / "group").mkdir(parents=True)
    (repo / "packages" / "group" / "pyproject.toml").write_text("[tool.ruff]\n")
    (repo / "packages" / "pyproject.toml").write_text("[tool.ruff]\n")
    member = project(repo / "packages" / "api", "[project]\nname = 'api'\n")
    own = fake_venv(member / ".venv")
    assert env_of(member / "api.py").path == own  # packages/pyproject.toml comes first


def test_a_member_marked_unmanaged_is_not_in_the_workspace(repo: Path) -> None:
    project(repo, WORKSPACE)
    fake_venv(repo / ".venv")
    member = project(
        repo / "packages" / "api", "[project]\nname = 'api'\n[tool.uv]\nmanaged = false\n"
    )
    own = fake_venv(member / ".venv")
    assert env_of(member / "api.py").path == own


def test_workspace_globs_match_as_uv_matches_them(repo: Path) -> None:
    """members: `*` stops at `/`, `**` spans directories; exclude: `*` crosses `/`."""
    project(
        repo,
        "[project]\nname = 'r'\n[tool.uv.workspace]\n"
        "members = ['libs/*', 'apps/**/svc', './tools/*', 'old/**']\nexclude = ['old/*']\n",
    )
    root_env = fake_venv(repo / ".venv")
    cases = {
        "libs/a": True,
        "libs/group/a": False,  # `*` does not cross `/` in members
        "apps/svc": True,  # `**` spans zero directories
        "apps/x/y/svc": True,
        "tools/t": True,  # ./ dropped
        "old/group/a": False,  # `*` crosses `/` in exclude
    }
    for relative, member in cases.items():
        directory = project(repo / relative, "[project]\nname = 'm'\n")
        fake_venv(directory / ".venv")
        found = env_of(directory / "m.py")
        assert (found.path == root_env) is member, relative


# -- pixi ----------------------------------------------------------------------------------------


def test_pixi_default_environment(repo: Path) -> None:
    project(repo, pixi__toml="[workspace]\nname = 'p'\n")
    prefix = fake_conda(repo / ".pixi" / "envs" / "default")
    found = env_of(repo / "m.py")
    assert (found.path, found.manager, found.is_venv) == (prefix, "pixi", False)


def test_pixi_in_pyproject_and_missing(repo: Path) -> None:
    project(repo, "[project]\nname = 'p'\n[tool.pixi.workspace]\nchannels = []\n")
    missing(repo / "m.py", "pixi", f"`cd {repo} && pixi install`")
    fake_conda(repo / ".pixi" / "envs" / "default")
    assert env_of(repo / "m.py").manager == "pixi"


def test_pixi_environment_beats_a_stray_venv(repo: Path) -> None:
    project(repo, pixi__toml="[workspace]\nname = 'p'\n")
    stray = fake_venv(repo / ".venv")
    assert env_of(repo / "m.py").path == stray  # pixi has made nothing yet
    prefix = fake_conda(repo / ".pixi" / "envs" / "default")
    assert (env_of(repo / "m.py").path, env_of(repo / "m.py").manager) == (prefix, "pixi")


# -- Poetry ----------------------------------------------------------------------------------------

POETRY = """\
[project]
name = "Poetry_Demo"

[build-system]
requires = ["poetry-core>=2"]
build-backend = "poetry.core.masonry.api"
"""


def poetry_name(directory: Path, name: str = "Poetry_Demo") -> str:
    return poetry_env_name(name, os.path.realpath(directory))


def test_poetry_environment_in_its_cache_directory(repo: Path, home: Path) -> None:
    project(repo, POETRY)
    cache = home / ".cache" / "pypoetry" / "virtualenvs"
    env = fake_venv(cache / f"{poetry_name(repo)}-py{VERSION}")
    found = env_of(repo / "m.py")
    assert (found.path, found.manager, found.project_dir) == (env, "poetry", repo)


def test_poetry_settings_in_poetry_precedence(
    repo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POETRY_* variables > the project's poetry.toml > the user's config.toml."""
    project(repo, POETRY)
    name = f"{poetry_name(repo)}-py{VERSION}"
    user = fake_venv(home / "user-venvs" / name)
    local = fake_venv(repo.parent / "local-venvs" / name)
    env = fake_venv(repo.parent / "env-venvs" / name)
    config = home / ".config" / "pypoetry"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(f'[virtualenvs]\npath = "{home / "user-venvs"}"\n')
    assert env_of(repo / "m.py").path == user
    (repo / "poetry.toml").write_text(f'[virtualenvs]\npath = "{local.parent}"\n')
    assert env_of(repo / "m.py").path == local
    monkeypatch.setenv("POETRY_VIRTUALENVS_PATH", str(env.parent))
    clear_cache()
    assert env_of(repo / "m.py").path == env


def test_poetry_cache_dir_placeholder_and_config_dir(
    repo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(repo, "[tool.poetry]\nname = 'legacy-name'\nversion = '1'\n")
    config = home / "poetry-config"
    config.mkdir()
    (config / "config.toml").write_text(f'cache-dir = "{home / "pcache"}"\n')
    monkeypatch.setenv("POETRY_CONFIG_DIR", str(config))
    clear_cache()
    name = poetry_name(repo, "legacy-name")
    env = fake_venv(home / "pcache" / "virtualenvs" / f"{name}-py{VERSION}")
    assert env_of(repo / "m.py").path == env


def test_poetry_envs_toml_chooses_among_several(repo: Path, home: Path) -> None:
    project(repo, POETRY)
    cache = home / ".cache" / "pypoetry" / "virtualenvs"
    name = poetry_name(repo)
    fake_venv(cache / f"{name}-py3.11")
    chosen = fake_venv(cache / f"{name}-py3.12")
    lookup = missing(repo / "m.py", "poetry", "poetry env use")
    assert lookup.missing is not None and "several environments" in lookup.missing.reason
    (cache / "envs.toml").write_text(f'[{name}]\nminor = "3.12"\npatch = "3.12.1"\n')
    assert env_of(repo / "m.py").path == chosen


def test_poetry_without_environment(repo: Path, home: Path) -> None:
    project(repo, POETRY, poetry__lock="")
    lookup = missing(repo / "m.py", "poetry", f"`cd {repo} && poetry install`")
    assert lookup.missing is not None
    assert any("pypoetry/virtualenvs" in str(p) for p in lookup.missing.looked)


def test_poetry_in_project_true_and_create_false(
    repo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(repo, POETRY, poetry__toml="[virtualenvs]\nin-project = true\n")
    fake_venv(home / ".cache" / "pypoetry" / "virtualenvs" / f"{poetry_name(repo)}-py{VERSION}")
    lookup = missing(repo / "m.py", "poetry", "poetry install")
    assert lookup.missing is not None and "in-project = true" in lookup.missing.reason
    fake_venv(repo / ".venv")
    assert env_of(repo / "m.py").path == repo / ".venv"
    (repo / "poetry.toml").write_text("[virtualenvs]\ncreate = false\n")
    import shutil

    shutil.rmtree(repo / ".venv")
    monkeypatch.setenv("POETRY_VIRTUALENVS_IN_PROJECT", "0")
    lookup = missing(repo / "m.py", "poetry", "environment = ")
    assert lookup.missing is not None and "virtualenvs.create = false" in lookup.missing.reason


def test_poetry_in_project_false_ignores_a_stray_venv(
    repo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Poetry's `in_project_venv_exists()` is false with in-project = false: its cache
    environment answers, whichever of poetry.toml, the user's config or the variable says so."""
    project(repo, POETRY)
    stray = fake_venv(repo / ".venv")
    cached = fake_venv(
        home / ".cache" / "pypoetry" / "virtualenvs" / f"{poetry_name(repo)}-py{VERSION}"
    )
    assert env_of(repo / "m.py").path == stray  # unset: an existing .venv is Poetry's
    config = home / ".config" / "pypoetry"
    config.mkdir(parents=True)
    (config / "config.toml").write_text("[virtualenvs]\nin-project = false\n")
    found = env_of(repo / "m.py")
    assert (found.path, found.manager) == (cached, "poetry")
    assert "not Poetry's: virtualenvs.in-project = false" in found.found_by
    (repo / "poetry.toml").write_text("[virtualenvs]\nin-project = true\n")
    assert env_of(repo / "m.py").path == stray  # the project's poetry.toml beats the user's
    monkeypatch.setenv("POETRY_VIRTUALENVS_IN_PROJECT", "false")  # the variable beats both
    clear_cache()
    assert env_of(repo / "m.py").path == cached
    import shutil

    shutil.rmtree(cached)
    lookup = missing(repo / "m.py", "poetry", "poetry install")
    assert lookup.missing is not None and repo / ".venv" not in lookup.missing.looked
    assert "not Poetry's" in lookup.missing.reason


# -- PDM -----------------------------------------------------------------------------------------


def test_pdm_python_file_names_the_environment(tmp_path: Path, repo: Path) -> None:
    env = fake_venv(tmp_path / "pdm-envs" / "p-3.11")
    project(repo, "[project]\nname = 'p'\n[tool.pdm]\n", **{"__pdm-python": f"{env}/bin/python\n"})
    found = env_of(repo / "m.py")
    assert (found.path, found.manager) == (env, "pdm")


def test_pdm_python_outside_an_environment_is_refused(tmp_path: Path, repo: Path) -> None:
    system = tmp_path / "usr" / "bin" / "python3"
    system.parent.mkdir(parents=True)
    system.touch()
    project(repo, "[project]\nname = 'p'\n", **{"__pdm-python": str(system)})
    lookup = missing(repo / "m.py", "pdm", "pdm install")
    assert lookup.missing is not None and "__pypackages__" in lookup.missing.reason


def test_pdm_central_environment_and_missing(repo: Path, home: Path) -> None:
    project(repo, "[project]\nname = 'p'\n", pdm__lock="")
    missing(repo / "m.py", "pdm", f"`cd {repo} && pdm install`")
    central = home / ".local" / "share" / "pdm" / "venvs"
    env = fake_venv(central / f"{pdm_env_prefix(os.path.realpath(repo))}3.11")
    assert env_of(repo / "m.py").path == env


def test_pdm_python_beats_a_venv_unless_told_to_ignore_it(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PDM's `resolve_interpreter` takes the saved interpreter first; `.venv` only without it
    (or with `PDM_IGNORE_SAVED_PYTHON`)."""
    env = fake_venv(tmp_path / "pdm-envs" / "p-3.11")
    project(repo, "[project]\nname = 'p'\n[tool.pdm]\n", **{"__pdm-python": f"{env}/bin/python\n"})
    stray = fake_venv(repo / ".venv")
    found = env_of(repo / "m.py")
    assert (found.path, found.manager) == (env, "pdm")
    assert "is not used" in found.found_by
    monkeypatch.setenv("PDM_IGNORE_SAVED_PYTHON", "1")
    clear_cache()
    assert env_of(repo / "m.py").path == stray
    monkeypatch.delenv("PDM_IGNORE_SAVED_PYTHON")
    (repo / ".pdm-python").write_text(f"{stray}/bin/python\n")
    clear_cache()
    assert env_of(repo / "m.py").path == stray


# -- Hatch ---------------------------------------------------------------------------------------


def test_hatch_default_environment_in_its_data_directory(repo: Path, home: Path) -> None:
    project(repo, "[project]\nname = 'My.Tool'\n[tool.hatch.envs.default]\n")
    data = home / ".local" / "share" / "hatch" / "env" / "virtual"
    pid = hatch_project_id(os.path.realpath(repo))
    missing(repo / "m.py", "hatch", f"`cd {repo} && hatch env create`")
    env = fake_venv(data / "my-tool" / pid / "my-tool")
    found = env_of(repo / "m.py")
    assert (found.path, found.manager) == (env, "hatch")


def test_hatch_flat_layout_inside_the_project_and_unmanaged_name(
    repo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(repo, hatch__toml="[envs.default]\n")
    config = home / "hatch.toml"
    config.write_text('[dirs.env]\nvirtual = ".hatch"\n')
    monkeypatch.setenv("HATCH_CONFIG", str(config))
    clear_cache()
    name = f"{hatch_project_id(os.path.realpath(repo))}-unmanaged"
    env = fake_venv(repo / ".hatch" / name)
    assert env_of(repo / "m.py").path == env


def test_hatch_explicit_path(repo: Path) -> None:
    project(repo, "[project]\nname = 'p'\n[tool.hatch.envs.default]\npath = 'envs/dev'\n")
    env = fake_venv(repo / "envs" / "dev")
    assert env_of(repo / "m.py").path == env.resolve()


def test_hatch_setting_or_its_created_environment_beats_a_stray_venv(
    repo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(repo, "[project]\nname = 'p'\n[tool.hatch.envs.default]\n")
    stray = fake_venv(repo / ".venv")
    assert env_of(repo / "m.py").path == stray  # Hatch has made nothing, nothing is set
    data = home / ".local" / "share" / "hatch" / "env" / "virtual"
    made = fake_venv(data / "p" / hatch_project_id(os.path.realpath(repo)) / "p")
    found = env_of(repo / "m.py")
    assert (found.path, found.manager) == (made, "hatch")
    assert "not Hatch's" in found.found_by
    config = home / "hatch.toml"
    config.write_text(f'[dirs.env]\nvirtual = "{home / "hatch-envs"}"\n')
    monkeypatch.setenv("HATCH_CONFIG", str(config))
    clear_cache()
    lookup = missing(repo / "m.py", "hatch", "hatch env create")  # set elsewhere, not there
    configured = fake_venv(
        home / "hatch-envs" / "p" / hatch_project_id(os.path.realpath(repo)) / "p"
    )
    assert env_of(repo / "m.py").path == configured
    (repo / "pyproject.toml").write_text(
        "[project]\nname = 'p'\n[tool.hatch.envs.default]\npath = '.venv'\n"
    )
    assert env_of(repo / "m.py").key == stray.resolve()  # told to use the .venv
    assert lookup.missing is not None


def test_a_uv_project_keeps_its_venv_whatever_hatch_made(repo: Path, home: Path) -> None:
    """`uv sync` uses `.venv`: a project with uv.lock is uv's even with Hatch environments."""
    project(repo, "[project]\nname = 'p'\n[tool.hatch.envs.default]\n", uv__lock="")
    stray = fake_venv(repo / ".venv")
    data = home / ".local" / "share" / "hatch" / "env" / "virtual"
    fake_venv(data / "p" / hatch_project_id(os.path.realpath(repo)) / "p")
    assert env_of(repo / "m.py").path == stray


def test_a_hatchling_build_without_hatch_environments_is_not_a_hatch_project(repo: Path) -> None:
    """uv projects often build with hatchling: no Hatch environment is demanded of them."""
    project(repo, "[project]\nname='p'\n[build-system]\nbuild-backend='hatchling.build'\n")
    lookup = find_environment(repo / "m.py")
    assert lookup.missing is not None and lookup.missing.manager == "venv"


# -- conda ---------------------------------------------------------------------------------------


def test_conda_environment_by_name_in_conda_envs_path(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(repo, environment__yml="name: science\ndependencies:\n  - python=3.11\n")
    missing(repo / "m.py", "conda", f"`cd {repo} && conda env create -f environment.yml`")
    env = fake_conda(tmp_path / "conda-envs" / "science")
    monkeypatch.setenv("CONDA_ENVS_PATH", str(tmp_path / "conda-envs"))
    clear_cache()
    found = env_of(repo / "m.py")
    assert (found.path, found.manager, found.is_venv) == (env, "conda", False)


def test_conda_envs_dirs_from_condarc_and_home(tmp_path: Path, repo: Path, home: Path) -> None:
    project(repo, environment__yaml="name: 'data'\n")
    (home / ".condarc").write_text(f"envs_dirs:\n  - {tmp_path / 'rc-envs'}\n")
    fallback = fake_conda(home / ".conda" / "envs" / "data")
    assert env_of(repo / "m.py").path == fallback
    preferred = fake_conda(tmp_path / "rc-envs" / "data")
    assert env_of(repo / "m.py").path == preferred


def test_conda_prefix_and_no_name(tmp_path: Path, repo: Path) -> None:
    project(repo, environment__yml="channels: [conda-forge]\n")
    lookup = missing(repo / "m.py", "conda", "add `name: <environment>`")
    assert lookup.missing is not None
    env = fake_conda(tmp_path / "prefix-env")
    (repo / "environment.yml").write_text(f"prefix: {env}\n")
    assert env_of(repo / "m.py").path == env
    (repo / "environment.yml").write_text("name: [unclosed\n")
    missing(repo / "m.py", "conda", "not valid YAML")


# -- Pipenv --------------------------------------------------------------------------------------


def test_pipenv_environment_in_workon_home(repo: Path, home: Path) -> None:
    project(repo, Pipfile="[packages]\n")
    missing(repo / "m.py", "pipenv", f"`cd {repo} && pipenv install`")
    prefix = home / ".local" / "share" / "virtualenvs" / pipenv_env_name(os.path.realpath(repo))
    fake_venv(prefix)
    (prefix / ".project").write_text(os.path.realpath(repo))
    found = env_of(repo / "m.py")
    assert (found.path, found.manager) == (prefix, "pipenv")


def test_pipenv_workon_home_and_foreign_project_file(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(repo, Pipfile="[packages]\n")
    monkeypatch.setenv("WORKON_HOME", str(tmp_path / "workon"))
    clear_cache()
    prefix = fake_venv(tmp_path / "workon" / pipenv_env_name(os.path.realpath(repo)))
    assert env_of(repo / "m.py").path == prefix
    (prefix / ".project").write_text("/somewhere/else")
    lookup = missing(repo / "m.py", "pipenv", "pipenv install")
    assert lookup.missing is not None and "another project" in lookup.missing.reason


def test_pipenv_in_project_and_a_venv_file_naming_an_environment(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(repo, Pipfile="[pipenv]\nvenv_in_project = true\n")
    lookup = missing(repo / "m.py", "pipenv", "pipenv install")
    assert lookup.missing is not None and "in the project" in lookup.missing.reason
    monkeypatch.setenv("WORKON_HOME", str(tmp_path / "workon"))
    named = fake_venv(tmp_path / "workon" / "shared-env")
    (repo / ".venv").write_text("shared-env\n")  # pipenv's own .venv file: a name
    clear_cache()
    assert env_of(repo / "m.py").path == named


def test_pipenv_venv_in_project_false_or_its_workon_environment_beats_a_venv(
    repo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pipenv's `get_location`: an explicit false ignores `.venv`; with nothing set, an
    environment pipenv already made in WORKON_HOME is preferred to a `.venv` directory."""
    project(repo, Pipfile="[packages]\n")
    stray = fake_venv(repo / ".venv")
    assert env_of(repo / "m.py").path == stray
    prefix = home / ".local" / "share" / "virtualenvs" / pipenv_env_name(os.path.realpath(repo))
    monkeypatch.setenv("PIPENV_VENV_IN_PROJECT", "0")
    clear_cache()
    lookup = missing(repo / "m.py", "pipenv", "pipenv install")
    assert lookup.missing is not None and "PIPENV_VENV_IN_PROJECT=0" in lookup.missing.reason
    monkeypatch.delenv("PIPENV_VENV_IN_PROJECT")
    (repo / "Pipfile").write_text("[pipenv]\nvenv_in_project = false\n")
    missing(repo / "m.py", "pipenv", "pipenv install")
    fake_venv(prefix)
    assert env_of(repo / "m.py").path == prefix
    (repo / "Pipfile").write_text("[packages]\n")
    found = env_of(repo / "m.py")  # nothing set: pipenv prefers the one it made
    assert (found.path, found.manager) == (prefix, "pipenv")
    monkeypatch.setenv("PIPENV_VENV_IN_PROJECT", "1")
    clear_cache()
    assert env_of(repo / "m.py").path == stray


def test_pipenv_reads_an_empty_venv_file_as_no_redirect(repo: Path, home: Path) -> None:
    """pipenv's `get_location`: an empty `.venv` file leaves the environment in WORKON_HOME."""
    project(repo, Pipfile="[packages]\n", __venv="")
    prefix = home / ".local" / "share" / "virtualenvs" / pipenv_env_name(os.path.realpath(repo))
    missing(repo / "m.py", "pipenv", "pipenv install")
    fake_venv(prefix)
    assert env_of(repo / "m.py").path == prefix


# -- PEP 723 scripts -------------------------------------------------------------------------------

SCRIPT = """\
# /// script
# requires-python = ">=3.11"
# dependencies = []
# ///
import sys
"""


@pytest.fixture
def uv_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    cache = tmp_path / "uv-cache"
    monkeypatch.setenv("UV_CACHE_DIR", str(cache))
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    monkeypatch.setenv("UV_PYTHON", sys.executable)
    if pep723.uv_executable(None) is None:
        pytest.fail("uv is a test dependency (pip install -e '.[test]')")
    return cache


def test_a_script_gets_its_own_environment_once_uv_created_it(repo: Path, uv_cache: Path) -> None:
    fake_venv(repo / ".venv")  # the project's: not the script's
    script = repo / "tool.py"
    script.write_text(SCRIPT)
    lookup = missing(script, "pep723", f"`uv sync --script {script}`")
    assert lookup.project_dir == repo
    uv = pep723.uv_executable(None)
    assert uv is not None
    subprocess.run(
        [str(uv), "--offline", "sync", "--script", str(script)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pep723.clear()  # the negative answer is otherwise re-asked only after RETRY_SECONDS
    found = env_of(script)
    assert found.manager == "pep723" and found.project_dir == repo
    assert found.key.is_relative_to(uv_cache.resolve())
    # a file without a block in the same directory keeps the project's environment
    (repo / "plain.py").write_text("import sys\n")
    assert env_of(repo / "plain.py").path == repo / ".venv"


def test_a_script_answer_is_cached_until_the_file_changes(
    repo: Path, uv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = repo / "tool.py"
    script.write_text(SCRIPT)
    runs: list[Path] = []
    real = pep723._run_uv

    def counted(uv: Path, file: Path, boundary: Path | None) -> tuple[Path | None, str]:
        runs.append(file)
        return real(uv, file, boundary)

    monkeypatch.setattr(pep723, "_run_uv", counted)
    for _ in range(3):
        find_environment(script)
    assert len(runs) == 1  # a script without an environment: uv asked once per RETRY_SECONDS
    script.write_text(SCRIPT + "print(1)\n")
    find_environment(script)
    assert len(runs) == 2


def test_uv_shipped_by_the_repository_is_never_run(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_uv = repo / ".venv" / "bin" / "uv"
    fake_uv.parent.mkdir(parents=True)
    fake_uv.write_text("#!/bin/sh\ntouch ran\n")
    fake_uv.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(repo / "nowhere" / "python"))
    monkeypatch.setenv("PATH", str(fake_uv.parent))
    assert pep723.uv_executable(repo) is None
    assert pep723.uv_executable(None) == fake_uv  # outside any repository it would be a uv


def test_a_relative_path_entry_never_names_the_uv_that_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative PATH entry is relative to whatever the cwd is: a `bin/uv` of the directory
    the proxy happens to run in is never taken for uv."""
    planted = tmp_path / "bin" / "uv"
    planted.parent.mkdir()
    planted.write_text("#!/bin/sh\n")
    planted.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nowhere" / "python"))
    monkeypatch.setenv("PATH", "bin")
    assert pep723.uv_executable(None) is None
    monkeypatch.setenv("PATH", str(planted.parent))
    assert pep723.uv_executable(None) == planted


def test_asking_uv_about_a_script_runs_nothing_of_the_repository(
    tmp_path: Path, repo: Path, uv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uv tries the interpreters it finds while looking for a fallback; started in the
    repository it would run the repository's .venv/bin/python (seen with uv 0.13)."""
    marker = tmp_path / "ran"
    fake = repo / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    (repo / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.7\n")
    monkeypatch.delenv("UV_PYTHON")
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("VIRTUAL_ENV", str(repo / ".venv"))
    script = repo / "tool.py"
    script.write_text(SCRIPT)
    missing(script, "pep723", "uv sync --script")
    assert not marker.exists()


def test_a_script_block_must_be_well_formed() -> None:
    assert pep723.has_script_block(SCRIPT)
    assert not pep723.has_script_block("# /// script\nimport x\n")
    assert not pep723.has_script_block("# /// pyproject\n# x = 1\n# ///\n")


# -- every locator's environment really exists -----------------------------------------------------


def test_found_environments_have_a_working_interpreter(tmp_path: Path, repo: Path) -> None:
    env = real_venv(repo / ".venv")
    found = env_of(repo / "m.py")
    assert found.python.exists() and found.python_version() is not None
    assert found.path == env and found.site_packages()


# -- editable installs: the URL of direct_url.json ------------------------------------------------


def test_an_editable_url_is_a_windows_path_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip writes `file:///C:/Users/me/my%20proj`; on Windows that is `C:\\Users\\me\\my proj`
    (url2pathname), not `/C:/Users/me/my proj`. nturl2path is Windows' url2pathname, importable
    everywhere."""
    import nturl2path
    import urllib.request

    from typemux_lsp.environments.locators import editable

    assert editable.file_url_path("file:///srv/my%20proj") == "/srv/my proj"
    monkeypatch.setattr(editable, "_WINDOWS", True)
    monkeypatch.setattr(urllib.request, "url2pathname", nturl2path.url2pathname)
    assert editable.file_url_path("file:///C:/Users/me/my%20proj") == r"C:\Users\me\my proj"
    assert editable.file_url_path("file://server/share/proj") == r"\\server\share\proj"
    assert editable.file_url_path("file://localhost/C:/proj") == r"C:\proj"
