"""`typemux/status`: what the proxy is doing, as JSON a user (or a test) can read.

Built from the live objects on demand; it never fails because one document or backend is
odd (a URI that is no path, a process that just exited): that part says so instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .backends import BackendKind
from .config import ConfigProblem
from .documents import DocumentStore, Encoding
from .platform import group_rss_bytes
from .pool import Pool
from .router import BadUri, Router, local_path


def status(
    *,
    version: str,
    kind: BackendKind,
    encoding: Encoding,
    pool: Pool,
    store: DocumentStore,
    router: Router,
    problems: Sequence[ConfigProblem],
    roots: Sequence[Path],
    initialize_source: str = "recorded",
    freshness: dict[str, Any] | None = None,
) -> dict[str, Any]:
    now = time.monotonic()
    backends = []
    live = list(pool.live())
    # each backend's whole process group: basedpyright's node child, not only its wrapper
    memory = group_rss_bytes({session.pid for session in live if session.pid is not None})
    for session in live:
        backends.append(
            {
                "venv": str(session.venv.path),
                "project": str(session.venv.project_dir),
                # the kind of environment ("venv", "poetry", "pixi", ...) and how it was found
                "manager": session.venv.manager,
                "foundBy": session.venv.found_by,
                "kind": session.kind.name,
                "pid": session.pid,
                "state": session.state.value,
                "uptime": round(now - session.started_at, 3),
                "memory": memory.get(session.pid) if session.pid is not None else None,
                "openDocuments": sorted(session.open_docs),
                "requestsInFlight": len(session.inflight) + len(session.queued()),
                "crashes": pool.crash_count(session.venv),
                # times its projects' backend was replaced (an environment recreated, frozen)
                "restarts": pool.restart_totals.get(session.venv.key, 0),
                # one process serving several environments, a workspace folder each
                "shared": session.shared,
                "projects": [
                    {
                        "venv": str(venv.path),
                        "project": str(venv.project_dir),
                        "manager": venv.manager,
                        "foundBy": venv.found_by,
                        "openDocuments": sorted(
                            uri
                            for uri in session.open_docs
                            if session.venv_for_scope(_path(uri)).key == venv.key
                        ),
                        "idle": round(now - session.used.get(venv.key, session.last_used), 3),
                        # its interpreter not in effect in the backend yet: its requests wait
                        "joining": venv.key in session.joining,
                        "restarts": pool.restart_totals.get(venv.key, 0),
                        # times its folder alone was renewed (its environment recreated)
                        "renewals": pool.renewal_totals.get(venv.key, 0),
                        "renewing": venv.key in session.renewals,
                    }
                    for venv in session.venvs.values()
                ],
            }
        )
    without: list[str] = []
    for doc in store:
        try:
            if router.refresh(doc) is None:
                without.append(doc.uri)
        except (OSError, ValueError):
            without.append(doc.uri)
    return {
        "version": version,
        "backend": kind.name,
        "positionEncoding": encoding.value,
        #: "learned": the client was given the installed backend's own initialize answer;
        #: "recorded": a recording, while the installed backend is asked (capabilities.py);
        #: "recorded, then learned": asked and cached; what was missing was registered
        "initializeAnswer": initialize_source,
        "workspaceFolders": [str(r) for r in roots],
        "maxBackends": pool.max_backends,
        #: MiB of the backends' resident memory past which projects are evicted (0: none)
        "maxBackendMemory": pool.max_memory,
        "backendProcesses": pool.processes(),
        "backends": backends,
        "configProblems": [
            {"file": p.file, "line": p.line, "message": p.message, "fix": p.fix} for p in problems
        ],
        "documentsWithoutVenv": sorted(without),
        #: what is watched so answers follow the disk, and what could not be (watch limit)
        "freshness": freshness or {"enabled": False},
    }


def _path(uri: str) -> Path | None:
    try:
        return local_path(uri)
    except BadUri:
        return None
