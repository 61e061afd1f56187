"""A watchdog that kills every backend process group when the proxy dies, however it dies.

A proxy killed with SIGKILL runs no cleanup. Backends notice their stdin closing
and exit, but not every child of a backend does (a wrapper's node child, a
plugin's helper). This small process, in a session of its own, holds a pipe
from the proxy: it learns each backend's process group as it starts and ends,
and when the pipe closes — the proxy exited or was killed — it kills the groups
still listed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading

from .platform import new_group

logger = logging.getLogger(__name__)

#: Without process groups (Windows) each backend's process alone is killed; no SIGKILL there,
#: where os.kill is TerminateProcess whatever the signal.
_SCRIPT = """
import os, signal, sys
kill = getattr(os, "killpg", None) or os.kill
sig = getattr(signal, "SIGKILL", signal.SIGTERM)
groups = set()
for line in sys.stdin:
    op, _, pgid = line.strip().partition(" ")
    if pgid.isdigit():
        (groups.add if op == "+" else groups.discard)(int(pgid))
for pgid in groups:
    try:
        kill(pgid, sig)
    except OSError:
        pass
"""


class Reaper:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        #: lines written before the process exists (it starts in the background)
        self._early: list[str] = []
        self._started = False

    def start(self) -> None:
        """Start the watchdog in the background: spawning it must not delay the answer to the
        client's initialize; groups added meanwhile are sent once it runs."""
        threading.Thread(target=self._spawn, name="reaper-start", daemon=True).start()

    def _spawn(self) -> None:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _SCRIPT],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                bufsize=0,
                **new_group(),
            )
        except OSError as exc:
            logger.warning("no reaper process (%s): a SIGKILLed proxy may leave backends", exc)
            proc = None
        with self._lock:
            self._proc = proc
            self._started = True
            early, self._early = self._early, []
        for line in early:
            self._send(line)

    def _send(self, line: str) -> None:
        with self._lock:
            if not self._started:
                self._early.append(line)
                return
            proc = self._proc
            if proc is None or proc.stdin is None:
                return
            with contextlib.suppress(OSError, ValueError):
                os.write(proc.stdin.fileno(), line.encode())

    def add(self, pgid: int) -> None:
        self._send(f"+ {pgid}\n")

    def remove(self, pgid: int) -> None:
        self._send(f"- {pgid}\n")

    def close(self) -> None:
        """Normal exit: the groups still listed are killed and the reaper ends."""
        with self._lock:
            proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if proc.stdin is not None:
                proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2)
