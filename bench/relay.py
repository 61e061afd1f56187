"""What the proxy adds: the same workload straight to a backend and through typemux-lsp.

All paths run in one process against one workspace copy, interleaved (hovers in
rotating blocks, the other workloads in rotating order per round), so machine noise
hits them alike; each figure is the median over rounds of a per-round figure, and
differences and ratios are taken per round before the median.

- direct: the backend started as the proxy starts it for alpha/.venv (cwd, environment,
  initialize params, configuration answers), so the difference is the relay hop alone;
- floor: the backend behind `thread_relay.py`, two blocking threads that copy bytes and
  parse nothing: what any Python process in the middle costs on this machine
  (`--no-floor` skips it; `--asyncio-floor` adds `byte_relay.py`, the same on asyncio);
- parse-floor (`--parse-floor`): `parse_relay.py`, the same threads framing and parsing
  what any router must read (the uri of a request, the id of a response): the least a
  correct router in Python costs;
- proxy: `python -m typemux_lsp --backend KIND` with cwd = the workspace root;
- `--variant NAME=DIR` adds a proxy importing `typemux_lsp` from DIR: a patched copy,
  measured in the same interleaved run as the installed one.

Workloads: sequential hovers (latency percentiles), pipelined hovers (throughput), and
a didChange burst then a hover, on alpha/app.py and on a generated module of
`--big-lines` lines edited near its end (a per-edit cost that grows with the file
shows there). The CPU time of the process in the middle is read from /proc.

    .venv/bin/python bench/relay.py [--backend ty] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    CountingClient,
    backend_version,
    cpu_ns,
    hover_text,
    load_average,
    machine,
    make_workspace,
    percentile,
    position_of,
    rss_kib,
    start_direct,
    start_proxy,
    wait_hover,
)

from typemux_lsp.backends import KINDS
from typemux_lsp.venv import Venv

#: the targets (issue 16), printed next to the figures: p50 over the threaded floor's, p99 over
#: direct, pipelined throughput against direct, CPU in the middle per hover (all its
#: threads), idle RSS
TARGET_OVER_FLOOR_P50_MS = 0.02
TARGET_ADDED_P99_MS = 0.30
TARGET_THROUGHPUT_RATIO = 0.80
TARGET_CPU_SEQUENTIAL_US = 90.0
TARGET_CPU_PIPELINED_US = 20.0
TARGET_IDLE_RSS_MIB = 40.0

#: sequential hovers on one path before the next path takes over
BLOCK = 100
#: seconds any single workload may take before the run is declared stuck
TIMEOUT = 300.0


@dataclass(frozen=True)
class Doc:
    """A document a didChange burst edits, and the hover asked after the burst."""

    key: str
    label: str
    path: Path
    text: str
    #: where the burst adds and removes a comment line (valid anywhere at column 0)
    line: int
    hover: dict[str, Any]


@dataclass
class Side:
    """One path to the backend, its documents' versions, and its figures."""

    name: str
    client: CountingClient
    #: the process in the middle (proxy or byte relay), whose CPU time is measured
    middle_pid: int | None = None
    versions: dict[str, int] = field(default_factory=dict)
    latencies: list[list[float]] = field(default_factory=list)  # per round, sorted, ms
    throughput: list[float] = field(default_factory=list)  # per round, requests/s
    burst_ms: dict[str, list[float]] = field(default_factory=dict)  # per doc, per round
    burst_answers: dict[str, list[Any]] = field(default_factory=dict)
    #: CPU µs the middle process spent per message, per workload, per round
    cpu_us: dict[str, list[float]] = field(default_factory=dict)

    #: the middle process's RSS after warm-up, before the rounds (MiB)
    idle_rss_mib: float | None = None

    def cpu(self) -> int:
        return cpu_ns(self.middle_pid) if self.middle_pid is not None else 0

    def add_cpu(self, workload: str, ns: int, messages: int) -> None:
        if self.middle_pid is not None:
            self.cpu_us.setdefault(workload, []).append(ns / messages / 1e3)


@contextmanager
def timed(sides: Sequence[Side]) -> Iterator[None]:
    """Keep the benchmark's own history and collector out of the timed sections (the
    proxy's are part of what is measured)."""
    for side in sides:
        side.client.forget_history()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def sequential(side: Side, hover: dict[str, Any], n: int) -> list[float]:
    out: list[float] = []
    client = side.client
    for _ in range(n):
        start = time.perf_counter_ns()
        await client.send_request("textDocument/hover", hover)
        out.append((time.perf_counter_ns() - start) / 1e6)
    return out


