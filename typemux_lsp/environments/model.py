"""What a lookup answers: an environment, or why a file has none.

An `Environment` is a Python prefix: a virtual environment (it has `pyvenv.cfg`) or a
conda-style prefix (it has `conda-meta/`, as conda, mamba and pixi make them). Its `path` is
spelled as it was found, its `key` (the real path) is its identity: one backend per key.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ._fs import canonical

_WINDOWS = sys.platform == "win32"
PYVENV_CFG = "pyvenv.cfg"
CONDA_META = "conda-meta"
_CONDA_PYTHON = re.compile(r"^python-(\d+\.\d+(?:\.\d+)?)-")


def is_environment(prefix: Path) -> bool:
    """Whether `prefix` holds a Python environment (a venv or a conda-style prefix)."""
    return (prefix / PYVENV_CFG).is_file() or (prefix / CONDA_META).is_dir()


def interpreter(prefix: Path) -> Path:
    """The interpreter of a prefix: `bin/python`; on Windows `Scripts\\python.exe` in a venv,
    `python.exe` at the top of a conda prefix."""
    if not _WINDOWS:
        return prefix / "bin" / "python"
    if (prefix / PYVENV_CFG).is_file():
        return prefix / "Scripts" / "python.exe"
    return prefix / "python.exe"


def prefix_of(python: Path) -> Path:
    """The prefix an interpreter path belongs to (`<prefix>/bin/python` -> `<prefix>`)."""
    parent = python.parent
    return parent.parent if parent.name in ("bin", "Scripts") else parent


@dataclass(frozen=True, slots=True, init=False)
class Environment:
    """A Python environment, where it was found and for which project."""

    #: the environment prefix as found (as spelled, not resolved)
    path: Path
    #: the real path of the prefix: its identity, one backend per key
    key: Path
    #: where the backend is rooted (cwd, rootUri): the directory holding the `.venv` entry or
    #: the manager's marker, as spelled (a symlinked `.venv` does not move the project)
    project_dir: Path
    #: the interpreter
    python: Path
    #: which kind of project/manager it belongs to: "venv", "pep832", "uv-workspace",
    #: "poetry", "pdm", "hatch", "pixi", "conda", "pipenv", "pep723" or "config"
    manager: str
    #: how it was found, in words (for --doctor and typemux/status)
    found_by: str

    def __init__(
        self,
        path: Path,
        key: Path | None = None,
        project_dir: Path | None = None,
        python: Path | None = None,
        manager: str = "venv",
        found_by: str = "",
    ) -> None:
        """`Environment(prefix)` alone is the `.venv` at `prefix`, its parent the project."""
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "key", key if key is not None else canonical(path))
        object.__setattr__(self, "project_dir", project_dir or path.parent)
        object.__setattr__(self, "python", python or interpreter(path))
        object.__setattr__(self, "manager", manager)
        object.__setattr__(self, "found_by", found_by or f".venv in {path.parent}")

    @property
    def cfg(self) -> Path:
        return self.path / PYVENV_CFG

    @property
    def is_venv(self) -> bool:
        """A virtual environment (has pyvenv.cfg); otherwise a conda-style prefix."""
        return self.cfg.is_file()

    @property
    def bin_dir(self) -> Path:
        """Where the environment's executables are (put first on a backend's PATH)."""
        return self.python.parent

    def exists(self) -> bool:
        return is_environment(self.path)

    def identity(self) -> tuple[int, int] | None:
        """Changes when the environment is deleted or recreated; None when it is gone.

        A venv: its `pyvenv.cfg`. A conda-style prefix: its `conda-meta/` directory, whose
        mtime also changes when a package is installed or removed (the backend then restarts
        with a fresh view of the prefix).
        """
        for marker in (self.cfg, self.path / CONDA_META):
            try:
                st = os.stat(marker)
            except OSError:
                continue
            return (st.st_ino, st.st_mtime_ns)
        return None

    def python_version(self) -> str | None:
        """The version recorded in the prefix (pyvenv.cfg, or conda-meta's python package)."""
        try:
            text = self.cfg.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = None
        if text is not None:
            for line in text.splitlines():
                key, sep, value = line.partition("=")
                if sep and key.strip() in ("version", "version_info"):
                    return value.strip()
            return None
        try:
            names = os.listdir(self.path / CONDA_META)
        except OSError:
            names = []
        for name in sorted(names):
            match = _CONDA_PYTHON.match(name)
            if match and name.endswith(".json"):
                return match.group(1)
        lib = sorted(p.name for p in (self.path / "lib").glob("python3.*"))
        return lib[-1].removeprefix("python") if lib else None

    def site_dirs(self) -> tuple[Path, ...]:
        """Its site-packages directories, each once (lib64 is often a link to lib)."""
        if _WINDOWS:
            roots = [self.path / "Lib" / "site-packages"]
        else:
            roots = sorted(self.path.glob("lib*/python3*/site-packages"))
        found: list[Path] = []
        real: set[Path] = set()
        for site in roots:
            if site.is_dir() and canonical(site) not in real:
                real.add(canonical(site))
                found.append(site)
        return tuple(found)

    def site_packages(self) -> tuple[Path, ...]:
        """The directories imports resolve from: site-packages, and the directories its
        `.pth` files add (found by reading them; lines that run code are skipped)."""
        found: list[Path] = []
        for site in self.site_dirs():
            found.append(site)
            for extra in pth_paths(site):
                if extra not in found:
                    found.append(extra)
        return tuple(found)

    def __str__(self) -> str:
        return str(self.path)


def pth_paths(site: Path) -> list[Path]:
    """Existing directories named by the `.pth` files of a site-packages directory, in the
    order `site` processes them, and the source directories setuptools' editable finders
    map packages to (`MAPPING = {...}` in `__editable___*_finder.py`, read as data). Lines
    starting with `import` (code) are never run."""
    paths: list[Path] = []
    try:
        names = sorted(os.listdir(site))
    except OSError:
        return paths
    for name in names:
        if name.startswith("__editable___") and name.endswith("_finder.py"):
            for directory in _editable_mapping(site / name):
                if directory not in paths:
                    paths.append(directory)
            continue
        if not name.endswith(".pth"):
            continue
        try:
            text = (site / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.rstrip()
            if not line or line.startswith("#") or line.startswith(("import ", "import\t")):
                continue
            candidate = Path(line) if os.path.isabs(line) else site / line
            if candidate.is_dir() and candidate not in paths:
                paths.append(candidate)
    return paths


def _editable_mapping(finder: Path) -> list[Path]:
    """The directories holding the packages of a setuptools editable finder's `MAPPING`."""
    try:
        tree = ast.parse(finder.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return []
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "MAPPING" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            try:
                mapping = ast.literal_eval(node.value)
            except ValueError:
                return []
            found = []
            for target in mapping.values() if isinstance(mapping, dict) else ():
                if isinstance(target, str) and Path(target).parent.is_dir():
                    found.append(Path(target).parent)
            return found
    return []


@dataclass(frozen=True, slots=True)
class Missing:
    """A project that declares where its environment is, while it is not there.

    The strict error: never another project's environment in its place.
    """

    #: the manager the project declares ("poetry", "uv-workspace", ...; "venv" for a plain
    #: project, "config" for a typemux-lsp rule)
    manager: str
    #: the project that has no environment
    project_dir: Path
    #: what the project declares and why that gives no environment, in words
    reason: str
    #: where typemux-lsp looked
    looked: tuple[Path, ...]
    #: the exact command or change that creates it
    fix: str
    #: no later locator may answer in its place (a uv workspace, a rule, a script)
    final: bool = True

    def message(self, file: Path | str) -> str:
        looked = ", ".join(str(p) for p in self.looked)
        where = f" Looked at {looked}." if looked else ""
        what = "no .venv found" if self.manager in ("venv", "uv") else "no environment"
        reason = self.reason[:1].upper() + self.reason[1:]
        return (
            f"typemux-lsp: {what} for {file}. {reason}.{where} "
            "typemux-lsp answers only from a file's own environment, never another one. "
            f"Fix: {self.fix}; the next request picks it up, no restart needed."
        )


@dataclass(frozen=True, slots=True)
class Lookup:
    """The result of a search, with where it looked (for error messages)."""

    environment: Environment | None
    #: directories looked at, nearest first
    searched: tuple[Path, ...]
    #: the workspace folder or git toplevel the search stopped at, if any
    boundary: Path | None
    #: the project declares an environment that is not there (the strict error)
    missing: Missing | None = None
    #: the project the file belongs to, when one was found
    project_dir: Path | None = None

    @property
    def venv(self) -> Environment | None:
        """The name the server used before environments beyond `.venv` existed."""
        return self.environment


@dataclass(frozen=True, slots=True)
class ImportRoots:
    """The source directories an environment imports from, beyond its installed packages.

    An environment sees a source file when the file lies under one of these: its project's
    own sources (`project`, which holds uv workspace members too), and the directories its
    editable installs and settings add (`extra`): `.pth` path entries as uv, hatchling, PDM
    and setuptools' compat mode write them, setuptools' PEP 660 finder mappings (read, never
    run), and `extraPaths`-style settings. Paths are real (canonical).
    """

    #: the environment's key (its real prefix)
    key: Path
    #: the project's own sources: the files this environment answers for
    project: Path
    #: source directories outside the environment's prefix that it imports from
    extra: tuple[Path, ...]

    def sees(self, path: Path) -> bool:
        """Whether a module at `path` (real) is importable from a root of this environment."""
        return path.is_relative_to(self.project) or self.imports_from(path)

    def imports_from(self, path: Path) -> bool:
        """Whether `path` (real) lies under a root outside the project (another project's
        sources this environment has installed): the project's own files are the owner's to
        say, a nested project with its own environment is not this one's."""
        return any(path.is_relative_to(root) for root in self.extra)

    def shares_with(self, other: ImportRoots) -> bool:
        """Whether some file is seen by both: a file of one is under the other's roots, or
        both import from the same library."""
        mine, theirs = (self.project, *self.extra), (other.project, *other.extra)
        return any(
            a.is_relative_to(b) or b.is_relative_to(a)
            for a in mine
            for b in theirs
            if not (a == self.project and b == other.project)
        )


def import_roots(env: Environment, extra_paths: tuple[Path, ...] = ()) -> ImportRoots:
    """What `env` imports source from (see `ImportRoots`); `extra_paths` are the settings'
    `extraPaths`, relative to the project."""
    project = canonical(env.project_dir)
    extra: list[Path] = []
    for path in (*env.site_packages(), *(env.project_dir / p for p in extra_paths)):
        real = canonical(path)
        if real.is_relative_to(env.key) or real in extra or not real.is_dir():
            continue  # site-packages itself and what lies inside the prefix are packages
        extra.append(real)
    return ImportRoots(env.key, project, tuple(extra))
