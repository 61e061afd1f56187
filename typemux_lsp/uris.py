"""URIs of local files, checked once: a URI that cannot be a local path is an error that
names it, not an exception deep in a filesystem call. Two URIs name the same file when
they name the same path: `file://localhost/a.py` and `file:///a.py`, `%61` and `a`, `%3A`
and `:`, and (on Windows, where paths compare without case) `C:` and `c:`."""

from __future__ import annotations

import functools
from pathlib import Path

from .venv import uri_to_path

#: longest file name and path the proxy looks up (Linux NAME_MAX and PATH_MAX)
_NAME_MAX = 255
_PATH_MAX = 4096


class BadUri(ValueError):
    """A `file:` URI that cannot be a path on this machine; the message names it."""


def local_path(uri: str) -> Path | None:
    """The path of a local `file:` URI; None for other schemes (`untitled:`, notebook cells).

    Raises BadUri for a `file:` URI that cannot name a local file (another host, a NUL
    byte, a name too long), so the request gets an error that says which URI is wrong
    rather than an exception deep in a filesystem call.
    """
    if not uri.startswith("file:"):
        return None
    if "\x00" in uri or "%00" in uri:
        raise BadUri(f"typemux-lsp: the URI {uri!r:.200} holds a NUL byte; no file has that name.")
    rest = uri[5:]
    if rest.startswith("//"):
        host, _, _ = rest[2:].partition("/")
        if host.lower() not in ("", "localhost"):
            raise BadUri(
                f"typemux-lsp: {uri!r:.200} names a file on host {host!r:.60}, not on this "
                "machine; only local files (file:///path or file://localhost/path) can be "
                "type-checked."
            )
        if host:
            uri = "file://" + rest[2 + len(host) :]
    try:
        path = uri_to_path(uri)
    except Exception as exc:
        raise BadUri(f"typemux-lsp: {uri!r:.200} is not a valid file URI ({exc}).") from None
    if path is None:
        return None
    text = str(path)
    if "\x00" in text:
        raise BadUri(f"typemux-lsp: the URI {uri!r:.200} holds a NUL byte; no file has that name.")
    if len(text.encode("utf-8", "surrogatepass")) > _PATH_MAX or any(
        len(part.encode("utf-8", "surrogatepass")) > _NAME_MAX for part in path.parts
    ):
        raise BadUri(
            f"typemux-lsp: the path of {uri!r:.120}... is longer than this system allows "
            f"({_NAME_MAX} bytes a name, {_PATH_MAX} a path); no file has that name."
        )
    return path


@functools.lru_cache(maxsize=4096)
def path_of(uri: str) -> Path | None:
    """The path a `file:` URI names, or None (another scheme, or not a local path): the
    identity of a file however its URI is spelled."""
    try:
        return local_path(uri)
    except BadUri:
        return None


def spelling(path: Path) -> str:
    """The URI of `path` as backends spell it themselves (`file:///`, percent-escapes as
    `Path.as_uri` and pygls's `from_fs_path` write them)."""
    return path.as_uri()


def without_localhost(uri: str) -> str:
    """`file://localhost/p` as `file:///p` (pyright and basedpyright take them for two
    files); any other URI as it is."""
    if uri[:17].lower() == "file://localhost/":
        return "file:///" + uri[17:]
    return uri
