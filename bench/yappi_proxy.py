"""Run the proxy under yappi (CPU clock, every thread), its stats saved at exit.

`relay.py --profile-proxy FILE` starts the proxy this way when yappi is installed (it is
not a dependency: `pip install yappi` into the venv), so the reader threads, where the
hot path runs, are profiled too (cProfile sees the main thread only). Read the stats
with `python -m pstats FILE`.

    python bench/yappi_proxy.py STATS_FILE [typemux-lsp arguments...]
"""

from __future__ import annotations

import atexit
import sys

import yappi  # type: ignore[import-not-found,import-untyped,unused-ignore]

from typemux_lsp.cli import main


def save(path: str) -> None:
    yappi.stop()
    yappi.get_func_stats().save(path, type="pstat")


if __name__ == "__main__":
    out = sys.argv[1]
    sys.argv = ["typemux-lsp", *sys.argv[2:]]
    yappi.set_clock_type("cpu")
    yappi.start(builtins=True, profile_threads=True)
    atexit.register(save, out)
    raise SystemExit(main())
