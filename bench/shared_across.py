"""What one shared backend process answers about a library several of its folders see.

tests/layouts.py's monorepo: `libs/core` (its own venv) installed editable into the venvs of
`services/a`, `services/b` (which subclasses `Greeter`) and `services/alias` (imports `greet`
under another name). One backend started straight, shared as typemux-lsp runs it (a folder per
project, each folder's `workspace/configuration` answered with its own interpreter, every
project's file open, or core's only), then asked from core's file: references (with the
declaration), rename, incoming calls and implementations. Printed: which projects' files each
answer names. Per process, the proxy asks one backend per project and merges (across.py).

    .venv/bin/python bench/shared_across.py [--backend pyrefly]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests"), str(HERE)]

from join_race import Probe, folder, position_of  # noqa: E402
from layouts import Layout, build  # noqa: E402

from typemux_lsp.backends import KINDS, BackendKind  # noqa: E402
from typemux_lsp.venv import Venv  # noqa: E402


def where(root: Path, uris: list[str]) -> list[str]:
    return sorted({str(Path(u.removeprefix("file://")).relative_to(root)) for u in uris})


def uris_in(result: Any) -> list[str]:
    """Every file URI an answer names (locations, a WorkspaceEdit, call hierarchy items)."""
    found: list[str] = []
    if isinstance(result, dict):
        for key, value in result.items():
            if key in ("uri", "targetUri") and isinstance(value, str):
                found.append(value)
            elif key == "changes" and isinstance(value, dict):
                found.extend(value)
            else:
                found.extend(uris_in(value))
    elif isinstance(result, list):
        for item in result:
            found.extend(uris_in(item))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="pyrefly", choices=sorted(KINDS))
    parser.add_argument(
        "--only-core", action="store_true", help="open core's file only, no consumer's"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(os.path.realpath(tmp))
        asyncio.run(ask(KINDS[args.backend], root, build(root), args.only_core))


async def ask(kind: BackendKind, root: Path, layout: Layout, only_core: bool) -> None:
    projects = ["libs/core", *(f"services/{n}" for n in layout.consumers)]
    venvs = {p: Venv(root / p / ".venv") for p in projects}
    neutral = root / "neutral"
    neutral.mkdir()
    probe = Probe(kind, {v.key: v for v in venvs.values()}, 0.0, quiet=True)
    await probe.start(neutral)
    caps = {
        "workspace": {"configuration": True, "workspaceFolders": True},
        "window": {"workDoneProgress": True},
        "textDocument": {"rename": {"prepareSupport": True}},
    }
    await probe.request(
        "initialize",
        {
            "processId": os.getpid(),
            "rootUri": None,
            "capabilities": caps,
            "workspaceFolders": [folder(root / p) for p in projects],
        },
    )
    probe.notify("initialized", {})
    files = [layout.core, *(root / "services" / n / "app.py" for n in layout.consumers)]
    files.append(root / "services/b/loud.py")
    if only_core:
        files = [layout.core]
    for path in files:
        probe.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": path.as_uri(),
                    "languageId": "python",
                    "version": 1,
                    "text": path.read_text(),
                }
            },
        )
    await asyncio.sleep(3.0)  # (indexed: asked again below until the answers settle)
    core = layout.core.read_text()
    at_greet = {
        "textDocument": {"uri": layout.core.as_uri()},
        "position": position_of(core, "greet(name: str)"),
    }
    at_method = {
        "textDocument": {"uri": layout.core.as_uri()},
        "position": position_of(core, "greet(self"),
    }
    questions: list[tuple[str, str, dict[str, Any]]] = [
        (
            "references greet",
            "textDocument/references",
            {**at_greet, "context": {"includeDeclaration": True}},
        ),
        ("rename greet", "textDocument/rename", {**at_greet, "newName": "salute"}),
        ("implementation Greeter.greet", "textDocument/implementation", at_method),
        (
            "references Greeter.greet",
            "textDocument/references",
            {**at_method, "context": {"includeDeclaration": True}},
        ),
    ]
    for label, method, params in questions:
        for attempt in range(3):  # pyrefly reads the project on the first references
            started = time.monotonic()
            answer = await probe.request(method, params)
            took = (time.monotonic() - started) * 1e3
            if attempt == 2 or uris_in(answer.get("result")):
                break
            await asyncio.sleep(1.0)
        shown = answer.get("error") or where(root, uris_in(answer.get("result")))
        print(f"{label}: {json.dumps(shown)} ({took:.0f} ms)")
    prepared = await probe.request("textDocument/prepareCallHierarchy", at_greet)
    items = prepared.get("result") or []
    print(f"prepareCallHierarchy greet: {json.dumps(where(root, uris_in(items)))}")
    if items:
        incoming = await probe.request("callHierarchy/incomingCalls", {"item": items[0]})
        print(
            "incomingCalls greet: "
            + json.dumps(incoming.get("error") or where(root, uris_in(incoming.get("result"))))
        )
    assert probe.proc is not None
    probe.proc.kill()
    await probe.proc.wait()
    print(f"{kind.name}, load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
