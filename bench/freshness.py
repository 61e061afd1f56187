"""How long each backend keeps answering from an old disk, per change and per way of telling it.

Decides issue 7's design: for each backend and each kind of change on disk, is a
`workspace/didChangeWatchedFiles` enough (and how fast), or is a restart the only or the
faster way? Every trial is a fresh copy of a small project with an offline-built venv and
a fresh backend, started straight (no proxy) exactly as the proxy starts it (command, cwd,
environment, initialize params, configuration answers), for a Claude Code-like client
(tests/clients.py's capabilities: no pull diagnostics, no progress, no file watching),
except that the backend is told the client *can* watch files (what the proxy will declare
once it sends the events itself).

Changes (the open document is `main.py`; every change is made after the backend has
analysed it):
  upgrade    an installed package's files rewritten in place (`make(size)` ->
             `make(size, upgraded=True)`, dist-info renamed 1.0 -> 2.0): hover shows it
  add        a package written into site-packages (with its .dist-info): the import resolves
  remove     that package deleted: the import is reported unresolved
  unopened   a project module nobody opened changes a return type: the open file's
             published diagnostics show the new error
  newmodule  a project module created that the open file imports: the import resolves
  config     an existing checker config turns an error into a warning: [tool.pyright] /
             [tool.basedpyright] / [tool.ty.rules] / [tool.pyrefly.errors] in pyproject.toml
  config-new the same by a config file created: pyrightconfig.json (pyright, basedpyright),
             ty.toml, pyrefly.toml
  opendoc    the open document rewritten on disk, the client says nothing
  burst      a `uv sync`-like burst: 320 modules of an installed package rewritten over ~1 s

Mechanisms:
  none     nothing (baseline; "stale" = not right within --bound seconds)
  files    one didChangeWatchedFiles naming each changed file (Created/Changed/Deleted)
  dirs     one didChangeWatchedFiles naming only the directories
  both     the directories and the files, as a recursive OS watcher reports them
  restart  shutdown/exit the backend, spawn -> initialize -> configuration -> didOpen again
  touch    `both`, then a no-op full-text didChange of the open file
  reconfig `both`, then `workspace/didChangeConfiguration` (settings null): the backend
           re-reads its configuration (and, it turns out, its import resolution)
  didchange  a full-text didChange with the disk text (opendoc only: what the proxy will send)

Delays are measured from the moment the disk settled (the last write) and the mechanism
was applied, to the first right answer: hover polled every 50 ms, diagnostics as
published. Each cell is the median over --rounds (the baseline runs once).

    .venv/bin/python bench/freshness.py [--backend ty ...] [--change upgrade ...]
        [--mechanism files ...] [--rounds 3] [--bound 15] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    CountingClient,
    backend_version,
    configuration_answer,
    hover_text,
    load_average,
    machine,
)

from typemux_lsp.backends import KINDS, BackendKind
from typemux_lsp.features import backend_initialize_params
from typemux_lsp.venv import Venv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from clients import CLAUDE_CODE_CAPABILITIES

CREATED, CHANGED, DELETED = 1, 2, 3
POLL_S = 0.05
BURST_MODULES = 320
BACKENDS = ("pyright", "basedpyright", "ty", "pyrefly")
#: whether backends are told the client watches files (what the proxy will declare)
DECLARE_WATCHING = True

# -- the project ---------------------------------------------------------------------------------

SHAPES_V1 = '''"""shapes 1.0"""


class Shape:
    size: int


def make(size: int) -> Shape:
    """Make a shape."""
    return Shape()
'''
SHAPES_V2 = SHAPES_V1.replace("make(size: int)", "make(size: int, upgraded: bool = True)").replace(
    "1.0", "2.0"
)
EXTRA = '''"""extra 1.0"""


def grow(n: int) -> int:
    """Grow n."""
    return n + 1
'''
BIG_V1 = 'def f(a: int) -> int:\n    """f."""\n    return a\n'
BIG_V2 = 'def f(a: int, upgraded: bool = True) -> int:\n    """f."""\n    return a\n'
ANCHOR = "def anchor(a: int) -> int:\n    return a\n\n\nanchor(1)\n"

#: per change: the open document's text, and extra project files
MAIN: dict[str, str] = {
    "upgrade": "from shapes import make\n\nresult = make(3)\n",
    "add": "from extra import grow\n\nvalue = grow(2)\n",
    "remove": "from extra import grow\n\nvalue = grow(2)\n",
    "unopened": "from helper import value\n\nx: int = value()\n",
    "newmodule": "from newmod import thing\n\nprint(thing(1))\n",
    "config": 'x: int = "s"\n',
    "config-new": 'x: int = "s"\n',
    "opendoc": "x: int = 1\n",
    "burst": "from big.m0 import f\nfrom big.m319 import f as g\n\nf(1)\ng(1)\n",
}


def config_change(kind: str, project: Path, new: bool) -> list[tuple[int, Path]]:
    """Turn the assignment error into a warning in this backend's own config: an existing
    `pyproject.toml` section changed, or (`new`) a checker config file created."""
    if new:
        name, text = {
            "pyright": ("pyrightconfig.json", json.dumps({"reportAssignmentType": "warning"})),
            "basedpyright": ("pyrightconfig.json", json.dumps({"reportAssignmentType": "warning"})),
            "ty": ("ty.toml", '[rules]\ninvalid-assignment = "warn"\n'),
            "pyrefly": ("pyrefly.toml", '[errors]\nbad-assignment = "warn"\n'),
        }[kind]
        target = project / name
        target.write_text(text)
        return [(CREATED, target)]
    section = {
        "pyright": '[tool.pyright]\nreportAssignmentType = "warning"\n',
        "basedpyright": '[tool.basedpyright]\nreportAssignmentType = "warning"\n',
        "ty": '[tool.ty.rules]\ninvalid-assignment = "warn"\n',
        "pyrefly": '[tool.pyrefly.errors]\nbad-assignment = "warn"\n',
    }[kind]
    target = project / "pyproject.toml"
    text = target.read_text().replace("[tool.pyrefly]\n", "")
    target.write_text(text + section)
    return [(CHANGED, target)]


def site_packages(venv: Path) -> Path:
    (found,) = (venv / "lib").glob("python*/site-packages")
    return found


def install(site: Path, name: str, version: str, files: dict[str, str]) -> list[Path]:
    """Write a package as an installer does: its files, then its .dist-info; the paths."""
    written: list[Path] = []
    for rel, text in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    record = [f"{rel},," for rel in files]
    for meta, text in (
        ("METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
        ("INSTALLER", "bench\n"),
        ("RECORD", "\n".join([*record, f"{info.name}/RECORD,,"]) + "\n"),
    ):
        (info / meta).write_text(text)
        written.append(info / meta)
    return written


def make_template(root: Path) -> Path:
    """The project every trial copies: `.venv` (offline, no pip) with shapes 1.0 and big 1.0."""
    project = root / "template"
    project.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(project / ".venv")],
        check=True,
        capture_output=True,
    )
    site = site_packages(project / ".venv")
    install(site, "shapes", "1.0", {"shapes/__init__.py": SHAPES_V1, "shapes/py.typed": ""})
    big = {f"big/m{i}.py": BIG_V1 for i in range(BURST_MODULES)}
    install(site, "big", "1.0", {"big/__init__.py": "", "big/py.typed": "", **big})
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0.1.0"\n\n[tool.pyrefly]\n'
    )
    (project / "helper.py").write_text("def value() -> int:\n    return 1\n")
    return project


# -- a trial -------------------------------------------------------------------------------------


@dataclass
class Check:
    """One thing the right answer must show; `hover` polls, `diag` reads publications."""

    name: str
    kind: str  # "hover" | "diag"
    ok: Callable[[Any], bool]
    needle: str = ""
    occurrence: int = 0


def _mentions(word: str) -> Callable[[Any], bool]:
    return lambda diags: any(word in str(d.get("message", "")) for d in diags)


def _error_on(line: int) -> Callable[[Any], bool]:
    """An error on this line of `MAIN` (after the anchor lines)."""
    line += ANCHOR.count("\n")
    return lambda diags: any(
        d.get("severity", 1) == 1 and d["range"]["start"]["line"] == line for d in diags
    )


CHECKS: dict[str, list[Check]] = {
    "upgrade": [Check("hover", "hover", lambda t: "upgraded" in t, "make", 1)],
    "add": [
        Check("hover", "hover", lambda t: "n: int" in t, "grow", 1),
        Check("diag", "diag", lambda d: not _mentions("extra")(d)),
    ],
    "remove": [
        Check("diag", "diag", _mentions("extra")),
        Check("hover", "hover", lambda t: "n: int" not in t, "grow", 1),
    ],
    "unopened": [Check("diag", "diag", _error_on(2))],
    "newmodule": [
        Check("hover", "hover", lambda t: "x: int" in t, "thing", 1),
        Check("diag", "diag", lambda d: not _mentions("newmod")(d)),
    ],
    "config": [Check("diag", "diag", lambda d: not _error_on(0)(d))],
    "config-new": [Check("diag", "diag", lambda d: not _error_on(0)(d))],
    "opendoc": [Check("diag", "diag", _error_on(0))],
    "burst": [
        Check("hover-first", "hover", lambda t: "upgraded" in t, "f", 2),
        Check("hover-last", "hover", lambda t: "upgraded" in t, "g", 2),
    ],
}

#: what must already answer (the old way) before the change is made
BEFORE: dict[str, list[Check]] = {
    "upgrade": [Check("before", "hover", lambda t: "size: int" in t, "make", 1)],
    "remove": [Check("before", "hover", lambda t: "n: int" in t, "grow", 1)],
    "unopened": [Check("before", "hover", lambda t: "int" in t, "value", 1)],
    "burst": [Check("before", "hover", lambda t: "a: int" in t, "g", 2)],
}

MECHANISMS: dict[str, tuple[str, ...]] = {
    "upgrade": ("none", "files", "dirs", "both", "touch", "reconfig", "restart"),
    "add": ("none", "files", "dirs", "both", "touch", "reconfig", "restart"),
    "remove": ("none", "files", "dirs", "both", "touch", "reconfig", "restart"),
    "unopened": ("none", "files", "dirs", "touch", "restart"),
    "newmodule": ("none", "files", "dirs", "touch", "restart"),
    "config": ("none", "files", "dirs", "restart"),
    "config-new": ("none", "files", "dirs", "reconfig", "restart"),
    "opendoc": ("none", "files", "didchange"),
    "burst": ("none", "files", "both", "restart"),
}


@dataclass
class Result:
    backend: str
    change: str
    mechanism: str
    round: int
    #: seconds from the settled disk to the right answer, per check; None = stale
    delays: dict[str, float | None] = field(default_factory=dict)
    #: for restarts: time to stop the old backend, and spawn -> initialize answer
    phases: dict[str, float] = field(default_factory=dict)
    #: CPU the backend's process tree spent from the change to the answer (or the bound)
    cpu_s: float | None = None
    error: str | None = None

    @property
    def delay(self) -> float | None:
        """All checks right: the last one to become right."""
        if self.error or not self.delays or any(v is None for v in self.delays.values()):
            return None
        return max(v for v in self.delays.values() if v is not None)


def position(text: str, needle: str, occurrence: int) -> dict[str, int]:
    """LSP position of the n-th `needle` (ASCII sources: UTF-16 = characters)."""
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index)
    return {"line": line, "character": index - (text.rfind("\n", 0, index) + 1)}


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds of a process and its descendants (basedpyright runs node as a child)."""
    if pid is None:
        return 0.0
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for member in tree:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{member}/schedstat").read_text().split()[0])
    return total / 1e9


