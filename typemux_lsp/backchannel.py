"""What backends ask of the client, translated so several backends look like one server.

Each backend numbers its requests, progress tokens and capability registrations on its
own; two backends would collide at the client (both send request id 0, both register
`FILEWATCHER`). So everything a backend sends the client under a name of its own is
renamed here, once per backend, and renamed back on the way in:

- server->client request ids: a proxy id per request, mapped back to (backend, its id);
- progress tokens: `typemux-lsp/<session>/<token>`;
- registration ids: `typemux-lsp/<session>/<id>`.

Requests the client did not declare it can take are answered here instead (a refresh it
does not support, progress it cannot show, an edit it cannot apply), so a backend never
waits on a client that will answer MethodNotFound.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from . import jsonrpc
from .connection import ClientConnection
from .features import ClientSupport, local_answer
from .jsonrpc import Message, MsgId
from .session import BackendSession
from .tree import get_path

logger = logging.getLogger(__name__)

PROGRESS = "$/progress"
REGISTER = "client/registerCapability"
UNREGISTER = "client/unregisterCapability"
CREATE_PROGRESS = "window/workDoneProgress/create"


def renamed(session: BackendSession, name: Any) -> str:
    """The one spelling of a backend's token or registration id at the client."""
    return f"typemux-lsp/{session.id}/{name}"


class BackChannel:
    def __init__(self, connection: ClientConnection, support: Callable[[], ClientSupport]) -> None:
        self._connection = connection
        self._support = support
        self._ids = itertools.count(1)
        #: server->client requests in flight: proxy id -> (session, backend's id) for a
        #: backend's request, or the callback (or None) of a request of the proxy's own
        self._requests: dict[int, tuple[BackendSession, MsgId] | Callable[[Message], None] | None]
        self._requests = {}
        #: renamed progress tokens -> (session, backend's token)
        self._tokens: dict[str, tuple[BackendSession, Any]] = {}
        #: registration ids forwarded to the client -> method
        self._registrations: dict[str, str] = {}

    # -- requests of the proxy's own -------------------------------------------------------

    def request(
        self, method: str, params: Any, on_answer: Callable[[Message], None] | None = None
    ) -> None:
        proxy_id = next(self._ids)
        self._requests[proxy_id] = on_answer
        self._connection.send(jsonrpc.request(proxy_id, method, params))

    # -- a backend's requests --------------------------------------------------------------

    def backend_request(self, session: BackendSession, message: Message) -> None:
        """Anything but workspace/configuration (configuration.py answers that)."""
        method: str = message["method"]
        backend_id: MsgId = message["id"]
        params = message.get("params")
        if method == REGISTER:
            self._register(session, params)
            session.send(jsonrpc.response(backend_id, None))
            return
        if method == UNREGISTER:
            self._unregister(session, params)
            session.send(jsonrpc.response(backend_id, None))
            return
        answered, answer = local_answer(method, self._support(), session.folders())
        if method == CREATE_PROGRESS:
            token = get_path(params, "token")
            if answered:
                session.local_tokens.add(json.dumps(token))
            else:
                params = {**(params or {}), "token": self._rename_token(session, token)}
        if answered:
            session.send(jsonrpc.response(backend_id, answer))
            return
        proxy_id = next(self._ids)
        self._requests[proxy_id] = (session, backend_id)
        self._connection.send(jsonrpc.request(proxy_id, method, params))

    def client_response(self, message: Message) -> None:
        msg_id = message.get("id")
        if not isinstance(msg_id, int) or msg_id not in self._requests:
            logger.warning("response to an unknown server request %r: dropped", msg_id)
            return
        entry = self._requests.pop(msg_id)
        if not isinstance(entry, tuple):
            if "error" in message:
                logger.info("the client refused a request of the proxy: %s", message["error"])
            if entry is not None:
                entry(message)
            return
        session, backend_id = entry
        if session.alive:
            answer = dict(message)
            answer["id"] = backend_id
            session.send(answer)

    def _rename_token(self, session: BackendSession, token: Any) -> str:
        name = renamed(session, token)
        self._tokens[name] = (session, token)
        session.remote_tokens[json.dumps(token)] = name
        return name

    def _register(self, session: BackendSession, params: Any) -> None:
        forward: list[Any] = []
        for reg in get_path(params, "registrations") or []:
            method = get_path(reg, "method")
            if isinstance(method, str):
                session.registered[method] = get_path(reg, "registerOptions")
            if not isinstance(method, str) or not self._support().dynamic_registration(method):
                continue
            name = renamed(session, reg.get("id"))
            if name in self._registrations:
                self.request(UNREGISTER, {"unregisterations": [{"id": name, "method": method}]})
            self._registrations[name] = method
            forward.append({**reg, "id": name})
        if forward:
            self.request(REGISTER, {"registrations": forward})

    def _unregister(self, session: BackendSession, params: Any) -> None:
        gone: list[Any] = []
        for unreg in get_path(params, "unregisterations") or []:
            if isinstance(get_path(unreg, "method"), str):
                session.registered.pop(get_path(unreg, "method"), None)
            name = renamed(session, get_path(unreg, "id"))
            method = self._registrations.pop(name, None)
            if method is not None:
                gone.append({"id": name, "method": method})
        if gone:
            self.request(UNREGISTER, {"unregisterations": gone})

    # -- progress ----------------------------------------------------------------------------

    def progress(self, session: BackendSession, body: bytes, params: Any) -> None:
        """A backend's `$/progress`: dropped if the proxy took the token on the client's
        behalf, renamed if the client took it, else relayed as it is (a token the client
        gave with a request)."""
        token = get_path(params, "token")
        done = get_path(params, "value", "kind") == "end"
        # (no readiness signal: pyrefly's progress ends within ms, before its index is built)
        key = json.dumps(token)
        if key in session.local_tokens:
            if done:
                session.local_tokens.discard(key)
            return
        name = session.remote_tokens.get(key)
        if name is not None:
            self._connection.send(jsonrpc.notification(PROGRESS, {**(params or {}), "token": name}))
            if done and isinstance(name, str) and name in self._tokens:
                # A work-done token ends once (partial-result tokens, which fan-outs map in
                # remote_tokens too, never 'end' and are dropped by their fan-out).
                del self._tokens[name]
                del session.remote_tokens[key]
            return
        self._connection.send_body(body)

    def cancel_progress(self, token: Any) -> None:
        """The client cancelled a renamed progress: tell the backend that owns it."""
        entry = self._tokens.get(str(token))
        if entry is not None:
            session, original = entry
            session.notify("window/workDoneProgress/cancel", {"token": original})

    # -- a backend went away -------------------------------------------------------------------

    def forget(self, session: BackendSession, *, notify_client: bool) -> None:
        for proxy_id, entry in list(self._requests.items()):
            if isinstance(entry, tuple) and entry[0] is session:
                del self._requests[proxy_id]
        prefix = renamed(session, "")
        gone = [
            {"id": rid, "method": m}
            for rid, m in self._registrations.items()
            if rid.startswith(prefix)
        ]
        for item in gone:
            del self._registrations[item["id"]]
        if gone and notify_client:
            self.request(UNREGISTER, {"unregisterations": gone})
        for name in [t for t, (s, _) in self._tokens.items() if s is session]:
            del self._tokens[name]
