"""Every kind of environment, end to end on the four real backends.

One repository holds a project per manager, each with an environment built offline the way
that manager lays it out (a Poetry cache venv, a Pipenv WORKON_HOME venv, Hatch's data
directory, a PDM `.pdm-python`, conda and pixi prefixes without pyvenv.cfg, a uv workspace, a
PEP 832 redirect file, a PEP 723 script environment made by `uv sync --script`, a typemux-lsp
rule). Neighbouring projects hold different APIs of the same import name `shapes` (1.x: an
`area()` function; 2.x: a `Circle` class), so a file answered from any other environment shows
the wrong signature, an unresolved import, or a definition in the wrong place.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import envkit
import pytest
import pytest_asyncio
from clients import (
    BACKENDS,
    CLAUDE_CODE,
    REPO_ROOT,
    MuxClient,
    definition_targets,
    hover_text,
    proxy_command,
    proxy_env,
    uri_path,
)
from conftest import Reaper, _end_client
from pygls.exceptions import JsonRpcException

from typemux_lsp.environments.names import hatch_project_id, pipenv_env_name, poetry_env_name

V1 = REPO_ROOT / "examples" / "monorepo" / "alpha" / "vendor"  # shapes 1.x: area()
V2 = REPO_ROOT / "examples" / "monorepo" / "beta" / "vendor"  # shapes 2.x: Circle
V1_FILE = "from shapes import area\n\nprint(area(2.0))\n"
V2_FILE = "from shapes import Circle\n\nprint(Circle(3.0).area())\n"
AREA_V1 = "def area(radius: float) -> float"
CIRCLE_V2_DOC = "A circle that knows its own area."
REQUEST_FAILED = -32803
SCRIPT = """\
# /// script
# requires-python = ">=3.11"
# dependencies = []
# ///
from shapes import area

