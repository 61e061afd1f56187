"""The cost curve a monorepo user pays: N projects opened one after another, each with its
own venv, with one backend process per venv ("per-process") or one per kind serving every
venv as a workspace folder ("shared").

For N = 1, 5 and 20 projects (copies of examples/monorepo/alpha, each with its own venv), a
fresh proxy per backend, mode and N opens one file per project, in turn, and asks a hover
until it shows the signature from that project's own venv. Reported: the proxy's RSS, the
total RSS of its backends' process trees, the first correct hover in a new project (the
first project, and the median of the others: a new project on a warm backend), the hover
p50 in a warm project, the CPU the proxy and its backends use while idle, and the cold
start after an eviction (`--max-backend-memory 1`: every new project evicts the previous
one; then the first one is asked again). Next to it, one backend started straight.

`--recreate` measures instead what one project's environment recreated (`rm -rf .venv &&
python -m venv .venv`, a new release of `shapes` copied in; `--deps`: the dependencies linked
in again) costs the other project of two: its slowest hover, asked every 20 ms, while the
first one's hover goes from the old release to the new one (and the time from the start of
the recreation to that new release), in each mode (`--before DIR`: also shared, with
typemux_lsp imported from DIR, e.g. a checkout from before folders were renewed alone), with
the restarts and folder renewals `typemux/status` counted.

`--deps` adds a fixture with real dependencies: Django, pandas and NumPy (thousands of
files) installed once from the package index into a cache directory and hard-linked into
every venv (distinct paths, as separate installs are), and imported by each project's file.

    .venv/bin/python bench/scale.py [--backend pyright ...] [--sizes 1,5,20]
        [--modes shared,per-process] [--deps] [--json]
    .venv/bin/python bench/scale.py --recreate [--rounds 5] [--before /work/main] [--backend ty ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    CountingClient,
    client_params,
    cpu_ns,
    load_average,
    machine,
    percentile,
    position_of,
    remake_venv,
    rss_kib,
    start_direct,
    start_proxy,
    wait_hover,
)

from typemux_lsp.backends import KINDS
from typemux_lsp.demo import CLAUDE_CODE_CAPABILITIES
from typemux_lsp.features import backend_initialize_params
from typemux_lsp.jsonrpc import Message
from typemux_lsp.tree import get_path
from typemux_lsp.venv import Venv

SIGNATURE = "area(radius: float) -> float"


def descendants(pid: int) -> list[int]:
    """The proxy's backends and their children (the reaper, in a session of its own and
    reading stdin, is excluded by its command line)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"groups.add" in cmdline:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def hover_params(root: Path, project: str) -> dict[str, Any]:
    app = root / project / "app.py"
    text = app.read_text("utf-8")
    return {"textDocument": {"uri": app.as_uri()}, "position": position_of(text, "area(2.0)")}


def mode_args(mode: str, backend: str) -> tuple[str, ...]:
    return ("--backend-sharing", backend if mode == "shared" else "none")


async def through_proxy(
    root: Path, backend: str, n: int, mode: str, idle_seconds: float
) -> dict[str, Any]:
    client = await start_proxy(
        root,
        backend,
        extra_args=("--max-backends", str(max(n, 1)), *mode_args(mode, backend)),
    )
    times: list[float] = []
    try:
        for i in range(n):
            project = f"p{i:02d}"
            app = root / project / "app.py"
            start = time.perf_counter()
            client.open(app, app.read_text("utf-8"))
            await wait_hover(client, hover_params(root, project), SIGNATURE)
            times.append((time.perf_counter() - start) * 1e3)
        warm: list[float] = []
        params = hover_params(root, "p00")
        for _ in range(100):
            start = time.perf_counter()
            await client.request("textDocument/hover", params)
            warm.append((time.perf_counter() - start) * 1e3)
        warm.sort()
        assert client.pid is not None
        tree = descendants(client.pid)
        backends = sum(rss_kib(pid) for pid in tree) / 1024
        proxy_rss = rss_kib(client.pid) / 1024
        await asyncio.sleep(1.0)  # let the last analyses finish
        tree = descendants(client.pid)
        before = sum(cpu_ns(pid) for pid in [client.pid, *tree])
        await asyncio.sleep(idle_seconds)
        after = sum(_cpu_or_zero(pid) for pid in [client.pid, *tree])
        return {
            "first_hover_ms": times[0],
            "new_project_hover_ms": statistics.median(times[1:]) if n > 1 else None,
            "first_hover_ms_each": times,
            "warm_hover_p50_ms": percentile(warm, 50),
            "idle_cpu_percent": (after - before) / 1e9 / idle_seconds * 100,
            "proxy_rss_mib": proxy_rss,
            "backends_rss_mib": backends,
            "backend_processes": len([pid for pid in tree if b"reaper" not in _cmdline(pid)]),
        }
    finally:
        await client.stop()


