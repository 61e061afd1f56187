"""Resilience with the real backends: a backend killed with SIGKILL, a project per backend kind.

The fault-injection suite (tests/faults) covers every failure with a scripted backend; these
check that the same recovery works with the real type checkers and their child processes.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

import procs
import pytest
from clients import definition_targets, hover_text, proxy_env, uri_path

if TYPE_CHECKING:
    from conftest import Monorepo, StartProxy

ALPHA = "alpha/app.py"
BETA = "beta/app.py"
AREA_V1 = "def area(radius: float) -> float"


async def status(client: Any) -> dict[str, Any]:
    """The pool, through the `typemux.status` command (as an editor would call it)."""
    result = await client.request(
        "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
    )
    assert isinstance(result, dict)
    return result


def backend_of(state: dict[str, Any], monorepo: Monorepo, project: str) -> dict[str, Any]:
    venv = str(monorepo.venv(project).resolve())
    (entry,) = [b for b in state["backends"] if b["venv"] == venv]
    assert isinstance(entry, dict)
    return entry


async def test_a_killed_backend_leaves_the_other_venv_alone_and_recovers(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """One process per environment: a crash touches no other one. (A shared backend's crash
    brings it back with every folder: tests/e2e/test_sharing.py.)"""
    monorepo = fresh_monorepo
    env = {**proxy_env(), "TYPEMUX_LSP_BACKEND_SHARING": "none"}
    client = await start_proxy(backend, monorepo.root, env=env)
    alpha = client.open(monorepo.path(ALPHA))
    beta = client.open(monorepo.path(BETA))
    await client.wait_for_diagnostics(alpha)
    await client.wait_for_diagnostics(beta)
    assert AREA_V1 in hover_text(await client.hover(alpha, "area(2.0)"))
    before = await status(client)
    victim = backend_of(before, monorepo, "alpha")
    family = [p for p in procs.descendants(victim["pid"])] + [
        p for p in procs.descendants(client.pid) if p.pid == victim["pid"]
    ]

    os.killpg(victim["pid"], signal.SIGKILL)  # the backend and its node child, as an OOM kill
    assert await procs.wait_gone(family, 10) == []

    # The other venv never notices.
    beta_hover = hover_text(await client.hover(beta, "Circle"))
    assert "Circle" in beta_hover
    assert (
        backend_of(await status(client), monorepo, "beta")["pid"]
        == backend_of(before, monorepo, "beta")["pid"]
    )

    # The proxy notices the death by itself (no request needed): the pool drops that backend.
    alpha_venv = str(monorepo.venv("alpha").resolve())
    for _ in range(500):
        if all(b["venv"] != alpha_venv for b in (await status(client))["backends"]):
            break
    else:
        raise AssertionError("the proxy never noticed that the alpha backend died")

    # The next request starts a fresh backend, with alpha/app.py replayed, and is answered by it.
    hover = await client.hover(alpha, "area(2.0)")
    assert AREA_V1 in hover_text(hover)
    targets = definition_targets(await client.definition(alpha, "area(2.0)"))
    assert {uri_path(t) for t, _ in targets} == {monorepo.shapes_init("alpha")}
    after = backend_of(await status(client), monorepo, "alpha")
    assert after["pid"] != victim["pid"]
    assert after["crashes"] == 1  # the venv's crash is remembered, for status and the guard


@pytest.mark.parametrize(
    ("alpha_kind", "beta_kind"), [("ty", "pyright"), ("pyrefly", "basedpyright")]
)
async def test_project_rules_run_a_different_backend_per_project(
    fresh_monorepo: Monorepo, start_proxy: StartProxy, alpha_kind: str, beta_kind: str
) -> None:
    monorepo = fresh_monorepo
    (monorepo.root / "pyproject.toml").write_text(
        "[tool.typemux-lsp]\n"
        f'backend = "{beta_kind}"\n\n'
        "[[tool.typemux-lsp.projects]]\n"
        'path = "alpha"\n'
        f'backend = "{alpha_kind}"\n'
    )
    client = await start_proxy(beta_kind, monorepo.root)
    alpha = client.open(monorepo.path(ALPHA))
    beta = client.open(monorepo.path(BETA))
    assert AREA_V1 in hover_text(await client.hover(alpha, "area(2.0)"))
    assert "Circle" in hover_text(await client.hover(beta, "Circle"))
    state = await status(client)
    assert backend_of(state, monorepo, "alpha")["kind"] == alpha_kind
    assert backend_of(state, monorepo, "beta")["kind"] == beta_kind
    assert state["positionEncoding"] == "utf-16"
    await client.wait_for_diagnostics(alpha)
    await client.wait_for_diagnostics(beta)
