"""The four backend kinds: how to start each, and how each is told its interpreter.

Facts measured on the real servers (see the project notes): pyright and
basedpyright ignore `VIRTUAL_ENV` and take `python.pythonPath` from
`workspace/configuration`, then `python` on PATH; ty and pyrefly honour
`VIRTUAL_ENV` (ty otherwise falls back to the venv it is installed in: a
silently wrong answer). So every backend gets the environment three ways: environment
variables, PATH and its `workspace/configuration` answer.

A conda-style prefix (conda, mamba, pixi) is not a virtual environment: it has no
`pyvenv.cfg`, and `VIRTUAL_ENV` pointing at it would be a lie. ty and pyrefly read
`CONDA_PREFIX` for those, which is what an activated conda environment sets.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

from .documents import Encoding
from .environments import path_outside
from .probe import pyright_settings
from .tree import deep_merge, lookup
from .venv import Venv, canonical, git_toplevel

#: Environment variables of the proxy that must not leak into a backend's interpreter lookup.
_SCRUBBED_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "PYTHONSTARTUP",
)


@dataclass(frozen=True, slots=True)
class BackendKind:
    name: str
    executable: str
    args: tuple[str, ...]
    #: what `pip install` needs for this backend
    package: str
    #: the `workspace/configuration` section that carries the interpreter
    python_section: str
    #: encodings this kind picks from a client's offer, in its order of preference
    encodings: tuple[Encoding, ...]
    #: it reads its project's files only when first asked for references, and answers that
    #: request from before (measured on pyrefly 1.5.1: 0 of 840 references, then all): the
    #: warm-up asks once itself (session.py)
    populates_on_references: bool = False
    #: it checks a workspace folder with its default interpreter until that folder's
    #: `workspace/configuration` answer is applied, which happens on a recheck of its own:
    #: the `$/progress` it begins after the answer ends once the answer is in effect (measured
    #: on pyrefly 1.5.1: bench/join_race.py). A shared session holds a joining folder's
    #: requests and diagnostics until then (session.py)
    applies_configuration_in_recheck: bool = False
    #: it checks a file with the interpreter of the workspace folder that holds the directory
    #: of the file's configuration (pyrefly: the config file `pyrefly_config_dir` finds), not
    #: the file's own: a project whose config is above its folder would be checked with the
    #: folderless default's interpreter in a shared process, so it gets its own (`can_share`)
    folder_by_config: bool = False
    #: a workspace folder removed and added again re-reads its interpreter and site-packages
    #: (bench/readd_habits.py): an environment recreated under a shared process is renewed
    #: by that, its folder alone, instead of a restart of every project's backend
    renews_folders: bool = False
    #: whether its environments share one process by default (`backend-sharing = "auto"`):
    #: where it was measured to save memory without losing any test (bench/scale.py)
    shares_by_default: bool = False
    #: shared, it answers a hierarchy request (`merge.REPEATED_PER_FOLDER`) with an item once
    #: per workspace folder whose project sees it, spelled alike or not (measured on ty 1.2.0
    #: by bench/shared_habits.py; ty per environment answers each once): the proxy answers
    #: those with each item once (across.py `answer_once`)
    repeats_per_folder: bool = False
    #: methods one ask of a shared process answers for every folder it serves, each folder's
    #: project resolved in its own environment (ty 1.2.0, bench/shared_habits.py: incoming
    #: calls and subtypes; its references, rename and implementation search only the project
    #: of the folder holding the file; pyrefly 1.5.1, bench/shared_across.py: all five, once
    #: the folders' importing files are open): answers across projects ask it once for all
    spans_folders: frozenset[str] = frozenset()
    #: shared, it answers a file no folder tracks (outside every folder, or in an excluded
    #: `.venv`) from a folder whose program has it, else from its default workspace (another
    #: environment's): such a client document is pinned to its environment's folder first
    #: (pin.py; pyright 1.1.414 `_getBestWorkspaceForFile`)
    pins_untracked: bool = False
    #: methods a shared process answers for the folder holding the asked file only, so each
    #: other folder that sees the symbol is asked through a probe document under it (probe.py;
    #: across.py). A method in both this and `spans_folders` is probed: nothing spans then
    probes: frozenset[str] = frozenset()

    def can_share(self, project_dir: Path) -> bool:
        """Whether a shared process would check every one of `project_dir`'s files with its
        folder's interpreter: for a kind whose folder is chosen by the nearest config file, the
        project has one of its own, or none is above it; for a kind that answers a file its
        folder does not track from another folder (`pins_untracked`), the project's own
        configuration leaves its tracked files as they are by default (no `include`, no
        `exclude`: a file they leave out would be answered from another environment, and which
        ones they leave out is the backend's glob matching to know)."""
        if self.pins_untracked:
            settings = pyright_settings(project_dir, self.name)
            if settings is None or "include" in settings or "exclude" in settings:
                return False
        if not self.folder_by_config:
            return True
        found = pyrefly_config_dir(project_dir)
        return found is None or found == project_dir

    def resolve_executable(self, path: str) -> Path | None:
        """The backend from the proxy's own environment first, then `path` (a PATH that
        holds nothing of the repositories served: `backend_environment`).

        Never from the project's `.venv/bin`: opening a repository must not run a
        binary the repository ships.
        """
        own = Path(sys.executable).parent / self.executable
        if own.is_file() and os.access(own, os.X_OK):
            return own
        found = shutil.which(self.executable, path=path)
        return Path(found) if found else None

    def install_hint(self) -> str:
        return (
            f"install it next to typemux-lsp: `{sys.executable} -m pip install '{self.package}'` "
            f"(or reinstall typemux-lsp with the [{self.name}] extra), "
            f"or put `{self.executable}` on PATH"
        )

    def command(self, executable: Path, path: str) -> list[str]:
        """How to run `executable`: a `#!/usr/bin/env X` script gets X by absolute path from
        `path` (the backend's PATH), so no `node` found first elsewhere runs."""
        interpreter = _env_shebang(executable)
        if interpreter is not None:
            found = shutil.which(interpreter, path=path)
            if found is not None:
                return [found, str(executable), *self.args]
        return [str(executable), *self.args]

    def environment(self, venv: Venv, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The backend's environment: the proxy's own, with the environment selected by
        VIRTUAL_ENV (CONDA_PREFIX for a conda-style prefix) and a PATH that holds nothing of
        the project's repository.

        Opening a repository must not run a binary it ships: a `node`, `git` or `sh` in its
        `.venv/bin` (or anywhere in it) must not shadow the real ones. The interpreter
        reaches the backend by absolute path (VIRTUAL_ENV and the workspace/configuration
        answer); running it to read its search paths is the one thing a backend may run.
        """
        env = backend_environment(venv.project_dir, base=base)
        env["VIRTUAL_ENV" if venv.is_venv else "CONDA_PREFIX"] = str(venv.path)
        return env

    def shared_environment(
        self, venvs: Iterable[Venv], base: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """A shared backend's environment: no environment variable selects an interpreter
        (one process serves several; each folder's comes from `workspace/configuration`),
        and a PATH without any of its projects' repositories."""
        return backend_environment(*(v.project_dir for v in venvs), base=base)

    def choose_encoding(self, offered: Sequence[str] | None) -> Encoding:
        """The position encoding this kind would pick from the client's offer."""
        offer = set(offered or ())
        for enc in self.encodings:
            if enc.value in offer:
                return enc
        return Encoding.UTF16

    def configuration(self, section: str | None, venv: Venv, settings: Any) -> Any:
        """Answer one `workspace/configuration` item for this backend.

        `settings` are the client's (from `workspace/didChangeConfiguration`) and the
        user's backend settings, as one nested mapping; the interpreter path always
        wins, because it is the one thing this proxy exists to get right.
        """
        value = lookup(settings, section)
        if section == self.python_section:
            value = deep_merge(
                value if isinstance(value, dict) else {}, self.interpreter_setting(venv)
            )
        return value

    def interpreter_setting(self, venv: Venv) -> dict[str, Any]:
        """The setting, inside `python_section`, that names the environment's interpreter.

        ty reads `configuration.environment.python` (verified: a bare
        `environment.python` is ignored), a prefix, conda-style ones included; the others
        read `pythonPath`, the interpreter (they ask it for its search paths).
        """
        if self.name == "ty":
            return {"configuration": {"environment": {"python": str(venv.path)}}}
        return {"pythonPath": str(venv.python)}

    def initialize_profile(self, client_capabilities: Any = None) -> dict[str, Any]:
        """The `initialize` result this kind gives a client with these capabilities.

        Recorded from the real server by `scripts/capture_profiles.py`, with the variants
        it measured (pyrefly's semantic tokens, ty's static diagnostic provider depend on
        what the client declares). A fresh copy: callers adjust it.
        """
        profile = _load_profile(self.name)
        result: dict[str, Any] = copy.deepcopy(profile["initializeResult"])
        caps = result.setdefault("capabilities", {})
        for variant in profile.get("variants", ()):
            node = client_capabilities
            for key in variant["when"]:
                node = node.get(key) if isinstance(node, dict) else None
            if node == variant["is"]:
                caps.update(copy.deepcopy(variant["set"]))
                for key in variant["unset"]:
                    caps.pop(key, None)
        return result


@cache
def _load_profile(name: str) -> dict[str, Any]:
    text = resources.files("typemux_lsp").joinpath("profiles", f"{name}.json").read_text("utf-8")
    profile = json.loads(text)
    assert isinstance(profile, dict)
    return profile


def backend_environment(*projects: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment any backend process runs in (a session's, the initialize probe's,
    the doctor's `--version`): the proxy's own without what selects another Python
    environment, and a PATH without `projects`' repositories (`safe_path`)."""
    env = {k: v for k, v in (os.environ if base is None else base).items()}
    for key in _SCRUBBED_ENV:
        env.pop(key, None)
    env["PATH"] = safe_path(env.get("PATH", ""), *projects)
    # pyright's PyPI wrapper checks PyPI for a newer version on every start otherwise.
    env.setdefault("PYRIGHT_PYTHON_IGNORE_WARNINGS", "1")
    return env


def safe_path(path: str, *projects: Path) -> str:
    """`path` without the entries a repository could plant a program in: relative ones
    (they are relative to the backend's cwd, the project) and any inside the repository of
    one of `projects` (an activated `.venv/bin`, a `bin/` it ships)."""
    return path_outside(path, *(git_toplevel(p) or canonical(p) for p in projects))


def pyrefly_config_dir(start: Path) -> Path | None:
    """The directory of the configuration pyrefly takes for a file in `start`: the nearest
    real pyrefly config (`pyrefly.toml`, `.pyrefly.toml`, a `pyproject.toml` with
    `[tool.pyrefly]` or that cannot be read), else the nearest `pyproject.toml` with
    `[tool.ruff]`, `[tool.mypy]` or `[tool.pyright]`, else the nearest marker
    (`pyproject.toml`, `mypy.ini`, `pyrightconfig.json`); each searched upward to the root
    before the next (pyrefly 1.5.1, `pyrefly_config::finder`). None: none at all."""
    directories = (start, *start.parents)
    tools: dict[Path, dict[str, Any] | None] = {}

    def tool(directory: Path) -> dict[str, Any] | None:
        """`[tool]` of the directory's pyproject.toml ({} without; None: unreadable)."""
        if directory not in tools:
            try:
                with open(directory / "pyproject.toml", "rb") as f:
                    table = tomllib.load(f).get("tool", {})
                tools[directory] = table if isinstance(table, dict) else {}
            except OSError:
                tools[directory] = {}
            except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                tools[directory] = None
        return tools[directory]

    def has(directory: Path, name: str) -> bool:
        return (directory / name).is_file()

    for directory in directories:
        if has(directory, "pyrefly.toml") or has(directory, ".pyrefly.toml"):
            return directory
        if has(directory, "pyproject.toml"):
            table = tool(directory)
            if table is None or "pyrefly" in table:
                return directory
    for directory in directories:
        if has(directory, "pyproject.toml") and {"ruff", "mypy", "pyright"} & set(
            tool(directory) or ()
        ):
            return directory
    for directory in directories:
        if any(has(directory, n) for n in ("pyproject.toml", "mypy.ini", "pyrightconfig.json")):
            return directory
    return None


def _env_shebang(executable: Path) -> str | None:
    """X of a `#!/usr/bin/env X` first line, if `executable` is such a script."""
    try:
        with open(executable, "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode(errors="replace").split()
    if len(parts) >= 2 and os.path.basename(parts[0]) == "env":
        name = parts[2] if parts[1] == "-S" and len(parts) > 2 else parts[1]
        return name if "/" not in name else None
    return None


#: the questions across projects (`features.ACROSS_METHODS` less the prepares, which ask the
#: definition's owner only) a shared pyright answers for one folder only: every one probed
_PROBED_ACROSS: Final = frozenset(
    {
        "textDocument/references",
        "textDocument/rename",
        "textDocument/implementation",
        "callHierarchy/incomingCalls",
        "typeHierarchy/subtypes",
    }
)

KINDS: dict[str, BackendKind] = {
    kind.name: kind
    for kind in (
        # pyright and basedpyright: shared by default (535 / 566 MiB for 20 projects against
        # 3335 / 3470 per process: README). Every suite passes shared: answers across projects
        # ask each folder through a probe document (probe.py); a file no folder tracks (a
        # library file of an environment outside its project) is pinned to its environment's
        # folder before it opens, else pyright's default workspace answers it (pin.py).
        BackendKind(
            "pyright",
            "pyright-langserver",
            ("--stdio",),
            "pyright[nodejs]",
            "python",
            (Encoding.UTF16,),
            pins_untracked=True,
            shares_by_default=True,
            renews_folders=True,
            probes=_PROBED_ACROSS,
        ),
        BackendKind(
            "basedpyright",
            "basedpyright-langserver",
            ("--stdio",),
            "basedpyright",
            "python",
            (Encoding.UTF16,),
            pins_untracked=True,
            shares_by_default=True,
            renews_folders=True,
            probes=_PROBED_ACROSS,
        ),
        # ty: shared by default (134 MiB for 20 projects against 618 per process: README); every
        # e2e suite and the real clients' tests pass with it shared. Shared (ty 1.2.0,
        # bench/shared_habits.py), references, rename and implementation search only the
        # project of the folder that holds the asked file: each other folder is asked through
        # a probe document (probe.py; its references leave out a declaration outside the
        # folder's project, so the probe's definition is the check); its hierarchies search
        # every folder's project (asked once across projects), repeating an item per folder
        # that sees it (answered once).
        BackendKind(
            "ty",
            "ty",
            ("server",),
            "ty",
            "ty",
            (Encoding.UTF8, Encoding.UTF16),
            repeats_per_folder=True,
            spans_folders=frozenset({"callHierarchy/incomingCalls", "typeHierarchy/subtypes"}),
            renews_folders=True,
            probes=frozenset(
                {
                    "textDocument/references",
                    "textDocument/rename",
                    "textDocument/implementation",
                }
            ),
            shares_by_default=True,
        ),
        # pyrefly: per process. Shared it passes every suite (a joining folder's requests wait
        # until its configuration answer is in effect: session.py; one question covers every
        # folder's view: across.py; a project under another's config gets its own process), and
        # wins 18x on memory for projects without dependencies, but with real ones (Django,
        # pandas: bench/scale.py --fixtures deps) it loses: 657 MiB for 5 projects shared against
        # 433 per process, 1578 against 1737 for 20, and 2.0-2.6 s to a new project's first
        # correct hover against 0.4-0.5 s: every join's configuration answer starts a recheck
        # (it always counts as a change) that the joining folder waits for. A recreated
        # environment restarts a shared pyrefly whole (it never re-reads a folder added back:
        # bench/readd_habits.py).
        BackendKind(
            "pyrefly",
            "pyrefly",
            ("lsp",),
            "pyrefly",
            "python",
            (Encoding.UTF16,),
            populates_on_references=True,
            applies_configuration_in_recheck=True,
            folder_by_config=True,
            spans_folders=frozenset(
                {
                    "textDocument/references",
                    "textDocument/rename",
                    "textDocument/implementation",
                    "callHierarchy/incomingCalls",
                    "typeHierarchy/subtypes",
                }
            ),
        ),
    )
}

#: `backend = "auto"`, the default: see `choose_auto`
AUTO = "auto"
DEFAULT_KIND = AUTO
#: what "auto" takes when several backends (or none) are installed
PREFERRED = ("pyright", "basedpyright", "ty", "pyrefly")


def choose_auto(path: str) -> tuple[str, str]:
    """`backend = "auto"`: the one backend installed when only one is (a user who installed
    `typemux-lsp[ty]` means ty), else pyright, or the first installed in `PREFERRED` when
    pyright is not. `path` is the PATH backends are looked up on (`safe_path`). Returns the
    kind and why, in words."""
    installed = [name for name in PREFERRED if KINDS[name].resolve_executable(path)]
    if len(installed) == 1:
        return installed[0], f"auto: {installed[0]} is the one backend installed"
    if not installed:
        return "pyright", "auto: no backend is installed, so pyright (the default) is expected"
    chosen = installed[0]
    return chosen, (
        f"auto: {len(installed)} backends installed ({', '.join(installed)}), "
        f"so {chosen}" + (" (the default)" if chosen == "pyright" else " (pyright is not)")
    )
