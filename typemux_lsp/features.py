"""Per-feature policy: what the proxy answers itself, and how it adapts messages.

Pure functions over JSON dicts, so each decision is testable without a process:
the initialize answer (the backend kind's recorded capabilities, adjusted), the
initialize a backend gets (rooted at its project), which server→client requests
the client can take, and how fanned-out results merge.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from typing import Any

from pygls.uris import from_fs_path

from .backends import KINDS, BackendKind
from .documents import Encoding
from .tree import get_path
from .venv import Venv

STATUS_COMMAND = "typemux.status"
STATUS_REQUEST = "typemux/status"

#: Every LSP notification method (lsprotocol 2025.0.0; tests/unit/test_features.py keeps
#: these three tables equal to lsprotocol's, which costs ~0.4 s to import at start-up).
NOTIFICATIONS = frozenset(
    {
        "$/cancelRequest",
        "$/logTrace",
        "$/progress",
        "$/setTrace",
        "exit",
        "initialized",
        "notebookDocument/didChange",
        "notebookDocument/didClose",
        "notebookDocument/didOpen",
        "notebookDocument/didSave",
        "telemetry/event",
        "textDocument/didChange",
        "textDocument/didClose",
        "textDocument/didOpen",
        "textDocument/didSave",
        "textDocument/publishDiagnostics",
        "textDocument/willSave",
        "window/logMessage",
        "window/showMessage",
        "window/workDoneProgress/cancel",
        "workspace/didChangeConfiguration",
        "workspace/didChangeWatchedFiles",
        "workspace/didChangeWorkspaceFolders",
        "workspace/didCreateFiles",
        "workspace/didDeleteFiles",
        "workspace/didRenameFiles",
    }
)

#: Every LSP request method.
REQUESTS = frozenset(
    {
        "callHierarchy/incomingCalls",
        "callHierarchy/outgoingCalls",
        "client/registerCapability",
        "client/unregisterCapability",
        "codeAction/resolve",
        "codeLens/resolve",
        "completionItem/resolve",
        "documentLink/resolve",
        "initialize",
        "inlayHint/resolve",
        "shutdown",
        "textDocument/codeAction",
        "textDocument/codeLens",
        "textDocument/colorPresentation",
        "textDocument/completion",
        "textDocument/declaration",
        "textDocument/definition",
        "textDocument/diagnostic",
        "textDocument/documentColor",
        "textDocument/documentHighlight",
        "textDocument/documentLink",
        "textDocument/documentSymbol",
        "textDocument/foldingRange",
        "textDocument/formatting",
        "textDocument/hover",
        "textDocument/implementation",
        "textDocument/inlayHint",
        "textDocument/inlineCompletion",
        "textDocument/inlineValue",
        "textDocument/linkedEditingRange",
        "textDocument/moniker",
        "textDocument/onTypeFormatting",
        "textDocument/prepareCallHierarchy",
        "textDocument/prepareRename",
        "textDocument/prepareTypeHierarchy",
        "textDocument/rangeFormatting",
        "textDocument/rangesFormatting",
        "textDocument/references",
        "textDocument/rename",
        "textDocument/selectionRange",
        "textDocument/semanticTokens/full",
        "textDocument/semanticTokens/full/delta",
        "textDocument/semanticTokens/range",
        "textDocument/signatureHelp",
        "textDocument/typeDefinition",
        "textDocument/willSaveWaitUntil",
        "typeHierarchy/subtypes",
        "typeHierarchy/supertypes",
        "window/showDocument",
        "window/showMessageRequest",
        "window/workDoneProgress/create",
        "workspace/applyEdit",
        "workspace/codeLens/refresh",
        "workspace/configuration",
        "workspace/diagnostic",
        "workspace/diagnostic/refresh",
        "workspace/executeCommand",
        "workspace/foldingRange/refresh",
        "workspace/inlayHint/refresh",
        "workspace/inlineValue/refresh",
        "workspace/semanticTokens/refresh",
        "workspace/symbol",
        "workspace/textDocumentContent",
        "workspace/textDocumentContent/refresh",
        "workspace/willCreateFiles",
        "workspace/willDeleteFiles",
        "workspace/willRenameFiles",
        "workspace/workspaceFolders",
        "workspaceSymbol/resolve",
    }
)

#: Requests whose params carry a `textDocument`: without one they are InvalidParams.
DOCUMENT_REQUESTS = frozenset(m for m in REQUESTS if m.startswith("textDocument/"))

#: Methods routed by a URI that is not `textDocument.uri`.
#: Requests whose answer lives in every environment that sees the symbol (across.py).
ACROSS_METHODS = frozenset(
    {
        "textDocument/references",
        "textDocument/rename",
        "textDocument/prepareRename",
        "textDocument/prepareCallHierarchy",
        "textDocument/prepareTypeHierarchy",
        "textDocument/implementation",
        "callHierarchy/incomingCalls",
        "typeHierarchy/subtypes",
    }
)

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

#: Notifications every live backend gets.
BROADCAST_NOTIFICATIONS = frozenset(
    {
        "workspace/didChangeConfiguration",
        "workspace/didCreateFiles",
        "workspace/didRenameFiles",
        "workspace/didDeleteFiles",
        "$/setTrace",
    }
)


def client_initialize_result(
    kind: BackendKind,
    encoding: Encoding,
    client_capabilities: Any = None,
    extra_commands: Iterable[str] = (),
    learned: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The backend kind's own initialize answer, adjusted to what the proxy negotiates.

    Known before any backend starts, so the client never waits for a type checker to
    boot, and the same whichever venv starts first: the installed backend's own answer
    when it was `learned` (capabilities.py), else the recorded one.
    """
    result = copy.deepcopy(learned) if learned else kind.initialize_profile(client_capabilities)
    caps = result.setdefault("capabilities", {})
    if "positionEncoding" in caps or encoding is not Encoding.UTF16:
        caps["positionEncoding"] = encoding.value
    commands = list(extra_commands)
    if commands:
        provider = caps.setdefault("executeCommandProvider", {"commands": []})
        provider["commands"] = [*provider.get("commands", []), *commands]
    return result


