"""Build the example monorepo's virtual environments offline.

The demo and the end-to-end tests need projects whose venvs hold *different* versions of the same
import name. Real installs would need a network and an index; instead each project ships its
dependencies as source in ``vendor/`` and this module copies them into a fresh
``python -m venv --without-pip`` environment. The copies live in the venv's own site-packages, so a
type checker resolves (and "go to definition" lands) inside that venv, exactly as after
``uv sync`` or ``pip install``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["build_venvs", "find_vendored_projects"]

VENDOR_DIR = "vendor"
VENV_DIR = ".venv"

# Directories never searched for projects: venvs, VCS metadata and caches can be large, and a
# vendored package may itself contain a directory called "vendor".
_SKIP_DIRS = frozenset({VENDOR_DIR, "node_modules", "__pycache__"})

_PURELIB_QUERY = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def find_vendored_projects(root: Path) -> list[Path]:
    """Return every directory at or below ``root`` that has a ``vendor/`` directory, sorted."""
    projects: list[Path] = []
    for current, dirs, _files in os.walk(root):
        if (Path(current) / VENDOR_DIR).is_dir():
            projects.append(Path(current))
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
    return projects


def build_venvs(root: Path, *, python: str = sys.executable) -> list[Path]:
    """Give every project below ``root`` that has a ``vendor/`` directory a ``.venv``.

    An existing, working venv is reused (only the vendored packages are refreshed), so calling
    this again is cheap. ``python`` is the interpreter the venvs are created from. Returns the
    venv directories in a stable order.
    """
    venvs: list[Path] = []
    for project in find_vendored_projects(root):
        venv = project / VENV_DIR
        site_packages = _site_packages(venv)
        if site_packages is None:
            _create_venv(venv, python)
            site_packages = _site_packages(venv)
            if site_packages is None:
                raise RuntimeError(f"{venv} was created but its interpreter does not run")
        _install_vendored(project / VENDOR_DIR, site_packages)
        venvs.append(venv)
    return venvs


def _venv_python(venv: Path) -> Path:
    """The venv's interpreter (POSIX layout first, then Windows)."""
    posix = venv / "bin" / "python"
    return posix if posix.exists() else venv / "Scripts" / "python.exe"


def _site_packages(venv: Path) -> Path | None:
    """Ask the venv's interpreter where its site-packages is; ``None`` if it is no working venv.

    Asking instead of guessing ``lib/pythonX.Y/site-packages`` keeps this right for every
    interpreter layout (Windows, PyPy, Debian's patched sysconfig).
    """
    interpreter = _venv_python(venv)
    if not (venv / "pyvenv.cfg").is_file() or not interpreter.exists():
        return None
    try:
        completed = subprocess.run(
            [str(interpreter), "-I", "-c", _PURELIB_QUERY],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(completed.stdout.strip())


def _create_venv(venv: Path, python: str) -> None:
    """Create (or recreate, if broken) ``venv`` without pip: fast and needs no network."""
    subprocess.run(
        [python, "-m", "venv", "--without-pip", "--clear", str(venv)],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _install_vendored(vendor: Path, site_packages: Path) -> None:
    """Copy each package (directory) and module (``*.py``) of ``vendor`` into site-packages.

    A stale copy is replaced, so editing ``vendor/`` and rebuilding is enough to update a venv.
    """
    site_packages.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for item in sorted(vendor.iterdir()):
        target = site_packages / item.name
        if item.is_dir() and item.name != "__pycache__":
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(item, target, ignore=ignore)
        elif item.is_file() and item.suffix == ".py":
            shutil.copy2(item, target)
