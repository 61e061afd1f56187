"""Environment directory names computed exactly as each tool computes them.

Each function mirrors the tool's own code (named in its docstring, as read in the version
given) so that an environment is found without running the tool. Inputs are the strings the
tool itself hashes; callers pass the project's real path, as the tools do (each starts from
its working directory, which the OS reports with symlinks resolved).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sys

_CANONICAL_NAME = re.compile(r"[-_.]+")
_POETRY_UNSAFE = re.compile(r'[ $`!*@"\\\r\n\t]')
_PIPENV_UNSAFE = re.compile(r'[ &$`!*@"()\[\]\\\r\n\t]')


def canonicalize_name(name: str) -> str:
    """PEP 503 normalisation (packaging.utils.canonicalize_name, hatchling's
    normalize_project_name)."""
    return _CANONICAL_NAME.sub("-", name).lower()


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode()


def poetry_env_name(package_name: str, project_dir: str) -> str:
    """`EnvManager.generate_env_name` (poetry 2.x, src/poetry/utils/env/env_manager.py).

    `package_name` is the package's name as Poetry loads it (`[project].name`, else
    `[tool.poetry].name`, else "non-package-mode"), which poetry-core canonicalises (PEP 503);
    `project_dir` is `os.path.realpath` of the directory holding pyproject.toml. The
    environment directory is this name plus `-py<major>.<minor>`.
    """
    name = canonicalize_name(package_name).lower()
    sanitized = _POETRY_UNSAFE.sub("_", name)[:42]
    normalized = os.path.normcase(project_dir)
    digest = hashlib.sha256(_poetry_encode(normalized)).digest()
    return f"{sanitized}-{_b64(digest)[:8]}"


def _poetry_encode(text: str) -> bytes:
    """poetry.utils._compat.encode: the first of utf-8, latin1, ascii that works."""
    for encoding in ("utf-8", "latin1", "ascii"):
        try:
            return text.encode(encoding)
        except UnicodeError:
            continue
    return text.encode("utf-8", errors="ignore")


def pipenv_env_name(project_dir: str, *, custom: str | None = None, python: str = "") -> str:
    """`VenvLocator.name` (pipenv 2026.x, pipenv/utils/venv_locator.py).

    `project_dir` is the directory of the Pipfile, symlinks resolved (pipenv finds the
    Pipfile walking up from its resolved working directory). The hash is over the Pipfile's
    path: first 6 bytes of its SHA-256, URL-safe base64 (8 characters). `custom` is
    PIPENV_CUSTOM_VENV_NAME; `python` is PIPENV_PYTHON, which adds a suffix.
    """
    if custom:
        return custom
    location = os.path.join(project_dir, "Pipfile")
    sanitized = _PIPENV_UNSAFE.sub("_", os.path.basename(project_dir))[:42]
    encoded = _b64(hashlib.sha256(location.encode()).digest()[:6])[:8]
    suffix = ""
    if python:
        suffix = f"-{os.path.basename(python)}" if os.path.isabs(python) else f"-{python}"
    return f"{sanitized}-{encoded}{suffix}"


def hatch_project_id(project_dir: str) -> str:
    """`Path.id` (hatch 1.x, src/hatch/utils/fs.py): 8 characters of the URL-safe base64
    SHA-256 of the project root (case-folded on Windows and macOS)."""
    path = project_dir.casefold() if sys.platform in ("win32", "darwin") else project_dir
    return _b64(hashlib.sha256(path.encode("utf-8")).digest())[:8]


def pdm_env_prefix(project_dir: str) -> str:
    """`get_venv_prefix` (pdm 2.x, src/pdm/cli/commands/venv/utils.py): the name every central
    environment of the project starts with, `<dir name>-<md5 hash>-`."""
    posix = project_dir.replace("\\", "/")
    digest = hashlib.md5(posix.encode(), usedforsecurity=False).digest()
    return f"{os.path.basename(project_dir)}-{_b64(digest)[:8]}-"
