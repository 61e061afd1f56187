"""What answers across projects cost: references of `greet` (defined in `libs/core`, its own
venv, installed editable into N consumer projects with their own venvs; tests/layouts.py).

Paths, interleaved per round so machine noise hits them alike (medians over rounds):

- direct: core's backend straight (started as the proxy starts it): the definition's own
  project only — what one backend per project answers without typemux-lsp;
- proxy, N consumers: the fan-out through typemux-lsp (definition, then every environment
  that sees core), for N = 3 (a, b, alias: the issue's fixture) and N = 10, one backend
  process per environment (`--backend-sharing none`);
- shared, N consumers: the same with every environment a workspace folder of one shared
  process (`--backend-sharing <backend>`): pyright, basedpyright and ty are asked each
  consumer's view through a probe document (typemux_lsp/probe.py); pyrefly answers every
  folder's view in one ask (the files column says how much was found);
- uv workspace, direct and proxy: one environment sees every member, nothing fans out: the
  proxy's references take the relay's hot path (the "no cost where nothing is merged" check).

Each path is warmed (backends started, first answer complete) before timing; the first
fan-out, which starts the consumers' backends, is timed on its own.

    .venv/bin/python bench/across.py [--backend ty] [--rounds 5] [--requests 50] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness import load_average, machine, start_direct, start_proxy

from typemux_lsp.backends import KINDS
from typemux_lsp.client import LspClient
from typemux_lsp.venv import Venv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from layouts import Layout, build, build_uv_workspace

Ask = Callable[[], Awaitable[Any]]


def at_definition(layout: Layout) -> dict[str, Any]:
    text = layout.core.read_text(encoding="utf-8")
    line = text.split("\n").index("def greet(name: str) -> str:")
    return {
        "textDocument": {"uri": layout.core.as_uri()},
        "position": {"line": line, "character": 4},
        "context": {"includeDeclaration": True},
    }


def files_of(result: Any) -> int:
    return len({r["uri"] for r in result or []})


async def proxied(
    layout: Layout, backend: str, sharing: str = "none"
) -> tuple[LspClient, Ask, float, int]:
    client = await start_proxy(
        layout.root, backend, extra_args=("--max-backends", "16", "--backend-sharing", sharing)
    )
    client.open(layout.core)
    params = at_definition(layout)
    started = time.perf_counter()
    first = await client.request("textDocument/references", params, timeout=120)
    cold = (time.perf_counter() - started) * 1e3
    return client, lambda: client.request("textDocument/references", params), cold, files_of(first)


async def direct(layout: Layout, project: Path, backend: str) -> tuple[LspClient, Ask, int]:
    kind = KINDS[backend]
    client, _ = await start_direct(layout.root, kind, Venv(project / ".venv"))
    client.open(layout.core)
    params = at_definition(layout)
    first = None
    for _ in range(50):  # until the backend's index is built (pyright: ~1 s after start)
        first = await client.request("textDocument/references", params, timeout=120)
        if first:
            break
        await asyncio.sleep(0.1)
    return client, lambda: client.request("textDocument/references", params), files_of(first)


async def timed(ask: Ask, count: int) -> float:
    """Median ms of `count` sequential requests."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await ask()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


async def run(backend: str, rounds: int, requests: int) -> dict[str, Any]:
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-across-") as tmp:
        base = Path(tmp)
        three = build(base / "three", 2)
        ten = build(base / "ten", 9)
        workspace = build_uv_workspace(base / "ws")
        clients: list[LspClient] = []
        paths: dict[str, Ask] = {}
        files: dict[str, int] = {}
        cold: dict[str, float] = {}
        try:
            client, ask, found = await direct(three, three.path("libs/core"), backend)
            clients.append(client)
            paths["direct (core's backend)"], files["direct (core's backend)"] = ask, found
            for name, layout, sharing in (
                ("proxy, 3 consumers", three, "none"),
                ("proxy, 10 consumers", ten, "none"),
                ("shared, 3 consumers", three, backend),
                ("shared, 10 consumers", ten, backend),
            ):
                client, ask, first_ms, found = await proxied(layout, backend, sharing)
                clients.append(client)
                paths[name], files[name], cold[name] = ask, found, first_ms
            client, ask, found = await direct(workspace, workspace.root, backend)
            clients.append(client)
            paths["uv workspace, direct"], files["uv workspace, direct"] = ask, found
            client, ask, first_ms, found = await proxied(workspace, backend)
            clients.append(client)
            paths["uv workspace, proxy"], files["uv workspace, proxy"] = ask, found
            cold["uv workspace, proxy"] = first_ms
            for ask in paths.values():  # warm every path before timing
                await timed(ask, 5)
            per_round: dict[str, list[float]] = {name: [] for name in paths}
            names = list(paths)
            for index in range(rounds):
                order = names[index % len(names) :] + names[: index % len(names)]
                for name in order:
                    per_round[name].append(await timed(paths[name], requests))
        finally:
            for client in clients:
                client.kill()
    return {
        "backend": backend,
        "machine": machine(),
        "load": [load_before, load_average()],
        "rounds": rounds,
        "requests": requests,
        "p50_ms": {name: statistics.median(v) for name, v in per_round.items()},
        "files": files,
        "first_fan_out_ms": cold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="ty", choices=sorted(KINDS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.backend, args.rounds, args.requests))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['backend']}: references of greet, {args.rounds} rounds x {args.requests}, "
        f"load {result['load'][0]:.2f} -> {result['load'][1]:.2f}"
    )
    print(f"{'path':<26} {'p50 ms':>8} {'files':>6} {'first, ms':>10}")
    for name, p50 in result["p50_ms"].items():
        first = result["first_fan_out_ms"].get(name)
        shown = f"{first:10.0f}" if first is not None else f"{'':>10}"
        print(f"{name:<26} {p50:8.2f} {result['files'][name]:6d} {shown}")


if __name__ == "__main__":
    main()
