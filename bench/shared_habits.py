"""What one shared backend answers, against one backend per environment, measured straight.

The across layout (tests/layouts.py: `libs/core` installed editable into `services/a`,
`services/b` and `services/alias`, each with its own `.venv`) and the example monorepo
(`alpha` and `beta`, each an `app.py`, `shapes` 1.x and 2.x) are served two ways, each
backend started as the proxy starts it:

- "per env": one process per project (its venv by VIRTUAL_ENV and configuration);
- "shared": one process, a workspace folder per project, each folder's interpreter answered
  per `scopeUri`, no environment variable naming one, an empty cwd.

Every project's files are open. Each question is asked at a project's own file and at the
library's file; printed per question: the shared answer's items, the union of the per-env
answers' items (what `across.py` merges), whether they are the same set, and the items the
shared answer gives more than once (same place: uri and range, or a call's caller).

    .venv/bin/python bench/shared_habits.py [--backend ty] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from harness import (
    CLIENT_INFO,
    CountingClient,
    backend_version,
    client_params,
    configuration_answer,
    load_average,
)

from typemux_lsp.backends import KINDS, BackendKind, backend_environment
from typemux_lsp.demo import CLAUDE_CODE_CAPABILITIES
from typemux_lsp.example import build_venvs
from typemux_lsp.features import backend_initialize_params
from typemux_lsp.jsonrpc import Message
from typemux_lsp.tree import get_path
from typemux_lsp.venv import Venv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from layouts import build

REPO = Path(__file__).resolve().parent.parent


def shared_answer(kind: BackendKind, venvs: list[Venv]) -> Any:
    """`workspace/configuration` answered per item's scopeUri, as a shared session does."""

    def answer(message: Message) -> Any:
        if message.get("method") != "workspace/configuration":
            return None
        out = []
        for item in get_path(message, "params", "items") or []:
            scope = get_path(item, "scopeUri") or ""
            venv = max(
                (v for v in venvs if scope.startswith(v.project_dir.as_uri())),
                key=lambda v: len(str(v.project_dir)),
                default=venvs[0],
            )
            out.append(kind.configuration(get_path(item, "section"), venv, None))
        return out

    return answer


async def start(
    kind: BackendKind, root: Path, venvs: list[Venv], cwd: Path, shared: bool
) -> tuple[CountingClient, Any]:
    if shared:
        env = backend_environment(*(v.project_dir for v in venvs))
        client = CountingClient(shared_answer(kind, venvs))
    else:
        env = kind.environment(venvs[0])
        client = CountingClient(configuration_answer(kind, venvs[0]))
    executable = kind.resolve_executable(env["PATH"])
    assert executable is not None, kind.install_hint()
    await client.start(kind.command(executable, env["PATH"]), cwd=cwd, env=env)
    offered = CLAUDE_CODE_CAPABILITIES["general"]["positionEncodings"]
    folders = [{"uri": v.project_dir.as_uri(), "name": v.project_dir.name} for v in venvs]
    params = backend_initialize_params(
        client_params(root), venvs[0], kind.choose_encoding(offered), folders
    )
    params["clientInfo"] = CLIENT_INFO
    result = await client.request("initialize", params, timeout=60)
    client.notify("initialized", {})
    return client, result


