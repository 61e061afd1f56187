"""What backends ask of the client, renamed per backend: the names are forgotten when done."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from typemux_lsp import jsonrpc
from typemux_lsp.backchannel import BackChannel
from typemux_lsp.features import ClientSupport
from typemux_lsp.server import _workspace_roots


class _Client:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, message: Any) -> None:
        self.sent.append(message)

    def send_body(self, body: bytes) -> None:
        self.sent.append(json.loads(body))


def _session() -> Any:
    return SimpleNamespace(
        id=7,
        venv="/repo/a/.venv",
        local_tokens=set(),
        remote_tokens={},
        registered={},
        alive=True,
        sent=[],
        send=lambda message: None,
        mark_ready=lambda reason: None,
        folders=lambda: [],
    )


def test_a_renamed_progress_token_is_forgotten_when_its_progress_ends() -> None:
    client = _Client()
    support = ClientSupport({"window": {"workDoneProgress": True}})
    channel = BackChannel(client, lambda: support)  # type: ignore[arg-type]
    session = _session()
    channel.backend_request(
        session,
        jsonrpc.request(1, "window/workDoneProgress/create", {"token": "analysis"}),
    )
    assert session.remote_tokens  # the client was asked for the renamed token
    for kind in ("begin", "report", "end"):
        params = {"token": "analysis", "value": {"kind": kind}}
        channel.progress(session, jsonrpc.dumps(jsonrpc.notification("$/progress", params)), params)
    relayed = [m for m in client.sent if m.get("method") == "$/progress"]
    assert [m["params"]["token"] for m in relayed] == ["typemux-lsp/7/analysis"] * 3
    assert session.remote_tokens == {}  # a long session does not grow a table per progress
    assert channel._tokens == {}


def test_an_empty_or_relative_root_path_names_no_folder() -> None:
    assert _workspace_roots({"rootPath": ""}) == []
    assert _workspace_roots({"rootPath": "relative/dir"}) == []
    assert [str(p) for p in _workspace_roots({"rootPath": "/srv/repo"})] == ["/srv/repo"]
