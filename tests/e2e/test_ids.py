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

import json
from collections.abc import Awaitable, Callable
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

    owners: dict[str, set[str]] = {}
    for event in client.events:
        if event.kind in ("register", "progress/create"):
            owners.setdefault(f"{event.kind} {event.key}", set()).add(owner(event, mark, monorepo))
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
