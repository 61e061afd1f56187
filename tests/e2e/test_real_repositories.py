"""Real repositories' layouts, real packages from the index, the real tools, the real backends.

The layouts of two public monorepos where typemux-lsp once answered from the wrong
environment (issue 17):

- the MCP python-sdk: a uv workspace whose `members` glob matches
  `examples/servers/simple-tool`, while `examples/pyproject.toml` (a project, no workspace)
  stands between: uv makes the example a project of its own, with its own `.venv`;
- haystack's integrations: Hatch projects (`[tool.hatch.envs.default]`), one with a stray
  `.venv` Hatch never uses, and a template directory whose pyproject says `name = "$pkg"`.

Every environment is made by the tool that owns it (`uv sync`, `hatch env create`) from the
package index, with iniconfig 1.1.1 (`IniConfig(path, data=None)`, a `.pyi` stub) in some and
2.0.0 (`IniConfig(path, data=None, encoding="utf-8")`) in the others: the definition's file
and the hover's signature (`encoding` or not) prove which environment answered, on every
backend. The index must be reachable (the test is skipped,
saying so, when uv cannot reach it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

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

OLD, NEW = "1.1.1", "2.0.0"
SOURCE = "from iniconfig import IniConfig\n\nconfig = IniConfig('setup.cfg', data='')\n"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Case:
    file: Path
    version: str
    #: the environment that must answer (real path)
    prefix: Path


@dataclass(frozen=True)
class RealRepo:
    root: Path
    env: dict[str, str]
    cases: dict[str, Case]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _pyproject(name: str, extra: str = "") -> str:
    return f'[project]\nname = "{name}"\nversion = "0.1"\nrequires-python = ">=3.11"\n{extra}'


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0 and "pypi.org" in done.stderr and "connect" in done.stderr.lower():
        pytest.skip(f"the package index is not reachable: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, f"{args} in {cwd}:\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip()


def _installed(prefix: Path) -> str:
    (site,) = prefix.glob("lib/python3*/site-packages")
    (dist,) = site.glob("iniconfig-*.dist-info")
    return dist.name.removeprefix("iniconfig-").removesuffix(".dist-info")


def build(base: Path) -> RealRepo:
    root = base / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True, capture_output=True)
    tools = base / "tools"
    env = proxy_env()
    for var in list(env):
        if var.startswith(("POETRY_", "PIPENV_", "HATCH_", "PDM_", "CONDA", "UV_", "PIXI")):
            del env[var]
    env.pop("VIRTUAL_ENV", None)
    _write(tools / "hatch-config.toml", "")
    env.update(
        HATCH_DATA_DIR=str(tools / "hatch-data"),
        HATCH_CONFIG=str(tools / "hatch-config.toml"),
        UV_CACHE_DIR=str(tools / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # uv and hatch of the test extra
    )
    uv = str(BIN / "uv")
    cases: dict[str, Case] = {}

    # -- the MCP python-sdk's layout: a uv workspace, an example set apart by examples/ -------
    _write(
        root / "pyproject.toml",
        _pyproject(
            "mcp",
            f'dependencies = ["iniconfig=={NEW}"]\n\n[tool.uv.workspace]\n'
            'members = ["examples/servers/*", "packages/*"]\n',
        ),
    )
    _write(root / "src" / "mcp" / "client.py", SOURCE)
    _write(root / "packages" / "core" / "pyproject.toml", _pyproject("mcp-core"))
    core = _write(root / "packages" / "core" / "core.py", SOURCE)
    _write(root / "examples" / "pyproject.toml", _pyproject("mcp-examples"))
    tool = root / "examples" / "servers" / "simple-tool"
    # uv reads constraint-dependencies only at a workspace root: they apply only when the
    # example is a project of its own, which is what uv makes of it
    _write(
        tool / "pyproject.toml",
        _pyproject(
            "mcp-simple-tool",
            'dependencies = ["iniconfig"]\n\n[tool.uv]\n'
            'constraint-dependencies = ["iniconfig<2"]\n',
        ),
    )
    server = _write(tool / "server.py", SOURCE)
    python = ["--python", sys.executable]  # (never UV_PYTHON: hatch's uv would install there)
    _run([uv, "sync", "-q", *python], root, env)
    _run([uv, "sync", "-q", *python], tool, env)
    cases["uv workspace root"] = Case(root / "src" / "mcp" / "client.py", NEW, root / ".venv")
    cases["uv workspace member"] = Case(core, NEW, root / ".venv")
    cases["example set apart by examples/"] = Case(server, OLD, tool / ".venv")

    # -- haystack's integrations: Hatch projects, a stray .venv, a template ----------------
    qdrant = root / "integrations" / "qdrant"
    _write(
        qdrant / "pyproject.toml",
        _pyproject(
            "qdrant-haystack",
            '[tool.hatch.envs.default]\nskip-install = true\ninstaller = "uv"\n'
            f'dependencies = ["iniconfig=={OLD}"]\n',
        ),
    )
    store = _write(qdrant / "src" / "haystack_integrations" / "qdrant" / "store.py", SOURCE)
    _run(["hatch", "env", "create"], qdrant, env)
    hatch_env = Path(_run(["hatch", "env", "find", "default"], qdrant, env))
    _run(
        [uv, "venv", "-q", *python, str(qdrant / ".venv")], qdrant, env
    )  # stray: Hatch never uses it
    _run(
        [uv, "pip", "install", "-q", "--python", str(qdrant / ".venv"), f"iniconfig=={NEW}"],
        qdrant,
        env,
    )
    cases["hatch integration with a stray .venv"] = Case(store, OLD, hatch_env)
    template = root / "integrations" / "template" / "$pkg"
    _write(
        template / "pyproject.toml",
        '[project]\nname = "$pkg"\nversion = "0.1"\n[tool.hatch.envs.default]\n',
    )
    _write(template / "src" / "component.py", SOURCE)

    for name, case in cases.items():  # each environment holds what the case says it does
        assert _installed(case.prefix) == case.version, name
    resolved = {name: Case(c.file, c.version, c.prefix.resolve()) for name, c in cases.items()}
    return RealRepo(root, env, resolved)


@pytest.fixture(scope="session")
def realrepo(tmp_path_factory: pytest.TempPathFactory) -> RealRepo:
    return build(tmp_path_factory.mktemp("real-repositories"))


@pytest_asyncio.fixture(scope="session", loop_scope="session", params=BACKENDS)
async def real_proxy(
    request: pytest.FixtureRequest, realrepo: RealRepo
) -> AsyncIterator[MuxClient]:
    backend = str(request.param)
    reaper = Reaper()
    client = MuxClient(CLAUDE_CODE, backend=backend)
    await client.start_io(
        *proxy_command(backend), cwd=realrepo.root, env=realrepo.env, start_new_session=True
    )
    reaper.track(client.pid)
    try:
        await client.start_session(realrepo.root)
        yield client
    finally:
        await _end_client(client, reaper)


CASES = [
    "uv workspace root",
    "uv workspace member",
    "example set apart by examples/",
    "hatch integration with a stray .venv",
]


@pytest.mark.parametrize("name", CASES)
async def test_each_file_is_answered_by_the_environment_its_tool_uses(
    real_proxy: MuxClient, realrepo: RealRepo, name: str
) -> None:
    case = realrepo.cases[name]
    uri = real_proxy.open(case.file)
    targets = definition_targets(await real_proxy.definition(uri, "IniConfig("))
    assert targets, f"{name}: no definition"
    paths = {uri_path(target).resolve() for target, _ in targets}
    assert all(p.is_relative_to(case.prefix) for p in paths), (name, case.prefix, paths)
    hover = hover_text(await real_proxy.hover(uri, "IniConfig("))
    assert "data" in hover, (name, hover)  # every backend shows the constructor's signature
    assert ("encoding" in hover) is (case.version == NEW), (name, hover)


def test_the_doctor_sees_the_projects_as_their_tools_do(realrepo: RealRepo) -> None:
    env = {k: v for k, v in realrepo.env.items() if not k.startswith("TYPEMUX_LSP_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "typemux_lsp", "--doctor", "--json", str(realrepo.root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    report = json.loads(done.stdout)
    projects = {Path(p["directory"]): p for p in report["projects"]}
    root = realrepo.root
    tool = root / "examples" / "servers" / "simple-tool"
    assert projects[tool]["environment"] == str(tool / ".venv"), projects[tool]
    assert projects[root / "packages" / "core"]["environment"] == str(root / ".venv")
    qdrant = projects[root / "integrations" / "qdrant"]
    assert qdrant["manager"] == "hatch" and qdrant["environment"] is not None
    assert (
        Path(qdrant["environment"]).resolve()
        == realrepo.cases["hatch integration with a stray .venv"].prefix
    )
    assert not any("$pkg" in str(d) for d in projects), sorted(projects)
    assert report["withoutEnvironment"] == [], report["withoutEnvironment"]
    assert done.returncode == 0, report["problems"]


def test_the_tools_agree(realrepo: RealRepo) -> None:
    """What uv and Hatch themselves say, so the cases above test their rules, not ours."""
    uv = str(BIN / "uv")
    tool = realrepo.root / "examples" / "servers" / "simple-tool"
    for directory, expected in (
        (tool, tool / ".venv"),
        (realrepo.root / "packages" / "core", realrepo.root / ".venv"),
    ):
        prefix = _run(
            [uv, "run", "--no-sync", "python", "-c", "import sys; print(sys.prefix)"],
            directory,
            realrepo.env,
        )
        assert Path(prefix.splitlines()[-1]).resolve() == expected.resolve(), directory
    assert shutil.which("hatch", path=realrepo.env["PATH"]) is not None
