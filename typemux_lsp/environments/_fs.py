"""Filesystem access for environment discovery: one upward walk, and reads that remember.

Every lookup observes the disk only through a `Seen` recorder, which notes the stamp
(inode, size, mtime) of every path it looked at. A cached answer stays valid exactly as long
as re-stat-ing those paths gives the same stamps, so a cached lookup costs one stat() per
observed path and never a read or a parse. A directory's stamp covers its entries: creating or
deleting a `.venv` or a `pyproject.toml` changes the directory's mtime.

Racy stamps (git's "racily clean" problem): a file changed twice within one timestamp tick keeps
its mtime. A path modified less than `RACY_SECONDS` before it was observed makes the observation
untrustworthy, and the answer is not cached.
"""

from __future__ import annotations

import fnmatch
import os
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: a path changed this recently when observed is not trusted to stay recognisable by its stamp
RACY_SECONDS = 1.0
#: entries kept per cache before it is cleared (bounds memory on huge trees)
CACHE_LIMIT = 8192
#: the most bytes read from a marker file (a `.venv` redirect, `.pdm-python`, a TOML file)
READ_LIMIT = 1 << 20

Stamp = tuple[int, int, int] | None  # (st_ino, st_size, st_mtime_ns); None: absent


def canonical(path: Path | str) -> Path:
    """The real path: symlinks and `..` resolved. Used for identity only, never for walking."""
    return Path(os.path.realpath(path))


def absolute(path: Path | str) -> Path:
    """`path` made absolute and normalised lexically, as the client spells it (no symlink
    is resolved)."""
    return Path(os.path.abspath(path))


def within(path: Path, parent: Path) -> bool:
    """Whether `path` is `parent` or below it, lexically."""
    return path == parent or parent in path.parents


def within_canonical(path: Path, parent: Path) -> bool:
    """Whether `path`, with every symlink resolved, is inside `parent` (resolved too)."""
    return within(canonical(path), canonical(parent))


def path_outside(path: str, *boundaries: Path) -> str:
    """A PATH without the entries a repository could plant a program in: relative ones
    (relative to whatever the cwd is) and any inside one of `boundaries` (an activated
    `.venv/bin`, a `bin/` the repository ships)."""
    tops = [canonical(b) for b in boundaries]
    kept: list[str] = []
    for entry in path.split(os.pathsep):
        if not entry or not os.path.isabs(entry):
            continue
        real = canonical(Path(entry))
        if any(within(real, top) for top in tops):
            continue
        kept.append(entry)
    return os.pathsep.join(kept)


def stamp(path: Path | str) -> Stamp:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def walk_up(start: Path, boundary: Path | None) -> Iterator[Path]:
    """`start` and its parents, up to `boundary` (inclusive) or the filesystem root.

    The one upward walk of typemux-lsp: lexical (as spelled), so a symlinked directory on the
    way does not move the walk elsewhere. A `boundary` that is not an ancestor of `start` is
    ignored.
    """
    yield start
    if start == boundary:
        return
    for parent in start.parents:
        yield parent
        if parent == boundary:
            return


# -- caches shared by all lookups ----------------------------------------------------------------


@dataclass(slots=True)
class _Cached:
    stamp: Stamp
    value: Any


_listings: dict[str, _Cached] = {}
_texts: dict[str, _Cached] = {}
_tomls: dict[str, _Cached] = {}


def clear_caches() -> None:
    """Forget every cached read (tests that change the environment variables call this)."""
    _listings.clear()
    _texts.clear()
    _tomls.clear()


def _remember(cache: dict[str, _Cached], key: str, entry: _Cached) -> None:
    if len(cache) >= CACHE_LIMIT:
        cache.clear()
    cache[key] = entry


