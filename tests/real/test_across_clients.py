"""Answers across projects in real clients: `libs/core` installed editable into
`services/a`, `services/b` and `services/alias` (tests/layouts.py), each with its own venv.

- The Claude Code CLI (its LSP tool, driven by a scripted model): findReferences and
  incomingCalls of `greet` from its call in services/a name every project.
- Neovim 0.11 (configured by the README's snippet): its own rename (`vim.lsp.buf.rename`)
  changes every project's file and keeps the alias.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import procs
import pytest
from clients import BACKENDS, BIN
from layouts import Layout, build

from real.claude_code import ClaudeCode, ModelRequest, Script, ScriptedModel, lsp, position
from real.editors import EditorRun, run_editor
from real.readme import snippet

NVIM = BIN / "nvim"
RENAME = Path(__file__).parent / "nvim" / "rename.lua"


def git_layout(base: Path) -> Layout:
    """The layout in a git repository (Neovim's root marker; Claude Code's ignore check)."""
    layout = build(base / "repo")
    subprocess.run(["git", "init", "-q", str(layout.root)], check=True)
    (layout.root / ".gitignore").write_text(".venv/\n")
    return layout


# -- Claude Code ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def told(
    request: pytest.FixtureRequest,
    claude: Path,
    checkout: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """What Claude Code told the model for each call, from one `claude -p` session."""
    backend = str(request.param)
    base = tmp_path_factory.mktemp(f"claude-across-{backend}")
    layout = git_layout(base)
    home = base / "home"
    code = ClaudeCode(
        claude,
        home,
        path=os.pathsep.join([str(BIN), os.environ.get("PATH", os.defpath)]),
        env={"TYPEMUX_LSP_BACKEND": backend, "TYPEMUX_LSP_LOG_FILE": str(home / "proxy.log")},
    )
    code.install_plugin(checkout)
    app = layout.path("services/a/app.py")
    at = position(app, 'greet("a")')
    calls = {
        "references": lsp("findReferences", app, *at),
        "incoming": lsp("incomingCalls", app, *at),
    }

    def script() -> Script:
        _request: ModelRequest = yield list(calls.values())

    try:
        with ScriptedModel(script()) as model:
            done = code.run("Who uses greet?", model, layout.root, "LSP")
        model.check()
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{code.debug_log()}"
        left = asyncio.run(procs.wait_gone(procs.tagged(code.marker), timeout=15))
        assert left == [], left
        yield {name: model.result(call) for name, call in calls.items()}
    finally:
        procs.kill(procs.tagged(code.marker))


def test_claude_code_find_references_names_every_project(told: dict[str, str]) -> None:
    references = told["references"]
    for file in (
        "libs/core/src/core/__init__.py",
        "services/a/app.py",
        "services/b/app.py",
        "services/alias/app.py",
    ):
        assert f"{file}:" in references, references


def test_claude_code_incoming_calls_names_every_consumer(told: dict[str, str]) -> None:
    incoming = told["incoming"]
    for file in ("services/a/app.py", "services/b/app.py"):
        assert f"{file}:\n  main (Function)" in incoming, incoming


# -- Neovim ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def nvim_rename(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> EditorRun:
    backend = str(request.param)
    if not NVIM.exists():
        pytest.fail(f"no {NVIM}: install the test extra (pip install -e '.[dev]')", pytrace=False)
    base = tmp_path_factory.mktemp(f"nvim-across-{backend}")
    layout = git_layout(base)
    init = base / "init.lua"
    init.write_text(snippet("Neovim", "lua").replace("'basedpyright'", f"'{backend}'"))
    return run_editor(
        [str(NVIM), "--headless", "-u", str(init), "-l", str(RENAME)],
        backend=backend,
        repo=cast(Any, layout),  # (run_editor reads only its root)
        base=base,
    )


def test_neovim_rename_changes_every_project_and_keeps_the_alias(nvim_rename: EditorRun) -> None:
    files = nvim_rename.value("rename")
    assert "def salute(name: str)" in files["libs/core/src/core/__init__.py"], files
    for name in ("a", "b"):
        text = files[f"services/{name}/app.py"]
        assert "from core import salute\n" in text and f'salute("{name}")' in text, files
    alias = files["services/alias/app.py"]
    assert "from core import salute as hello" in alias and 'hello("alias")' in alias, files


def test_neovim_exit_leaves_nothing(nvim_rename: EditorRun) -> None:
    assert nvim_rename.returncode == 0, nvim_rename.context()
    assert nvim_rename.left == [], f"{nvim_rename.left}\n{nvim_rename.context()}"