def _cpu_or_zero(pid: int) -> int:
    try:
        return cpu_ns(pid)
    except OSError:
        return 0


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


async def after_eviction(root: Path, backend: str, mode: str) -> float:
    """ms from asking p00 again (evicted when p01 came: a 1 MiB budget) to its correct hover."""
    client = await start_proxy(
        root,
        backend,
        extra_args=("--max-backend-memory", "1", *mode_args(mode, backend)),
    )
    try:
        for project in ("p00", "p01"):
            app = root / project / "app.py"
            client.open(app, app.read_text("utf-8"))
            await wait_hover(client, hover_params(root, project), SIGNATURE)
        start = time.perf_counter()
        await wait_hover(client, hover_params(root, "p00"), SIGNATURE)
        return (time.perf_counter() - start) * 1e3
    finally:
        await client.stop()


async def straight(root: Path, backend: str, projects: int) -> dict[str, Any]:
    kind = KINDS[backend]
    times: list[float] = []
    rss: list[float] = []
    for i in range(projects):
        project = f"p{i:02d}"
        app = root / project / "app.py"
        start = time.perf_counter()
        client, _ = await start_direct(root, kind, Venv((root / project / ".venv").resolve()))
        try:
            client.open(app, app.read_text("utf-8"))
            await wait_hover(client, hover_params(root, project), SIGNATURE)
            times.append((time.perf_counter() - start) * 1e3)
            assert client.pid is not None
            rss.append(sum(rss_kib(p) for p in [client.pid, *descendants(client.pid)]) / 1024)
        finally:
            await client.stop()
    return {"first_hover_ms": statistics.median(times), "backend_rss_mib": statistics.median(rss)}


async def straight_shared(root: Path, backend: str, projects: int) -> dict[str, Any]:
    """One backend started straight, no proxy, serving `projects` venvs as folders as the
    proxy's shared mode does (no venv in its environment, each folder added by
    didChangeWorkspaceFolders as its file opens, `workspace/configuration` answered per
    scopeUri): what the backend itself costs per folder, the yardstick for shared mode."""
    kind = KINDS[backend]
    venvs = {f"p{i:02d}": Venv((root / f"p{i:02d}" / ".venv").resolve()) for i in range(projects)}

    def venv_for(scope: Any) -> Venv:
        path = Path(str(scope).removeprefix("file://")) if scope else None
        for venv in venvs.values():
            if path is not None and path.is_relative_to(venv.project_dir):
                return venv
        return venvs["p00"]

    def answer(message: Message) -> Any:
        if message.get("method") == "workspace/configuration":
            items = get_path(message, "params", "items") or []
            return [
                kind.configuration(get_path(i, "section"), venv_for(get_path(i, "scopeUri")), None)
                for i in items
            ]
        return None

    first = venvs["p00"]
    env = kind.shared_environment(venvs.values())
    executable = kind.resolve_executable(env["PATH"])
    if executable is None:
        raise SystemExit(f"bench: {kind.executable} not found: {kind.install_hint()}")
    client = CountingClient(answer)
    empty = tempfile.TemporaryDirectory(prefix="typemux-scale-cwd-")
    await client.start(kind.command(executable, env["PATH"]), cwd=empty.name, env=env)
    offered = CLAUDE_CODE_CAPABILITIES["general"]["positionEncodings"]
    folder = {"uri": first.project_dir.as_uri(), "name": first.project_dir.name}
    params = backend_initialize_params(
        client_params(root), first, kind.choose_encoding(offered), [folder]
    )
    times: list[float] = []
    try:
        await client.request("initialize", params, timeout=60)
        client.notify("initialized", {})
        for project, venv in venvs.items():
            app = root / project / "app.py"
            start = time.perf_counter()
            if project != "p00":
                added = {"uri": venv.project_dir.as_uri(), "name": project}
                client.notify(
                    "workspace/didChangeWorkspaceFolders",
                    {"event": {"added": [added], "removed": []}},
                )
            client.open(app, app.read_text("utf-8"))
            await wait_hover(client, hover_params(root, project), SIGNATURE)
            times.append((time.perf_counter() - start) * 1e3)
        assert client.pid is not None
        rss = sum(rss_kib(p) for p in [client.pid, *descendants(client.pid)]) / 1024
    finally:
        await client.stop()
        empty.cleanup()
    return {
        "n": projects,
        "backend_rss_mib": rss,
        "first_hover_ms": times[0],
        "new_project_hover_ms": statistics.median(times[1:]) if projects > 1 else None,
    }