async def pipelined(side: Side, hover: dict[str, Any], n: int) -> float:
    """Send `n` hovers at once; requests per second until the last answer."""
    start = time.perf_counter()
    futures = [side.client.send_request("textDocument/hover", hover) for _ in range(n)]
    await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT)
    return n / (time.perf_counter() - start)


async def burst(side: Side, doc: Doc, n: int) -> tuple[float, Any]:
    """`n` didChange, alternately adding a comment line and taking it away (an even `n`
    leaves the original text, valid Python at every step), then a hover: ms, answer."""
    client, uri = side.client, doc.path.as_uri()
    version = side.versions.get(doc.key, 1)
    at = {"line": doc.line, "character": 0}
    below = {"line": doc.line + 1, "character": 0}
    start = time.perf_counter()
    for i in range(n):
        insert = i % 2 == 0
        version += 1
        change: dict[str, Any] = {
            "range": {"start": at, "end": at if insert else below},
            "text": "#x\n" if insert else "",
        }
        client.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]},
        )
    answer = await client.request("textDocument/hover", doc.hover, timeout=TIMEOUT)
    side.versions[doc.key] = version
    return (time.perf_counter() - start) * 1e3, answer


def _side(sides: Sequence[Side], name: str) -> Side:
    return next(s for s in sides if s.name == name)


def rotated(sides: Sequence[Side], k: int) -> list[Side]:
    k %= len(sides)
    return [*sides[k:], *sides[:k]]


async def run_round(
    sides: Sequence[Side], docs: Sequence[Doc], round_no: int, args: argparse.Namespace
) -> None:
    hover = docs[0].hover
    latencies: dict[str, list[float]] = {s.name: [] for s in sides}
    cpu: dict[str, int] = dict.fromkeys(latencies, 0)
    with timed(sides):
        remaining, block_no = args.hovers, 0
        while remaining > 0:
            count = min(BLOCK, remaining)
            for side in rotated(sides, round_no + block_no):
                before = side.cpu()
                latencies[side.name] += await sequential(side, hover, count)
                cpu[side.name] += side.cpu() - before
            remaining -= count
            block_no += 1
    for side in sides:
        side.latencies.append(sorted(latencies[side.name]))
        side.add_cpu("sequential hover", cpu[side.name], args.hovers)
    for side in rotated(sides, round_no):
        with timed(sides):
            before = side.cpu()
            side.throughput.append(await pipelined(side, hover, args.pipelined))
            side.add_cpu("pipelined hover", side.cpu() - before, args.pipelined)
    for doc in docs:
        n = args.changes if doc.key == "small" else args.big_changes
        for side in rotated(sides, round_no):
            with timed(sides):
                before = side.cpu()
                ms, answer = await burst(side, doc, n)
                side.add_cpu(f"didChange, {doc.label}", side.cpu() - before, n)
            side.burst_ms.setdefault(doc.key, []).append(ms)
            side.burst_answers.setdefault(doc.key, []).append(answer)


