"""What each backend does when a workspace folder is removed and added again, measured straight.

A shared backend (one process, a workspace folder per project, each folder's interpreter
given by `workspace/configuration` for its scopeUri, started as the proxy starts it) serves
alpha and beta. beta's `.venv` is then deleted and made again (`python -m venv`) with another
release of `shapes` (a docstring of its own), its `bin/python` a wrapper that logs each run,
and beta's hover on `Circle` is asked:

- "told nothing": the environment recreated and the backend told nothing (its document
  closed and opened again): does the hover ever show the new release?
- "folder re-added": beta's document closed, its folder removed and added again
  (`workspace/didChangeWorkspaceFolders`, two notifications), the document opened again;
- "re-added, late config": the same, with every `workspace/configuration` answered
  `--late` seconds late from then on (a client that takes its time, a busy proxy): what
  beta's hovers say before the new folder's interpreter is known (why the proxy holds
  them until it has answered).

For each: ms to the first hover that shows the new release (or "never" within the limit),
what the hovers before it said (the old release, nothing, the default interpreter's view),
whether the backend asked `workspace/configuration` for beta's folder again and ran beta's
new interpreter, and alpha's slowest hover meanwhile (always from alpha's own release).

    .venv/bin/python bench/readd_habits.py [--backends pyright,basedpyright,ty,pyrefly]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    CountingClient,
    client_params,
    hover_text,
    load_average,
    make_workspace,
    position_of,
    remake_venv,
)

from typemux_lsp.backends import KINDS, BackendKind
from typemux_lsp.demo import CLAUDE_CODE_CAPABILITIES
from typemux_lsp.features import backend_initialize_params
from typemux_lsp.jsonrpc import Message, response
from typemux_lsp.tree import get_path
from typemux_lsp.venv import Venv

LIMIT = 10.0
#: how late configuration answers come in the "late config" trial, seconds
LATE = 2.0
OLD = "A circle that knows its own area."  # beta's shapes 2.x, as built
NEW = "A circle, as shapes 3.0 draws it."
AREA = "area(radius: float) -> float"  # alpha's shapes 1.x


def recreate(project: Path, log: Path) -> None:
    """`rm -rf .venv && python -m venv .venv`, then shapes 3.0 written in; `bin/python` a
    wrapper that logs its runs (argv[0] kept, so the venv is still the one found)."""
    venv = project / ".venv"
    site = remake_venv(project)
    init = site / "shapes" / "__init__.py"
    init.write_text(init.read_text("utf-8").replace(OLD, NEW), "utf-8")
    python = venv / "bin" / "python"
    real = python.resolve()
    python.unlink()
    python.write_text(f'#!/bin/bash\necho "$*" >> {log}\nexec -a "$0" {real} "$@"\n')
    python.chmod(0o755)


class LateClient(CountingClient):
    """Answers `workspace/configuration` `late` seconds late once `late` is set."""

    late = 0.0

    def _on_message(self, body: bytes, message: Message) -> None:
        if self.late and message.get("method") == "workspace/configuration" and "id" in message:
            self.server_requests.append(message)
            answer = response(message["id"], self._answer(message))
            asyncio.get_running_loop().call_later(self.late, self._send, answer)
            return
        super()._on_message(body, message)


class Probe:
    """One backend straight, shared as the proxy shares it: a folder per project."""

    def __init__(self, kind: BackendKind, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.venvs = {name: Venv((root / name / ".venv").resolve()) for name in ("alpha", "beta")}
        #: (monotonic time, scopeUri) of every configuration item asked
        self.asked: list[tuple[float, str | None]] = []
        self.client = LateClient(self._answer)

    def _answer(self, message: Message) -> Any:
        if message.get("method") != "workspace/configuration":
            return None
        answers = []
        for item in get_path(message, "params", "items") or []:
            scope = get_path(item, "scopeUri")
            self.asked.append((time.monotonic(), scope))
            venv = self.venvs["beta" if isinstance(scope, str) and "/beta" in scope else "alpha"]
            answers.append(self.kind.configuration(get_path(item, "section"), venv, None))
        return answers

    def folder(self, name: str) -> dict[str, str]:
        return {"uri": (self.root / name).as_uri(), "name": name}

    async def start(self, cwd: Path) -> None:
        env = self.kind.shared_environment(self.venvs.values())
        executable = self.kind.resolve_executable(env["PATH"])
        assert executable is not None, self.kind.install_hint()
        await self.client.start(self.kind.command(executable, env["PATH"]), cwd=cwd, env=env)
        offered = CLAUDE_CODE_CAPABILITIES["general"]["positionEncodings"]
        params = backend_initialize_params(
            client_params(self.root),
            self.venvs["alpha"],
            self.kind.choose_encoding(offered),
            [self.folder("alpha"), self.folder("beta")],
        )
        await self.client.request("initialize", params, timeout=60)
        self.client.notify("initialized", {})

    def hover_params(self, name: str, needle: str) -> dict[str, Any]:
        app = self.root / name / "app.py"
        text = app.read_text("utf-8")
        return {"textDocument": {"uri": app.as_uri()}, "position": position_of(text, needle)}

    async def hover(self, name: str, needle: str) -> str:
        return hover_text(
            await self.client.request("textDocument/hover", self.hover_params(name, needle))
        )

    async def until(self, name: str, needle: str, expect: str) -> list[str]:
        """Hovers until one mentions `expect` (or LIMIT): every distinct answer, in order."""
        seen: list[str] = []
        deadline = time.monotonic() + LIMIT
        while time.monotonic() < deadline:
            text = await self.hover(name, needle)
            if not seen or seen[-1] != text:
                seen.append(text)
            if expect in text:
                break
            await asyncio.sleep(0.05)
        return seen


def summary(text: str) -> str:
    if NEW in text:
        return "new"
    if OLD in text:
        return "old"
    return "empty" if not text.strip() else f"other: {' '.join(text.split())[:60]!r}"


async def alpha_hovers(probe: Probe, stop: asyncio.Event, worst: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        text = await probe.hover("alpha", "area(2.0)")
        worst.append((time.perf_counter() - started) * 1e3)
        assert AREA in text, f"alpha answered from elsewhere: {text!r}"
        await asyncio.sleep(0.02)


async def trial(backend: str, readd: bool, late: float = 0.0) -> dict[str, Any]:
    kind = KINDS[backend]
    with tempfile.TemporaryDirectory(prefix="bench-readd-") as tmp:
        root = make_workspace(Path(tmp))
        neutral = Path(tmp) / "neutral"
        neutral.mkdir()
        log = Path(tmp) / "interpreter.log"
        probe = Probe(kind, root)
        await probe.start(neutral)
        client = probe.client
        try:
            for name in ("alpha", "beta"):
                client.open(root / name / "app.py")
            assert AREA in (await probe.until("alpha", "area(2.0)", AREA))[-1]
            assert OLD in (await probe.until("beta", "Circle", OLD))[-1]
            stop = asyncio.Event()
            worst: list[float] = []
            alpha = asyncio.create_task(alpha_hovers(probe, stop, worst))
            await asyncio.sleep(0.3)
            recreate(root / "beta", log)
            t0 = time.monotonic()
            beta_uri = (root / "beta" / "app.py").as_uri()
            client.notify("textDocument/didClose", {"textDocument": {"uri": beta_uri}})
            client.late = late
            if readd:
                beta = probe.folder("beta")
                for change in ({"removed": [beta], "added": []}, {"added": [beta], "removed": []}):
                    client.notify("workspace/didChangeWorkspaceFolders", {"event": change})
            client.open(root / "beta" / "app.py", version=2)
            seen = await probe.until("beta", "Circle", NEW)
            ms = (time.monotonic() - t0) * 1e3
            stop.set()
            await alpha
            beta_scope = [t for t, s in probe.asked if t >= t0 and s and "/beta" in s]
            ran = log.read_text().count("\n") if log.exists() else 0
            return {
                "backend": backend,
                "how": ("re-added, late config" if late else "folder re-added")
                if readd
                else "told nothing",
                "new_ms": ms if NEW in seen[-1] else None,
                "answers": [summary(s) for s in seen],
                "asked_again": len(beta_scope),
                "interpreter_runs": ran,
                "alpha_worst_ms": max(worst),
                "alpha_hovers": len(worst),
            }
        finally:
            await client.stop()


async def run(backends: list[str]) -> None:
    print(f"load {load_average():.2f}")
    print(
        f"{'backend':<13} {'how':<22} {'new release, ms':>16}  {'beta hovers, in order':<28} "
        f"{'config asked':>12} {'python runs':>11} {'alpha worst, ms':>15}"
    )
    for backend in backends:
        for readd, late in ((False, 0.0), (True, 0.0), (True, LATE)):
            row = await trial(backend, readd, late)
            new = "never" if row["new_ms"] is None else f"{row['new_ms']:.0f}"
            print(
                f"{backend:<13} {row['how']:<22} {new:>16}  {' > '.join(row['answers']):<28} "
                f"{row['asked_again']:>12} {row['interpreter_runs']:>11} "
                f"{row['alpha_worst_ms']:>15.1f}"
            )
    print(f"load {load_average():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="pyright,basedpyright,ty,pyrefly")
    args = parser.parse_args()
    asyncio.run(run(args.backends.split(",")))


if __name__ == "__main__":
    main()
