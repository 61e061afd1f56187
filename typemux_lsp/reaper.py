"""A watchdog that kills every backend process group when the proxy dies, however it dies.

A proxy killed with SIGKILL runs no cleanup. Backends notice their stdin closing
and exit, but not every child of a backend does (a wrapper's node child, a
plugin's helper). This small process, in a session of its own, holds a pipe
from the proxy: it learns each backend's process group as it starts and ends,
and when the pipe closes — the proxy exited or was killed — it kills the groups
still listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

logger = logging.getLogger(__name__)

_SCRIPT = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    op, _, pgid = line.strip().partition(" ")
    if pgid.isdigit():
        (groups.add if op == "+" else groups.discard)(int(pgid))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""


class Reaper:
    def __init__(self) -> None:
        self._stdin: asyncio.StreamWriter | None = None
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-c",
                _SCRIPT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            logger.warning("no reaper process (%s): a SIGKILLed proxy may leave backends", exc)
            return
        self._stdin = self._proc.stdin

    def _send(self, line: str) -> None:
        if self._stdin is not None and not self._stdin.is_closing():
            self._stdin.write(line.encode())

    def add(self, pgid: int) -> None:
        self._send(f"+ {pgid}\n")

    def remove(self, pgid: int) -> None:
        self._send(f"- {pgid}\n")

    async def close(self) -> None:
        """Normal exit: the groups still listed are killed and the reaper ends."""
        if self._stdin is not None:
            self._stdin.close()
        if self._proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 2)
