"""`typemux-lsp demo`: the proxy on the example monorepo, driven as an editor would.

The example is copied to a fresh directory with its own git root, so the walk
up from `gamma/` stops there (inside this repository it would reach the
repository's own `.venv` — correct behaviour, but not the strict-mode demo). It ships
with the package (`typemux_lsp/examples`, a link to the repository's `examples/`), so the
demo runs from an installed wheel as from a clone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .backends import AUTO, KINDS, choose_auto, safe_path
from .client import LspClient, ResponseError
from .example import build_venvs
from .features import STATUS_REQUEST

#: The example monorepo, shipped as package data.
EXAMPLE = Path(__file__).resolve().parent / "examples" / "monorepo"

#: What the demo asks about in each file: the first occurrence of this text.
SYMBOLS = {"alpha/app.py": "area", "beta/app.py": "Circle", "gamma/tool.py": "shout"}

CLAUDE_CODE_CAPABILITIES: dict[str, Any] = {
    "general": {"positionEncodings": ["utf-16"]},
    "textDocument": {
        "synchronization": {"didSave": True},
        "hover": {"contentFormat": ["markdown", "plaintext"]},
        "definition": {"linkSupport": True},
        "references": {},
        "documentSymbol": {"hierarchicalDocumentSymbolSupport": True},
        "callHierarchy": {},
        "publishDiagnostics": {},
    },
    "workspace": {"workspaceFolders": False},
}


def _position(text: str, needle: str) -> dict[str, int]:
    """The position just inside the last occurrence of `needle` on its first line of use."""
    for line_no, line in enumerate(text.splitlines()):
        col = line.find(needle)
        if col >= 0 and not line.lstrip().startswith(("#", '"')):
            return {"line": line_no, "character": col + 1}
    raise ValueError(f"{needle!r} not found")


def _hover_text(result: Any) -> str:
    if not isinstance(result, dict):
        return "null"
    contents = result.get("contents")
    if isinstance(contents, dict):
        text = str(contents.get("value", ""))
    elif isinstance(contents, list):
        text = " ".join(str(c.get("value", c) if isinstance(c, dict) else c) for c in contents)
    else:
        text = str(contents)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("```")]
    return lines[0].strip() if lines else "(empty)"


def _location(result: Any, root: Path) -> str:
    items = result if isinstance(result, list) else [result] if result else []
    if not items:
        return "null"
    first = items[0]
    uri = first.get("targetUri") or first.get("uri", "")
    rng = first.get("targetSelectionRange") or first.get("range") or {}
    path = Path(uri.removeprefix("file://"))
    try:
        shown = str(path.relative_to(root))
    except ValueError:
        shown = str(path)
    return f"{shown}:{rng.get('start', {}).get('line', 0) + 1}"


async def run_demo(root: Path, kind: str) -> int:
    out = sys.stdout
    shown = kind
    if kind == AUTO:
        chosen, why = choose_auto(safe_path(os.environ.get("PATH", ""), root))
        shown = f"{chosen} ({why})"
    out.write(f"typemux-lsp demo: backend {shown}\nworkspace: {root}\n")
    client = LspClient()
    await client.start([sys.executable, "-m", "typemux_lsp", "--backend", kind], cwd=root)
    try:
        await client.initialize(
            root, CLAUDE_CODE_CAPABILITIES, clientInfo={"name": "typemux-lsp demo"}
        )
        for rel, symbol in SYMBOLS.items():
            path = root / rel
            text = path.read_text("utf-8")
            uri = client.open(path)
            pos = {"textDocument": {"uri": uri}, "position": _position(text, symbol)}
            out.write(f"\n{rel}  (asking about `{symbol}`)\n")
            try:
                hover = await client.request("textDocument/hover", pos)
                definition = await client.request("textDocument/definition", pos)
            except ResponseError as exc:
                out.write(f"  error {exc.code}: {exc.message}\n")
                continue
            status = await client.request(STATUS_REQUEST, None)
            owner = next((b for b in status["backends"] if uri in b["openDocuments"]), None)
            if owner is not None:
                # a shared backend serves several projects: the document's own environment
                project = next(
                    (p for p in owner.get("projects", ()) if uri in p["openDocuments"]), owner
                )
                venv = Path(project["venv"]).relative_to(root)
                shared = ", shared" if owner.get("shared") else ""
                out.write(f"  venv:        {venv}  ({owner['kind']}, pid {owner['pid']}{shared})\n")
            out.write(f"  hover:       {_hover_text(hover)}\n")
            out.write(f"  definition:  {_location(definition, root)}\n")
            try:
                diags = await client.wait_diagnostics(uri, timeout=20)
                shown = "; ".join(d.get("message", "").splitlines()[0] for d in diags) or "none"
            except TimeoutError:
                shown = "(none published)"
            out.write(f"  diagnostics: {shown}\n")
    finally:
        code = await client.stop()
    out.write(f"\nshutdown + exit: the proxy exited with code {code}, its backends with it.\n")
    return 0 if code == 0 else 1


def prepare(source: Path, dest: Path) -> Path:
    """Copy the example to `dest`, give it its own git root, and build its venvs offline."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", str(dest)], check=True)
    else:
        (dest / ".git").mkdir()
    for venv in build_venvs(dest):
        print(f"built {venv.relative_to(dest)} (offline, vendored packages copied in)")
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="typemux-lsp demo", description=__doc__)
    parser.add_argument(
        "example",
        nargs="?",
        default=str(EXAMPLE),
        help="the example monorepo to copy (default: the one shipped with typemux-lsp)",
    )
    parser.add_argument(
        "--backend",
        choices=[AUTO, *sorted(KINDS)],
        default=AUTO,
        help="auto: the one backend installed when only one is, else pyright",
    )
    args = parser.parse_args(argv)
    source = Path(args.example)
    if not (source / "alpha").is_dir():
        print(
            f"typemux-lsp demo: {source} is not the example monorepo (it has no alpha/). "
            f"Pass the path of a copy of it, or reinstall typemux-lsp: it ships in {EXAMPLE}.",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="typemux-demo-") as tmp:
        root = prepare(source.resolve(), Path(tmp) / "monorepo")
        return asyncio.run(run_demo(root.resolve(), args.backend))
