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
from clients import BIN, definition_targets, hover_text
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


# -- what every editor must get (the check scripts record the same steps) -----------------------


def assert_hover_from_each_venv(run: EditorRun) -> None:
    """shapes 1.x (alpha) has a function area(radius); shapes 2.x (beta) a class Circle."""
    alpha = hover_text(run.value("alpha hover"))
    beta = hover_text(run.value("beta hover"))
    assert "def area(radius: float) -> float" in alpha and "Circle" not in alpha, alpha
    assert "Circle" in beta and "radius: float" in beta and "def area(" not in beta, beta


def assert_definition_into_each_venv(run: EditorRun) -> None:
    alpha = definition_targets(run.value("alpha definition"))
    beta = definition_targets(run.value("beta definition"))
    assert alpha == [(run.repo.shapes_init("alpha").as_uri(), 5)], alpha
    # pyrefly goes to the constructor that Circle(...) calls, the others to the class
    line = 8 if run.backend == "pyrefly" else 5
    assert beta == [(run.repo.shapes_init("beta").as_uri(), line)], beta


def assert_diagnostics_after_an_edit_from_each_venv(run: EditorRun) -> None:
    """The same appended `shapes.area("wide")` is a type error in alpha, no such name in beta."""

    def messages(step: str, line: int) -> list[str]:
        return [d["message"] for d in run.value(step) if d["lnum"] == line]

    alpha = messages("alpha diagnostics", 18)  # app.py's 17 lines, then "import shapes"
    beta = messages("beta diagnostics", 17)  # 16 lines
    assert any("float" in m for m in alpha), run.value("alpha diagnostics")
    assert any("area" in m for m in beta), run.value("beta diagnostics")
    assert not any("float" in m for m in beta), beta