class Backend:
    """One backend straight, as the proxy starts it, with the watch capability declared."""

    def __init__(self, kind: BackendKind, project: Path) -> None:
        self.kind = kind
        self.project = project
        self.venv = Venv(project / ".venv")
        self.client = CountingClient(configuration_answer(kind, self.venv))
        self.version = ""

    async def start(self) -> float:
        """Spawn, initialize, initialized; seconds to the initialize answer."""
        env = self.kind.environment(self.venv)
        executable = self.kind.resolve_executable(env["PATH"])
        if executable is None:
            raise SystemExit(f"bench: {self.kind.executable} not found")
        begin = time.perf_counter()
        await self.client.start(
            self.kind.command(executable, env["PATH"]),
            cwd=self.project,
            env=env,
        )
        caps = json.loads(json.dumps(CLAUDE_CODE_CAPABILITIES))
        if DECLARE_WATCHING:
            caps["workspace"]["didChangeWatchedFiles"] = {
                "dynamicRegistration": True,
                "relativePatternSupport": True,
            }
        client_params = {
            "processId": os.getpid(),
            "rootUri": self.project.as_uri(),
            "rootPath": str(self.project),
            "workspaceFolders": [{"uri": self.project.as_uri(), "name": self.project.name}],
            "capabilities": caps,
            "clientInfo": {"name": "Claude Code", "version": "2.1.0"},
        }
        encoding = self.kind.choose_encoding(["utf-16"])
        params = backend_initialize_params(client_params, self.venv, encoding)
        result = await self.client.request("initialize", params, timeout=60)
        self.client.notify("initialized", {})
        self.version = backend_version(self.kind, result)
        return time.perf_counter() - begin

    async def stop(self) -> None:
        await self.client.stop(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.client.pid or 0, 9)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.client.pid:
                os.killpg(self.client.pid, 9)


