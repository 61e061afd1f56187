"""Build Python environments of every kind offline, for the environment tests.

- `fake_venv` / `fake_conda`: the files discovery looks at, nothing that runs (unit tests).
- `real_venv`: `python -m venv --without-pip` (an interpreter that runs).
- `real_conda`: a conda-style prefix that really works: `bin/python` is a copy of this
  interpreter's binary (so `sys.prefix` is the prefix, as in a conda environment), the standard
  library is linked in, and `conda-meta/` holds a python package record. No pyvenv.cfg.
- `install`: copies a vendored package (examples/monorepo/*/vendor) into site-packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
FULL_VERSION = f"{VERSION}.{sys.version_info.micro}"


def site_packages(prefix: Path) -> Path:
    return prefix / "lib" / f"python{VERSION}" / "site-packages"


def fake_venv(prefix: Path, version: str = FULL_VERSION) -> Path:
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion = {version}\n")
    (prefix / "bin").mkdir(exist_ok=True)
    (prefix / "bin" / "python").touch()
    site_packages(prefix).mkdir(parents=True, exist_ok=True)
    return prefix


def fake_conda(prefix: Path, version: str = FULL_VERSION) -> Path:
    (prefix / "conda-meta").mkdir(parents=True, exist_ok=True)
    (prefix / "conda-meta" / f"python-{version}-h1234_0_cpython.json").write_text("{}")
    (prefix / "bin").mkdir(exist_ok=True)
    (prefix / "bin" / "python").touch()
    site_packages(prefix).mkdir(parents=True, exist_ok=True)
    return prefix


def real_venv(prefix: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--clear", str(prefix)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return prefix


def real_conda(prefix: Path) -> Path:
    """A prefix laid out as conda lays it out, whose interpreter runs with sys.prefix there."""
    binary = Path(os.path.realpath(sys.executable))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, prefix / "bin" / binary.name)
    for name in ("python", "python3"):
        link = prefix / "bin" / name
        if not link.exists():
            link.symlink_to(binary.name)
    lib = prefix / "lib" / f"python{VERSION}"
    lib.mkdir(parents=True, exist_ok=True)
    for entry in stdlib.iterdir():
        if entry.name != "site-packages" and not (lib / entry.name).exists():
            (lib / entry.name).symlink_to(entry)
    (lib / "site-packages").mkdir(exist_ok=True)
    meta = prefix / "conda-meta"
    meta.mkdir(exist_ok=True)
    (meta / f"python-{FULL_VERSION}-h1234_0_cpython.json").write_text("{}")
    (meta / "history").write_text("==> 2026-11-01 00:00:00 <==\n")
    return prefix


def install(prefix: Path, vendor: Path) -> None:
    """Copy each package of `vendor` into the prefix's site-packages (a stale copy replaced)."""
    target = site_packages(prefix)
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(vendor.iterdir()):
        if item.is_dir() and item.name != "__pycache__":
            shutil.rmtree(target / item.name, ignore_errors=True)
            shutil.copytree(item, target / item.name)


def run_python(prefix: Path, code: str) -> str:
    done = subprocess.run(
        [str(prefix / "bin" / "python"), "-I", "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip()
