"""Fixtures for the end-to-end tests: a real monorepo, real backends, the proxy as a real process.

- ``monorepo`` (session): examples/monorepo copied to a temp dir, ``git init``-ed (its git
  toplevel bounds the venv search) and given its venvs by ``typemux_lsp.example.build_venvs``.
  Read-only: tests that change files on disk take ``fresh_monorepo`` instead.
- ``backend``: parametrizes a test over the four type checkers.
- ``shared_proxy`` (session, per backend): one proxy with the Claude Code profile for all tests
  that only open documents and ask questions. Tests that edit documents or end the process start
  their own with ``start_proxy``.
- ``start_proxy`` / ``start_raw_proxy`` / ``start_straight``: factories; every process they start
  is ended (with its whole process tree) when the test ends.

All async fixtures and e2e tests share the session event loop, so session-scoped clients can be
used from any test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import procs
import pytest
import pytest_asyncio
from clients import (
    BACKEND_COMMANDS,
    BACKENDS,
    CLAUDE_CODE,
    REPO_ROOT,
    MuxClient,
    Profile,
    proxy_command,
    proxy_env,
    straight_env,
)
from pytest_asyncio import is_async_test
from rawclient import RawClient

EXAMPLE = REPO_ROOT / "examples" / "monorepo"

if str(REPO_ROOT) not in sys.path:  # typemux_lsp.example, when the package is not installed
    sys.path.insert(0, str(REPO_ROOT))

from typemux_lsp.example import build_venvs  # noqa: E402


def backend_versions() -> dict[str, str]:
    """The installed version of each backend kind (its PyPI distribution's), "missing" when
    not installed: the suite runs against the pinned set and the newest (.ci/run)."""
    found = {}
    for name in BACKENDS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def pytest_report_header(config: pytest.Config) -> str:
    versions = backend_versions()
    return "backends: " + ", ".join(f"{name} {versions[name]}" for name in BACKENDS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failure of a test run against a backend names that backend and its version (the
    newest set changes them without a commit)."""
    report = yield
    marker = item.get_closest_marker("backend")
    if report.failed and marker is not None:
        name = str(marker.args[0])
        report.sections.append(
            ("backend", f"{name} {backend_versions().get(name, '(not a backend kind)')}")
        )
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every e2e test in the session loop, where the session-scoped clients live."""
    session_loop = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if "e2e" not in item.path.parts:
            continue
        if is_async_test(item):
            item.add_marker(session_loop, append=False)
        params = getattr(item, "callspec", None)
        name = params and (params.params.get("backend") or params.params.get("shared_proxy"))
        if name:
            item.add_marker(pytest.mark.backend(name))


# -- the monorepo -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Monorepo:
    """A throwaway copy of examples/monorepo with its venvs built."""

    root: Path

    def path(self, relative: str) -> Path:
        return self.root / relative

    def uri(self, relative: str) -> str:
        return self.path(relative).as_uri()

    def venv(self, project: str) -> Path:
        return self.root / project / ".venv"

    def site_packages(self, project: str) -> Path:
        (found,) = (self.venv(project) / "lib").glob("python*/site-packages")
        return found.resolve()

    def shapes_init(self, project: str) -> Path:
        """Where "go to definition" of ``shapes`` must land for ``project``."""
        return self.site_packages(project) / "shapes" / "__init__.py"


def make_monorepo(dest: Path) -> Monorepo:
    """Copy the example to ``dest``, make it a git repository and build its venvs."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "init", "-q", str(dest)],
        check=True,
        capture_output=True,
    )
    build_venvs(dest)
    return Monorepo(dest.resolve())


@pytest.fixture(scope="session")
def monorepo(tmp_path_factory: pytest.TempPathFactory) -> Monorepo:
    return make_monorepo(tmp_path_factory.mktemp("shared") / "monorepo")


@pytest.fixture
def fresh_monorepo(tmp_path: Path) -> Monorepo:
    """A private copy for tests that change files on disk (e.g. create a venv)."""
    return make_monorepo(tmp_path / "monorepo")


# -- backends and environments ----------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- process tree cleanup ---------------------------------------------------------------------


class Reaper:
    """Remembers every process tree a test started and ends what is left of it."""

    def __init__(self) -> None:
        self.roots: list[int] = []
        self.seen: dict[tuple[int, int], procs.Proc] = {}

    def track(self, pid: int) -> None:
        self.roots.append(pid)

    def snapshot(self) -> list[procs.Proc]:
        """Record the current descendants of all tracked roots; return them."""
        found = [proc for root in self.roots for proc in procs.descendants(root)]
        for proc in found:
            self.seen[(proc.pid, proc.start_time)] = proc
        return found

    def kill_leftovers(self) -> list[procs.Proc]:
        leftovers = [proc for proc in self.seen.values() if proc.alive()]
        procs.kill(leftovers)
        return leftovers


