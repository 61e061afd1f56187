"""PEP 723 scripts: a file with a `# /// script` block runs in an environment of its own.

uv keeps a script's environment in its cache, under a name only uv can compute, so this is
the one locator that runs a program: `uv python find --script FILE` (offline, no Python
downloads, with a timeout), and only when the file has a script block and uv is installed
(next to typemux-lsp, or on PATH outside the file's repository: never a binary the repository
ships). The answer is cached per file until the file or that environment changes; a script
without an environment is asked about again at most every `RETRY_SECONDS`.

uv answers with some interpreter even when the script has no environment yet; only an
interpreter inside uv's `environments-v*` cache directory is the script's own. Looking for that
fallback, uv runs the interpreters it considers, so it is started where it finds none of the
repository's: in the filesystem root (no `.venv` above), without `VIRTUAL_ENV`/`CONDA_PREFIX`,
and with a PATH that holds nothing inside the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .._fs import Stamp, path_outside
from ..model import Missing, prefix_of
from ..project import Context
from . import Found, Locator

#: the regular expression of PEP 723's reference implementation
SCRIPT_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"
)
#: seconds uv gets to answer
TIMEOUT = 10.0
#: a script without an environment is asked about again after this many seconds
RETRY_SECONDS = 2.0
#: the largest file read to look for a script block
SCRIPT_LIMIT = 4 << 20
_UV = "uv.exe" if sys.platform == "win32" else "uv"


@dataclass(slots=True)
class _Answer:
    file: Stamp
    python: Path | None
    detail: str
    at: float


_answers: dict[str, _Answer] = {}


def has_script_block(text: str) -> bool:
    return "# /// script" in text and any(
        m.group("type") == "script" for m in SCRIPT_BLOCK.finditer(text)
    )


def uv_executable(boundary: Path | None) -> Path | None:
    """uv next to typemux-lsp's interpreter (trusted as its backends are), else the first uv
    on PATH outside `boundary`."""
    own = Path(sys.executable).parent / _UV
    if own.is_file() and os.access(own, os.X_OK):
        return own
    # a uv the repository ships (its .venv/bin on PATH) never runs
    for entry in _path_outside(os.environ.get("PATH", ""), boundary).split(os.pathsep):
        candidate = Path(entry) / _UV
        if entry and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def locate(ctx: Context) -> Found:
    file = ctx.file
    if file is None or file.suffix not in (".py", ".pyw"):
        return None
    text = ctx.seen.read_text(file, SCRIPT_LIMIT)
    if text is None or not has_script_block(text):
        return None
    uv = uv_executable(ctx.boundary)
    if uv is None:
        return None
    python, detail = _ask(uv, file, ctx.seen.note(file), ctx.boundary)
    if python is not None:
        prefix = prefix_of(python)
        found = ctx.environment(
            prefix,
            file.parent,
            "pep723",
            f"PEP 723 script: `uv python find --script` names {prefix}",
        )
        if found is not None:
            return found
        _answers.pop(os.fspath(file), None)  # gone since uv answered: ask again next time
    return Missing(
        "pep723",
        file.parent,
        f"{file.name} is a PEP 723 script (it has a `# /// script` block) and uv has not "
        f"created its environment{detail}",
        (),
        f"`uv sync --script {file}`",
    )


def _ask(uv: Path, file: Path, file_stamp: Stamp, boundary: Path | None) -> tuple[Path | None, str]:
    key = os.fspath(file)
    known = _answers.get(key)
    now = time.monotonic()
    fresh = known is not None and known.file == file_stamp
    if known is not None and fresh and (known.python or now - known.at < RETRY_SECONDS):
        return known.python, known.detail
    python, detail = _run_uv(uv, file, boundary)
    if len(_answers) > 1024:
        _answers.clear()
    _answers[key] = _Answer(file_stamp, python, detail, now)
    return python, detail


def _run_uv(uv: Path, file: Path, boundary: Path | None) -> tuple[Path | None, str]:
    command = [
        str(uv),
        "--offline",
        "--no-python-downloads",
        "python",
        "find",
        "--script",
        str(file),
    ]
    try:
        done = subprocess.run(
            command,
            cwd=os.path.abspath(os.sep),
            env=_uv_environment(boundary),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None, f" (`{' '.join(command)}` did not answer within {TIMEOUT:g} s)"
    except OSError as error:
        return None, f" (`{uv}` could not run: {error.strerror or error})"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return None, f" (uv: {last})"
    lines = done.stdout.strip().splitlines()
    if not lines:
        return None, ""
    python = Path(lines[-1].strip())
    if not prefix_of(python).parent.name.startswith("environments-v"):
        return None, ""  # uv's fallback interpreter, not the script's environment
    return python, ""


def _uv_environment(boundary: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env["PATH"] = _path_outside(env.get("PATH", ""), boundary)
    return env


def _path_outside(path: str, boundary: Path | None) -> str:
    return path_outside(path, boundary) if boundary is not None else path_outside(path)


def clear() -> None:
    _answers.clear()


LOCATOR = Locator("pep723", locate, needs_project=False)
