"""Per-feature policy: what the proxy answers itself, and how it adapts messages.

Pure functions over JSON dicts, so each decision is testable without a process:
the initialize answer (the backend kind's recorded capabilities, adjusted), the
initialize a backend gets (rooted at its project), which server→client requests
the client can take, and how fanned-out results merge.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from typing import Any

from pygls.uris import from_fs_path

from .backends import BackendKind
from .documents import Encoding
from .venv import Venv

STATUS_COMMAND = "typemux.status"
STATUS_REQUEST = "typemux/status"

#: Methods routed by a URI that is not `textDocument.uri`.
ITEM_URI_METHODS = frozenset(
    {
        "callHierarchy/incomingCalls",
        "callHierarchy/outgoingCalls",
        "typeHierarchy/supertypes",
        "typeHierarchy/subtypes",
    }
)

#: A `*/resolve` request carries no URI: it goes to whoever answered the request it resolves.
RESOLVE_PARENT = {
    "completionItem/resolve": "textDocument/completion",
    "codeAction/resolve": "textDocument/codeAction",
    "codeLens/resolve": "textDocument/codeLens",
    "documentLink/resolve": "textDocument/documentLink",
    "inlayHint/resolve": "textDocument/inlayHint",
    "workspaceSymbol/resolve": "workspace/symbol",
}

#: Requests answered by merging every live backend's answer.
FAN_OUT_METHODS = frozenset({"workspace/symbol"})

#: Notifications every live backend gets.
BROADCAST_NOTIFICATIONS = frozenset(
    {
        "workspace/didChangeConfiguration",
        "workspace/didChangeWatchedFiles",
        "workspace/didCreateFiles",
        "workspace/didRenameFiles",
        "workspace/didDeleteFiles",
        "$/setTrace",
    }
)


def get_path(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def client_initialize_result(
    kind: BackendKind,
    encoding: Encoding,
    client_capabilities: Any = None,
    extra_commands: Iterable[str] = (),
) -> dict[str, Any]:
    """The backend kind's own initialize answer, adjusted to what the proxy negotiates.

    Known before any backend starts, so the client never waits for a type checker to
    boot, and the same whichever venv starts first.
    """
    result = kind.initialize_profile(client_capabilities)
    caps = result.setdefault("capabilities", {})
    if "positionEncoding" in caps or encoding is not Encoding.UTF16:
        caps["positionEncoding"] = encoding.value
    commands = list(extra_commands)
    if commands:
        provider = caps.setdefault("executeCommandProvider", {"commands": []})
        provider["commands"] = [*provider.get("commands", []), *commands]
    return result


def backend_initialize_params(
    client_params: dict[str, Any], venv: Venv, encoding: Encoding
) -> dict[str, Any]:
    """The client's initialize, rooted at the venv's project, with the proxy's capabilities.

    The backend is told the one position encoding the client negotiated (positions are
    relayed untouched), and that work-done progress and configuration are supported:
    the proxy answers those itself when the client does not, so backends report
    progress (a readiness signal) and ask for their interpreter.
    """
    params = copy.deepcopy(client_params)
    root = venv.project_dir
    root_uri = from_fs_path(str(root)) or root.as_uri()
    params["processId"] = os.getpid()
    params["rootUri"] = root_uri
    params["rootPath"] = str(root)
    params["workspaceFolders"] = [{"uri": root_uri, "name": root.name}]
    caps = params.setdefault("capabilities", {})
    general = caps.setdefault("general", {})
    general["positionEncodings"] = [encoding.value]
    caps.setdefault("window", {})["workDoneProgress"] = True
    workspace = caps.setdefault("workspace", {})
    workspace["configuration"] = True
    workspace["workspaceFolders"] = True
    return params


_SYNC_METHODS = frozenset(
    {"didOpen", "didChange", "didClose", "didSave", "willSave", "willSaveWaitUntil"}
)
_WORKSPACE_CAPS = {
    "workspace/didChangeWatchedFiles": ("workspace", "didChangeWatchedFiles"),
    "workspace/didChangeConfiguration": ("workspace", "didChangeConfiguration"),
    "workspace/executeCommand": ("workspace", "executeCommand"),
    "workspace/symbol": ("workspace", "symbol"),
}
_REFRESH_CAPS = {
    "workspace/diagnostic/refresh": ("workspace", "diagnostics"),
    "workspace/semanticTokens/refresh": ("workspace", "semanticTokens"),
    "workspace/inlayHint/refresh": ("workspace", "inlayHint"),
    "workspace/codeLens/refresh": ("workspace", "codeLens"),
    "workspace/foldingRange/refresh": ("workspace", "foldingRange"),
    "workspace/inlineValue/refresh": ("workspace", "inlineValue"),
}


class ClientSupport:
    """What the client declared it can take from a server."""

    def __init__(self, capabilities: dict[str, Any]) -> None:
        self.caps = capabilities
        self.work_done_progress = bool(get_path(capabilities, "window", "workDoneProgress"))
        self.apply_edit = bool(get_path(capabilities, "workspace", "applyEdit"))
        self.show_document = bool(get_path(capabilities, "window", "showDocument", "support"))
        self.configuration = bool(get_path(capabilities, "workspace", "configuration"))
        self.show_message = get_path(capabilities, "window", "showMessage") is not None

    def dynamic_registration(self, method: str) -> bool:
        if method in _WORKSPACE_CAPS:
            path: tuple[str, ...] = _WORKSPACE_CAPS[method]
        elif method.startswith("workspace/") and method.endswith("Files"):
            path = ("workspace", "fileOperations")
        elif method.startswith("textDocument/"):
            name = method.removeprefix("textDocument/")
            name = "synchronization" if name in _SYNC_METHODS else name.split("/")[0]
            path = ("textDocument", name)
        elif method.startswith("notebookDocument/"):
            path = ("notebookDocument", "synchronization")
        else:
            return False
        return bool(get_path(self.caps, *path, "dynamicRegistration"))

    def refresh(self, method: str) -> bool | None:
        """Whether the client takes this refresh request; None if it is not one."""
        path = _REFRESH_CAPS.get(method)
        if path is None:
            return None
        return bool(get_path(self.caps, *path, "refreshSupport"))


def local_answer(method: str, support: ClientSupport, venv: Venv) -> tuple[bool, Any]:
    """For a backend request the client cannot take: (answered here?, the answer)."""
    refresh = support.refresh(method)
    if refresh is not None:
        return (not refresh, None)
    if method == "window/workDoneProgress/create":
        return (not support.work_done_progress, None)
    if method == "workspace/applyEdit" and not support.apply_edit:
        return (True, {"applied": False, "failureReason": "the client does not apply edits"})
    if method == "window/showDocument" and not support.show_document:
        return (True, {"success": False})
    if method == "workspace/workspaceFolders":
        root = venv.project_dir
        return (True, [{"uri": from_fs_path(str(root)) or root.as_uri(), "name": root.name}])
    return (False, None)


def merge_symbols(results: Iterable[Any]) -> Any:
    """One `workspace/symbol` answer from several backends, duplicates dropped."""
    merged: list[Any] = []
    seen: set[str] = set()
    any_list = False
    for result in results:
        if not isinstance(result, list):
            continue
        any_list = True
        for item in result:
            key = json.dumps(item, sort_keys=True)
            if key not in seen:
                seen.add(key)
                merged.append(item)
    return merged if any_list else None
