"""From a message to the environment that must answer it.

A document's environment is looked up when it opens and re-checked at most once a
second while it is used, so an environment created, deleted or recreated under an
open file takes effect on the next request. A file with none is looked up again on
every request: a negative answer is never kept. The lookup (`environments`) is bounded
by the client's workspace folders and uses the configured project rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .documents import Document, DocumentStore
from .environments import EnvironmentRule
from .features import ITEM_URI_METHODS
from .tree import get_path
from .uris import BadUri, local_path
from .venv import Lookup, Venv, find_venv, no_venv_message

__all__ = ["BadUri", "NoVenv", "Router", "local_path"]


#: seconds a positive venv lookup is trusted before the filesystem is asked again
RECHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class NoVenv:
    """Why a URI has no venv, worded for the user."""

    uri: str
    path: Path | None
    lookup: Lookup | None

    @property
    def message(self) -> str:
        return no_venv_message(self.path, self.uri, self.lookup)


class Router:
    def __init__(
        self,
        store: DocumentStore,
        recheck: float = RECHECK_SECONDS,
        *,
        rules: Sequence[EnvironmentRule] = (),
        roots: Callable[[], Sequence[Path]] = tuple,
    ) -> None:
        self.store = store
        self.recheck = recheck
        #: the configured project rules (`environment` names a project's environment)
        self.rules = rules
        #: the client's workspace folders, which bound every lookup
        self.roots = roots
        self._uncached: dict[str, tuple[Venv | None, Lookup | None, float]] = {}

    @staticmethod
    def uri_of(method: str, params: Any) -> str | None:
        """The URI a request is about, if it names one."""
        uri = get_path(params, "textDocument", "uri")
        if uri is None and method in ITEM_URI_METHODS:
            uri = get_path(params, "item", "uri")
        if uri is None and method == "workspace/executeCommand":
            args = get_path(params, "arguments")
            uri = (
                next((a for a in args if isinstance(a, str) and a.startswith("file:")), None)
                if isinstance(args, list)
                else None
            )
        if uri is None and isinstance(params, dict):
            files = params.get("files")
            if isinstance(files, list) and files and isinstance(files[0], dict):
                uri = files[0].get("oldUri") or files[0].get("uri")
        return uri if isinstance(uri, str) else None

    def refresh(self, doc: Document, *, force: bool = False) -> Venv | None:
        """The document's venv, looked up again when the last lookup is stale."""
        now = time.monotonic()
        if not force and doc.venv is not None and now - doc.checked_at < self.recheck:
            return doc.venv
        doc.session = None  # (the hot path's route: the control plane caches it anew)
        if doc.uri_error is not None:
            raise BadUri(doc.uri_error)
        if doc.path is None:
            doc.venv, doc.lookup = None, None
        else:
            doc.lookup = find_venv(doc.path, roots=self.roots(), rules=self.rules)
            doc.venv = doc.lookup.venv
        doc.checked_at = now
        return doc.venv

    def venv_for(self, uri: str, doc: Document | None, *, force: bool = False) -> Venv | NoVenv:
        """The venv that must answer for `uri` (`doc`: its open document, if any); with
        `force`, looked up on disk whatever was cached."""
        if doc is not None:
            venv = self.refresh(doc, force=force)
            return venv if venv is not None else NoVenv(uri, doc.path, doc.lookup)
        now = time.monotonic()
        cached = self._uncached.get(uri)
        if (
            not force
            and cached is not None
            and cached[0] is not None
            and now - cached[2] < self.recheck
        ):
            return cached[0]
        path = local_path(uri)
        lookup = find_venv(path, roots=self.roots(), rules=self.rules) if path is not None else None
        venv = lookup.venv if lookup is not None else None
        if len(self._uncached) > 4096:
            self._uncached.clear()
        self._uncached[uri] = (venv, lookup, now)
        return venv if venv is not None else NoVenv(uri, path, lookup)

    def forget(self, venv: Venv) -> None:
        """`venv` is gone: every route to it is looked up again on next use."""
        for doc in self.store:
            if doc.venv is not None and doc.venv.key == venv.key:
                doc.checked_at = float("-inf")
                doc.session = None
        self._uncached = {
            k: v for k, v in self._uncached.items() if v[0] is None or v[0].key != venv.key
        }
