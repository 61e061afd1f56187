"""What the proxy tells the user about itself, in ways each client can show.

Claude Code surfaces only diagnostics to the agent (it ignores showMessage and
declares no work-done progress), editors show messages and progress. So a file
without a venv gets an informational diagnostic *and* one message per project,
and a starting backend reports progress where the client takes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import jsonrpc
from .config import ConfigProblem, problems_summary
from .documents import Document
from .features import ClientSupport
from .session import BackendSession
from .venv import project_dir_hint

logger = logging.getLogger(__name__)

NO_VENV_CODE = "no-venv"
_PUBLISH = "textDocument/publishDiagnostics"
_SHOW_MESSAGE = "window/showMessage"
_PROGRESS = "$/progress"
_CREATE_PROGRESS = "window/workDoneProgress/create"
_INFORMATION = 3  # DiagnosticSeverity.Information
_WARNING = 2  # MessageType.Warning

Send = Callable[[jsonrpc.Message], None]
ClientRequest = Callable[[str, Any, Callable[[jsonrpc.Message], None] | None], None]


class Feedback:
    def __init__(
        self,
        send: Send,
        client_request: ClientRequest,
        support: Callable[[], ClientSupport],
        *,
        no_venv_diagnostic: bool = True,
    ) -> None:
        self._send = send
        self._request = client_request
        self._support = support
        self.no_venv_diagnostic = no_venv_diagnostic
        self._warned_projects: set[Path] = set()
        self._flagged: set[str] = set()
        self._progress: dict[int, str] = {}  # session id -> token, once begun
        #: sessions whose start is reported: id -> outcome once known, else None
        self._starting: dict[int, str | None] = {}

    # -- configuration problems ----------------------------------------------------------

    def config_problems(self, problems: Sequence[ConfigProblem]) -> None:
        """Once, at start: a message where the client shows messages, and a diagnostic on
        each configuration file at the problem's line, where it reads only diagnostics
        (Claude Code shows those to the model, and drops messages)."""
        if not problems:
            return
        self._send(
            jsonrpc.notification(
                _SHOW_MESSAGE, {"type": _WARNING, "message": problems_summary(problems)}
            )
        )
        by_file: dict[str, list[Any]] = {}
        for problem in problems:
            if problem.file is None or not os.path.isabs(problem.file):
                continue  # the environment or the command line: no file to point at
            line = max(0, (problem.line or 1) - 1)
            by_file.setdefault(Path(problem.file).as_uri(), []).append(
                {
                    "range": {
                        "start": {"line": line, "character": 0},
                        "end": {"line": line + 1, "character": 0},
                    },
                    "severity": _WARNING,
                    "source": "typemux-lsp",
                    "code": "config",
                    "message": f"{problem.message} Fix: {problem.fix}",
                }
            )
        for uri, diagnostics in by_file.items():
            self._send(jsonrpc.notification(_PUBLISH, {"uri": uri, "diagnostics": diagnostics}))

    # -- files without a venv ----------------------------------------------------------

    def no_venv(self, doc: Document, message: str) -> None:
        """Say it once per project, and on the file itself where only diagnostics are read."""
        if self.no_venv_diagnostic and doc.uri not in self._flagged:
            self._flagged.add(doc.uri)
            self._send(
                jsonrpc.notification(
                    _PUBLISH,
                    {
                        "uri": doc.uri,
                        "diagnostics": [
                            {
                                "range": {
                                    "start": {"line": 0, "character": 0},
                                    "end": {"line": 0, "character": 0},
                                },
                                "severity": _INFORMATION,
                                "source": "typemux-lsp",
                                "code": NO_VENV_CODE,
                                "message": message,
                            }
                        ],
                    },
                )
            )
        if doc.path is None:
            return
        known = doc.lookup.project_dir if doc.lookup is not None else None
        project = known or project_dir_hint(doc.path.parent)
        if project not in self._warned_projects:
            self._warned_projects.add(project)
            self._send(
                jsonrpc.notification(
                    _SHOW_MESSAGE,
                    {"type": _WARNING, "message": message},
                )
            )

    def venv_found(self, uri: str) -> None:
        """Withdraw the no-venv diagnostic; the backend publishes its own."""
        if uri in self._flagged:
            self._flagged.discard(uri)
            self._send(jsonrpc.notification(_PUBLISH, {"uri": uri, "diagnostics": []}))

    def closed(self, uri: str) -> None:
        self.venv_found(uri)

    # -- backends starting ----------------------------------------------------------------

    def backend_starting(self, session: BackendSession, root: Path) -> None:
        """Begin progress once the client created the token; end it when the start ends,
        even if that came first (a fast backend is up before the client answers)."""
        if not self._support().work_done_progress:
            return
        token = f"typemux-lsp/start/{session.id}"
        self._starting[session.id] = None
        try:
            where = session.venv.path.relative_to(root)
        except ValueError:
            where = session.venv.path

        def created(answer: jsonrpc.Message) -> None:
            if "error" in answer:
                self._starting.pop(session.id, None)
                return
            self._progress[session.id] = token
            self._send(
                jsonrpc.notification(
                    _PROGRESS,
                    {
                        "token": token,
                        "value": {
                            "kind": "begin",
                            "title": f"Starting {session.kind.name} for {where}",
                            "cancellable": False,
                        },
                    },
                )
            )
            outcome = self._starting.get(session.id)
            if outcome is not None:
                self._end(session.id, outcome)

        self._request(_CREATE_PROGRESS, {"token": token}, created)

    def backend_started(self, session: BackendSession, error: str | None = None) -> None:
        if session.id not in self._starting:
            return
        outcome = "ready" if error is None else f"failed: {error}"
        if session.id in self._progress:
            self._end(session.id, outcome)
        else:
            self._starting[session.id] = outcome  # the begin is still to come

    def _end(self, session_id: int, outcome: str) -> None:
        self._starting.pop(session_id, None)
        token = self._progress.pop(session_id)
        self._send(
            jsonrpc.notification(
                _PROGRESS, {"token": token, "value": {"kind": "end", "message": outcome}}
            )
        )


def first_sentence(text: str) -> str:
    """An error's first sentence, without the `typemux-lsp:` prefix: what a list of the
    projects that could not be asked says about each."""
    text = text.removeprefix("typemux-lsp: ")
    return text.split(". ")[0].rstrip(".")
