"""Answers to a backend's `workspace/configuration`: the one place a backend learns its
interpreter from the proxy.

An answer is the client's settings (asked of the client when it keeps any), the user's
backend settings for that project over them, and the environment's interpreter over
everything: it is the one thing this proxy exists to get right. Every backend holds
analysis until it is answered, so a client that does not answer within `CLIENT_WAIT`
seconds is not waited for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from . import jsonrpc
from .backchannel import BackChannel
from .features import ClientSupport
from .jsonrpc import Message, MsgId
from .plane import Plane
from .router import BadUri, local_path
from .session import BackendSession
from .tree import deep_merge, get_path, nest

#: seconds the client gets to answer before the proxy answers without its settings
CLIENT_WAIT: Final = 1.0
METHOD: Final = "workspace/configuration"


class Configuration:
    def __init__(
        self, plane: Plane, backchannel: BackChannel, support: Callable[[], ClientSupport]
    ) -> None:
        self._plane = plane
        self._backchannel = backchannel
        self._support = support
        #: the client's settings: initializationOptions.settings, then each
        #: workspace/didChangeConfiguration
        self.client_settings: Any = None

    def answer(self, session: BackendSession, backend_id: MsgId, params: Any) -> None:
        items = get_path(params, "items")
        items = items if isinstance(items, list) else []
        answered = False

        def reply(client_values: list[Any] | None) -> None:
            nonlocal answered
            if answered or not session.alive:
                return
            answered = True
            result = []
            scoped = []
            for index, item in enumerate(items):
                section = get_path(item, "section")
                base = self.client_settings
                if client_values is not None and index < len(client_values):
                    base = nest(section, client_values[index])
                settings = deep_merge(base, session.settings)
                # A shared backend asks per folder: each scope gets its own interpreter.
                scope = _scope_path(get_path(item, "scopeUri"))
                venv = session.venv_for_scope(scope)
                if scope is not None:
                    scoped.append(venv)
                result.append(session.kind.configuration(section, venv, settings))
            session.send(jsonrpc.response(backend_id, result))
            session.configuration_answered(scoped)

        if not self._support().configuration:
            reply(None)
            return

        def from_client(message: Message) -> None:
            values = message.get("result")
            reply(values if isinstance(values, list) else None)

        self._backchannel.request(METHOD, params, from_client)
        self._plane.later(CLIENT_WAIT, reply, None)


def _scope_path(uri: Any) -> Path | None:
    if not isinstance(uri, str):
        return None
    try:
        return local_path(uri)
    except BadUri:
        return None