def summarize(
    sides: Sequence[Side], docs: Sequence[Doc], args: argparse.Namespace
) -> dict[str, Any]:
    """Medians over rounds; differences and ratios are paired per round, then the median
    taken, so the noise of one round hits both sides of its difference."""
    med = statistics.median
    direct = sides[0]

    def per_round(side: Side, q: float) -> list[float]:
        return [percentile(lat, q) for lat in side.latencies]

    def paired(a: list[float], b: list[float], ratio: bool = False) -> float:
        return med([x / y if ratio else x - y for x, y in zip(a, b, strict=True)])

    out: dict[str, Any] = {"paths": {}, "bursts": {}}
    for side in sides:
        fig: dict[str, Any] = {}
        for q in (50, 90, 99):
            fig[f"hover_p{q}_ms"] = med(per_round(side, q))
            fig[f"hover_p{q}_ms_rounds"] = per_round(side, q)
        fig["pipelined_rps"] = med(side.throughput)
        fig["pipelined_rps_rounds"] = side.throughput
        fig["burst_ms"] = {k: med(v) for k, v in side.burst_ms.items()}
        fig["burst_ms_rounds"] = side.burst_ms
        fig["middle_cpu_us_per_message"] = {k: med(v) for k, v in side.cpu_us.items()}
        if side is not direct:
            for q in (50, 90, 99):
                fig[f"added_p{q}_ms"] = paired(per_round(side, q), per_round(direct, q))
            fig["throughput_ratio"] = paired(side.throughput, direct.throughput, ratio=True)
            fig["burst_added_ms"] = {
                k: paired(v, direct.burst_ms[k]) for k, v in side.burst_ms.items()
            }
        out["paths"][side.name] = fig
    for doc in docs:
        answers = {json.dumps(a, sort_keys=True) for s in sides for a in s.burst_answers[doc.key]}
        out["bursts"][doc.key] = {
            "label": doc.label,
            "changes": args.changes if doc.key == "small" else args.big_changes,
            "answers_identical": len(answers) == 1,
            "answer": hover_text(sides[-1].burst_answers[doc.key][-1]).strip()[:200],
        }
    proxy = out["paths"]["proxy"]
    if "floor" in out["paths"]:
        proxy["over_floor_p50_ms"] = paired(
            per_round(_side(sides, "proxy"), 50),
            per_round(_side(sides, "floor"), 50),
        )
    cpu = proxy["middle_cpu_us_per_message"]
    out["targets"] = {
        "over_floor_p50_ms": TARGET_OVER_FLOOR_P50_MS,
        "added_p99_ms": TARGET_ADDED_P99_MS,
        "throughput_ratio": TARGET_THROUGHPUT_RATIO,
        "cpu_sequential_us": TARGET_CPU_SEQUENTIAL_US,
        "cpu_pipelined_us": TARGET_CPU_PIPELINED_US,
        "idle_rss_mib": TARGET_IDLE_RSS_MIB,
    }
    idle_rss = _side(sides, "proxy").idle_rss_mib
    out["idle_rss_mib"] = idle_rss
    out["met"] = {
        "over_floor_p50_ms": proxy.get("over_floor_p50_ms", 0.0) <= TARGET_OVER_FLOOR_P50_MS,
        "added_p99_ms": proxy["added_p99_ms"] <= TARGET_ADDED_P99_MS,
        "throughput_ratio": proxy["throughput_ratio"] >= TARGET_THROUGHPUT_RATIO,
        "cpu_sequential_us": cpu.get("sequential hover", 0.0) <= TARGET_CPU_SEQUENTIAL_US,
        "cpu_pipelined_us": cpu.get("pipelined hover", 0.0) <= TARGET_CPU_PIPELINED_US,
        "idle_rss_mib": idle_rss is not None and idle_rss <= TARGET_IDLE_RSS_MIB,
    }
    out["config"] = {
        "rounds": args.rounds,
        "hovers": args.hovers,
        "pipelined": args.pipelined,
        "changes": args.changes,
        "big_lines": args.big_lines,
        "big_changes": args.big_changes,
        "block": BLOCK,
    }
    return out