def backend_initialize_params(
    client_params: dict[str, Any],
    venv: Venv,
    encoding: Encoding,
    folders: list[dict[str, str]] | None = None,
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
    # A shared backend gets one folder per environment it serves, the first at the root.
    params["workspaceFolders"] = folders or [{"uri": root_uri, "name": root.name}]
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
        #: it watches files and tells servers (didChangeWatchedFiles): it also reloads the
        #: documents it has open when they change on disk
        self.watches_files = bool(
            get_path(capabilities, "workspace", "didChangeWatchedFiles", "dynamicRegistration")
        )

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


def local_answer(
    method: str, support: ClientSupport, folders: list[dict[str, str]]
) -> tuple[bool, Any]:
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
    if method == "workspace/workspaceFolders":  # the backend's own: one per environment
        return (True, folders)
    return (False, None)


#: Requests a backend serves only if its initialize answer declares the capability (none of
#: these is registered dynamically by any of the four backends).
_PROVIDERS = {
    "textDocument/implementation": ("implementationProvider", "go to implementation"),
    "textDocument/typeDefinition": ("typeDefinitionProvider", "go to type definition"),
    "textDocument/declaration": ("declarationProvider", "go to declaration"),
    "textDocument/prepareCallHierarchy": ("callHierarchyProvider", "call hierarchy"),
    "textDocument/prepareTypeHierarchy": ("typeHierarchyProvider", "type hierarchy"),
    "textDocument/inlayHint": ("inlayHintProvider", "inlay hints"),
    "textDocument/codeLens": ("codeLensProvider", "code lenses"),
    "textDocument/foldingRange": ("foldingRangeProvider", "folding ranges"),
    "textDocument/selectionRange": ("selectionRangeProvider", "selection ranges"),
    "textDocument/onTypeFormatting": ("documentOnTypeFormattingProvider", "on-type formatting"),
    "textDocument/formatting": ("documentFormattingProvider", "formatting"),
    "textDocument/rangeFormatting": ("documentRangeFormattingProvider", "range formatting"),
    "textDocument/documentLink": ("documentLinkProvider", "document links"),
    "textDocument/linkedEditingRange": ("linkedEditingRangeProvider", "linked editing"),
    "textDocument/moniker": ("monikerProvider", "monikers"),
    "textDocument/inlineValue": ("inlineValueProvider", "inline values"),
    "textDocument/documentColor": ("colorProvider", "document colors"),
}


#: the methods `unsupported` may refuse
PROVIDER_METHODS = frozenset(_PROVIDERS)


def unsupported(kind: BackendKind, method: str, capabilities: dict[str, Any]) -> str | None:
    """Why `kind` cannot answer `method` (a backend's bare "Unhandled method" tells the user
    nothing), or None if it can — or may."""
    provider = _PROVIDERS.get(method)
    if provider is None:
        return None
    key, what = provider
    caps = capabilities or kind.initialize_profile().get("capabilities", {})
    if caps.get(key):
        return None
    others = [
        name
        for name, other in KINDS.items()
        if other.initialize_profile().get("capabilities", {}).get(key)
    ]
    fix = f"{', '.join(others[:-1])} and {others[-1]}" if len(others) > 1 else "".join(others)
    return f"typemux-lsp: {kind.name} does not support {method} ({what})" + (
        f"; {fix} do{'es' if len(others) == 1 else ''}. Fix: choose one of them with "
        "--backend / TYPEMUX_LSP_BACKEND, or for some projects with a "
        "[[tool.typemux-lsp.projects]] rule."
        if others
        else "; none of the backends typemux-lsp runs does."
    )