@pytest.fixture
def reaper() -> Iterator[Reaper]:
    reaper = Reaper()
    yield reaper
    reaper.kill_leftovers()


# -- clients ----------------------------------------------------------------------------------


async def _end_client(client: MuxClient, reaper: Reaper) -> None:
    """shutdown/exit politely, then kill whatever remains; never hangs."""
    if client._server is not None:
        reaper.snapshot()
        code = await client.close_session(timeout=15)
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(client.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(client._server.wait(), 10)
    with contextlib.suppress(asyncio.TimeoutError, Exception):
        await asyncio.wait_for(client.stop(), 10)  # type: ignore[no-untyped-call]
    await procs.wait_gone(list(reaper.seen.values()), timeout=5)
    reaper.kill_leftovers()


async def launch_proxy(
    backend: str,
    root: Path,
    profile: Profile = CLAUDE_CODE,
    *,
    args: tuple[str, ...] = (),
    initialize: bool = True,
    env: dict[str, str] | None = None,
) -> MuxClient:
    client = MuxClient(profile, backend=backend)
    await client.start_io(
        *proxy_command(backend, *args),
        cwd=root,
        env=proxy_env() if env is None else env,
        start_new_session=True,
    )
    if initialize:
        await client.start_session(root)
    return client


StartProxy = Callable[..., Awaitable[MuxClient]]


@pytest_asyncio.fixture(loop_scope="session")
async def start_proxy(reaper: Reaper) -> AsyncIterator[StartProxy]:
    """``await start_proxy(backend, root, profile=CLAUDE_CODE, args=(), initialize=True,
    env=None)``."""
    started: list[MuxClient] = []

    async def start(
        backend: str, root: Path, profile: Profile = CLAUDE_CODE, **kwargs: Any
    ) -> MuxClient:
        client = await launch_proxy(backend, root, profile, **kwargs)
        started.append(client)
        reaper.track(client.pid)
        return client

    yield start
    for client in started:
        await _end_client(client, reaper)


@pytest_asyncio.fixture(scope="session", loop_scope="session", params=BACKENDS)
async def shared_proxy(
    request: pytest.FixtureRequest, monorepo: Monorepo
) -> AsyncIterator[MuxClient]:
    """One Claude Code-profile proxy per backend, for tests that do not change anything."""
    reaper = Reaper()
    client = await launch_proxy(str(request.param), monorepo.root)
    reaper.track(client.pid)
    try:
        yield client
    finally:
        await _end_client(client, reaper)


StartRaw = Callable[..., Awaitable[RawClient]]


@pytest_asyncio.fixture(loop_scope="session")
async def start_raw(reaper: Reaper) -> AsyncIterator[StartRaw]:
    """``await start_raw(argv, cwd=..., env=...)``: a raw JSON-RPC client on any command."""
    started: list[RawClient] = []

    async def start(argv: list[str], *, cwd: Path, env: dict[str, str], name: str) -> RawClient:
        client = await RawClient.start(argv, cwd=cwd, env=env, name=name)
        started.append(client)
        reaper.track(client.pid)
        return client

    yield start
    for client in started:
        reaper.snapshot()
        if client.process.returncode is None:
            with contextlib.suppress(Exception):
                await client.shutdown(timeout=10)
        await client.kill()
        # shown by pytest only if the test failed
        sys.stderr.write(f"--- stderr of {client.name} ---\n{client.stderr_text()}\n")
    await procs.wait_gone(list(reaper.seen.values()), timeout=5)


@pytest.fixture
def start_raw_proxy(start_raw: StartRaw) -> Callable[[str, Path], Awaitable[RawClient]]:
    """``await start_raw_proxy(backend, root)``: the proxy behind a raw client (not initialized)."""

    async def start(backend: str, root: Path) -> RawClient:
        return await start_raw(
            proxy_command(backend), cwd=root, env=proxy_env(), name=f"typemux-lsp[{backend}]"
        )

    return start


@pytest.fixture
def start_straight(start_raw: StartRaw) -> Callable[[str, Path], Awaitable[RawClient]]:
    """``await start_straight(backend, project_dir)``: a backend without the proxy.

    cwd is the project, and VIRTUAL_ENV/PATH select the project's own ``.venv``: the reference
    the proxy's answers are compared with.
    """

    async def start(backend: str, project: Path) -> RawClient:
        venv = project / ".venv"
        return await start_raw(
            BACKEND_COMMANDS[backend],
            cwd=project,
            env=straight_env(venv if venv.is_dir() else None),
            name=f"{backend}[straight {project.name}]",
        )

    return start