def recreate(project: Path, release: int, deps: bool = False) -> str:
    """`rm -rf .venv && python -m venv .venv`, then `shapes` copied in with `area()` given a
    keyword of this release's own (and, with `deps`, the real dependencies linked in);
    returns that keyword."""
    site = remake_venv(project)
    keyword = f"release{release}"
    init = site / "shapes" / "__init__.py"
    text = init.read_text("utf-8").replace("radius: float)", f"radius: float, {keyword}: int = 0)")
    init.write_text(text, "utf-8")
    if deps:
        for entry in deps_dir().iterdir():
            subprocess.run(["cp", "-al", str(entry), str(site)], check=True)
    return keyword


async def during_recreate(
    root: Path,
    backend: str,
    mode: str,
    rounds: int,
    source: Path | None = None,
    fixture: str = "tiny",
) -> dict[str, Any]:
    """p01's environment recreated `rounds` times under one proxy: per round, p00's slowest
    hover (asked every 20 ms) until p01's hover shows the new release, and that time."""
    client = await start_proxy(root, backend, extra_args=mode_args(mode, backend), source=source)
    worst: list[float] = []
    seen: list[float] = []
    try:
        for project in ("p00", "p01"):
            app = root / project / "app.py"
            client.open(app, app.read_text("utf-8"))
            # (p01's signature is a release of an earlier run's own: its docstring is not)
            await wait_hover(client, hover_params(root, project), "Return the area")
        for release in range(rounds):
            latencies: list[float] = []
            done = asyncio.Event()

            async def ask_p00(latencies: list[float], done: asyncio.Event) -> None:
                params = hover_params(root, "p00")
                while not done.is_set():
                    start = time.perf_counter()
                    answer = await client.request("textDocument/hover", params, timeout=120)
                    latencies.append((time.perf_counter() - start) * 1e3)
                    assert SIGNATURE in str(answer), f"p00 answered from elsewhere: {answer}"
                    await asyncio.sleep(0.02)

            asking = asyncio.create_task(ask_p00(latencies, done))
            await asyncio.sleep(0.2)
            start = time.perf_counter()
            keyword = await asyncio.to_thread(recreate, root / "p01", release, fixture == "deps")
            await wait_hover(client, hover_params(root, "p01"), keyword, timeout=120)
            seen.append((time.perf_counter() - start) * 1e3)
            await asyncio.sleep(0.3)
            done.set()
            await asking
            worst.append(max(latencies))
        state = await client.request(
            "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
        )
        projects = [p for b in state["backends"] for p in b["projects"]]
        counted = all("renewals" in p for p in projects)
        return {
            "backend": backend,
            "fixture": fixture,
            "mode": mode if source is None else f"{mode}, before",
            "rounds": rounds,
            "other_worst_ms": sorted(worst),
            "new_release_ms": sorted(seen),
            # (None: a proxy from before these were counted)
            "restarts": sum(p["restarts"] for p in projects) if counted else None,
            "renewals": sum(p["renewals"] for p in projects) if counted else None,
        }
    finally:
        await client.stop()