def position(path: Path, needle: str, offset: int = 0) -> dict[str, Any]:
    text = path.read_text("utf-8")
    before = text[: text.index(needle) + offset]
    line = before.count("\n")
    col = before.rsplit("\n", 1)[-1]
    return {"line": line, "character": len(col.encode("utf-16-le")) // 2}


def at(path: Path, needle: str, offset: int = 0) -> dict[str, Any]:
    return {"textDocument": {"uri": path.as_uri()}, "position": position(path, needle, offset)}


def key_of(method: str, item: Any) -> str:
    if method.startswith("callHierarchy/"):
        end = item.get("from") or item.get("to")
        return json.dumps([end["uri"], end["selectionRange"]], sort_keys=True)
    if method == "workspace/symbol":
        loc = item.get("location") or {}
        return json.dumps([item.get("name"), loc.get("uri"), loc.get("range")], sort_keys=True)
    uri = item.get("uri") or item.get("targetUri")
    rng = item.get("range") or item.get("targetSelectionRange")
    return json.dumps([uri, rng, item.get("name")], sort_keys=True)


def items(method: str, answer: Any) -> list[Any]:
    if method == "textDocument/rename":
        out = []
        for uri, edits in (answer or {}).get("changes", {}).items():
            out += [{"uri": uri, "range": e["range"], "name": e["newText"]} for e in edits]
        return out
    if answer is None:
        return []
    return answer if isinstance(answer, list) else [answer]


def short(root: Path, key: str) -> str:
    return key.replace(root.as_uri() + "/", "")


async def ask(client: CountingClient, method: str, params: dict[str, Any]) -> Any:
    """`method`, the hierarchy ones after their prepare (the first item at the position)."""
    prepare = {
        "callHierarchy/incomingCalls": "textDocument/prepareCallHierarchy",
        "callHierarchy/outgoingCalls": "textDocument/prepareCallHierarchy",
        "typeHierarchy/subtypes": "textDocument/prepareTypeHierarchy",
        "typeHierarchy/supertypes": "textDocument/prepareTypeHierarchy",
    }.get(method)
    for _ in range(3):
        try:
            if prepare is not None:
                found = await client.request(prepare, params, timeout=30)
                if not found:
                    return None
                return await client.request(method, {"item": found[0]}, timeout=30)
            return await client.request(method, params, timeout=30)
        except Exception as exc:  # ContentModified while it indexes: asked again
            if "ContentModified" not in str(exc) and "-32801" not in str(exc):
                return {"error": str(exc)}
            await asyncio.sleep(0.5)
    return {"error": "ContentModified thrice"}


async def serve(
    kind: BackendKind,
    root: Path,
    projects: dict[str, list[Path]],
    lend: list[Path],
    questions: list[Any],
) -> dict[str, Any]:
    venvs = [Venv((root / p / ".venv").resolve()) for p in projects]
    neutral = Path(tempfile.mkdtemp(prefix="shared-habits-cwd-"))
    report: dict[str, Any] = {}
    shared, result = await start(kind, root, venvs, neutral, True)
    report["version"] = backend_version(kind, result)
    singles = {
        p: (await start(kind, root, [v], v.project_dir, False))[0]
        for p, v in zip(projects, venvs, strict=True)
    }
    try:
        for project, files in projects.items():
            for f in files:
                shared.open(f)
                singles[project].open(f)
        for f in lend:  # the library's file, lent to every other project as across.py does
            for project, single in singles.items():
                if f not in projects[project]:
                    single.open(f)
        await asyncio.sleep(3)  # indexed (ty answers at once; pyright-kinds need longer)
        for name, method, params in questions:
            mine = await ask(shared, method, params)
            theirs = [await ask(s, method, params) for s in singles.values()]
            shared_items = items(method, mine)
            keys = Counter(key_of(method, i) for i in shared_items)
            union = {key_of(method, i) for t in theirs for i in items(method, t)}
            dupes = {short(root, k): n for k, n in keys.items() if n > 1}
            spellings = {}
            for k in dupes:
                spellings[k] = {
                    "shared": [i for i in shared_items if short(root, key_of(method, i)) == k],
                    "per env": [
                        i
                        for t in theirs
                        for i in items(method, t)
                        if short(root, key_of(method, i)) == k
                    ],
                }
            report[name] = {
                "method": method,
                "shared": sorted(short(root, k) for k in keys),
                "per env union": sorted(short(root, k) for k in union),
                "same set": set(keys) == union,
                "duplicates": dupes,
                "duplicate spellings": spellings,
                "errors": [a for a in [mine, *theirs] if isinstance(a, dict) and "error" in a],
            }
    finally:
        for c in [shared, *singles.values()]:
            c.kill()
    return report


def across_questions(root: Path) -> tuple[dict[str, list[Path]], list[Path], list[Any]]:
    layout = build(root)
    core = layout.core
    a = layout.path("services/a/app.py")
    b_loud = layout.path("services/b/loud.py")
    projects = {
        "libs/core": [core],
        "services/a": [a],
        "services/b": [layout.path("services/b/app.py"), b_loud],
        "services/alias": [layout.path("services/alias/app.py")],
    }
    refs = {"context": {"includeDeclaration": True}}
    questions = []
    for where, params in (
        ("library", at(core, "def greet", 4)),
        ("consumer", at(a, 'greet("a")')),
    ):
        questions += [
            (f"references @{where}", "textDocument/references", {**params, **refs}),
            (f"prepareRename @{where}", "textDocument/prepareRename", params),
            (f"rename @{where}", "textDocument/rename", {**params, "newName": "salute"}),
            (f"incoming @{where}", "callHierarchy/incomingCalls", params),
        ]
    questions += [
        ("outgoing @consumer main", "callHierarchy/outgoingCalls", at(a, "def main", 4)),
        ("implementation @library", "textDocument/implementation", at(core, "def greet(self", 4)),
        ("subtypes @library", "typeHierarchy/subtypes", at(core, "class Greeter", 6)),
        ("supertypes @consumer", "typeHierarchy/supertypes", at(b_loud, "class Loud", 6)),
        ("workspace/symbol greet", "workspace/symbol", {"query": "greet"}),
    ]
    return projects, [core], questions


def monorepo_questions(root: Path) -> tuple[dict[str, list[Path]], list[Path], list[Any]]:
    import shutil

    shutil.copytree(REPO / "examples" / "monorepo", root, ignore=shutil.ignore_patterns(".venv"))
    build_venvs(root)
    alpha, beta = root / "alpha/app.py", root / "beta/app.py"
    projects = {"alpha": [alpha], "beta": [beta]}
    refs = {"context": {"includeDeclaration": True}}
    questions = []
    for name, path in (("alpha", alpha), ("beta", beta)):
        questions += [
            (f"incoming {name} report", "callHierarchy/incomingCalls", at(path, "def report", 4)),
            (f"outgoing {name} main", "callHierarchy/outgoingCalls", at(path, "def main", 4)),
            (
                f"references {name} report",
                "textDocument/references",
                {**at(path, "def report", 4), **refs},
            ),
            (
                f"rename {name} report",
                "textDocument/rename",
                {**at(path, "def report", 4), "newName": "describe"},
            ),
        ]
    questions.append(("workspace/symbol report", "workspace/symbol", {"query": "report"}))
    return projects, [], questions


async def main_async(backend: str) -> dict[str, Any]:
    kind = KINDS[backend]
    out: dict[str, Any] = {"load": load_average()}
    with tempfile.TemporaryDirectory(prefix="shared-habits-") as tmp:
        for name, make in (("across", across_questions), ("monorepo", monorepo_questions)):
            root = Path(tmp) / name
            projects, lend, questions = make(root)
            out[name] = await serve(kind, root, projects, lend, questions)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="ty")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = asyncio.run(main_async(args.backend))
    print(f"load {report['load']:.2f}")
    print(f"{'layout':<9} {'question':<28} {'shared = per env union':<23} items repeated (times)")
    for layout in ("across", "monorepo"):
        for name, facts in report[layout].items():
            if name == "version":
                print(f"{layout}: {facts}")
                continue
            repeated = ", ".join(f"{k[:60]}… ({n})" for k, n in facts["duplicates"].items())
            print(f"{layout:<9} {name:<28} {facts['same set']!s:<23} {repeated or '-'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
