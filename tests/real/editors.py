"""Running a real editor headless over the example monorepo, and checking what it left running.

The editor runs a check script (tests/real/nvim/check.lua, tests/real/emacs/check.el) that
drives its own LSP client and writes each step's value or error to ``$CHECK_RESULT`` as JSON.
Every process the editor starts carries ``TYPEMUX_REAL_CLIENT=<run dir>`` in its environment;
the script records them (``$CHECK_SNAPSHOT``, tests/procs.py) before it quits, and the run
checks that none outlives the editor.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import procs
from clients import BIN
from conftest import Monorepo

PROCS_SCRIPT = Path(procs.__file__).resolve()


@dataclass
class EditorRun:
    backend: str
    repo: Monorepo
    results: dict[str, Any]
    returncode: int
    output: str
    seen: list[procs.Proc]
    left: list[procs.Proc]
    proxy_log: Path

    def value(self, step: str) -> Any:
        """What a step of the check script got; fails the test with the step's error."""
        outcome = self.results.get(step)
        assert outcome is not None, f"the script never reached {step!r}\n{self.context()}"
        assert "error" not in outcome, f"{step}: {outcome['error']}\n{self.context()}"
        return outcome["value"]

    def context(self) -> str:
        log = self.proxy_log.read_text(errors="replace") if self.proxy_log.exists() else ""
        return f"--- editor output ---\n{self.output[-3000:]}\n--- proxy log ---\n{log[-3000:]}"


def run_editor(
    argv: list[str],
    *,
    backend: str,
    repo: Monorepo,
    base: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> EditorRun:
    """Run the editor to its end; wait (event-driven) for what it started to end too."""
    result = base / "result.json"
    proxy_log = base / "proxy.log"
    tag = f"TYPEMUX_REAL_CLIENT={base}"
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TYPEMUX_LSP_", "XDG_")) and k not in {"VIRTUAL_ENV", "PYTHONPATH"}
    }
    home = base / "home"
    environ.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_CACHE_HOME=str(home / ".cache"),
        PATH=os.pathsep.join([str(BIN), environ.get("PATH", os.defpath)]),
        CHECK_ROOT=str(repo.root),
        CHECK_RESULT=str(result),
        CHECK_SNAPSHOT=json.dumps([sys.executable, str(PROCS_SCRIPT), tag]),
        TYPEMUX_REAL_CLIENT=str(base),
        TYPEMUX_LSP_LOG_FILE=str(proxy_log),
        **(env or {}),
    )
    home.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            argv,
            cwd=repo.root,
            env=environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"timed out after {timeout} s: {exc.stdout!r} {exc.stderr!r}"
    results = json.loads(result.read_text()) if result.exists() else {}
    snapshot = results.get("processes", {}).get("value") or []
    seen = [procs.Proc(**proc) for proc in snapshot]
    left = asyncio.run(procs.wait_gone([*seen, *procs.tagged(tag)], timeout=15))
    procs.kill([*left, *procs.tagged(tag)])  # never leave them to the next test
    return EditorRun(backend, repo, results, code, output, seen, left, proxy_log)
