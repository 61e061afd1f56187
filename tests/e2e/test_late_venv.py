"""A venv created while the proxy runs is used by the next request, without a restart.

gamma has no venv: requests fail (strict mode). The test edits gamma/tool.py in the editor
(unsaved), then creates gamma/.venv: the next hover must succeed, answered by a new backend that
was given the editor's current text, not the file on disk.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import pytest
from clients import MuxClient, definition_targets, hover_text, uri_path
from pygls.exceptions import JsonRpcException

from typemux_lsp.example import build_venvs

if TYPE_CHECKING:
    from conftest import Monorepo

StartProxy = Callable[..., Awaitable[MuxClient]]

REQUEST_FAILED = -32803
WHISPER = (
    "\n\ndef whisper(text: str) -> str:\n"
    '    """Quietly: "π ≈ 3.14 — 🚀"."""\n'
    "    return text.lower()\n"
)


async def test_venv_created_while_running(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    monorepo = fresh_monorepo
    client = await start_proxy(backend, monorepo.root)
    tool = monorepo.path("gamma/tool.py")
    uri = client.open(tool)

    with pytest.raises(JsonRpcException) as caught:
        await client.hover(uri, "shout(")
    assert caught.value.code == REQUEST_FAILED, caught.value

    # an unsaved edit while no backend can take it
    end = len(client.text(uri).split("\n")) - 1
    position = {"line": end, "character": 0}
    client.change(uri, [{"range": {"start": position, "end": position}, "text": WHISPER}])

    shutil.copytree(monorepo.path("alpha/vendor"), monorepo.path("gamma/vendor"))
    assert build_venvs(monorepo.path("gamma")) == [monorepo.venv("gamma")]

    hover = hover_text(await client.hover(uri, "def whisper", offset=4))
    assert "whisper" in hover, hover
    assert "str" in hover, hover
    targets = definition_targets(await client.definition(uri, 'shout("hello")'))
    assert [(uri_path(target), line) for target, line in targets] == [(tool, 3)]

    diagnostics = await client.wait_for_diagnostics(uri, timeout=30)
    assert [d for d in diagnostics if d.get("severity", 1) == 1] == [], diagnostics