class Doc:
    """The open `main.py` and the publications seen for it."""

    def __init__(self, backend: Backend, path: Path, text: str) -> None:
        self.backend = backend
        self.path = path
        self.uri = path.as_uri()
        self.text = text
        self.version = 1

    def open(self) -> None:
        self.backend.client.open(self.path, self.text, self.version)

    def change_full(self, text: str) -> None:
        self.version += 1
        self.text = text
        self.backend.client.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": self.uri, "version": self.version},
                "contentChanges": [{"text": text}],
            },
        )

    async def hover(self, check: Check) -> str:
        params = {
            "textDocument": {"uri": self.uri},
            "position": position(self.text, check.needle, check.occurrence),
        }
        return hover_text(await self.backend.client.request("textDocument/hover", params, 30))

    def publications(self) -> list[list[Any]]:
        return [
            (n.get("params") or {}).get("diagnostics", [])
            for n in self.backend.client.notifications
            if n.get("method") == "textDocument/publishDiagnostics"
            and (n.get("params") or {}).get("uri") == self.uri
        ]


async def until_right(doc: Doc, check: Check, since: int, t0: float, bound: float) -> float | None:
    """Seconds from t0 until `check` holds; None if not within `bound`."""
    deadline = t0 + bound
    client = doc.backend.client
    while time.perf_counter() < deadline:
        if check.kind == "hover":
            try:
                text = await asyncio.wait_for(doc.hover(check), deadline - time.perf_counter())
            except (TimeoutError, ConnectionError):
                return None
            except Exception:
                text = ""
            if check.ok(text):
                return time.perf_counter() - t0
            await asyncio.sleep(POLL_S)
        else:
            pubs = doc.publications()
            if len(pubs) > since and check.ok(pubs[-1]):
                return time.perf_counter() - t0
            client._diag_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client._diag_event.wait(), deadline - time.perf_counter())
    return None


