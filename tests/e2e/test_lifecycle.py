"""The proxy ends cleanly and takes every backend process (and their children) with it.

Backends may run in their own process groups, and basedpyright's wrapper starts node, so the
process tree is recorded from /proc while the proxy runs; after the proxy ends, every recorded
process must end too (waited for with pidfds, at most a few seconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import procs
from clients import BACKEND_COMMANDS, CLAUDE_CODE, shares
from rawclient import RawClient

if TYPE_CHECKING:
    from conftest import Monorepo

StartRaw = Callable[[str, Path], Awaitable[RawClient]]

GRACE = 5.0  # seconds the backends get to end after the proxy has exited


async def running_proxy(
    backend: str, monorepo: Monorepo, start_raw_proxy: StartRaw, projects: tuple[str, ...]
) -> tuple[RawClient, list[procs.Proc]]:
    """A proxy with one backend per project running; its process tree."""
    proxy = await start_raw_proxy(backend, monorepo.root)
    init = await proxy.initialize(CLAUDE_CODE.initialize_params(monorepo.root))
    assert "result" in init, init
    uris = [proxy.open(monorepo.path(f"{project}/app.py")) for project in projects]
    await asyncio.gather(*(proxy.wait_for_diagnostics(uri) for uri in uris))
    tree = procs.descendants(proxy.pid)
    executable = Path(BACKEND_COMMANDS[backend][0]).name
    backends = [p for p in tree if executable in {Path(arg).name for arg in p.cmdline.split()}]
    # one per project, or one for all where the kind shares a process (`backend-sharing`)
    expected = 1 if shares(backend) else len(projects)
    assert len(backends) == expected, f"expected {expected} {executable} in {tree}"
    return proxy, tree


async def assert_all_gone(tree: list[procs.Proc]) -> None:
    survivors = await procs.wait_gone(tree, GRACE)
    procs.kill(survivors)
    assert survivors == [], f"left running after the proxy ended: {survivors}"


async def test_shutdown_then_exit(
    backend: str, monorepo: Monorepo, start_raw_proxy: StartRaw
) -> None:
    proxy, tree = await running_proxy(backend, monorepo, start_raw_proxy, ("alpha", "beta"))
    response = await proxy.request("shutdown", timeout=30)
    assert "result" in response, response
    assert response["result"] is None
    proxy.notify("exit")
    assert await proxy.wait(30) == 0
    await assert_all_gone(tree)


async def test_exit_without_shutdown_is_code_1(
    backend: str, monorepo: Monorepo, start_raw_proxy: StartRaw
) -> None:
    proxy, tree = await running_proxy(backend, monorepo, start_raw_proxy, ("alpha",))
    proxy.notify("exit")
    assert await proxy.wait(30) == 1
    await assert_all_gone(tree)


async def test_closing_stdin_ends_everything(
    backend: str, monorepo: Monorepo, start_raw_proxy: StartRaw
) -> None:
    proxy, tree = await running_proxy(backend, monorepo, start_raw_proxy, ("alpha", "beta"))
    proxy.close_stdin()
    await proxy.wait(30)  # any exit code: the client vanished without a word
    await assert_all_gone(tree)