async def recreate_report(args: argparse.Namespace) -> dict[str, Any]:
    from harness import make_workspace

    report: dict[str, Any] = {"machine": machine(), "load_before": load_average(), "rows": []}
    variants: list[tuple[str, Path | None]] = [(mode, None) for mode in args.modes]
    if args.before is not None:
        variants.append(("shared", args.before))
    for fixture in args.fixtures or (["tiny", "deps"] if args.deps else ["tiny"]):
        with tempfile.TemporaryDirectory(prefix="typemux-recreate-") as tmp:
            root = make_workspace(Path(tmp), {"p00": "alpha", "p01": "alpha"})
            if fixture == "deps":
                add_deps(root, ["p00", "p01"])
            for backend in args.backend:
                for mode, source in variants:
                    print(
                        f"{backend} ({fixture}): recreate, {mode}{' (before)' if source else ''}",
                        file=sys.stderr,
                    )
                    report["rows"].append(
                        await during_recreate(root, backend, mode, args.rounds, source, fixture)
                    )
    report["load_after"] = load_average()
    return report


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def recreate_table(report: dict[str, Any]) -> str:
    lines = [
        f"machine: {report['machine']['cores']} cores, {report['machine']['python']}; load "
        f"{report['load_before']:.2f} before, {report['load_after']:.2f} after",
        "",
        "| backend | fixture | mode | rounds | other project's slowest hover, ms: median (max) | "
        "recreated project's new release, ms: median (max) | restarts (per project, summed) | "
        "folder renewals |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        worst, seen = row["other_worst_ms"], row["new_release_ms"]
        lines.append(
            f"| {row['backend']} | {row['fixture']} | {row['mode']} | {row['rounds']} | "
            f"{statistics.median(worst):.0f} ({max(worst):.0f}) | "
            f"{statistics.median(seen):.0f} ({max(seen):.0f}) | {_count(row['restarts'])} | "
            f"{_count(row['renewals'])} |"
        )
    return "\n".join(lines)


DEPS = ("django", "pandas")
DEPS_IMPORTS = (
    "import django\nimport numpy as np\nimport pandas as pd\nfrom django.db import models\n\n"
    "FRAME = pd.DataFrame({'a': np.arange(3)})\nFIELD = models.CharField(max_length=3)\n"
)


def deps_dir() -> Path:
    """Django, pandas and NumPy installed once (pip --target) into a cache directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    target = (
        cache / "typemux-lsp-bench" / f"deps-py{sys.version_info.major}{sys.version_info.minor}"
    )
    if not (target / "pandas").is_dir():
        print(f"installing {', '.join(DEPS)} into {target} (once)", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), *DEPS],
            check=True,
            stdout=sys.stderr,
        )
    return target


def add_deps(root: Path, projects: list[str]) -> int:
    """Hard-link the dependencies into each project's venv and import them from its file.
    Returns the number of files each site-packages gained."""
    source = deps_dir()
    files = sum(1 for p in source.rglob("*") if p.is_file())
    for project in projects:
        (site,) = (root / project / ".venv" / "lib").glob("python*/site-packages")
        for entry in source.iterdir():
            if not (site / entry.name).exists():
                subprocess.run(["cp", "-al", str(entry), str(site)], check=True)
        app = root / project / "app.py"
        text = app.read_text("utf-8")
        if "import pandas" not in text:
            head, _, rest = text.partition("from shapes import area\n")
            app.write_text(head + "from shapes import area\n" + DEPS_IMPORTS + rest, "utf-8")
    return files


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from harness import make_workspace

    sizes = sorted(set(args.sizes))
    report: dict[str, Any] = {
        "machine": machine(),
        "load_before": load_average(),
        "rows": [],
        "straight_shared": [],
    }
    fixtures = args.fixtures or (["tiny", "deps"] if args.deps else ["tiny"])
    for fixture in fixtures:
        with tempfile.TemporaryDirectory(prefix="typemux-scale-") as tmp:
            names = [f"p{i:02d}" for i in range(max(max(sizes), 2))]
            root = make_workspace(Path(tmp), dict.fromkeys(names, "alpha"))
            files = add_deps(root, names) if fixture == "deps" else 0
            for backend in args.backend:
                print(f"{backend} ({fixture}): straight", file=sys.stderr)
                direct = await straight(root, backend, min(3, max(sizes)))
                if "shared" in args.modes:
                    for n in sizes:
                        print(f"{backend} ({fixture}): {n} venvs, straight shared", file=sys.stderr)
                        alone = await straight_shared(root, backend, n)
                        report["straight_shared"].append(
                            {"backend": backend, "fixture": fixture, **alone}
                        )
                for mode in args.modes:
                    for n in sizes:
                        print(f"{backend} ({fixture}): {n} venvs, {mode}", file=sys.stderr)
                        proxied = await through_proxy(root, backend, n, mode, args.idle)
                        report["rows"].append(
                            {
                                "backend": backend,
                                "fixture": fixture,
                                "site_packages_files": files,
                                "mode": mode,
                                "n": n,
                                **proxied,
                                "straight": direct,
                            }
                        )
                    if args.eviction:
                        cold = await after_eviction(root, backend, mode)
                        report["rows"][-1]["after_eviction_ms"] = cold
    report["load_after"] = load_average()
    return report


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(report: dict[str, Any]) -> str:
    lines = [
        f"machine: {report['machine']['cores']} cores, {report['machine']['python']}; load "
        f"{report['load_before']:.2f} before, {report['load_after']:.2f} after",
        "",
        "| backend | fixture | mode | projects | backend processes | backends' RSS, MiB | "
        "proxy RSS, MiB | first hover, first project, ms | first hover, new project, median ms "
        "| warm hover p50, ms | idle CPU, % of a core | after an eviction, ms | straight: one "
        "backend's RSS, MiB; first hover, ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['backend']} | {row['fixture']} | {row['mode']} | {row['n']} | "
            f"{row['backend_processes']} | {row['backends_rss_mib']:.0f} | "
            f"{row['proxy_rss_mib']:.1f} | {row['first_hover_ms']:.0f} | "
            f"{_ms(row['new_project_hover_ms'])} | {row['warm_hover_p50_ms']:.2f} | "
            f"{row['idle_cpu_percent']:.1f} | {_ms(row.get('after_eviction_ms'))} | "
            f"{row['straight']['backend_rss_mib']:.0f}; {row['straight']['first_hover_ms']:.0f} |"
        )
    if report.get("straight_shared"):
        lines += [
            "",
            "One backend straight, no proxy, a folder per venv (as shared mode runs it):",
            "",
            "| backend | fixture | projects | backend's RSS, MiB | first hover, first project, ms "
            "| first hover, new project, median ms |",
            "|---|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {row['backend']} | {row['fixture']} | {row['n']} | {row['backend_rss_mib']:.0f} | "
            f"{row['first_hover_ms']:.0f} | {_ms(row['new_project_hover_ms'])} |"
            for row in report["straight_shared"]
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=sorted(KINDS))
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5, 20]
    )
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["shared", "per-process"])
    parser.add_argument("--deps", action="store_true", help="also the real-dependencies fixture")
    parser.add_argument(
        "--fixtures", type=lambda s: s.split(","), help="tiny,deps: which fixtures (default: tiny)"
    )
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU measured")
    parser.add_argument("--no-eviction", dest="eviction", action="store_false")
    parser.add_argument("--recreate", action="store_true", help="a recreated environment's cost")
    parser.add_argument("--rounds", type=int, default=5, help="--recreate: recreations per mode")
    parser.add_argument("--before", type=Path, help="--recreate: typemux_lsp from this checkout")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.backend = args.backend or sorted(KINDS)
    if args.recreate:
        report = asyncio.run(recreate_report(args))
        print(json.dumps(report, indent=2) if args.json else recreate_table(report))
        return 0
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