async def ready(doc: Doc, change: str) -> None:
    """Analysis of the open file is done: hovers on a local function and on the scenario's
    import answer, and no diagnostics were published for half a second."""
    checks = [
        Check("ready", "hover", lambda t: "a: int" in t, "anchor", 1),
        *BEFORE.get(change, []),
    ]
    deadline = time.perf_counter() + 90
    for check in checks:
        while not check.ok(await doc.hover(check)):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the backend never answered {check.name} in main.py")
            await asyncio.sleep(POLL_S)
    client = doc.backend.client
    with contextlib.suppress(TimeoutError):
        await client.wait_diagnostics(doc.uri, timeout=10)
    quiet_until = time.perf_counter() + 5
    while time.perf_counter() < quiet_until:
        client._diag_event.clear()
        try:
            await asyncio.wait_for(client._diag_event.wait(), 0.5)
        except TimeoutError:
            return


def apply_change(change: str, kind: str, project: Path) -> tuple[list[tuple[int, Path]], str]:
    """Change the disk; (file events, directory) that a watcher would report."""
    site = site_packages(project / ".venv")
    if change == "upgrade":
        old = site / "shapes-1.0.dist-info"
        shutil.rmtree(old)
        events = [(DELETED, old / n) for n in ("METADATA", "INSTALLER", "RECORD")]
        (site / "shapes/__init__.py").write_text(SHAPES_V2)
        events.append((CHANGED, site / "shapes/__init__.py"))
        added = install(site, "shapes", "2.0", {"shapes/py.typed": ""})
        events += [(CREATED, p) for p in added if "dist-info" in str(p)]
        return events, "shapes"
    if change == "add":
        files = {"extra/__init__.py": EXTRA, "extra/py.typed": ""}
        return [(CREATED, p) for p in install(site, "extra", "1.0", files)], "extra"
    if change == "remove":
        gone = [p for d in ("extra", "extra-1.0.dist-info") for p in (site / d).iterdir()]
        for d in ("extra", "extra-1.0.dist-info"):
            shutil.rmtree(site / d)
        return [(DELETED, p) for p in gone], "extra"
    if change == "unopened":
        (project / "helper.py").write_text('def value() -> str:\n    return "s"\n')
        return [(CHANGED, project / "helper.py")], ""
    if change == "newmodule":
        (project / "newmod.py").write_text("def thing(x: int) -> int:\n    return x\n")
        return [(CREATED, project / "newmod.py")], ""
    if change in ("config", "config-new"):
        return config_change(kind, project, new=change == "config-new"), ""
    if change == "opendoc":
        (project / "main.py").write_text(ANCHOR + 'x: int = "s"\n')
        return [(CHANGED, project / "main.py")], ""
    if change == "burst":
        events = []
        pace = 1.0 / BURST_MODULES
        for i in range(BURST_MODULES):
            path = site / f"big/m{i}.py"
            path.write_text(BIG_V2)
            events.append((CHANGED, path))
            time.sleep(pace)
        old = site / "big-1.0.dist-info"
        events += [(DELETED, p) for p in old.iterdir()]
        shutil.rmtree(old)
        events += [(CREATED, p) for p in install(site, "big", "2.0", {}) if "dist-info" in str(p)]
        return events, "big"
    raise ValueError(change)


