"""typemux-lsp in Emacs + eglot (Debian emacs-nox, elpa-eglot), configured by the README's snippet.

One batch Emacs per backend: eglot manages alpha/app.py then beta/app.py with one server,
hover and definition in each, diagnostics (flymake) after an edit in each; then Emacs quits with
the server running. Skipped, with the reason shown, where the machine has no Emacs or eglot
(.ci/run installs both with apt-get when it can).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from clients import BACKENDS
from conftest import make_monorepo

from real.editors import (
    EditorRun,
    assert_definition_into_each_venv,
    assert_diagnostics_after_an_edit_from_each_venv,
    assert_hover_from_each_venv,
    run_editor,
)
from real.readme import snippet

CHECK = Path(__file__).parent / "emacs" / "check.el"


def _emacs_with_eglot() -> str | None:
    """Why Emacs + eglot cannot run here, or None when they can."""
    emacs = shutil.which("emacs")
    if emacs is None:
        return "no emacs on PATH (apt-get install emacs-nox elpa-eglot)"
    done = subprocess.run(
        [emacs, "--batch", "--eval", "(require 'eglot)"], capture_output=True, timeout=60
    )
    if done.returncode != 0:
        return "emacs has no eglot (apt-get install elpa-eglot)"
    return None


@pytest.fixture(scope="module", params=BACKENDS)
def emacs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EditorRun:
    backend = str(request.param)
    if reason := _emacs_with_eglot():
        pytest.skip(reason)
    base = tmp_path_factory.mktemp(f"emacs-{backend}")
    repo = make_monorepo(base / "monorepo")
    config = snippet("Emacs", "elisp")
    assert config.count('"--backend" "pyright"') == 1, config
    init = base / "typemux.el"
    init.write_text(config.replace('"--backend" "pyright"', f'"--backend" "{backend}"'))
    emacs = shutil.which("emacs")
    assert emacs
    return run_editor(
        [emacs, "--batch", "-l", str(CHECK)],
        backend=backend,
        repo=repo,
        base=base,
        env={"CHECK_CONFIG": str(init)},
    )


def test_hover_from_each_venv(emacs: EditorRun) -> None:
    assert_hover_from_each_venv(emacs)


def test_definition_into_each_venv(emacs: EditorRun) -> None:
    assert_definition_into_each_venv(emacs)


def test_diagnostics_after_an_edit_from_each_venv(emacs: EditorRun) -> None:
    assert_diagnostics_after_an_edit_from_each_venv(emacs)


def test_one_server_for_both_projects(emacs: EditorRun) -> None:
    assert emacs.value("same server") is True


def test_quit_leaves_nothing(emacs: EditorRun) -> None:
    """Emacs quits with the server running (it sends SIGHUP to the server's process group)."""
    assert emacs.returncode == 0, emacs.context()
    commands = [proc.cmdline for proc in emacs.seen]
    assert any("typemux-lsp" in command for command in commands), commands
    assert emacs.left == [], f"{emacs.left}\n{emacs.context()}"
