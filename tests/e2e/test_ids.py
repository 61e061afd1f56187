"""Registration ids and progress tokens from several backends never collide at the client.

ty and pyrefly use fixed registration ids (``ty/workspace/didChangeWatchedFiles/0``,
``FILEWATCHER``, ``DID_CHANGE_CONFIGURATION``) and pyrefly a fixed progress token: forwarded
verbatim from two backends they would clash, and unregistering one backend's watcher would
remove the other's. VS Code's profile is used because it declares dynamic registration and
``window.workDoneProgress`` (Claude Code declares neither, so backends register nothing).

Each registration is attributed to a backend by the project path it mentions (pyrefly's watcher
globs) or else by when it arrived: alpha's backend settles (diagnostics + a hover) before beta's
file is opened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clients import VSCODE, MuxClient, ServerEvent

if TYPE_CHECKING:
    from conftest import Monorepo

StartProxy = Callable[..., Awaitable[MuxClient]]


def owner(event: ServerEvent, mark: int, monorepo: Monorepo) -> str:
    text = json.dumps(event.detail)
    mentioned = [p for p in ("alpha", "beta") if str(monorepo.path(p)) + "/" in text]
    if len(mentioned) == 1:
        return mentioned[0]
    return "alpha" if event.seq <= mark else "beta"


async def test_ids_and_tokens_unique_across_backends(
    backend: str, monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    client = await start_proxy(backend, monorepo.root, VSCODE)

    alpha = client.open(monorepo.path("alpha/app.py"))
    await client.wait_for_diagnostics(alpha)
    await client.hover(alpha, "area(2.0)")
    mark = client.seq
    beta = client.open(monorepo.path("beta/app.py"))
    await client.wait_for_diagnostics(beta)
    await client.hover(beta, "Circle")

    # The backend process of each project: a shared one serves both (its own ids are its own).
    state = await client.request(
        "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
    )
    process = {Path(p["project"]).name: b["pid"] for b in state["backends"] for p in b["projects"]}
    owners: dict[str, set[int]] = {}
    for event in client.events:
        if event.kind in ("register", "progress/create"):
            who = process[owner(event, mark, monorepo)]
            owners.setdefault(f"{event.kind} {event.key}", set()).add(who)
    clashes = {key: sorted(who) for key, who in owners.items() if len(who) > 1}
    assert clashes == {}, f"ids used by both backends: {clashes}\n{client.events}"
    assert client.token_problems == []

    # every unregistration names something registered (and not yet unregistered)
    active: dict[str, int] = {}
    for event in client.events:
        if event.kind == "register":
            active[event.key] = active.get(event.key, 0) + 1
        elif event.kind == "unregister":
            assert active.get(event.key, 0) > 0, f"unregistered unknown id {event.key}"
            active[event.key] -= 1


async def test_two_backends_asking_the_client_at_once_each_get_their_own_answer(
    monorepo: Monorepo, start_proxy: StartProxy, tmp_path: Path
) -> None:
    """Two backends' requests to the client outstanding at the same time, answered in the
    opposite order, one with an error: each backend gets the answer meant for it.

    pyrefly is the backend that asks a VS Code-like client something through the proxy
    (window/workDoneProgress/create, with the same token and ids in every pyrefly process);
    the other three send nothing the proxy forwards with this profile (measured). What each
    backend receives is read from the proxy's trace log.
    """
    log = tmp_path / "proxy.log"
    client = await start_proxy(
        "pyrefly",
        monorepo.root,
        VSCODE,
        args=("--log-level", "trace", "--log-file", str(log)),
        initialize=False,
    )
    held: dict[str, asyncio.Future[None]] = {}
    both = asyncio.Event()

    async def gate(token: object) -> None:
        name = str(token)
        if not name.endswith("/pyrefly-progress-1"):
            return  # the proxy's own start-up progress
        held[name] = asyncio.get_running_loop().create_future()
        if len(held) == 2:
            both.set()
        await held[name]

    client.progress_gate = gate
    await client.start_session(monorepo.root)
    client.open(monorepo.path("alpha/app.py"))
    client.open(monorepo.path("beta/app.py"))
    await asyncio.wait_for(both.wait(), 60)
    first, second = sorted(held)  # typemux-lsp/<session>/pyrefly-progress-1
    held[second].set_result(None)  # answered in the opposite order...
    held[first].set_exception(RuntimeError("refused by the test client"))  # ...one refused
    text = ""
    for _ in range(100):
        text = log.read_text(encoding="utf-8")
        if _answers_to_backends(text, "1") and _answers_to_backends(text, "2"):
            break
        await asyncio.sleep(0.1)
    sessions = {first.split("/")[1]: "error", second.split("/")[1]: "result"}
    for session, expected in sessions.items():
        answers = _answers_to_backends(text, session)
        assert len(answers) == 1, (session, answers)
        assert expected in answers[0], (session, answers)


def _answers_to_backends(log: str, session: str) -> list[dict[str, object]]:
    """What the proxy answered backend `pyrefly#<session>`'s progress-create requests."""
    asked: set[object] = set()
    answers = []
    for line in log.splitlines():
        if f"[pyrefly#{session} " not in line:
            continue
        for arrow in ("backend -> proxy: ", "proxy -> backend: "):
            if arrow in line:
                message = json.loads(line.split(arrow, 1)[1])
                if message.get("method") == "window/workDoneProgress/create":
                    asked.add(message.get("id"))
                elif "method" not in message and message.get("id") in asked:
                    answers.append(message)
    return answers