print(area(2.0))
"""


@dataclass(frozen=True)
class Case:
    """A project's file, the API its environment holds, and that environment's real path."""

    file: str
    api: int
    prefix: Path
    manager: str


@dataclass(frozen=True)
class EnvRepo:
    root: Path
    env: dict[str, str]
    cases: dict[str, Case]


def _project(directory: Path, api: int, **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    (directory / "app.py").write_text(V1_FILE if api == 1 else V2_FILE)
    return directory / "app.py"


def _venv(prefix: Path, api: int) -> Path:
    envkit.real_venv(prefix)
    envkit.install(prefix, V1 if api == 1 else V2)
    return prefix


def _conda(prefix: Path, api: int) -> Path:
    envkit.real_conda(prefix)
    envkit.install(prefix, V1 if api == 1 else V2)
    return prefix


def build(base: Path) -> EnvRepo:
    """The repository, its environments, and the proxy's environment variables."""
    root = base / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True, capture_output=True)
    tools = base / "tools"
    env = proxy_env()
    for var in list(env):
        if var.startswith(("POETRY_", "PIPENV_", "HATCH_", "PDM_", "CONDA", "UV_", "PIXI")):
            del env[var]
    env.update(
        POETRY_CACHE_DIR=str(tools / "poetry-cache"),
        POETRY_CONFIG_DIR=str(tools / "poetry-config"),
        WORKON_HOME=str(tools / "workon"),
        HATCH_DATA_DIR=str(tools / "hatch-data"),
        HATCH_CONFIG=str(tools / "hatch-config.toml"),
        CONDA_ENVS_PATH=str(tools / "conda-envs"),
        UV_CACHE_DIR=str(tools / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        XDG_CONFIG_HOME=str(tools / "xdg-config"),
    )
    cases: dict[str, Case] = {}

    def case(name: str, file: Path, api: int, prefix: Path, manager: str) -> None:
        cases[name] = Case(str(file.relative_to(root)), api, prefix.resolve(), manager)

    poetry = root / "poetry-app"
    file = _project(poetry, 1, **{"pyproject.toml": "[tool.poetry]\nname = 'poetry-app'\n"})
    name = poetry_env_name("poetry-app", os.path.realpath(poetry))
    venvs = tools / "poetry-cache" / "virtualenvs"
    case("poetry", file, 1, _venv(venvs / f"{name}-py{envkit.VERSION}", 1), "poetry")

    pdm_env = _venv(tools / "pdm-envs" / "pdm-app-3.11", 2)
    file = _project(
        root / "pdm-app",
        2,
        **{"pyproject.toml": "[project]\nname='pdm-app'\n", ".pdm-python": f"{pdm_env}/bin/python"},
    )
    case("pdm", file, 2, pdm_env, "pdm")

    hatch = root / "hatch-app"
    file = _project(
        hatch, 1, **{"pyproject.toml": "[project]\nname='hatch-app'\n[tool.hatch.envs.default]\n"}
    )
    pid = hatch_project_id(os.path.realpath(hatch))
    prefix = tools / "hatch-data" / "env" / "virtual" / "hatch-app" / pid / "hatch-app"
    case("hatch", file, 1, _venv(prefix, 1), "hatch")

    pipenv = root / "pipenv-app"
    file = _project(pipenv, 2, Pipfile="[packages]\n")
    prefix = _venv(tools / "workon" / pipenv_env_name(os.path.realpath(pipenv)), 2)
    case("pipenv", file, 2, prefix, "pipenv")

    file = _project(root / "conda-app", 1, **{"environment.yml": "name: shapes-one\n"})
    case("conda", file, 1, _conda(tools / "conda-envs" / "shapes-one", 1), "conda")

    pixi = root / "pixi-app"
    file = _project(pixi, 2, **{"pixi.toml": "[workspace]\nname = 'pixi-app'\n"})
    case("pixi", file, 2, _conda(pixi / ".pixi" / "envs" / "default", 2), "pixi")

    workspace = root / "ws"
    _project(
        workspace,
        2,
        **{"pyproject.toml": "[project]\nname='ws'\n[tool.uv.workspace]\nmembers=['packages/*']\n"},
    )
    ws_env = _venv(workspace / ".venv", 2)
    member = workspace / "packages" / "member"
    file = _project(member, 2, **{"pyproject.toml": "[project]\nname='member'\n"})
    _venv(member / ".venv", 1)  # stale: from before the workspace; uv never uses it
    case("uv-workspace member", file, 2, ws_env, "uv-workspace")

    linked = root / "linked-app"
    file = _project(linked, 2)
    (linked / ".venv").symlink_to(_venv(tools / "linked-env", 2))  # the project stays put
    case("symlinked .venv", file, 2, tools / "linked-env", "venv")

    redirect = root / "redirect-app"
    file = _project(redirect, 1, **{".venv": ".envs/dev\n"})
    case("pep832", file, 1, _venv(redirect / ".envs" / "dev", 1), "pep832")

    configured = root / "configured"
    file = _project(configured, 1)
    _venv(configured / ".venv", 2)  # the rule wins over the directory
    case("config", file, 1, _venv(root / ".envs" / "configured", 1), "config")
    (root / "pyproject.toml").write_text(
        '[[tool.typemux-lsp.projects]]\npath = "configured"\nenvironment = "../.envs/configured"\n'
    )

    outer = root / "outer"
    outer_env = _venv(outer / ".venv", 2)
    plain = outer / "src" / "pkg"
    plain.mkdir(parents=True)
    (plain / "mod.py").write_text(V2_FILE)
    case("outer's plain subdirectory", plain / "mod.py", 2, outer_env, "venv")
    _project(outer / "inner", 1, **{"pyproject.toml": "[project]\nname = 'inner'\n"})

    _project(root / "poetry-missing", 1, **{"pyproject.toml": "[tool.poetry]\nname = 'nothing'\n"})

    scripts = root / "scripts"
    scripts.mkdir()
    script = scripts / "tool.py"
    script.write_text(SCRIPT)
    uv = Path(sys.executable).parent / "uv"
    sync = {**env, "UV_PYTHON": sys.executable}
    subprocess.run(
        [str(uv), "--offline", "sync", "--script", str(script)],
        check=True,
        capture_output=True,
        env=sync,
        timeout=120,
    )
    found = subprocess.run(
        [str(uv), "--offline", "python", "find", "--script", str(script)],
        check=True,
        capture_output=True,
        text=True,
        env=sync,
        timeout=60,
    )
    script_env = Path(found.stdout.strip()).parent.parent
    envkit.install(script_env, V1)
    case("pep723", script, 1, script_env, "pep723")

    # every environment really resolves `shapes` to its own copy
    for c in cases.values():
        where = envkit.run_python(c.prefix, "import shapes; print(shapes.__file__)")
        assert Path(where).resolve().is_relative_to(c.prefix), (c, where)
    return EnvRepo(root, env, cases)


@pytest.fixture(scope="session")
def envrepo(tmp_path_factory: pytest.TempPathFactory) -> EnvRepo:
    return build(tmp_path_factory.mktemp("environments"))


@pytest_asyncio.fixture(scope="session", loop_scope="session", params=BACKENDS)
async def env_proxy(request: pytest.FixtureRequest, envrepo: EnvRepo) -> AsyncIterator[MuxClient]:
    backend = str(request.param)
    reaper = Reaper()
    client = MuxClient(CLAUDE_CODE, backend=backend)
    await client.start_io(
        *proxy_command(backend, "--max-backends", "16"),
        cwd=envrepo.root,
        env=envrepo.env,
        start_new_session=True,
    )
    reaper.track(client.pid)
    try:
        await client.start_session(envrepo.root)
        yield client
    finally:
        await _end_client(client, reaper)


CASES = [
    "poetry",
    "pdm",
    "hatch",
    "pipenv",
    "conda",
    "pixi",
    "uv-workspace member",
    "pep832",
    "symlinked .venv",
    "config",
    "outer's plain subdirectory",
    "pep723",
]


@pytest.mark.parametrize("name", CASES)
async def test_each_file_is_answered_from_its_own_environment(
    env_proxy: MuxClient, envrepo: EnvRepo, name: str
) -> None:
    case = envrepo.cases[name]
    uri = env_proxy.open(envrepo.root / case.file)
    if case.api == 1:
        hover = hover_text(await env_proxy.hover(uri, "area(2.0)"))
        assert AREA_V1 in hover, hover
        targets = definition_targets(await env_proxy.definition(uri, "area(2.0)"))
    else:
        hover = hover_text(await env_proxy.hover(uri, "Circle"))
        assert "class" in hover and CIRCLE_V2_DOC in hover, hover
        targets = definition_targets(await env_proxy.definition(uri, "Circle"))
    assert targets, f"{name}: no definition"
    paths = {uri_path(target).resolve() for target, _ in targets}
    assert all(p.is_relative_to(case.prefix) for p in paths), (name, case.prefix, paths)
    # the import resolved, and the backend's diagnostics reach the file as the client spells it
    assert await env_proxy.wait_for_diagnostics(uri, lambda d: d == [], timeout=30) == []


async def test_a_nested_project_without_environment_gets_the_error_not_the_outer_one(
    env_proxy: MuxClient, envrepo: EnvRepo
) -> None:
    inner = envrepo.root / "outer" / "inner"
    uri = env_proxy.open(inner / "app.py")
    with pytest.raises(JsonRpcException) as caught:
        await env_proxy.hover(uri, "area(2.0)")
    error = caught.value
    assert error.code == REQUEST_FAILED, error
    assert "no .venv found" in error.message and f"cd {inner} && uv sync" in error.message
    assert str(inner / "app.py") in error.message


async def test_a_declared_manager_without_environment_gets_the_error_with_its_fix(
    env_proxy: MuxClient, envrepo: EnvRepo
) -> None:
    project = envrepo.root / "poetry-missing"
    uri = env_proxy.open(project / "app.py")
    with pytest.raises(JsonRpcException) as caught:
        await env_proxy.hover(uri, "area(2.0)")
    message = caught.value.message
    assert caught.value.code == REQUEST_FAILED
    assert "Poetry project" in message and f"`cd {project} && poetry install`" in message
    assert "poetry-cache/virtualenvs/nothing-" in message  # where it looked


async def test_status_shows_each_backends_environment_kind(
    env_proxy: MuxClient, envrepo: EnvRepo
) -> None:
    for name in ("pixi", "poetry"):
        uri = env_proxy.open(envrepo.root / envrepo.cases[name].file)
        await env_proxy.hover(uri, "Circle" if envrepo.cases[name].api == 2 else "area(2.0)")
    state = await env_proxy.request(
        "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
    )
    # each project a backend serves (its own, or a shared one's folder)
    kinds = {p["manager"]: p for b in state["backends"] for p in b["projects"]}
    assert {"pixi", "poetry"} <= set(kinds), state["backends"]
    assert kinds["pixi"]["foundBy"].startswith("pixi project (pixi.toml)")
    assert kinds["poetry"]["venv"].endswith(envrepo.cases["poetry"].prefix.name)
