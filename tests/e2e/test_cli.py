"""The command line: backend from the environment, flags, and stdout reserved for LSP."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import procs
from clients import BACKEND_COMMANDS, CLAUDE_CODE, hover_text, position_of, proxy_env
from rawclient import RawClient

if TYPE_CHECKING:
    from conftest import Monorepo

StartRaw = Callable[..., Awaitable[RawClient]]


async def test_backend_from_environment(
    backend: str, monorepo: Monorepo, start_raw: StartRaw
) -> None:
    """``TYPEMUX_LSP_BACKEND`` selects the backend; ``--warmup-timeout`` is accepted."""
    env: dict[str, Any] = {**proxy_env(), "TYPEMUX_LSP_BACKEND": backend}
    proxy = await start_raw(
        [sys.executable, "-m", "typemux_lsp", "--warmup-timeout", "5"],
        cwd=monorepo.root,
        env=env,
        name=f"typemux-lsp[env {backend}]",
    )
    init = await proxy.initialize(CLAUDE_CODE.initialize_params(monorepo.root))
    assert "result" in init, init
    app = monorepo.path("alpha/app.py")
    uri = proxy.open(app)
    params = {
        "textDocument": {"uri": uri},
        "position": position_of(app.read_text(encoding="utf-8"), "area(2.0)"),
    }
    hover = await proxy.result("textDocument/hover", params)
    assert "def area(radius: float) -> float" in hover_text(hover)
    executable = Path(BACKEND_COMMANDS[backend][0]).name
    commands = [{Path(arg).name for arg in p.cmdline.split()} for p in procs.descendants(proxy.pid)]
    assert any(executable in args for args in commands), commands
    assert await proxy.shutdown() == 0
    assert proxy.protocol_errors == []  # nothing but LSP messages on stdout


async def test_unknown_backend_is_refused(monorepo: Monorepo, start_raw: StartRaw) -> None:
    proxy = await start_raw(
        [sys.executable, "-m", "typemux_lsp", "--backend", "mypy"],
        cwd=monorepo.root,
        env=proxy_env(),
        name="typemux-lsp[mypy]",
    )
    code = await proxy.wait(30)
    assert code != 0
    assert not [m for m in proxy.messages if m[0] == "in"]  # stdout stays silent
    assert "mypy" in proxy.stderr_text()
