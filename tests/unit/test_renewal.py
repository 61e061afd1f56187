"""A shared backend's folder renewed alone (its environment recreated): what waits and when.

The real backends answer nothing before a folder's configuration is in effect (measured:
bench/readd_habits.py), so end to end (tests/e2e/test_sharing.py) the proxy's own holding
cannot be told from theirs. Here the session is driven without a process: what it would
write to the backend is recorded, and each step of a renewal is checked for which requests
go out and which wait.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from envkit import fake_venv

from typemux_lsp import jsonrpc
from typemux_lsp.backends import KINDS
from typemux_lsp.jsonrpc import Message
from typemux_lsp.ledger import Pending
from typemux_lsp.plane import Plane
from typemux_lsp.session import BackendError, BackendSession, State, Timeouts
from typemux_lsp.venv import Venv


class Upstream:
    """The rest of the proxy, as far as a renewal needs it."""

    def __init__(self) -> None:
        self.added: list[Path] = []
        self.removed: list[Path] = []
        #: the requests the session still held when it ended
        self.ended_with: list[Pending] = []

    def initialize_params(self, session: BackendSession) -> Message:
        return {}

    def session_started(self, session: BackendSession) -> None:
        pass

    def folder_added(self, session: BackendSession, venv: Venv) -> None:
        self.added.append(venv.key)

    def folder_removed(self, session: BackendSession, venv: Venv) -> None:
        self.removed.append(venv.key)

    def folder_requests(
        self, session: BackendSession, venv: Venv
    ) -> list[tuple[Pending, Message | None, bytes]]:
        held = [(e, *e.request) for e in session.inflight.values() if e.request is not None]
        held += [(q.entry, q.message, q.body) for q in session.queued()]
        return [
            (entry, message, body)
            for entry, message, body in held
            if message is not None
            and str(message["params"]["textDocument"]["uri"]).startswith(
                venv.project_dir.as_uri() + "/"
            )
        ]

    def request_failed(self, session: BackendSession, entry: Pending, why: str) -> None:
        pass

    def backend_body(self, session: BackendSession, body: bytes) -> None:
        pass

    def backend_bad_frame(self, session: BackendSession, error: jsonrpc.FrameError) -> None:
        pass

    def session_ended(self, session: BackendSession, error: BackendError) -> None:
        self.ended_with = [*session.inflight.values(), *(q.entry for q in session.queue)]


class Rig:
    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop, start: float) -> None:
        self.alpha = Venv(fake_venv(root / "alpha" / ".venv"))
        self.beta = Venv(fake_venv(root / "beta" / ".venv"))
        self.upstream = Upstream()
        self.loop = loop
        self.session = BackendSession(
            KINDS["ty"],
            self.alpha,
            self.upstream,
            Plane(loop),
            Timeouts(start=start, warmup=30.0),
            shared=True,
        )
        self.session.add_venv(self.beta)
        self.session.state = State.READY  # (as if its handshake were done)
        self.session.initialize_folders()
        #: what the session wrote to the backend, decoded
        self.sent: list[dict[str, Any]] = []
        self._ids = iter(range(1, 1000))

    def request(self, venv: Venv, method: str = "textDocument/hover") -> Pending:
        """A client request about venv's app.py, forwarded as the control plane does."""
        entry = Pending(next(self._ids), method)
        uri = (venv.project_dir / "app.py").as_uri()
        message = jsonrpc.request(entry.client_id, method, {"textDocument": {"uri": uri}})
        self.session.forward(entry, message, jsonrpc.dumps(message), venv.key)
        return entry

    def sent_ids(self) -> list[Any]:
        return [m["id"] for m in self.sent if "id" in m and m.get("method") != "$/cancelRequest"]

    def renew(self) -> list[str]:
        overdue: list[str] = []
        self.session.renew_venv(self.beta, lambda: overdue.append("overdue"))
        return overdue


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def rig(tmp_path: Path, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch) -> Rig:
    made = Rig(tmp_path, loop, start=30.0)
    monkeypatch.setattr(made.session, "send_body", lambda body: made.sent.append(json.loads(body)))
    return made


def test_a_renewed_folder_waits_for_its_configuration_the_others_do_not(rig: Rig) -> None:
    before = rig.request(rig.beta)  # in flight when the environment is found recreated
    assert rig.sent_ids() == [before.client_id]
    rig.sent.clear()

    rig.renew()
    # withdrawn from the backend, the folder removed and added again
    assert [m.get("method") for m in rig.sent] == [
        "$/cancelRequest",
        "workspace/didChangeWorkspaceFolders",
        "workspace/didChangeWorkspaceFolders",
    ]
    assert rig.sent[0]["params"] == {"id": before.client_id}
    folders = [m["params"]["event"] for m in rig.sent[1:]]
    beta = {"uri": rig.beta.project_dir.as_uri(), "name": "beta"}
    assert folders == [{"added": [], "removed": [beta]}, {"added": [beta], "removed": []}]
    assert rig.upstream.removed == rig.upstream.added[-1:] == [rig.beta.key]
    assert before.wire_id is None and not rig.session.inflight
    rig.sent.clear()

    other = rig.request(rig.alpha)
    other_index = rig.request(rig.alpha, "textDocument/definition")
    hover = rig.request(rig.beta)
    definition = rig.request(rig.beta, "textDocument/definition")
    assert rig.sent_ids() == [other.client_id, other_index.client_id]  # alpha: at once

    rig.session.configuration_answered([rig.alpha])
    assert rig.sent_ids() == [other.client_id, other_index.client_id]  # not beta's answer

    rig.session.configuration_answered([rig.beta])
    assert rig.sent_ids()[2:] == [before.client_id, hover.client_id]  # index-dependent: not yet
    rig.session.folder_diagnostics(rig.alpha.key)
    assert definition.client_id not in rig.sent_ids()

    rig.session.folder_diagnostics(rig.beta.key)
    assert rig.sent_ids()[4:] == [definition.client_id]
    assert not rig.session.renewals
    assert rig.session.venvs.keys() == {rig.alpha.key, rig.beta.key}


def test_while_the_environment_is_missing_its_requests_keep_waiting(rig: Rig) -> None:
    shutil.rmtree(rig.beta.path)  # deleted, not made again yet
    rig.renew()
    hover = rig.request(rig.beta)
    rig.session.configuration_answered([rig.beta])
    assert hover.client_id not in rig.sent_ids()

    fake_venv(rig.beta.path)  # made again: renewed again, what waited carried over
    rig.renew()
    rig.session.configuration_answered([rig.beta])
    assert hover.client_id in rig.sent_ids()


def test_a_backend_that_never_asks_is_left_to_the_pool_and_what_waits_to_its_end(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = Rig(tmp_path, loop, start=0.05)
    monkeypatch.setattr(rig.session, "send_body", lambda body: rig.sent.append(json.loads(body)))
    overdue = rig.renew()
    hover = rig.request(rig.beta)
    loop.run_until_complete(asyncio.sleep(0.2))
    assert overdue == ["overdue"]  # (the pool restarts it: pool.renew)

    rig.session.fail(BackendError("gone"))
    assert rig.upstream.ended_with == [hover]  # answered with the session's end, not lost
    assert not rig.session.renewals
