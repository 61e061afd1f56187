"""The cost curve a monorepo user pays: N venvs opened one after another.

For N = 1, 5 and 20 projects (copies of examples/monorepo/alpha, each with its own venv),
a fresh proxy opens one file per project, in turn, and asks a hover until it shows the
signature from that project's own venv. Reported per backend and N: the proxy's RSS, the
total RSS of its backends, and the median time from opening a file of a new venv to its
first correct hover — next to the same for the backend started straight in that project
(spawn, initialize, open, hover), the price of the proxy's start-on-demand.

    .venv/bin/python bench/scale.py [--backend pyright --backend ty] [--sizes 1,5,20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    load_average,
    machine,
    position_of,
    rss_kib,
    start_direct,
    start_proxy,
    wait_hover,
)

from typemux_lsp.backends import KINDS
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


async def through_proxy(root: Path, backend: str, n: int) -> dict[str, Any]:
    client = await start_proxy(root, backend, extra_args=("--max-backends", str(max(n, 1))))
    times: list[float] = []
    try:
        for i in range(n):
            project = f"p{i:02d}"
            app = root / project / "app.py"
            start = time.perf_counter()
            client.open(app, app.read_text("utf-8"))
            await wait_hover(client, hover_params(root, project), SIGNATURE)
            times.append((time.perf_counter() - start) * 1e3)
        assert client.pid is not None
        backends = sum(rss_kib(pid) for pid in descendants(client.pid)) / 1024
        return {
            "first_hover_ms": statistics.median(times),
            "first_hover_ms_each": times,
            "proxy_rss_mib": rss_kib(client.pid) / 1024,
            "backends_rss_mib": backends,
        }
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


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from harness import make_workspace

    sizes = sorted(set(args.sizes))
    report: dict[str, Any] = {"machine": machine(), "load_before": load_average(), "rows": []}
    with tempfile.TemporaryDirectory(prefix="typemux-scale-") as tmp:
        copies = {f"p{i:02d}": "alpha" for i in range(max(sizes))}
        root = make_workspace(Path(tmp), copies)
        for backend in args.backend:
            print(f"{backend}: straight", file=sys.stderr)
            direct = await straight(root, backend, min(5, max(sizes)))
            for n in sizes:
                print(f"{backend}: {n} venvs through the proxy", file=sys.stderr)
                proxied = await through_proxy(root, backend, n)
                report["rows"].append({"backend": backend, "n": n, **proxied, "straight": direct})
    report["load_after"] = load_average()
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        f"machine: {report['machine']['cores']} cores, {report['machine']['python']}; load "
        f"{report['load_before']:.2f} before, {report['load_after']:.2f} after",
        "",
        "| backend | venvs | proxy RSS, MiB | backends' RSS, MiB (total) | first correct hover "
        "in a new venv, median ms: proxy | straight (spawn to hover) | backend RSS straight, "
        "MiB (one) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['backend']} | {row['n']} | {row['proxy_rss_mib']:.1f} | "
            f"{row['backends_rss_mib']:.0f} | {row['first_hover_ms']:.0f} | "
            f"{row['straight']['first_hover_ms']:.0f} | {row['straight']['backend_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=sorted(KINDS))
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5, 20]
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.backend = args.backend or ["pyright", "ty"]
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
