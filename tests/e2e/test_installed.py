"""typemux-lsp installed from its wheel, not run from a clone.

The wheel is built from this checkout and installed (`--no-deps`) into a fresh venv that
borrows this venv's site-packages for its dependencies (a `.pth` line: no index, ~3 s) but
none of its programs: the one backend "installed" with it is ty, linked into its bin, as
`pip install 'typemux-lsp[ty]'` leaves it. Run from a directory outside the clone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from clients import REPO_ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a venv holding typemux-lsp's wheel and only the ty backend."""
    tmp = tmp_path_factory.mktemp("installed")
    pip = [sys.executable, "-m", "pip"]
    build = ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist")]
    subprocess.run([*pip, *build, str(REPO_ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("typemux_lsp-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = ["--python", str(python), "install", "-q", "--no-deps", str(wheel)]
    subprocess.run([*pip, *install], check=True, capture_output=True)
    (venv / "bin" / "ty").symlink_to(Path(sys.executable).parent / "ty")
    return venv / "bin"


def run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TYPEMUX_LSP_")}
    env["PATH"] = "/usr/bin:/bin"  # no backend from this venv or anywhere else
    env["XDG_CONFIG_HOME"] = str(cwd / "config")
    env["XDG_CACHE_HOME"] = str(cwd / "cache")
    return subprocess.run(
        [str(bin_dir / "typemux-lsp"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_installed_package_is_the_wheel(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [str(installed / "python"), "-c", "import typemux_lsp; print(typemux_lsp.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert not Path(where.strip()).is_relative_to(REPO_ROOT), where


def test_with_only_ty_installed_the_doctor_chooses_ty_and_says_why(
    installed: Path, tmp_path: Path
) -> None:
    done = run(installed, "--doctor", "--json", str(tmp_path), cwd=tmp_path)
    report = json.loads(done.stdout)
    backend = report["settings"]["backend"]
    assert backend["value"] == "ty", backend
    assert backend["source"] == "default"
    assert "ty is the one backend installed" in backend["reason"], backend
    assert [b["kind"] for b in report["backends"]] == ["ty"]
    assert not [p for p in report["problems"] if "pyright" in p["message"]], report["problems"]
    assert done.returncode == 0, report["problems"]
    text = run(installed, "--doctor", str(tmp_path), cwd=tmp_path).stdout
    assert "(auto: ty is the one backend installed)" in text, text


def test_the_demo_runs_from_the_installed_package(installed: Path, tmp_path: Path) -> None:
    done = run(installed, "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "backend ty (auto: ty is the one backend installed)" in out, out
    assert "def area(radius: float) -> float" in out, out  # alpha: shapes 1.x
    assert "venv:        beta/.venv" in out, out
