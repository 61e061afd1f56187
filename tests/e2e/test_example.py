"""The example monorepo and its venv builder, checked with the backends started straight.

These tests do not involve the proxy: they prove the premise every other test relies on. Each
project is clean against its own venv, and alpha's code checked against beta's venv is wrong,
which is why one type checker process cannot serve the whole monorepo.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from clients import BACKEND_COMMANDS, CLAUDE_CODE, straight_env
from rawclient import RawClient

from typemux_lsp.example import build_venvs, find_vendored_projects

if TYPE_CHECKING:
    from conftest import Monorepo

StartRaw = Callable[..., Awaitable[RawClient]]


def test_build_venvs(fresh_monorepo: Monorepo) -> None:
    monorepo = fresh_monorepo
    assert find_vendored_projects(monorepo.root) == [monorepo.path("alpha"), monorepo.path("beta")]
    for project, marker in (("alpha", "shapes 1.x (alpha)"), ("beta", "shapes 2.x (beta)")):
        installed = monorepo.shapes_init(project)
        assert installed.is_relative_to(monorepo.venv(project).resolve())
        assert marker in installed.read_text(encoding="utf-8")
        assert (installed.parent / "py.typed").is_file()
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        assert installed.parent.parent.name == "site-packages"
        assert installed.parent.parent.parent.name == version
    assert not monorepo.venv("gamma").exists()


def test_build_venvs_reuses_and_refreshes(fresh_monorepo: Monorepo) -> None:
    monorepo = fresh_monorepo
    config = monorepo.venv("alpha") / "pyvenv.cfg"
    created = config.stat().st_mtime_ns
    vendored = monorepo.path("alpha/vendor/shapes/__init__.py")
    vendored.write_text(vendored.read_text(encoding="utf-8") + "\nVERSION = 1\n", "utf-8")

    assert build_venvs(monorepo.root) == [monorepo.venv("alpha"), monorepo.venv("beta")]
    assert config.stat().st_mtime_ns == created  # the venv was kept
    assert "VERSION = 1" in monorepo.shapes_init("alpha").read_text(encoding="utf-8")


def test_build_venvs_repairs_a_broken_venv(fresh_monorepo: Monorepo) -> None:
    monorepo = fresh_monorepo
    (monorepo.venv("beta") / "bin" / "python").unlink()
    build_venvs(monorepo.root)
    assert (monorepo.venv("beta") / "bin" / "python").exists()
    assert monorepo.shapes_init("beta").is_file()


async def diagnostics_of(
    start_raw: StartRaw, backend: str, root: Path, venv: Path, file: Path
) -> list[dict[str, object]]:
    """Diagnostics of ``file`` from ``backend`` started straight in ``root`` with ``venv``."""
    client = await start_raw(
        BACKEND_COMMANDS[backend], cwd=root, env=straight_env(venv), name=f"{backend}[straight]"
    )
    await client.initialize(CLAUDE_CODE.initialize_params(root))
    uri = client.open(file)
    # pyright-family publish once analysis is done; pyrefly may publish an early empty list
    # before its configuration settles, so wait for a hover (answered after analysis) too.
    diagnostics = await client.wait_for_diagnostics(uri)
    await client.request(
        "textDocument/hover",
        {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}},
    )
    latest = client.last_diagnostics(uri)
    assert isinstance(latest, list)
    return latest if latest else diagnostics


@pytest.mark.parametrize("project", ["alpha", "beta"])
async def test_project_is_clean_against_its_own_venv(
    backend: str, monorepo: Monorepo, start_raw: StartRaw, project: str
) -> None:
    root = monorepo.path(project)
    diagnostics = await diagnostics_of(
        start_raw, backend, root, monorepo.venv(project), root / "app.py"
    )
    assert diagnostics == []


async def test_alpha_against_beta_venv_is_wrong(
    backend: str, monorepo: Monorepo, start_raw: StartRaw, tmp_path: Path
) -> None:
    """The failure typemux-lsp exists to prevent: one process, the other project's venv.

    alpha is copied without its ``.venv`` (basedpyright would prefer ``<root>/.venv``) and
    checked with beta's venv, inside its own root (ty does not report on files outside it).
    """
    root = tmp_path / "alpha"
    shutil.copytree(monorepo.path("alpha"), root, ignore=shutil.ignore_patterns(".venv"))
    file = root / "app.py"
    client = await start_raw(
        BACKEND_COMMANDS[backend],
        cwd=root,
        env=straight_env(monorepo.venv("beta")),
        name=f"{backend}[straight alpha, beta venv]",
    )
    await client.initialize(CLAUDE_CODE.initialize_params(root))
    uri = client.open(file)
    diagnostics = await client.wait_for_diagnostics(uri, lambda found: bool(found), timeout=60)
    messages = " ".join(str(d["message"]) for d in diagnostics)
    assert "area" in messages, diagnostics
