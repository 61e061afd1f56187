"""How a real installer's writes fall into watcher batches, per debounce: the default's evidence.

Builds two wheels of a package with `--modules` modules (v1, and v2 whose every module
changed and which has one module more), installs v1 into a fresh offline venv with a real
installer (`pip`, and `uv` when it is on PATH), then upgrades to v2 while `Watcher` watches
site-packages at each `--debounce-ms`, and reports how many batches the upgrade became and
when the last one arrived after the installer exited. One batch per upgrade is the goal:
each batch costs a backend a reconfiguration or a restart.

    .venv/bin/python bench/installer_bursts.py [--modules 320] [--debounce-ms 100 300 500]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import queue
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from typemux_lsp.freshness import plan_watch, read_environment
from typemux_lsp.watcher import Changes, Watcher


def build_wheel(out: Path, name: str, version: str, modules: int, marker: str) -> Path:
    """A pure-Python wheel written by hand (no build backend, no network)."""
    wheel = out / f"{name}-{version}-py3-none-any.whl"
    files = {f"{name}/__init__.py": "", f"{name}/py.typed": ""}
    for i in range(modules):
        files[f"{name}/m{i}.py"] = f"def f(a: int) -> int:\n    return a  # {marker}\n"
    info = f"{name}-{version}.dist-info"
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def installers(venv: Path) -> dict[str, list[str]]:
    python = str(venv / "bin" / "python")
    found = {
        "pip": [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--disable-pip-version-check",
            "-q",
        ]
    }
    own = Path(sys.executable).with_name("uv")
    uv = str(own) if own.exists() else shutil.which("uv")
    if uv:
        found["uv"] = [uv, "pip", "install", "--offline", "--no-deps", "--python", python, "-q"]
    return found


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="installer-bursts-") as tmp:
        root = Path(tmp)
        v1 = build_wheel(root, "bulk", "1.0", args.modules, "one")
        (root / "v2").mkdir()
        v2 = build_wheel(root / "v2", "bulk", "2.0", args.modules + 1, "two")
        for debounce in args.debounce_ms:
            project = root / f"p{debounce}"
            project.mkdir()
            venv = project / ".venv"
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
            for name, command in installers(venv).items():
                subprocess.run([*command, str(v1)], check=True, capture_output=True)
                plan = plan_watch(read_environment(venv), project)
                got: queue.Queue[tuple[float, Changes]] = queue.Queue()
                watcher = Watcher(
                    lambda _k, c, got=got: got.put((time.perf_counter(), c)), debounce
                )
                watcher.watch("k", plan.roots, plan.filter)
                assert watcher.wait_armed("k")
                began = time.perf_counter()
                subprocess.run([*command, str(v2)], check=True, capture_output=True)
                ended = time.perf_counter()
                batches = []
                try:
                    while True:  # the point: wait until no batch comes for a while
                        batches.append(got.get(timeout=max(2.0, 5 * debounce / 1000)))
                except queue.Empty:
                    pass
                watcher.close()
                rows.append(
                    {
                        "installer": name,
                        "debounce_ms": debounce,
                        "install_s": round(ended - began, 3),
                        "batches": len(batches),
                        "sizes": [len(c) for _, c in batches],
                        "last_batch_after_exit_s": (
                            round(batches[-1][0] - ended, 3) if batches else None
                        ),
                    }
                )
                # back to v1 for the next installer
                subprocess.run([*command, str(v1)], check=True, capture_output=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", type=int, default=320)
    parser.add_argument("--debounce-ms", type=int, nargs="+", default=[50, 100, 300, 500])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = run(args)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
