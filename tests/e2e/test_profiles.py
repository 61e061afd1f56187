"""Smoke test per editor profile: the proxy negotiates with each and routes per venv.

Claude Code's profile runs the full matrix elsewhere; here VS Code (configuration, dynamic
registration, progress) and Neovim (offers utf-8/utf-16/utf-32, pull diagnostics without dynamic
registration) check that capabilities are negotiated, not assumed. Positions are computed in the
encoding the proxy chose, after the non-ASCII text of alpha/app.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest
from clients import NEOVIM, VSCODE, MuxClient, Profile, definition_targets, hover_text, uri_path

if TYPE_CHECKING:
    from conftest import Monorepo

StartProxy = Callable[..., Awaitable[MuxClient]]


@pytest.mark.parametrize("profile", [VSCODE, NEOVIM], ids=lambda p: p.name)
async def test_profile_smoke(
    backend: str, monorepo: Monorepo, start_proxy: StartProxy, profile: Profile
) -> None:
    client = await start_proxy(backend, monorepo.root, profile)

    offered = profile.capabilities.get("general", {}).get("positionEncodings", ["utf-16"])
    chosen = client.init_result["capabilities"].get("positionEncoding", "utf-16")
    assert chosen in offered, (chosen, offered)

    alpha = client.open(monorepo.path("alpha/app.py"))
    beta = client.open(monorepo.path("beta/app.py"))
    hover = hover_text(await client.hover(alpha, "area(2.0)"))  # after "π ≈ 3.14 — 🚀"
    assert "def area(radius: float) -> float" in hover, hover
    hover = hover_text(await client.hover(beta, "Circle"))
    assert "A circle that knows its own area." in hover, hover
    targets = definition_targets(await client.definition(alpha, "area(2.0)"))
    assert {uri_path(t) for t, _ in targets} == {monorepo.shapes_init("alpha")}
    targets = definition_targets(await client.definition(beta, "import Circle", offset=7))
    assert {uri_path(t) for t, _ in targets} == {monorepo.shapes_init("beta")}
