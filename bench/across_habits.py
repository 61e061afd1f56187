"""What each backend needs to answer for a file outside its root, measured straight.

The consumer's backend (services/a, core installed editable into its venv; tests/layouts.py)
is started as the proxy starts it, core's file is opened in it, and references of `greet`
are asked at the definition every 50 ms until the answer names services/a/app.py, or 10 s:

- "def": only the definition's file is open;
- "def + importer": services/a/app.py (which imports core) is opened too.

Printed: ms from spawn to the first answer, whether it named services/a/app.py, and ms to
the first answer that did ("never" within the limit).

    .venv/bin/python bench/across_habits.py [--backends ty,pyright,basedpyright,pyrefly]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from harness import load_average, start_direct

from typemux_lsp.backends import KINDS
from typemux_lsp.venv import Venv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from layouts import build

LIMIT = 10.0


async def first_complete(
    backend: str, root: Path, *, importer: bool
) -> tuple[float, bool, float | None]:
    """ms to the first answer, whether it was complete, ms to the first complete one."""
    layout_core = root / "libs/core/src/core/__init__.py"
    app = root / "services/a/app.py"
    started = time.perf_counter()
    client, _ = await start_direct(root, KINDS[backend], Venv(root / "services/a/.venv"))
    try:
        client.open(layout_core)
        if importer:
            client.open(app)
        text = layout_core.read_text(encoding="utf-8")
        line = text.split("\n").index("def greet(name: str) -> str:")
        params = {
            "textDocument": {"uri": layout_core.as_uri()},
            "position": {"line": line, "character": 4},
            "context": {"includeDeclaration": True},
        }
        first: tuple[float, bool] | None = None
        while time.perf_counter() - started < LIMIT:
            found = await client.request("textDocument/references", params, timeout=LIMIT)
            complete = any(r["uri"] == app.as_uri() for r in found or [])
            now = (time.perf_counter() - started) * 1e3
            if first is None:
                first = (now, complete)
            if complete:
                return first[0], first[1], now
            await asyncio.sleep(0.05)
        assert first is not None
        return first[0], first[1], None
    finally:
        client.kill()


async def run(backends: list[str]) -> None:
    print(f"load {load_average():.2f}")
    print(
        f"{'backend':<13} {'files open':<16} {'1st answer, ms':>15} {'complete':>9} "
        f"{'complete, ms':>13}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-habits-") as tmp:
        root = build(Path(tmp), 1, alias=False).root
        for backend in backends:
            for importer in (False, True):
                first, complete, ms = await first_complete(backend, root, importer=importer)
                opened = "def + importer" if importer else "def"
                done = "never" if ms is None else f"{ms:.0f}"
                print(
                    f"{backend:<13} {opened:<16} {first:15.0f} {'yes' if complete else 'no':>9} "
                    f"{done:>13}"
                )
    print(f"load {load_average():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="ty,pyright,basedpyright,pyrefly")
    args = parser.parse_args()
    asyncio.run(run(args.backends.split(",")))


if __name__ == "__main__":
    main()
