"""An enclosing project's environment, when it has this project installed in editable mode.

A monorepo with one environment at the top and its packages installed into it with `pip
install -e` (or as path dependencies by uv, Poetry or PDM) runs every package with that
environment: it is theirs too. The evidence is read, never guessed: a `.pth` file naming a
directory inside the project, a `direct_url.json` (PEP 610) marking an editable install of
it, or a legacy `.egg-link` pointing at it. Without such evidence a nested project never gets
an enclosing directory's environment.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

from .._fs import canonical, within
from ..model import Environment
from ..project import Context
from . import Found, Locator

_WINDOWS = sys.platform == "win32"


def locate(ctx: Context) -> Found:
    project = ctx.project
    if project is None:
        return None
    directory = project.directory
    if directory == ctx.boundary or directory.parent == directory:
        return None
    enclosing = ctx.lookup_directory(directory.parent).environment
    if enclosing is None or not installs(ctx, enclosing, directory):
        return None
    return Environment(
        enclosing.path,
        enclosing.key,
        enclosing.project_dir,
        enclosing.python,
        enclosing.manager,
        f"{enclosing.found_by}, which has {directory} installed in editable mode",
    )


def installs(ctx: Context, env: Environment, directory: Path) -> bool:
    """Whether `env` has the project in `directory` installed in editable mode."""
    real = canonical(directory)
    for site in sorted(env.path.glob("lib*/python3*/site-packages")) or [
        env.path / "Lib" / "site-packages"
    ]:
        names = ctx.seen.listing(site)  # a new or removed install changes this listing
        for name in sorted(names):
            entry = site / name
            if name.endswith(".pth"):
                if any(_inside(p, real) for p in _pth_lines(entry)):
                    return True
            elif name.endswith(".egg-link"):
                if any(_inside(p, real) for p in _pth_lines(entry)[:1]):
                    return True
            elif name.endswith(".dist-info"):
                target = _editable_url(entry / "direct_url.json")
                if target is not None and _inside(target, real):
                    return True
    return False


def _inside(path: str, real: Path) -> bool:
    return within(canonical(path), real)


def _pth_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip()
        and not line.startswith(("#", "import ", "import\t"))
        and os.path.isabs(line.strip())
    ]


def _editable_url(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not (data.get("dir_info") or {}).get("editable"):
        return None
    url = data.get("url")
    if not isinstance(url, str) or not url.startswith("file:"):
        return None
    return file_url_path(url)


def file_url_path(url: str) -> str:
    """The path of a `file:` URL as pip and uv write it in `direct_url.json`.

    POSIX: the percent-decoded path (what `url2pathname` does there, without the ~45 ms of
    importing `urllib.request`). Windows: `url2pathname`, which turns `/C:/x%20y` into
    `C:\\x y` and keeps a UNC host (`file://server/share` -> `\\\\server\\share`).
    """
    parts = urlparse(url)
    if not _WINDOWS:
        return unquote(parts.path)
    from urllib.request import url2pathname

    host = parts.netloc if parts.netloc.lower() not in ("", "localhost") else ""
    return url2pathname(f"//{host}{parts.path}" if host else parts.path)


LOCATOR = Locator("editable", locate)
