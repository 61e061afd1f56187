"""What finding a file's environment costs: cached (the request path) and cold.

The router asks for a document's environment at most once a second while it is used, and on
every request for a file that has none. A cached answer is re-validated with one stat() per
path the lookup observed; this prints that count and the time per lookup for a few layouts.

    python bench/lookup.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from typemux_lsp.environments import clear_cache, find_environment
from typemux_lsp.environments import finder as finder_module


def make_venv(prefix: Path) -> None:
    (prefix / "bin").mkdir(parents=True)
    (prefix / "pyvenv.cfg").write_text("version = 3.11.7\n")


def layouts(root: Path) -> dict[str, Path]:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    make_venv(root / "plain" / ".venv")
    deep = root / "plain" / "src" / "pkg" / "sub"
    deep.mkdir(parents=True)
    ws = root / "ws"
    ws.mkdir()
    (ws / "pyproject.toml").write_text(
        "[project]\nname='ws'\n[tool.uv.workspace]\nmembers=['packages/*']\n"
    )
    make_venv(ws / ".venv")
    member = ws / "packages" / "api" / "src"
    member.mkdir(parents=True)
    (member.parent / "pyproject.toml").write_text("[project]\nname='api'\n")
    poetry = root / "poetry"
    poetry.mkdir()
    (poetry / "pyproject.toml").write_text("[tool.poetry]\nname='p'\n")
    in_project = root / "poetry-venv"  # Poetry's settings decide whether its .venv counts
    make_venv(in_project / ".venv")
    (in_project / "pyproject.toml").write_text("[tool.poetry]\nname='q'\n")
    nested = root / "ws" / "examples" / "servers" / "tool"  # set apart by examples/
    make_venv(nested / ".venv")
    (root / "ws" / "examples" / "pyproject.toml").write_text("[project]\nname='ex'\n")
    (nested / "pyproject.toml").write_text("[project]\nname='tool'\n")
    for path in [root, *root.rglob("*")]:  # old enough to be trusted (not racy)
        os.utime(path, (1e9, 1e9), follow_symlinks=False)
    return {
        ".venv, file 4 levels below": deep / "m.py",
        "uv workspace member": member / "m.py",
        "poetry project with its .venv": in_project / "m.py",
        "project nested in a non-workspace project": nested / "m.py",
        "poetry project without environment (never cached)": poetry / "m.py",
    }


def per_call(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main(n: int = 20000) -> None:
    os.environ["POETRY_CACHE_DIR"] = tempfile.mkdtemp()
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in layouts(Path(tmp).resolve()).items():

            def cold_lookup(p: Path = path) -> None:
                clear_cache()
                find_environment(p)

            cold = per_call(cold_lookup, 200)
            find_environment(path)

            def cached_lookup(p: Path = path) -> None:
                find_environment(p)

            cached = per_call(cached_lookup, n)
            entry = next(iter(finder_module._lookups.values()), None)
            stats = len(entry.seen.stamps) if entry is not None else "-"
            print(f"{name:<52} cold {cold:7.1f} us   cached {cached:6.1f} us   stat()s {stats}")
    print(f"(python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
