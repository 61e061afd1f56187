"""Real releases swapped under a running backend: seconds from the end of the install to the
right hover, per backend kind and per way of telling it, straight and through typemux-lsp.

bench/freshness.py decided the first policy on one-module fixture packages, which every
backend follows in < 1 s whatever it is told. A real client library is another matter (issue
17: qdrant-client 1.20 <-> 1.17, 146 files, 5.3-7.5 s on pyright). This installs real
releases from the package index into a project's environment, down and up, with
`uv pip install` (the wheels downloaded once with `pip download`, installed offline), and
asks the hover that shows the changed API:

  redis   6.4.0 <-> 7.4.1  (no dependencies; 78 <-> 117 files): `Redis().set` gained
          `ifeq`/`ifne`/... in 7.x, and 7.x adds modules (`maint_notifications`, `multidb/`)
  qdrant  1.17.0 <-> 1.20.0 (with its dependencies; the issue's case):
          `QdrantClient.create_collection` gained `id_tracker`

Layouts: "hatch" (the environment outside the project, as Hatch makes it: pyright then
hears of library changes only through its library watcher) and "venv" (a `.venv` inside
the project).

Mechanisms, straight (the backend started exactly as typemux-lsp starts it; told at once,
no debounce; events are every file and directory the install created, changed or deleted,
found by comparing the tree before and after):
  none       nothing
  events     workspace/didChangeWatchedFiles
  reconfig   events, then workspace/didChangeConfiguration (settings null)
  config     workspace/didChangeConfiguration alone
  reopen     events, then didClose + didOpen of the open document
  restart    shutdown/exit, a new backend, initialize, didOpen
Through typemux-lsp (its watcher, debounce included), the policy forced per run:
  proxy:notify, proxy:reconfigure, proxy:configure (reconfigure, library files left out of
  the events), proxy:restart, proxy:policy (freshness.py as shipped)

Each trial: a fresh project and environment with the new release, a fresh backend, the
document open and analysed (hover shows the new API); then down (install the old release:
hover must lose it) and up (install the new one: hover must show it again). Memory: the
RSS of the backend's process tree at the start and `--settle` seconds after each answer
(pyright re-analyses by its own 5 s library timer meanwhile).

    .venv/bin/python bench/freshness_packages.py [--package redis] [--layout hatch]
        [--backend pyright ...] [--mechanism events proxy:policy ...] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    CountingClient,
    backend_version,
    client_params,
    configuration_answer,
    hover_text,
    load_average,
    machine,
)

from typemux_lsp.backends import KINDS, BackendKind
from typemux_lsp.demo import CLAUDE_CODE_CAPABILITIES
from typemux_lsp.features import backend_initialize_params
from typemux_lsp.venv import Venv

BACKENDS = ("pyright", "basedpyright", "ty", "pyrefly")
POLL_S = 0.05


@dataclass(frozen=True)
class Package:
    """A real release pair and the hover that tells them apart."""

    name: str
    old: str
    new: str
    #: the open document; the hover is asked on the first `needle` of its last line
    main: str
    needle: str
    #: in the hover of the new release only
    new_api: str
    #: in the hover of either release (the backend resolved the package)
    any_api: str
    #: install with dependencies (downloaded once too)
    deps: bool = False

    @property
    def requirements(self) -> tuple[str, str]:
        return f"{self.name}=={self.old}", f"{self.name}=={self.new}"


PACKAGES = {
    "redis": Package(
        "redis",
        "6.4.0",
        "7.4.1",
        "import redis\n\nclient = redis.Redis()\nclient.set('key', 'value')\n",
        "set",
        "ifeq",
        "name",
    ),
    "qdrant": Package(
        "qdrant-client",
        "1.17.0",
        "1.20.0",
        "from qdrant_client import QdrantClient\n\nclient = QdrantClient(':memory:')\n"
        "client.create_collection('c')\n",
        "create_collection",
        "id_tracker",
        "collection_name",
        deps=True,
    ),
}


# -- wheels and environments ---------------------------------------------------------------------


def download(package: Package, wheels: Path) -> None:
    """Both releases' wheels (and their dependencies' when needed), once, from the index."""
    for requirement in package.requirements:
        command = [sys.executable, "-m", "pip", "download", "-q", "--only-binary", ":all:"]
        if not package.deps:
            command.append("--no-deps")
        subprocess.run([*command, "-d", str(wheels), requirement], check=True)


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        raise SystemExit("bench: uv not found (pip install uv)")
    return found


def install(env: Path, requirement: str, wheels: Path, cache: Path) -> float:
    """`uv pip install` from the downloaded wheels only; seconds it took."""
    begin = time.perf_counter()
    subprocess.run(
        [
            *(uv(), "pip", "install", "-q", "--offline", "--no-index"),
            *("--find-links", str(wheels), "--cache-dir", str(cache)),
            *("--python", str(env / "bin" / "python"), requirement),
        ],
        check=True,
    )
    return time.perf_counter() - begin


def make_project(root: Path, layout: str, package: Package, wheels: Path, cache: Path) -> Venv:
    """A project whose environment holds the new release: Hatch's (outside the project) or
    a `.venv` inside it."""
    project = root / "app"
    project.mkdir(parents=True)
    pyproject = f'[project]\nname = "app"\nversion = "0.1.0"\ndependencies = ["{package.name}"]\n'
    if layout == "hatch":
        env = root / "hatch-envs" / "app"
        pyproject += '\n[tool.hatch.envs.default]\npath = "../hatch-envs/app"\n'
    else:
        env = project / ".venv"
    (project / "pyproject.toml").write_text(pyproject)
    (project / "main.py").write_text(package.main)
    subprocess.run(
        [uv(), "venv", "-q", "--python", sys.executable, str(env)],
        check=True,
        env=dict(os.environ, UV_CACHE_DIR=str(cache)),
    )
    install(env, package.requirements[1], wheels, cache)
    return Venv(env, project_dir=project, manager="hatch" if layout == "hatch" else "venv")


Snapshot = dict[Path, tuple[int, int, int]]


def snapshot(directories: Sequence[Path]) -> Snapshot:
    """Every file and directory below `directories`: (inode, mtime, size)."""
    found: Snapshot = {}
    for top in directories:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for name in [*dirnames, *filenames]:
                path = Path(dirpath, name)
                with contextlib.suppress(OSError):
                    st = path.lstat()
                    found[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return found


def events(before: Snapshot, after: Snapshot) -> list[dict[str, Any]]:
    """What changed between two snapshots, as LSP file events (1 created, 2 changed, 3
    deleted): what a watcher that saw every step would report."""
    out = []
    for path in sorted(before.keys() | after.keys()):
        if path not in after:
            kind = 3
        elif path not in before:
            kind = 1
        elif before[path] != after[path]:
            kind = 2
        else:
            continue
        out.append({"uri": path.as_uri(), "type": kind})
    return out


# -- the clients ---------------------------------------------------------------------------------


def tree_rss_kib(pid: int | None, *, alone: bool = False) -> int:
    """RSS of a process and all its descendants (basedpyright runs node as a child)."""
    if pid is None:
        return 0
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    total, frontier = 0, [pid]
    while frontier:
        member = frontier.pop()
        frontier += [] if alone else children.get(member, [])
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


class Straight:
    """The backend alone, started as typemux-lsp starts it; told the watch capability."""

    def __init__(self, kind: BackendKind, venv: Venv) -> None:
        self.kind = kind
        self.venv = venv
        self.client = CountingClient(configuration_answer(kind, venv))
        self.version = ""

    async def start(self) -> None:
        env = self.kind.environment(self.venv)
        executable = self.kind.resolve_executable(env["PATH"])
        if executable is None:
            raise SystemExit(f"bench: {self.kind.executable} not found")
        await self.client.start(
            self.kind.command(executable, env["PATH"]), cwd=self.venv.project_dir, env=env
        )
        params = client_params(self.venv.project_dir)
        caps = json.loads(json.dumps(CLAUDE_CODE_CAPABILITIES))
        caps["workspace"]["didChangeWatchedFiles"] = {
            "dynamicRegistration": True,
            "relativePatternSupport": True,
        }
        params["capabilities"] = caps
        encoding = self.kind.choose_encoding(["utf-16"])
        init = backend_initialize_params(params, self.venv, encoding)
        result = await self.client.request("initialize", init, timeout=60)
        self.client.notify("initialized", {})
        self.version = backend_version(self.kind, result)

    def backend_rss_kib(self) -> int:
        return tree_rss_kib(self.client.pid)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.stop(timeout=5), 10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.client.pid or 0, 9)


class Proxied:
    """typemux-lsp with a Claude Code-like client (it sends no file events), its freshness
    policy for this kind forced to `how` ("policy": as shipped)."""

    def __init__(self, kind: BackendKind, venv: Venv, how: str) -> None:
        self.kind = kind
        self.venv = venv
        self.how = how
        self.client = CountingClient()
        self.version = ""

    async def start(self) -> None:
        force = ""
        if self.how != "policy":
            how, events = ("reconfigure", False) if self.how == "configure" else (self.how, True)
            force = (
                "import typemux_lsp.freshness as f\n"
                f"f.STRATEGIES[{self.kind.name!r}] = f.Strategy(*[{how!r}] * 4, {events})\n"
            )
        code = force + "from typemux_lsp.cli import main\nraise SystemExit(main())\n"
        root = self.venv.project_dir
        log = os.environ.get("FRESH_BENCH_LOG")
        extra = ["--log-level", "debug", "--log-file", log] if log else []
        await self.client.start(
            [sys.executable, "-c", code, "--backend", self.kind.name, *extra],
            cwd=root,
            env=os.environ,
        )
        await self.client.initialize(root, CLAUDE_CODE_CAPABILITIES, clientInfo={"name": "b"})
        self.version = self.kind.name

    def backend_rss_kib(self) -> int:
        """Its backends' process trees: the proxy's tree less the proxy itself."""
        return tree_rss_kib(self.client.pid) - tree_rss_kib(self.client.pid, alone=True)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.stop(timeout=5), 15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.client.pid or 0, 9)


# -- a trial -------------------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    mechanism: str
    round: int
    #: seconds from the end of the install to the right hover, per cycle; None: not within
    #: the bound
    down_s: list[float | None] = field(default_factory=list)
    up_s: list[float | None] = field(default_factory=list)
    install_s: list[float] = field(default_factory=list)
    changed_paths: list[int] = field(default_factory=list)
    #: MiB: analysed at start, then settled after each down and each up
    rss_mib: list[float] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)
    error: str | None = None


def hover_params(uri: str, text: str, needle: str) -> dict[str, Any]:
    last = text.rstrip("\n").split("\n")
    line = len(last) - 1
    return {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": last[-1].index(needle) + 1},
    }


async def until(
    client: CountingClient, params: dict[str, Any], ok: Any, t0: float, bound: float
) -> float | None:
    """Seconds from `t0` until hover satisfies `ok`; None if not within `bound`."""
    while time.perf_counter() - t0 < bound:
        try:
            text = hover_text(await client.request("textDocument/hover", params, bound))
        except (TimeoutError, ConnectionError):
            return None
        except Exception:
            text = ""
        if ok(text):
            return time.perf_counter() - t0
        await asyncio.sleep(POLL_S)
    return None


async def trial(
    kind: BackendKind,
    package: Package,
    layout: str,
    mechanism: str,
    round_no: int,
    wheels: Path,
    bound: float,
    settle: float,
    cycles: int,
) -> Result:
    result = Result(kind.name, mechanism, round_no)
    with tempfile.TemporaryDirectory(prefix="fresh-pkg-") as tmp:
        root = Path(tmp).resolve()  # noqa: ASYNC240 - a temp dir, once per trial
        cache = root / "uv-cache"
        venv = make_project(root, layout, package, wheels, cache)
        main = venv.project_dir / "main.py"
        text = package.main
        site = sorted(venv.path.glob("lib/python3*/site-packages"))
        proxied = mechanism.startswith("proxy:")
        runner: Straight | Proxied = (
            Proxied(kind, venv, mechanism.split(":", 1)[1]) if proxied else Straight(kind, venv)
        )
        try:
            await runner.start()
            uri = runner.client.open(main, text)
            params = hover_params(uri, text, package.needle)
            begin = time.perf_counter()
            if (
                await until(runner.client, params, lambda t: package.new_api in t, begin, 90)
                is None
            ):
                raise TimeoutError("the new API never showed at start")
            await asyncio.sleep(settle)
            result.rss_mib.append(runner.backend_rss_kib() / 1024)
            for step, requirement, want in [
                ("down", package.requirements[0], False),
                ("up", package.requirements[1], True),
            ] * cycles:
                before = snapshot(site)
                result.install_s.append(round(install(venv.path, requirement, wheels, cache), 3))
                t0 = time.perf_counter()
                told = events(before, snapshot(site)) if not proxied else []
                result.changed_paths.append(len(told))
                runner = await tell(runner, mechanism, told, main, text)
                delay = await until(
                    runner.client,
                    params,
                    lambda t, want=want: (package.new_api in t) == want and package.any_api in t,
                    t0,
                    bound,
                )
                getattr(result, f"{step}_s").append(None if delay is None else round(delay, 3))
                await asyncio.sleep(settle)
                result.rss_mib.append(runner.backend_rss_kib() / 1024)
            if proxied:
                result.exits = crashes(runner.client)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            await runner.stop()
    return result


async def tell(
    runner: Straight | Proxied, mechanism: str, told: list[dict[str, Any]], main: Path, text: str
) -> Straight | Proxied:
    """Apply a straight mechanism (through the proxy, its watcher does it)."""
    if isinstance(runner, Proxied) or mechanism == "none":
        return runner
    client = runner.client
    if mechanism in ("events", "reconfig", "reopen"):
        client.notify("workspace/didChangeWatchedFiles", {"changes": told})
    if mechanism in ("reconfig", "config"):
        client.notify("workspace/didChangeConfiguration", {"settings": None})
    if mechanism == "reopen":
        client.notify("textDocument/didClose", {"textDocument": {"uri": main.as_uri()}})
        client.open(main, text, 2)
    if mechanism == "restart":
        await runner.stop()
        runner = Straight(runner.kind, runner.venv)
        await runner.start()
        runner.client.open(main, text)
    return runner


def crashes(client: CountingClient) -> list[str]:
    """What the proxy said about backend exits in its log (stderr)."""
    lines = bytes(client.stderr).decode(errors="replace").splitlines()
    return [line[-300:] for line in lines if "exited" in line or "panic" in line]


# -- the run -------------------------------------------------------------------------------------


def cell(values: Sequence[float | None]) -> str:
    right = [v for v in values if v is not None]
    if not right:
        return "stale"
    text = f"{statistics.median(right):.2f}"
    if len(right) < len(values):
        text += f" ({len(values) - len(right)} stale)"
    return text


def table(results: Sequence[Result], bound: float) -> str:
    rows = ["| backend | mechanism | down, s | up, s | RSS at start, then after each step, MiB | |"]
    rows.append("|---|---|---:|---:|---|---|")
    grouped: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        grouped.setdefault((r.backend, r.mechanism), []).append(r)
    for (backend, mechanism), rs in grouped.items():
        ok = [r for r in rs if r.error is None]
        full = [r.rss_mib for r in ok if len(r.rss_mib) == 1 + len(r.down_s) + len(r.up_s)]
        rss = [statistics.median(x) for x in zip(*full, strict=False)]
        errors = "; ".join(r.error or "" for r in rs if r.error) or ""
        exits = sum(len(r.exits) for r in rs)
        if exits:
            errors += f" {exits} backend exit(s) logged"
        downs = cell([d for r in ok for d in r.down_s]) if ok else "error"
        ups = cell([u for r in ok for u in r.up_s]) if ok else "error"
        rows.append(
            f"| {backend} | {mechanism} | {downs} | {ups} | "
            f"{' / '.join(f'{v:.0f}' for v in rss)} | {errors.strip()} |"
        )
    rows.append(
        f"(median seconds from the end of the install to the right hover; stale: > {bound:g} s)"
    )
    return "\n".join(rows)


STRAIGHT = ("none", "events", "reconfig", "config", "reopen", "restart")
PROXY = ("proxy:notify", "proxy:reconfigure", "proxy:configure", "proxy:restart", "proxy:policy")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    package = PACKAGES[args.package]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="fresh-wheels-") as tmp:
        wheels = Path(tmp)
        download(package, wheels)
        for round_no in range(args.rounds):  # rounds outermost: noise hits all alike
            for name in args.backend:
                for mechanism in args.mechanism:
                    if mechanism == "none" and round_no:
                        continue
                    r = await trial(
                        KINDS[name],
                        package,
                        args.layout,
                        mechanism,
                        round_no,
                        wheels,
                        args.bound,
                        args.settle,
                        args.cycles,
                    )
                    results.append(r)
                    print(
                        f"{name:13}{mechanism:19}#{round_no} down={r.down_s} up={r.up_s} "
                        f"install={r.install_s} paths={r.changed_paths} "
                        f"rss={[round(v) for v in r.rss_mib]}"
                        f"{' exits=' + str(r.exits) if r.exits else ''}"
                        f"{' ERROR ' + r.error if r.error else ''}",
                        file=sys.stderr,
                        flush=True,
                    )
    return {
        "machine": machine(),
        "load_average_end": load_average(),
        "versions": {name: backend_version(KINDS[name], None) for name in args.backend},
        "package": f"{package.name} {package.old} <-> {package.new}",
        "layout": args.layout,
        "bound_s": args.bound,
        "settle_s": args.settle,
        "results": [r.__dict__ for r in results],
        "table": table(results, args.bound),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", choices=list(PACKAGES), default="redis")
    parser.add_argument("--layout", choices=["hatch", "venv"], default="hatch")
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument(
        "--mechanism", nargs="+", choices=[*STRAIGHT, *PROXY], default=[*STRAIGHT, *PROXY]
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cycles", type=int, default=1, help="downs and ups per trial")
    parser.add_argument("--bound", type=float, default=15.0, help="seconds before 'stale'")
    parser.add_argument("--settle", type=float, default=6.0, help="seconds before each RSS")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(
            f"{report['package']}, layout {report['layout']}; versions: {report['versions']}; "
            f"load average at end {report['load_average_end']:.2f}"
        )
        print(report["table"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
