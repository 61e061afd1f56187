"""Diagnostics a backend publishes, as the client must see them.

A backend may publish for a file that is not its environment's (a module it followed an
import into): only the backend of the file's own environment speaks for it, so such
diagnostics are dropped. Versions are given back in the client's numbering (the proxy
renumbers when a client repeats versions, see documents.py). A backend that goes away
has its diagnostics cleared: they describe a text nobody analyses any more.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import jsonrpc
from .connection import ClientConnection
from .documents import DocumentStore
from .router import NoVenv, Router
from .session import BackendSession, State
from .spellings import Spellings

logger = logging.getLogger(__name__)

PUBLISH = "textDocument/publishDiagnostics"


class Diagnostics:
    def __init__(
        self,
        connection: ClientConnection,
        store: DocumentStore,
        router: Router,
        spellings: Spellings | None = None,
    ) -> None:
        self._connection = connection
        self._store = store
        self._router = router
        self._spellings = spellings

    def publish_fast(
        self,
        session: BackendSession,
        body: bytes,
        uri: str,
        version: int | None,
        any_diagnostics: bool,
    ) -> bool:
        """On a backend's reader thread: publish for a document the client has open, whose
        route (its environment's backend, checked within the second: relay.py) is this
        session; False to leave it to the control plane."""
        doc = self._store.get(uri)
        if (
            doc is None
            or doc.session is not session
            or session.state is not State.READY
            or session.joining
            or time.monotonic() >= doc.routed_until
        ):
            return False
        doc.in_use = True  # (the route is renewed while either side uses it)
        self._forward(session, body, uri, version, any_diagnostics, None)
        return True

    def publish(self, session: BackendSession, body: bytes, params: Any) -> bool:
        """On the control plane; whether it was relayed as the file's own environment's."""
        uri = params.get("uri") if isinstance(params, dict) else None
        if not isinstance(uri, str):
            return False
        if session.state is State.WARMING:
            session.diagnostics_published()
        if session.state in (State.STOPPING, State.STOPPED):
            return False  # a backend on its way out (replaced, evicted) no longer speaks
        owner = self._router.venv_for(uri, self._store.get(uri))
        if isinstance(owner, NoVenv) or owner.key not in session.venvs:
            session.log.debug("diagnostics for %s, which is not this venv's: dropped", uri)
            return False
        if owner.key in session.joining:
            # Checked with the backend's default interpreter: what it publishes once the
            # folder's own is in effect (it publishes every open file then) replaces it.
            session.log.debug(
                "diagnostics for %s before its interpreter is in effect: dropped", uri
            )
            return False
        if session.renewals:
            session.folder_diagnostics(owner.key)
        assert isinstance(params, dict)
        version = params.get("version")
        self._forward(session, body, uri, version, bool(params.get("diagnostics")), params)
        return True

    def _forward(
        self,
        session: BackendSession,
        body: bytes,
        uri: str,
        version: Any,
        any_diagnostics: bool,
        params: dict[str, Any] | None,
    ) -> None:
        """Relay a publish (`params`: its params, if it was decoded whole)."""
        doc = self._store.get(uri)
        if self._spellings is not None and (
            (doc is not None and doc.uri != uri) or self._spellings.needed(None)
        ):
            # published under the client's spelling of the file (pyrefly publishes under its
            # own whatever the document was opened as), related locations included
            params = params if params is not None else _params(body)
            if params is None:
                return
            respelled = self._spellings.to_client(params)
            if respelled is not params:
                params = respelled
                body = jsonrpc.dumps(jsonrpc.notification(PUBLISH, params))
                uri = params["uri"]
        if uri in session.proxy_docs or uri in session.probes:
            return  # a file the proxy opened for its own reasons: the client never asked
        if any_diagnostics:
            session.diagnosed.add(uri)
        else:
            session.diagnosed.discard(uri)
        if doc is not None and version == doc.sync_version != doc.client_version:
            if params is None:  # in the client's numbering: rewritten, every other field kept
                params = _params(body)
                if params is None:
                    return
            self._connection.send(
                jsonrpc.notification(PUBLISH, {**params, "version": doc.client_version})
            )
            return
        self._connection.send_body(body)

    def clear(self, session: BackendSession, successor: BackendSession | None) -> None:
        """The session is gone: withdraw what it published, except where its `successor`
        (a restart) has published since: those are the current diagnostics."""
        current = successor.diagnosed if successor is not None else set()
        for uri in sorted(session.diagnosed - current):
            self._connection.send(jsonrpc.notification(PUBLISH, {"uri": uri, "diagnostics": []}))
        session.diagnosed.clear()


def _params(body: bytes) -> dict[str, Any] | None:
    """The params of a publish read only in part so far (None: never, it was read already)."""
    decoded = jsonrpc.decode(body)
    if isinstance(decoded, jsonrpc.BadMessage):
        return None
    params = decoded[0].get("params")
    return params if isinstance(params, dict) else None
