"""One spelling of each file's URI for the backends; the client's own spelling back.

A file has many URIs (uris.py): `file://localhost/a.py` and `file:///a.py`, `%61` and
`a`, `%3a`, `%3A` and `:`. Backends disagree on which are one file (measured: pyright and
basedpyright answer `null` about a document opened as `file:///a.py` and asked about as
`file://localhost/a.py`; pyrefly answers and publishes in its own spelling whatever the
document was opened as; pyright publishes percent-escapes normalised). So:

- toward the backends, a URI naming an open document is given as the client opened it,
  and any other `file://localhost/` URI without `localhost`: each backend sees one
  spelling per file;
- toward the client, a URI naming one of its open documents (in answers, published
  diagnostics, requests a backend makes of the client) is given as the client spelled
  it: in the request's own spelling, else as the document was opened.

Only URI-valued fields are respelled (`uri`, `targetUri`, `scopeUri`, ..., the keys of a
WorkspaceEdit's `changes` and of `relatedDocuments`, command arguments), never an item's
`data` (the backend's own, returned to it as it was). The common case costs nothing:
while every open document is spelled as the backends spell it and the request was not
respelled, an answer is relayed as the backend's exact bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from . import jsonrpc
from .documents import DocumentStore
from .jsonrpc import Message
from .uris import path_of, spelling, without_localhost

#: keys whose string value is a URI
URI_KEYS: Final = frozenset({"uri", "targetUri", "scopeUri", "oldUri", "newUri"})

#: keys whose value is an object keyed by URIs (a WorkspaceEdit's `changes`, a pulled
#: diagnostic report's `relatedDocuments`)
URI_MAPS: Final = frozenset({"changes", "relatedDocuments"})

#: the client's spelling of each file respelled for a request, by path
ClientSpellings = dict[Path, str]


class Spellings:
    def __init__(self, store: DocumentStore) -> None:
        self.store = store
        #: the client's spelling of its workspace folders (a backend's `scopeUri`)
        self._roots: dict[Path, str] = {}
        #: a workspace folder not spelled as backends spell it (read by the ledger)
        self.odd_roots = False

    def add_roots(self, uris: Iterable[str]) -> None:
        """The client's workspace folders (and rootUri), as it spells them."""
        for uri in uris:
            path = path_of(uri)
            if path is not None:
                self._roots.setdefault(path, uri)
                self.odd_roots = self.odd_roots or uri.rstrip("/") != spelling(path)

    # -- client -> backend -------------------------------------------------------------------

    def to_backend(self, message: Message, body: bytes) -> tuple[Message, bytes, ClientSpellings]:
        """The client's message with its URIs spelled as the backends know them (a new message
        and body only when one changed), and the client's spellings of those respelled."""
        params = message.get("params")
        if b"file:" not in body or not isinstance(params, dict | list):
            return message, body, {}
        spelled: ClientSpellings = {}
        new_params = self._walk(params, self._backend_uri, spelled)
        if not spelled:
            return message, body, {}
        respelled = {**message, "params": new_params}
        return respelled, jsonrpc.dumps(respelled), spelled

    def _backend_uri(self, uri: str, spelled: ClientSpellings) -> str:
        doc = self.store.get(uri)
        backend = doc.uri if doc is not None else without_localhost(uri)
        if backend != uri:
            path = path_of(uri)
            if path is not None:
                spelled[path] = uri
        return backend

    # -- backend -> client -------------------------------------------------------------------

    def needed(self, spelled: ClientSpellings | None) -> bool:
        """Whether what a backend sends the client may name a file in another spelling than
        the client's (else it is relayed untouched): on the path of every answer, so cheap."""
        return bool(spelled or self.store.odd or self.odd_roots)

    def body_to_client(self, body: bytes, spelled: ClientSpellings | None = None) -> bytes:
        """A backend's message (bytes) with the client's spellings; the very bytes when
        nothing needed respelling."""
        if b"file:" not in body:
            return body
        decoded = jsonrpc.decode(body)
        if isinstance(decoded, jsonrpc.BadMessage):
            return body
        message, body = decoded
        changed: ClientSpellings = {}
        respelled = self._walk(message, self._client_uri(spelled or {}), changed)
        return jsonrpc.dumps(respelled) if changed else body

    def to_client(self, value: Any, spelled: ClientSpellings | None = None) -> Any:
        """`value` (JSON) with the client's spellings (the same object when none changed)."""
        changed: ClientSpellings = {}
        respelled = self._walk(value, self._client_uri(spelled or {}), changed)
        return respelled if changed else value

    def _client_uri(self, spelled: ClientSpellings) -> Any:
        def client_uri(uri: str, changed: ClientSpellings) -> str:
            path = path_of(uri)
            if path is None:
                return uri
            client = spelled.get(path)
            if client is None:
                doc = self.store.at(path)
                client = doc.uri if doc is not None else self._roots.get(path, uri)
            if client != uri:
                changed[path] = client
            return client

        return client_uri

    # -- the walk --------------------------------------------------------------------------

    def _walk(self, value: Any, respell: Any, changed: ClientSpellings, key: str = "") -> Any:
        """`value` with every URI-valued field respelled; containers are copied only where
        something under them changed."""
        if isinstance(value, str):
            if key in URI_KEYS and value.startswith("file:"):
                return respell(value, changed)
            return value
        if isinstance(value, dict):
            out: dict[str, Any] | None = None
            for k, v in value.items():
                if k == "data":
                    continue
                if key in URI_MAPS and k.startswith("file:"):
                    new_k = respell(k, changed)
                    new_v = self._walk(v, respell, changed, k)
                    if new_k != k or new_v is not v:
                        out = {**(out or value)}
                        del out[k]
                        out[new_k] = new_v
                    continue
                new = self._walk(v, respell, changed, k)
                if new is not v:
                    out = {**(out or value), k: new}
            return value if out is None else out
        if isinstance(value, list):
            item_key = "uri" if key == "arguments" else key
            items: list[Any] | None = None
            for i, v in enumerate(value):
                new = self._walk(v, respell, changed, item_key)
                if new is not v:
                    items = items or list(value)
                    items[i] = new
            return value if items is None else items
        return value