def table(report: dict[str, Any]) -> str:
    """A Markdown table: one column per path, then each proxy's cost over direct."""
    paths: dict[str, Any] = report["paths"]
    names = list(paths)
    proxies = [n for n in names if n not in ("direct", "floor", "parse-floor", "asyncio-floor")]
    cfg, met = report["config"], report["met"]

    def verdict(key: str, text: str) -> str:
        return f"{text}: {'met' if met[key] else 'MISSED'}"

    def row(label: str, cells: list[str], added: list[str], target: str = "") -> str:
        return f"| {label} | {' | '.join(cells)} | {' | '.join(added)} | {target} |"

    rows = [
        row("workload", names, [f"{n} - direct" for n in proxies], "target (proxy)"),
        "|---|" + "---:|" * (len(names) + len(proxies)) + "---|",
    ]
    over = paths["proxy"].get("over_floor_p50_ms")
    targets = {
        50: verdict("over_floor_p50_ms", f"<= floor +{TARGET_OVER_FLOOR_P50_MS:.2f}")
        + (f" (proxy - floor {over:+.3f})" if over is not None else ""),
        99: verdict("added_p99_ms", f"<= +{TARGET_ADDED_P99_MS:.2f}"),
    }
    for q in (50, 90, 99):
        rows.append(
            row(
                f"hover p{q}, ms ({cfg['hovers']} sequential)",
                [f"{paths[n][f'hover_p{q}_ms']:.3f}" for n in names],
                [f"{paths[n][f'added_p{q}_ms']:+.3f}" for n in proxies],
                targets.get(q, ""),
            )
        )
    rows.append(
        row(
            f"hovers/s ({cfg['pipelined']} pipelined)",
            [f"{paths[n]['pipelined_rps']:,.0f}" for n in names],
            [f"x{paths[n]['throughput_ratio']:.2f}" for n in proxies],
            verdict("throughput_ratio", f">= x{TARGET_THROUGHPUT_RATIO:.2f}"),
        )
    )
    for key, burst_info in report["bursts"].items():
        rows.append(
            row(
                f"{burst_info['changes']} didChange + hover, {burst_info['label']}, ms",
                [f"{paths[n]['burst_ms'][key]:.1f}" for n in names],
                [f"{paths[n]['burst_added_ms'][key]:+.1f}" for n in proxies],
                "same hover answer on every path"
                if burst_info["answers_identical"]
                else "ANSWERS DIFFER",
            )
        )
    cpu_targets = {
        "sequential hover": verdict("cpu_sequential_us", f"<= {TARGET_CPU_SEQUENTIAL_US:.0f}"),
        "pipelined hover": verdict("cpu_pipelined_us", f"<= {TARGET_CPU_PIPELINED_US:.0f}"),
    }
    for workload in paths["proxy"]["middle_cpu_us_per_message"]:
        rows.append(
            row(
                f"CPU µs in the middle per {workload}",
                [
                    f"{paths[n]['middle_cpu_us_per_message'][workload]:.0f}"
                    if workload in paths[n]["middle_cpu_us_per_message"]
                    else "-"
                    for n in names
                ],
                ["" for _ in proxies],
                cpu_targets.get(workload, ""),
            )
        )
    if report.get("idle_rss_mib") is not None:
        rows.append(
            row(
                "proxy RSS after warm-up, MiB",
                ["-" if n != "proxy" else f"{report['idle_rss_mib']:.1f}" for n in names],
                ["" for _ in proxies],
                verdict("idle_rss_mib", f"<= {TARGET_IDLE_RSS_MIB:.0f}"),
            )
        )
    m = report["machine"]
    return "\n".join(
        [
            f"typemux-lsp relay benchmark: {report['backend_version']}",
            f"machine: {m['cores']} cores, {m['platform']}, {m['python']}; load average "
            f"{report['load_before']:.2f} before, {report['load_after']:.2f} after",
            f"{cfg['rounds']} rounds, medians of per-round figures; paths interleaved "
            f"(hovers in rotating blocks of {cfg['block']}); floor = a byte-copying relay "
            "on two blocking threads",
            "",
            *rows,
        ]
    )


