"""What watching costs while nothing changes: CPU of this process over an idle period.

Builds N projects, each with a venv whose site-packages holds `--dirs` package directories
of 5 modules each (no process reads them: a venv that a running program reads produces
inotify access events, which is not idle), watches each as the proxy would for one backend
(the venv's top directory, its site-packages, the project), waits for every key to be
armed, then reads this process's CPU time (all threads) over `--seconds` of idle.

    .venv/bin/python bench/watcher_idle.py [--keys 5] [--dirs 1000] [--seconds 30]
        [--debounce-ms 300]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from typemux_lsp.watcher import Root, Watcher


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--dirs", type=int, default=1000, help="package directories per venv")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--debounce-ms", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="watcher-idle-") as tmp:
        return measure(Path(tmp), args)


def build_project(project: Path, dirs: int) -> list[Root]:
    venv = project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = (venv / "lib").glob("python*/site-packages")
    for i in range(dirs):
        package = site / f"pkg{i}"
        package.mkdir()
        for j in range(5):
            (package / f"m{j}.py").write_text("def f() -> int:\n    return 1\n")
    (project / "app.py").write_text("import pkg0\n")
    return [Root(venv, recursive=False), Root(site), Root(project)]


def measure(tmp: Path, args: argparse.Namespace) -> int:
    roots = [build_project(tmp / f"project{i}", args.dirs) for i in range(args.keys)]
    batches: list[int] = []
    watcher = Watcher(lambda key, changes: batches.append(len(changes)), args.debounce_ms)
    arm_start = time.perf_counter()
    for i in range(args.keys):
        watcher.watch(f"venv{i}", roots[i])
    for i in range(args.keys):
        watcher.wait_armed(f"venv{i}", timeout=120)
    armed_s = time.perf_counter() - arm_start
    status = watcher.status()
    dirs = sum(k["watchedDirectories"] for k in status["keys"].values())
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(args.seconds)  # the point: nothing happens
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    watcher.close()
    report = {
        "keys": args.keys,
        "debounce_ms": args.debounce_ms,
        "watched_directories": dirs,
        "arm_seconds": round(armed_s, 3),
        "idle_seconds": round(wall, 3),
        "idle_cpu_seconds": round(cpu, 4),
        "idle_cpu_percent": round(100 * cpu / wall, 4),
        "batches_while_idle": len(batches),
    }
    print(json.dumps(report) if args.json else "\n".join(f"{k}: {v}" for k, v in report.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
