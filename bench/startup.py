"""Time from launch to the initialize answer: typemux-lsp against each backend straight.

Claude Code (2.1.207-2.1.211) hangs when initialize is answered late, and every editor
waits on it, so it is measured as a user meets it: spawn the process, send initialize at
once, stop the clock at the answer. Interleaved, medians of `--runs` launches each.

`--first` measures first sessions instead: every launch of the proxy gets an empty cache (the
installed backend is asked, started at launch), per backend kind, and counts how often its
own answer came within the budget ("asked") rather than the recording.

    .venv/bin/python bench/startup.py [--runs 15] [--first] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from typemux_lsp.backends import KINDS
from typemux_lsp.jsonrpc import FrameDecoder, dumps, frame

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "processId": None,
        "clientInfo": {"name": "Claude Code", "version": "2.1.0"},
        "rootUri": None,
        "capabilities": {"general": {"positionEncodings": ["utf-16"]}},
    },
}

TARGET_MS = 250.0


STATUS = {"jsonrpc": "2.0", "id": 1, "method": "typemux/status", "params": None}


def answered_after(
    cmd: list[str], cwd: Path, env: dict[str, str], sources: list[str] | None = None
) -> float:
    """ms from spawn to the initialize answer; with `sources`, the proxy's
    `initializeAnswer` is appended to it."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(frame(dumps(INITIALIZE)))
    proc.stdin.flush()
    decoder = FrameDecoder()
    try:
        while True:
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                raise RuntimeError(f"{cmd[0]} exited before answering initialize")
            for body in decoder.feed(data):
                if not isinstance(body, bytes):
                    continue
                answer = json.loads(body)
                if answer.get("id") == 0:
                    elapsed = (time.perf_counter() - start) * 1e3
                    if sources is None:
                        return elapsed
                    proc.stdin.write(frame(dumps(STATUS)))
                    proc.stdin.flush()
                elif answer.get("id") == 1 and sources is not None:
                    sources.append(answer["result"]["initializeAnswer"])
                    return elapsed
    finally:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--first", action="store_true", help="first sessions (empty cache)")
    args = parser.parse_args()
    if args.first:
        return first_sessions(args.runs, args.json)
    paths: dict[str, list[str]] = {
        "typemux-lsp (ty)": [sys.executable, "-m", "typemux_lsp", "--backend", "ty"],
        "typemux-lsp (pyright)": [sys.executable, "-m", "typemux_lsp", "--backend", "pyright"],
    }
    for name in ("ty", "pyrefly", "pyright", "basedpyright"):
        kind = KINDS[name]
        search = os.environ.get("PATH", "")
        executable = kind.resolve_executable(search)
        if executable is not None:
            paths[f"{name} straight"] = kind.command(executable, search)
    env = dict(os.environ)
    # As installed: pip compiles a package's bytecode at install time, while an editable
    # checkout under PYTHONDONTWRITEBYTECODE (set on this machine) would compile every module
    # from source at every launch (~130 ms).
    import compileall

    import typemux_lsp

    compileall.compile_dir(Path(typemux_lsp.__file__).parent, quiet=1)
    figures: dict[str, list[float]] = {name: [] for name in paths}
    with tempfile.TemporaryDirectory() as tmp:
        env["XDG_CACHE_HOME"] = tmp  # the proxy's learned answers, warmed by the first run
        cwd = Path(tmp)
        for cmd in paths.values():  # warm the OS caches and the learned answers
            answered_after(cmd, cwd, env)
        time.sleep(2)  # let the proxies' background probes finish and cache
        for _ in range(args.runs):
            for name, cmd in paths.items():
                figures[name].append(answered_after(cmd, cwd, env))
    report = {
        name: {"median_ms": statistics.median(v), "max_ms": max(v)} for name, v in figures.items()
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    load = os.getloadavg()[0]
    print(f"launch -> initialize answer, {args.runs} runs each, interleaved; load {load:.2f}")
    print("| path | median ms | max ms |")
    print("|---|---:|---:|")
    for name, fig in report.items():
        print(f"| {name} | {fig['median_ms']:.0f} | {fig['max_ms']:.0f} |")
    worst = max(fig["median_ms"] for name, fig in report.items() if name.startswith("typemux"))
    verdict = "met" if worst <= TARGET_MS else "MISSED"
    print(f"target: typemux-lsp median <= {TARGET_MS:.0f} ms: {verdict}")
    return 0


def first_sessions(runs: int, as_json: bool) -> int:
    """Each kind's first session: an empty cache per launch, interleaved."""
    import compileall

    import typemux_lsp

    compileall.compile_dir(Path(typemux_lsp.__file__).parent, quiet=1)
    kinds = [name for name in KINDS if KINDS[name].resolve_executable(os.environ["PATH"])]
    figures: dict[str, list[float]] = {name: [] for name in kinds}
    sources: dict[str, list[str]] = {name: [] for name in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs + 1):  # the first round warms the OS caches, not counted
            for name in kinds:
                cache = Path(tmp) / f"{name}-{run}"
                env = dict(os.environ, XDG_CACHE_HOME=str(cache))
                cmd = [sys.executable, "-m", "typemux_lsp", "--backend", name]
                got: list[str] = []
                elapsed = answered_after(cmd, Path(tmp), env, got)
                if run:
                    figures[name].append(elapsed)
                    sources[name].extend(got)
    report = {
        name: {
            "median_ms": statistics.median(figures[name]),
            "max_ms": max(figures[name]),
            "asked": sources[name].count("asked"),
            "recorded": sources[name].count("recorded"),
        }
        for name in kinds
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    load = os.getloadavg()[0]
    print(f"first session (empty cache): launch -> initialize answer, {runs} runs; load {load:.2f}")
    print("| backend | median ms | max ms | the backend's own answer | the recording |")
    print("|---|---:|---:|---:|---:|")
    for name, fig in report.items():
        print(
            f"| {name} | {fig['median_ms']:.0f} | {fig['max_ms']:.0f} | {fig['asked']} "
            f"| {fig['recorded']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
