"""Find and watch a process's descendants through /proc (Linux), to prove nothing is left behind.

Backends may live in their own process groups and re-parent to init when the proxy dies, so
"what did the proxy start" must be recorded while it runs: walk the parent links in /proc.
A process is identified by (pid, start time) so a recycled pid is never mistaken for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start_time: int  # clock ticks after boot: with pid, a unique identity
    cmdline: str

    def alive(self) -> bool:
        """Still running (a zombie counts as ended: it only waits to be reaped)."""
        current = _read(self.pid)
        return current is not None and current[2] == self.start_time and current[3] not in "ZX"


def _read(pid: int) -> tuple[int, int, int, str] | None:
    """(pid, ppid, start_time, state) of one process, or None if it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return pid, int(fields[1]), int(fields[19]), fields[0]


def _cmdline(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def descendants(root_pid: int) -> list[Proc]:
    """Every live process whose parent chain includes ``root_pid`` (not the root itself)."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (info := _read(int(entry.name))) is not None:
            table[info[0]] = (info[1], info[2], info[3])
    children: dict[int, list[int]] = {}
    for pid, (ppid, _start, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: list[Proc] = []
    stack = list(children.get(root_pid, []))
    while stack:
        pid = stack.pop()
        ppid, start, state = table[pid]
        if state not in "ZX":
            found.append(Proc(pid, ppid, start, _cmdline(pid)))
        stack.extend(children.get(pid, []))
    return sorted(found, key=lambda p: p.pid)


async def wait_gone(procs: list[Proc], timeout: float) -> list[Proc]:
    """Wait until every process in ``procs`` has ended; return those still alive at timeout.

    Uses pidfds (readable when the process exits), so nothing polls or sleeps.
    """
    loop = asyncio.get_running_loop()
    waiters: list[asyncio.Future[None]] = []
    fds: list[int] = []
    for proc in procs:
        try:
            fd = os.pidfd_open(proc.pid)
        except ProcessLookupError:
            continue
        if not proc.alive():  # the pid was recycled or became a zombie meanwhile
            os.close(fd)
            continue
        future: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _resolve, future)
        waiters.append(future)
        fds.append(fd)
    try:
        if waiters:
            await asyncio.wait(waiters, timeout=timeout)
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)
    return [proc for proc in procs if proc.alive()]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def kill(procs: list[Proc]) -> None:
    """SIGKILL the processes of ``procs`` that are still the same processes (cleanup only)."""
    for proc in procs:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)


def tagged(entry: str) -> list[Proc]:
    """Every live process whose environment holds ``entry`` (e.g. ``"CLAUDE_CONFIG_DIR=/x"``).

    A client's whole tree inherits its environment, including processes that left the tree
    (a backend re-parented to init): an isolated config dir makes the tag unique to one test.
    """
    needle = entry.encode() + b"\0"
    found = []
    for proc_dir in PROC.iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            environ = (proc_dir / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ or environ.endswith(needle[:-1]):
            info = _read(int(proc_dir.name))
            if info is not None and info[3] not in "ZX":
                found.append(Proc(info[0], info[1], info[2], _cmdline(info[0])))
    return sorted(found, key=lambda p: p.pid)


if __name__ == "__main__":
    # `python procs.py ENTRY`: the tagged processes as JSON, for editor scripts that must take a
    # snapshot of their own servers before they quit (this process itself left out).
    import dataclasses
    import json
    import sys

    others = [p for p in tagged(sys.argv[1]) if p.pid != os.getpid()]
    print(json.dumps([dataclasses.asdict(p) for p in others]))


def in_user_namespace(
    argv: Sequence[str], limit: int, limit_file: str = "max_inotify_watches"
) -> list[str]:
    """`argv` run in a user namespace of its own whose inotify `limit_file` is `limit`: a real
    ENOSPC/EMFILE from the kernel, the machine's own limit untouched. Skips the test where
    unshare(1) is missing."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed: the inotify limit cannot be lowered here")
    script = f'echo {limit} > /proc/sys/user/{limit_file} && exec "$@"'
    return ["unshare", "-U", "-r", "sh", "-c", script, "sh", *argv]
