"""When a new backend is ready for index-dependent requests, and whether it answers them whole.

Per backend kind: a project whose `pkg/lib.py:target` is called from `--callers` modules; the
proxy starts in it (so its backend starts with the proxy, before any file is open), the
client opens lib.py after `--open-after` seconds and asks for references at once. Reported:
the milliseconds from didOpen to the answer, how many of the callers it found, and what the
proxy logged as the readiness signal ("ready (REASON) after MS ms" from the backend's start).
Medians of `--runs`, kinds interleaved.

`--client vscode` sends VS Code's capabilities (pytest-lsp's recording): pull diagnostics with
dynamic registration, so pyright, basedpyright and ty publish none.

    .venv/bin/python bench/warmup.py [--runs 5] [--callers 40] [--open-after 0]
                                     [--client claude-code|vscode] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from typemux_lsp.backends import KINDS
from typemux_lsp.client import LspClient
from typemux_lsp.demo import CLAUDE_CODE_CAPABILITIES

READY = re.compile(r"ready \(([^)]*)\) after (\d+) ms")


def make_project(root: Path, callers: int) -> None:
    (root / "pkg").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'callers'\nversion = '0'\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "lib.py").write_text("def target(x: int) -> int:\n    return x\n")
    for i in range(callers):
        (root / "pkg" / f"m{i}.py").write_text(
            "from pkg.lib import target\n\n"
            + "".join(f"def f{j}() -> int:\n    return target({j})\n" for j in range(10))
        )
    subprocess.run(["git", "init", "-q", str(root)], check=True)


def vscode_capabilities() -> dict[str, Any]:
    """pytest-lsp's newest recorded VS Code capabilities (as scripts/capture_profiles.py)."""
    clients = importlib.resources.files("pytest_lsp.clients")
    names = [p.name for p in clients.iterdir() if p.name.startswith("visual_studio_code_v")]
    newest = max(names, key=lambda n: [int(x) for x in re.findall(r"\d+", n)])
    caps: dict[str, Any] = json.loads(clients.joinpath(newest).read_text())["capabilities"]
    return caps


async def one(root: Path, kind: str, open_after: float, caps: dict[str, Any]) -> dict[str, Any]:
    client = LspClient()
    await client.start([sys.executable, "-m", "typemux_lsp", "--backend", kind], cwd=root)
    await client.initialize(root, caps, clientInfo={"name": "bench"})
    await asyncio.sleep(open_after)
    uri = client.open(root / "pkg" / "lib.py")
    opened = time.monotonic()
    found = await client.request(
        "textDocument/references",
        {
            "textDocument": {"uri": uri},
            "position": {"line": 0, "character": 5},
            "context": {"includeDeclaration": False},
        },
    )
    answered = (time.monotonic() - opened) * 1e3
    await client.stop()
    files = {loc["uri"].rsplit("/", 1)[-1] for loc in found or []} - {"lib.py"}
    ready = READY.findall(client.stderr.decode(errors="replace"))
    reason, ready_ms = ready[0] if ready else ("?", "nan")
    return {"answer_ms": answered, "files": len(files), "reason": reason, "ready_ms": ready_ms}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--callers", type=int, default=40)
    parser.add_argument("--open-after", type=float, default=0.0)
    parser.add_argument("--client", choices=["claude-code", "vscode"], default="claude-code")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    caps = vscode_capabilities() if args.client == "vscode" else CLAUDE_CODE_CAPABILITIES
    kinds = [k for k in KINDS if KINDS[k].resolve_executable(os.environ.get("PATH", ""))]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "callers"
        make_project(root, args.callers)
        env_cache = Path(tmp) / "cache"
        os.environ["XDG_CACHE_HOME"] = str(env_cache)
        for _ in range(args.runs):
            for kind in kinds:
                runs[kind].append(await one(root, kind, args.open_after, caps))
    report = {
        kind: {
            "answer_ms": statistics.median(r["answer_ms"] for r in rs),
            "ready_ms": statistics.median(float(r["ready_ms"]) for r in rs),
            "whole": sum(r["files"] == args.callers for r in rs),
            "reasons": sorted({r["reason"] for r in rs}),
        }
        for kind, rs in runs.items()
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"references asked at once after didOpen ({args.callers} callers, opened "
        f"{args.open_after} s after initialize, {args.client}), {args.runs} runs; "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print("| backend | answer after didOpen, ms | whole answers | ready after start, ms | signal |")
    print("|---|---:|---:|---:|---|")
    for kind, fig in report.items():
        print(
            f"| {kind} | {fig['answer_ms']:.0f} | {fig['whole']}/{args.runs} "
            f"| {fig['ready_ms']:.0f} | {', '.join(fig['reasons'])} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
