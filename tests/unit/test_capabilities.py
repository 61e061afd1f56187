"""The probe started at launch, before the workspace is known: what its PATH may hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typemux_lsp.backends import KINDS
from typemux_lsp.capabilities import Answers, Probe, _outside_projects, prestart


def test_prestart_path_leaves_out_repositories_and_environments(tmp_path: Path) -> None:
    repo, venv, plain = tmp_path / "repo", tmp_path / "venv", tmp_path / "tools"
    (repo / ".git").mkdir(parents=True)
    (repo / "bin").mkdir()
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (plain / "bin").mkdir(parents=True)
    path = os.pathsep.join(str(p) for p in (repo / "bin", venv / "bin", plain / "bin"))
    assert _outside_projects(path) == str(plain / "bin")


def test_a_probe_started_at_launch_is_used_only_if_its_path_is_safe_for_the_roots(
    tmp_path: Path,
) -> None:
    tools, workspace = tmp_path / "tools", tmp_path / "workspace"
    (tools / "bin").mkdir(parents=True)
    workspace.mkdir()
    script = tools / "bin" / "fake"
    script.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    script.chmod(0o755)
    env = {"PATH": f"{tools / 'bin'}{os.pathsep}/usr/bin"}
    probe = Probe(KINDS["ty"], env, script)
    try:
        assert probe.safe_for(workspace)
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # tools now in it
        assert not probe.safe_for(workspace)
        assert probe.answer(0.05) is None  # never asked: no answer, no hang
    finally:
        probe.close()


def test_no_probe_at_launch_once_the_installed_version_was_asked(tmp_path: Path) -> None:
    answers = Answers(tmp_path / "cache")
    kind = KINDS["ty"]
    first = prestart(kind, tmp_path, answers)
    assert first is not None, "ty is installed with the test extra"
    first.close()
    answers.save(kind, {"some": "client"}, {"capabilities": {}})
    assert prestart(kind, tmp_path, answers) is None