def directory_events(
    change: str, events: list[tuple[int, Path]], project: Path, package: str
) -> list[tuple[int, Path]]:
    """The same change told by directory only: what a coarse watcher reports."""
    site = site_packages(project / ".venv")
    if change in ("add", "remove"):
        kind = CREATED if change == "add" else DELETED
        return [(kind, site / package), (kind, site / f"{package}-1.0.dist-info")]
    if change in ("upgrade", "burst"):
        return [
            (CHANGED, site / package),
            (DELETED, site / f"{package}-1.0.dist-info"),
            (CREATED, site / f"{package}-2.0.dist-info"),
        ]
    return [(CHANGED, project)]


def watched_files(events: list[tuple[int, Path]]) -> dict[str, Any]:
    return {"changes": [{"uri": path.as_uri(), "type": kind} for kind, path in events]}


async def trial(
    kind: BackendKind, change: str, mechanism: str, round_no: int, template: Path, bound: float
) -> Result:
    result = Result(kind.name, change, mechanism, round_no)
    with tempfile.TemporaryDirectory(prefix="freshness-") as tmp:
        project = Path(tmp, "app").resolve()  # noqa: ASYNC240 - a temp dir, once per trial
        shutil.copytree(template, project, symlinks=True)
        site = site_packages(project / ".venv")
        if change == "remove":
            install(site, "extra", "1.0", {"extra/__init__.py": EXTRA, "extra/py.typed": ""})
        text = ANCHOR + MAIN[change]
        (project / "main.py").write_text(text)
        backend = Backend(kind, project)
        try:
            await backend.start()
            doc = Doc(backend, project / "main.py", text)
            doc.open()
            await ready(doc, change)
            checks = CHECKS[change]
            for check in checks:  # the answer must be wrong before the change
                if check.kind == "hover" and check.ok(await doc.hover(check)):
                    raise RuntimeError(f"{check.name} already right before the change")
                pubs = doc.publications()
                if check.kind == "diag" and pubs and check.ok(pubs[-1]):
                    raise RuntimeError(f"{check.name} already right before the change")
            events, package = apply_change(change, kind.name, project)
            since = len(doc.publications())
            t0 = time.perf_counter()
            cpu0 = tree_cpu_s(backend.client.pid)
            if mechanism == "files":
                backend.client.notify("workspace/didChangeWatchedFiles", watched_files(events))
            elif mechanism in ("dirs", "both", "touch", "reconfig"):
                dirs = directory_events(change, events, project, package)
                told = dirs if mechanism == "dirs" else dirs + events
                backend.client.notify("workspace/didChangeWatchedFiles", watched_files(told))
            if mechanism == "touch":
                doc.change_full(doc.text)
            if mechanism == "reconfig":
                backend.client.notify("workspace/didChangeConfiguration", {"settings": None})
            if mechanism == "didchange":
                doc.change_full((project / "main.py").read_text())
            if mechanism == "restart":
                await backend.stop()
                result.phases["stop"] = time.perf_counter() - t0
                backend = Backend(kind, project)
                result.phases["initialize"] = await backend.start()
                doc = Doc(backend, project / "main.py", (project / "main.py").read_text())
                doc.open()
                since = 0
                cpu0 = 0.0
            delays = await asyncio.gather(*(until_right(doc, c, since, t0, bound) for c in checks))
            result.cpu_s = round(tree_cpu_s(backend.client.pid) - cpu0, 3)
            result.delays = {
                c.name: None if d is None else round(d, 3)
                for c, d in zip(checks, delays, strict=True)
            }
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(backend.stop(), 10)
            backend.kill()
    return result