def big_module(lines: int) -> str:
    """A valid module of about `lines` lines whose last function uses `area`."""
    head = '"""Generated: a file big enough that per-edit costs that grow with it show."""\n\n'
    head += "from shapes import area\n"
    body = [
        f'\n\ndef f_{i}(radius: float) -> float:\n    """Area plus {i}."""\n'
        f"    return area(radius) + {i}\n"
        for i in range(max(1, (lines - 3) // 5))
    ]
    return head + "".join(body)


def make_docs(root: Path, big_lines: int) -> list[Doc]:
    app = root / "alpha" / "app.py"
    text = app.read_text("utf-8")
    hover = {"textDocument": {"uri": app.as_uri()}, "position": position_of(text, "area")}
    docs = [Doc("small", "alpha/app.py", app, text, 0, hover)]
    if big_lines:
        big = root / "alpha" / "big.py"
        big_text = big_module(big_lines)
        big.write_text(big_text, "utf-8")
        count = big_text.count("\n")
        last = big_text.rindex("area(")
        line_start = big_text.rindex("\n", 0, last) + 1
        position = {"line": big_text.count("\n", 0, last), "character": last - line_start + 1}
        docs.append(
            Doc(
                "big",
                f"{count}-line file, edits near its end",
                big,
                big_text,
                count - 2,
                {"textDocument": {"uri": big.as_uri()}, "position": position},
            )
        )
    return docs


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    kind = KINDS[args.backend]
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="typemux-bench-") as tmp:
        root = make_workspace(Path(tmp))
        docs = make_docs(root, args.big_lines)
        venv = Venv(root / "alpha" / ".venv")
        sides: list[Side] = []
        try:
            client, init = await start_direct(root, kind, venv)
            sides.append(Side("direct", client))
            if args.floor:
                client, _ = await start_direct(root, kind, venv, via_relay="threads")
                sides.append(Side("floor", client, client.pid))
            if args.parse_floor:
                client, _ = await start_direct(root, kind, venv, via_relay="parse")
                sides.append(Side("parse-floor", client, client.pid))
            if args.asyncio_floor:
                client, _ = await start_direct(root, kind, venv, via_relay="asyncio")
                sides.append(Side("asyncio-floor", client, client.pid))
            client = await start_proxy(root, args.backend, profile=args.profile_proxy)
            sides.append(Side("proxy", client, client.pid))
            for name, source in args.variant:
                client = await start_proxy(root, args.backend, source=source)
                sides.append(Side(name, client, client.pid))
            for side in sides:
                for doc in docs:
                    side.client.open(doc.path, doc.text)
                    await wait_hover(side.client, doc.hover, "radius")
            print("warming up every path", file=sys.stderr)
            for side in sides:
                await sequential(side, docs[0].hover, min(500, args.hovers))
                await pipelined(side, docs[0].hover, min(500, args.pipelined))
                for doc in docs:
                    await burst(side, doc, 20)
            for side in sides:
                if side.middle_pid is not None:
                    side.idle_rss_mib = rss_kib(side.middle_pid) / 1024
            for round_no in range(args.rounds):
                print(f"round {round_no + 1}/{args.rounds}", file=sys.stderr)
                await run_round(sides, docs, round_no, args)
        finally:
            for side in sides:
                await side.client.stop()
        report = summarize(sides, docs, args)
    report["backend"] = args.backend
    report["backend_version"] = backend_version(kind, init)
    report["machine"] = machine()
    report["load_before"] = load_before
    report["load_after"] = load_average()
    return report


def _variant(value: str) -> tuple[str, Path]:
    name, sep, source = value.partition("=")
    if not sep or not name or name in ("direct", "floor", "parse-floor", "proxy"):
        raise argparse.ArgumentTypeError(f"expected NAME=DIR with a new name, got {value!r}")
    if not (Path(source) / "typemux_lsp" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{source} has no typemux_lsp package")
    return name, Path(source).resolve()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The same LSP workload straight to a backend and through typemux-lsp."
    )
    parser.add_argument("--backend", choices=sorted(KINDS), default="ty")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hovers", type=int, default=2000, help="sequential hovers per round")
    parser.add_argument("--pipelined", type=int, default=2000, help="hovers in flight at once")
    parser.add_argument("--changes", type=int, default=2000, help="didChange burst length (even)")
    parser.add_argument(
        "--big-lines", type=int, default=3000, help="lines of the big file, 0 = skip it"
    )
    parser.add_argument(
        "--big-changes", type=int, default=100, help="didChange burst on the big file (even)"
    )
    parser.add_argument(
        "--no-floor", dest="floor", action="store_false", help="skip the threaded byte relay"
    )
    parser.add_argument(
        "--asyncio-floor", action="store_true", help="also measure the asyncio byte relay"
    )
    parser.add_argument(
        "--parse-floor",
        action="store_true",
        help="also measure parse_relay.py: threads that frame and parse what a router must",
    )
    parser.add_argument(
        "--variant",
        type=_variant,
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also measure a proxy whose typemux_lsp is imported from DIR",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--profile-proxy",
        type=Path,
        help="run the proxy under yappi (every thread; cProfile if not installed), stats here",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is missed, not only on errors"
    )
    args = parser.parse_args(argv)
    for name in ("rounds", "hovers", "pipelined", "changes", "big_changes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.changes % 2 or args.big_changes % 2:
        parser.error("burst lengths must be even (each pair of edits restores the text)")
    if args.big_lines and args.big_lines < 20:
        parser.error("--big-lines must be 0 or at least 20")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=2) if args.json else table(report))
    if not all(b["answers_identical"] for b in report["bursts"].values()):
        print("error: the hover after a didChange burst differs between paths", file=sys.stderr)
        return 2
    if args.strict and not all(report["met"].values()):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
