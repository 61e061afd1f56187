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
from clients import BACKENDS, definition_targets, hover_text
from conftest import make_monorepo

from real.editors import EditorRun, run_editor
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
    alpha = hover_text(emacs.value("alpha hover"))
    beta = hover_text(emacs.value("beta hover"))
    assert "def area(radius: float) -> float" in alpha and "Circle" not in alpha, alpha
    assert "Circle" in beta and "radius: float" in beta and "def area(" not in beta, beta


def test_definition_into_each_venv(emacs: EditorRun) -> None:
    alpha = definition_targets(emacs.value("alpha definition"))
    beta = definition_targets(emacs.value("beta definition"))
    assert alpha == [(emacs.repo.shapes_init("alpha").as_uri(), 5)], alpha
    line = 8 if emacs.backend == "pyrefly" else 5  # pyrefly: Circle(...)'s __init__
    assert beta == [(emacs.repo.shapes_init("beta").as_uri(), line)], beta


def test_diagnostics_after_an_edit_from_each_venv(emacs: EditorRun) -> None:
    """The same appended `shapes.area("wide")` is a type error in alpha, no such name in beta."""
    alpha = [d["message"] for d in emacs.value("alpha diagnostics") if d["line"] == 18]
    beta = [d["message"] for d in emacs.value("beta diagnostics") if d["line"] == 17]
    assert any("float" in m for m in alpha), emacs.value("alpha diagnostics")
    assert any("area" in m for m in beta), emacs.value("beta diagnostics")
    assert not any("float" in m for m in beta), beta


def test_one_server_for_both_projects(emacs: EditorRun) -> None:
    assert emacs.value("same server") is True


def test_quit_leaves_nothing(emacs: EditorRun) -> None:
    """Emacs quits with the server running (it sends SIGHUP to the server's process group)."""
    assert emacs.returncode == 0, emacs.context()
    commands = [proc.cmdline for proc in emacs.seen]
    assert any("typemux-lsp" in command for command in commands), commands
    assert emacs.left == [], f"{emacs.left}\n{emacs.context()}"
