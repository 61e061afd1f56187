"""What a running backend does when a workspace folder joins it: every message both ways,
timestamped, and a hover in the new folder asked again and again from the moment its document
opens, until it answers from the folder's own environment.

One backend process started straight (no proxy) in a directory of its own with no environment
variable naming an interpreter, as a shared session runs it; the first folder (alpha, shapes
1.x) in `initialize`; then `workspace/didChangeWorkspaceFolders` adds beta (shapes 2.x, where
`Circle` is a class) and beta/app.py is opened at once, as the proxy does. Every
`workspace/configuration` item is answered for its `scopeUri`'s own interpreter after
`--config-delay` seconds (the proxy waits up to 1 s for a client that keeps settings).

    .venv/bin/python bench/join_race.py [--backend pyrefly] [--trials 5] [--config-delay 0]
        [--quiet]

Times are milliseconds from the didChangeWorkspaceFolders notification.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from typemux_lsp.backends import KINDS, BackendKind  # noqa: E402
from typemux_lsp.example import build_venvs  # noqa: E402
from typemux_lsp.venv import Venv  # noqa: E402

RIGHT = "A circle that knows its own area."  # beta's shapes 2.x only


class Probe:
    """A bare LSP client that logs every frame with its time."""

    def __init__(self, kind: BackendKind, venvs: dict[Path, Venv], delay: float, quiet: bool):
        self.kind = kind
        self.venvs = venvs
        self.delay = delay
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.next_id = 1
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.log: list[tuple[float, str, dict[str, Any]]] = []
        self.proc: asyncio.subprocess.Process | None = None

    def ms(self) -> float:
        return (time.monotonic() - self.t0) * 1e3

    def record(self, way: str, msg: dict[str, Any]) -> None:
        self.log.append((self.ms(), way, msg))
        if not self.quiet:
            print(f"{self.ms():9.1f} {way} {summary(msg)}", flush=True)

    async def start(self, cwd: Path) -> None:
        env = self.kind.shared_environment(self.venvs.values())
        exe = self.kind.resolve_executable(env["PATH"])
        assert exe is not None
        self.proc = await asyncio.create_subprocess_exec(
            *self.kind.command(exe, env["PATH"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
        )
        asyncio.get_running_loop().create_task(self.read())

    def send(self, msg: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        msg = {"jsonrpc": "2.0", **msg}
        self.record("->", msg)
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def request(self, method: str, params: Any) -> asyncio.Future[Any]:
        msg_id = self.next_id
        self.next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[msg_id] = fut
        self.send({"id": msg_id, "method": method, "params": params})
        return fut

    async def read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        while True:
            try:
                header = await out.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = next(
                int(line.split(b":")[1])
                for line in header.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            msg = json.loads(await out.readexactly(length))
            self.record("<-", msg)
            if "method" in msg and "id" in msg:
                asyncio.get_running_loop().create_task(self.answer(msg))
            elif "id" in msg and msg["id"] in self.waiting:
                self.waiting.pop(msg["id"]).set_result(msg)

    async def answer(self, msg: dict[str, Any]) -> None:
        result: Any = None
        if msg["method"] == "workspace/configuration":
            if self.delay:
                await asyncio.sleep(self.delay)
            result = []
            for item in msg["params"]["items"]:
                scope = item.get("scopeUri")
                venv = self.venv_for(scope)
                result.append(self.kind.configuration(item.get("section"), venv, {}))
        self.send({"id": msg["id"], "result": result})

    def venv_for(self, scope: str | None) -> Venv:
        first = next(iter(self.venvs.values()))
        if not scope:
            return first
        path = Path(scope.removeprefix("file://"))
        for venv in self.venvs.values():
            if path == venv.project_dir or venv.project_dir in path.parents:
                return venv
        return first


def summary(msg: dict[str, Any]) -> str:
    method = msg.get("method")
    params: Any = msg.get("params")
    if method == "textDocument/publishDiagnostics":
        texts = [d.get("message", "")[:60] for d in params.get("diagnostics", [])]
        return f"publishDiagnostics {short(params['uri'])} v{params.get('version')} {texts}"
    if method == "workspace/configuration":
        return f"[{msg['id']}] configuration {json.dumps(params)}"
    if method == "textDocument/didOpen":
        return f"didOpen {short(params['textDocument']['uri'])}"
    if method in ("$/progress", "window/logMessage", "window/showMessage"):
        return f"{method} {json.dumps(params)[:200]}"
    if method == "textDocument/hover":
        return f"[{msg['id']}] hover {short(params['textDocument']['uri'])}"
    if method:
        return (
            f"{'[' + str(msg['id']) + '] ' if 'id' in msg else ''}{method} "
            + json.dumps(params)[:200]
        )
    result = msg.get("result")
    if isinstance(result, dict) and "contents" in result:
        return f"[{msg.get('id')}] hover -> {hover_word(msg)}"
    return (
        f"[{msg.get('id')}] -> {json.dumps(result if 'result' in msg else msg.get('error'))[:200]}"
    )


def short(uri: str) -> str:
    return "/".join(uri.split("/")[-2:])


def hover_text(msg: dict[str, Any]) -> str:
    result = msg.get("result") or {}
    contents = result.get("contents") if isinstance(result, dict) else None
    if isinstance(contents, dict):
        return str(contents.get("value", ""))
    return json.dumps(contents)


def hover_word(msg: dict[str, Any]) -> str:
    text = hover_text(msg)
    if RIGHT in text:
        return "RIGHT (beta's shapes 2.x)"
    return "WRONG " + json.dumps(text[:120])


def make_repo(dest: Path, elsewhere: bool) -> None:
    """The example monorepo; `elsewhere`: each project's environment moved out of it, to
    where a manager (poetry, pdm, hatch, conda) keeps it, which no backend finds by itself."""
    shutil.copytree(
        REPO / "examples" / "monorepo", dest, ignore=shutil.ignore_patterns(".venv", "__pycache__")
    )
    subprocess.run(["git", "init", "-q", str(dest)], check=True)
    build_venvs(dest)
    if elsewhere:
        (dest.parent / "envs").mkdir()
        for project in ("alpha", "beta"):
            (dest / project / ".venv").rename(dest.parent / "envs" / project)


def environment(root: Path, project: str, elsewhere: bool) -> Venv:
    if not elsewhere:
        return Venv(root / project / ".venv")
    return Venv(root.parent / "envs" / project, project_dir=root / project, manager="pdm")


def folder(path: Path) -> dict[str, str]:
    return {"uri": path.as_uri(), "name": path.name}


def position_of(text: str, needle: str) -> dict[str, int]:
    for line_no, line in enumerate(text.splitlines()):
        col = line.find(needle)
        if col >= 0:
            return {"line": line_no, "character": len(line[:col].encode("utf-16-le")) // 2}
    raise ValueError(needle)


async def trial(args: argparse.Namespace, root: Path, number: int) -> dict[str, Any]:
    kind = KINDS[args.backend]
    alpha = environment(root, "alpha", args.elsewhere)
    beta = environment(root, "beta", args.elsewhere)
    neutral = Path(tempfile.mkdtemp(prefix="neutral-"))
    probe = Probe(kind, {alpha.key: alpha, beta.key: beta}, args.config_delay, args.quiet)
    await probe.start(neutral)
    caps = {
        "workspace": {"configuration": True, "workspaceFolders": True},
        "window": {"workDoneProgress": True},
        "textDocument": {"hover": {"contentFormat": ["markdown", "plaintext"]}},
    }
    await probe.request(
        "initialize",
        {
            "processId": os.getpid(),
            "rootUri": None,
            "capabilities": caps,
            "workspaceFolders": [folder(root / "alpha")],
        },
    )
    probe.notify("initialized", {})
    a_text = (root / "alpha" / "app.py").read_text()
    a_uri = (root / "alpha" / "app.py").as_uri()
    probe.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": a_uri, "languageId": "python", "version": 1, "text": a_text}},
    )
    for _ in range(200):  # alpha answered right: the process is warm
        answer = await probe.request(
            "textDocument/hover",
            {"textDocument": {"uri": a_uri}, "position": position_of(a_text, "area(2.0)")},
        )
        if "radius: float" in hover_text(answer):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)

    probe.t0 = time.monotonic()
    joined = len(probe.log)
    if not args.quiet:
        print(f"--- trial {number}: beta joins", flush=True)
    probe.notify(
        "workspace/didChangeWorkspaceFolders",
        {"event": {"added": [folder(root / "beta")], "removed": []}},
    )
    b_text = (root / "beta" / "app.py").read_text()
    b_uri = (root / "beta" / "app.py").as_uri()
    probe.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": b_uri, "languageId": "python", "version": 1, "text": b_text}},
    )
    hovers: list[tuple[float, float, bool]] = []
    right_streak = 0
    while right_streak < 20 and probe.ms() < 10_000:
        sent = probe.ms()
        answer = await probe.request(
            "textDocument/hover",
            {"textDocument": {"uri": b_uri}, "position": position_of(b_text, "Circle(radius)")},
        )
        right = RIGHT in hover_text(answer)
        hovers.append((sent, probe.ms(), right))
        if right_streak == 0 and right and probe.ms() > args.config_delay * 1e3:
            pass
        right_streak = right_streak + 1 if right else 0
        await asyncio.sleep(0.01)
    await asyncio.sleep(1.0)  # what it still sends after
    assert probe.proc is not None
    probe.proc.kill()
    await probe.proc.wait()
    shutil.rmtree(neutral, ignore_errors=True)

    def first(pred: Any) -> float | None:
        return next((t for t, way, m in probe.log[joined:] if pred(way, m)), None)

    last_wrong = max((sent for sent, _, right in hovers if not right), default=None)
    answered = first(lambda w, m: w == "->" and "result" in m and isinstance(m["result"], list))
    # the end of the recheck pyrefly begins when the answer changes a folder's settings
    end_after = next(
        (
            t
            for t, w, m in probe.log[joined:]
            if answered is not None
            and t > answered
            and m.get("method") == "$/progress"
            and m["params"]["value"].get("kind") == "end"
        ),
        None,
    )
    first_right = next((sent for sent, _, right in hovers if right), None)
    return {
        "trial": number,
        "hovers": len(hovers),
        "wrong": sum(1 for *_, right in hovers if not right),
        "last wrong hover sent": last_wrong,
        "first right hover sent": first_right,
        "last wrong answer received": max(
            (got for _, got, right in hovers if not right), default=None
        ),
        "recheck end after the answer": end_after,
        "wrong answers after that end": sum(
            1 for _, got, right in hovers if not right and end_after is not None and got > end_after
        ),
        "configuration asked": first(
            lambda w, m: w == "<-" and m.get("method") == "workspace/configuration"
        ),
        "configuration answered": first(
            lambda w, m: w == "->" and "result" in m and isinstance(m["result"], list)
        ),
        "first beta diagnostics": first(
            lambda w, m: (
                m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == b_uri
            )
        ),
        "beta diagnostics": [
            (round(t, 1), len(m["params"]["diagnostics"]))
            for t, w, m in probe.log[joined:]
            if m.get("method") == "textDocument/publishDiagnostics" and m["params"]["uri"] == b_uri
        ],
        "progress": [
            (round(t, 1), m["params"]["value"].get("kind"))
            for t, w, m in probe.log[joined:]
            if m.get("method") == "$/progress"
        ],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="pyrefly", choices=sorted(KINDS))
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--config-delay", type=float, default=0.0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--next-to-project",
        dest="elsewhere",
        action="store_false",
        help="keep each environment at <project>/.venv, where the backend finds it itself",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "monorepo"
        make_repo(root, args.elsewhere)
        results = [await trial(args, root, n) for n in range(1, args.trials + 1)]
    print(f"load {os.getloadavg()[0]:.2f}, config delay {args.config_delay:g} s")
    for result in results:
        print(
            json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()})
        )


if __name__ == "__main__":
    asyncio.run(main())