@dataclass(slots=True)
class Seen:
    """What a lookup observed: each path with its stamp, to re-validate a cached answer."""

    stamps: dict[str, Stamp] = field(default_factory=dict)
    #: something observed changed too recently to be recognised by its stamp later
    racy: bool = False

    def note(self, path: Path | str) -> Stamp:
        key = os.fspath(path)
        if key in self.stamps:
            return self.stamps[key]
        observed = stamp(key)
        self.stamps[key] = observed
        if observed is not None and time.time_ns() - observed[2] < RACY_SECONDS * 1e9:
            self.racy = True
        return observed

    def merge(self, other: Seen) -> None:
        self.stamps.update(other.stamps)
        self.racy = self.racy or other.racy

    def unchanged(self) -> bool:
        """Whether every observed path still has the stamp it had (the request path: one
        stat() per path, nothing else)."""
        stat = os.stat
        for path, observed in self.stamps.items():
            try:
                st = stat(path)
            except (OSError, ValueError):
                if observed is not None:
                    return False
                continue
            if observed != (st.st_ino, st.st_size, st.st_mtime_ns):
                return False
        return True

    # -- observations ----------------------------------------------------------------------

    def exists(self, path: Path) -> bool:
        return self.note(path) is not None

    def is_dir(self, path: Path) -> bool:
        return self.note(path) is not None and os.path.isdir(path)

    def is_file(self, path: Path) -> bool:
        return self.note(path) is not None and os.path.isfile(path)

    def names(self, directory: Path, wanted: frozenset[str]) -> frozenset[str]:
        """Which of `wanted` are entries of `directory`."""
        return self.listing(directory) & wanted

    def listing(self, directory: Path) -> frozenset[str]:
        """The entries of `directory`, listed again only when the directory changed."""
        key = os.fspath(directory)
        observed = self.note(key)
        if observed is None:
            return frozenset()
        cached = _listings.get(key)
        if cached is None or cached.stamp != observed:
            try:
                entries = frozenset(os.listdir(key))
            except OSError:
                entries = frozenset()
            cached = _Cached(observed, entries)
            _remember(_listings, key, cached)
        listed: frozenset[str] = cached.value
        return listed

    def read_text(self, path: Path, limit: int = READ_LIMIT) -> str | None:
        """The file's text (UTF-8, undecodable bytes replaced), or None if it is not a file."""
        key = os.fspath(path)
        observed = self.note(key)
        if observed is None:
            return None
        cached = _texts.get(key)
        if cached is not None and cached.stamp == observed:
            text: str | None = cached.value
            return text
        try:
            with open(key, "rb") as handle:
                data = handle.read(limit)
        except OSError:
            return None
        text = data.decode("utf-8", errors="replace")
        _remember(_texts, key, _Cached(observed, text))
        return text

    def toml(self, path: Path) -> dict[str, Any] | None:
        """The parsed TOML file; None if absent; {} if it is not valid TOML."""
        key = os.fspath(path)
        observed = self.note(key)
        if observed is None:
            return None
        cached = _tomls.get(key)
        if cached is not None and cached.stamp == observed:
            data: dict[str, Any] = cached.value
            return data
        text = self.read_text(path)
        if text is None:
            return None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            data = {}
        _remember(_tomls, key, _Cached(observed, data))
        return data


def table(data: Mapping[str, Any] | None, *keys: str) -> Mapping[str, Any] | None:
    """The nested table at `keys`, or None when any level is missing or not a table."""
    node: Any = data
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node if isinstance(node, Mapping) else None


def string(data: Mapping[str, Any] | None, *keys: str) -> str | None:
    """The string at `keys` (the last one a value, not a table), or None."""
    parent = table(data, *keys[:-1]) if len(keys) > 1 else data
    if parent is None:
        return None
    value = parent.get(keys[-1])
    return value if isinstance(value, str) else None


def strings(data: Mapping[str, Any] | None, *keys: str) -> list[str]:
    """The list of strings at `keys`; non-strings are dropped; [] when absent."""
    parent = table(data, *keys[:-1]) if len(keys) > 1 else data
    if parent is None:
        return []
    value = parent.get(keys[-1])
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def env_flag(environ: Mapping[str, str], name: str, true: Sequence[str]) -> bool | None:
    """A tool's boolean environment variable, by that tool's own rule of what is true."""
    raw = environ.get(name)
    if raw is None:
        return None
    return raw.strip().lower() in true


def glob_match(pattern: str, parts: Sequence[str]) -> bool:
    """Whether the path `parts` match the glob: `*`/`?`/`[...]` within a segment, `**` any."""
    segments = [s for s in pattern.replace("\\", "/").split("/") if s not in ("", ".")]

    def match(pi: int, qi: int) -> bool:
        if pi == len(segments):
            return qi == len(parts)
        if segments[pi] == "**":
            return any(match(pi + 1, k) for k in range(qi, len(parts) + 1))
        return (
            qi < len(parts)
            and fnmatch.fnmatchcase(parts[qi], segments[pi])
            and match(pi + 1, qi + 1)
        )

    return match(0, 0)