# -- the run -------------------------------------------------------------------------------------


def summarize(results: Sequence[Result]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in results:
        out.setdefault(r.backend, {}).setdefault(r.change, {}).setdefault(r.mechanism, []).append(r)
    summary: dict[str, Any] = {}
    for backend, changes in out.items():
        for change, mechanisms in changes.items():
            for mechanism, rs in mechanisms.items():
                errors = [r.error for r in rs if r.error]
                delays = [r.delay for r in rs if not r.error]
                right = [d for d in delays if d is not None]
                cell = {
                    "median_s": round(statistics.median(right), 3) if right else None,
                    "right": len(right),
                    "stale": len(delays) - len(right),
                    "errors": errors,
                    "rounds": [
                        {"delays": r.delays, "phases": r.phases, "cpu_s": r.cpu_s} for r in rs
                    ],
                }
                summary.setdefault(backend, {}).setdefault(change, {})[mechanism] = cell
    return summary


def table(summary: dict[str, Any], bound: float) -> str:
    lines = []
    mechanisms = ("none", "files", "dirs", "both", "touch", "reconfig", "didchange", "restart")
    header = f"{'backend':13}{'change':11}" + "".join(f"{m:>11}" for m in mechanisms)
    lines.append(header)
    lines.append("-" * len(header))
    for backend, changes in summary.items():
        for change, cells in changes.items():
            row = f"{backend:13}{change:11}"
            for m in mechanisms:
                cell = cells.get(m)
                if cell is None:
                    text = ""
                elif cell["errors"] and not cell["right"] and not cell["stale"]:
                    text = "error"
                elif cell["median_s"] is None:
                    text = "stale"
                else:
                    text = f"{cell['median_s']:.2f}s"
                    if cell["stale"]:
                        text += f"({cell['stale']}st)"
                row += f"{text:>11}"
            lines.append(row)
    lines.append(
        f"(median seconds from the settled disk to the right answer; stale = not right "
        f"within {bound:g} s)"
    )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="freshness-template-") as tmp:
        template = make_template(Path(tmp))
        for name in args.backend:
            kind = KINDS[name]
            for change in args.change:
                for mechanism in MECHANISMS[change]:
                    if args.mechanism and mechanism not in args.mechanism:
                        continue
                    rounds = 1 if mechanism == "none" else args.rounds
                    for round_no in range(rounds):
                        r = await trial(kind, change, mechanism, round_no, template, args.bound)
                        results.append(r)
                        shown = "stale" if r.delay is None else f"{r.delay:.2f}s"
                        print(
                            f"{name:13}{change:11}{mechanism:10}#{round_no} {shown:8}"
                            f" {r.delays} {r.phases or ''} cpu={r.cpu_s}"
                            f"{' ERROR ' + r.error if r.error else ''}",
                            file=sys.stderr,
                            flush=True,
                        )
    versions = {}
    for name in args.backend:
        kind = KINDS[name]
        versions[name] = backend_version(kind, None)
    return {
        "machine": machine(),
        "load_average_end": load_average(),
        "versions": versions,
        "bound_s": args.bound,
        "rounds": args.rounds,
        "summary": summarize(results),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--change", nargs="+", choices=list(MAIN), default=list(MAIN))
    parser.add_argument("--mechanism", nargs="+", default=[])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bound", type=float, default=15.0, help="seconds before 'stale'")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--no-watch-capability",
        action="store_true",
        help="do not declare workspace.didChangeWatchedFiles to the backend (as Claude Code)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    global DECLARE_WATCHING
    DECLARE_WATCHING = not args.no_watch_capability
    report = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"versions: {report['versions']}; load average at end {report['load_average_end']}")
        print(table(report["summary"], args.bound))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
