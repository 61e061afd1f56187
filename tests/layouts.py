"""Monorepo layouts for answers across projects, built offline.

`libs/core` (its own `.venv`) installed editable into each consumer's `.venv` the way uv,
hatchling and PDM do it: a `.pth` file naming the library's source directory. A consumer
calls `greet` once; `services/alias` imports it under an alias; `services/b/loud.py`
subclasses core's `Greeter`. `uv_workspace` builds the
other shape: one environment at the root that has every member installed, so nothing fans
out.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CORE = '''"""The shared library."""


def greet(name: str) -> str:
    """Say hello."""
    return f"hello {name}"


class Greeter:
    def greet(self, name: str) -> str:
        return greet(name)
'''

CONSUMER = """from core import greet


def main() -> str:
    return greet("{name}")
"""

LOUD = """from core import Greeter


class Loud(Greeter):
    def greet(self, name: str) -> str:
        return name.upper()
"""

ALIAS = """from core import greet as hello


def main() -> str:
    return hello("alias")
"""


@dataclass(frozen=True)
class Layout:
    root: Path
    consumers: tuple[str, ...]

    def path(self, relative: str) -> Path:
        return self.root / relative

    def uri(self, relative: str) -> str:
        return self.path(relative).as_uri()

    @property
    def core(self) -> Path:
        return self.root / "libs/core/src/core/__init__.py"


def make_venv(venv: Path, python: str = sys.executable) -> Path:
    """A `--without-pip` venv (offline, ~1 s); its site-packages."""
    subprocess.run(
        [python, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    found = sorted(venv.glob("lib/python3*/site-packages"))
    assert found, f"no site-packages in {venv}"
    return found[0]


def _project(directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0.1"\n', encoding="utf-8"
    )


def build(
    root: Path, consumers: int = 2, *, alias: bool = True, template: Path | None = None
) -> Layout:
    """`libs/core` and `services/a`, `services/b`, … (`consumers` of them), each with its
    own venv, core installed editable (`_core.pth`) into each consumer's; plus
    `services/alias` when `alias`. `template`: a venv copied instead of created."""
    core_dir = root / "libs/core"
    _project(core_dir, "core")
    package = core_dir / "src/core"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(CORE, encoding="utf-8")
    make_venv(core_dir / ".venv")
    names = [chr(ord("a") + i) if i < 26 else f"s{i}" for i in range(consumers)]
    if alias:
        names.append("alias")
    for name in names:
        service = root / "services" / name
        _project(service, f"service-{name}")
        text = ALIAS if name == "alias" else CONSUMER.format(name=name)
        (service / "app.py").write_text(text, encoding="utf-8")
        if name == "b":
            (service / "loud.py").write_text(LOUD, encoding="utf-8")
        site = make_venv(service / ".venv")
        (site / "_core.pth").write_text(f"{core_dir / 'src'}\n", encoding="utf-8")
    return Layout(root, tuple(names))


def build_uv_workspace(root: Path) -> Layout:
    """A uv workspace: members `libs/core`, `services/a`, `services/b`, `services/alias`,
    one `.venv` at the root with every member installed editable (as `uv sync` does)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "ws"\nversion = "0.1"\n\n'
        '[tool.uv.workspace]\nmembers = ["libs/*", "services/*"]\n',
        encoding="utf-8",
    )
    (root / "uv.lock").write_text("version = 1\n", encoding="utf-8")
    core_dir = root / "libs/core"
    _project(core_dir, "core")
    (core_dir / "src/core").mkdir(parents=True)
    (core_dir / "src/core/__init__.py").write_text(CORE, encoding="utf-8")
    site = make_venv(root / ".venv")
    lines = [str(core_dir / "src")]
    for name in ("a", "b", "alias"):
        service = root / "services" / name
        _project(service, f"service-{name}")
        text = ALIAS if name == "alias" else CONSUMER.format(name=name)
        (service / "app.py").write_text(text, encoding="utf-8")
        lines.append(str(service))
    (site / "_members.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Layout(root, ("a", "b", "alias"))
