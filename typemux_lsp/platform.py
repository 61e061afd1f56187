"""What the operating system offers, and the fallback where it does not.

typemux-lsp is built and measured on Linux. Every Linux-only mechanism it uses is here,
behind a check of the capability itself (never of the OS's name alone), with a fallback
that is correct, if weaker, elsewhere:

- process groups (`setsid`, `killpg`): a backend dies with its children (basedpyright's
  node); else the backend process alone is killed;
- `/proc/<pid>/stat`: a group's zombies do not count as alive; else a group is alive while
  `killpg(pgid, 0)` succeeds;
- `/proc/<pid>/stat` and `statm`: a backend's memory in `typemux/status`, its whole process
  group's (basedpyright's node child, not only its Python wrapper); else `ps`, else unknown
  (`null`);
- `/proc/sys/fs/inotify`: the OS watch limits `--doctor` shows; else none shown;
- `CLOCK_REALTIME_COARSE`: the clock file times are stamped from; else the real-time
  clock, 20 ms early;
- `os.writev`: one syscall for many messages; else one joined write;
- non-blocking pipes: a writer never blocks; else a writer thread takes every write;
- `SIGHUP`, `SIGKILL`: an editor hanging up stops the backends, a kill is a kill; else the
  signals the OS has (Windows: `os.kill` is TerminateProcess).

`unsupported()` says in plain words which of these fall back here (`--doctor` shows it).
Tests force every fallback by replacing the attribute it checks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

#: where the process table is (Linux); replaced in tests to force the fallbacks
PROC: Path = Path("/proc")

#: `killpg` and sessions: a backend and all its children are one group
PROCESS_GROUPS: bool = hasattr(os, "killpg") and hasattr(os, "setsid")

#: `os.writev`, else None (one joined write)
WRITEV: Callable[[int, Sequence[Any]], int] | None = getattr(os, "writev", None)

#: non-blocking pipes (`os.set_blocking`; Windows pipes only from Python 3.12)
NONBLOCKING_PIPES: bool = hasattr(os, "set_blocking") and os.name == "posix"

#: `os.kill(pid, 0)` asks whether a process exists (POSIX); on Windows it would terminate it
SIGNAL_PROBE: bool = os.name == "posix"

#: what kills a process outright: SIGKILL where it exists (Windows: TerminateProcess)
KILL_SIGNAL: Final[int] = int(getattr(signal, "SIGKILL", signal.SIGTERM))

#: Linux's CLOCK_REALTIME_COARSE (not in the time module); its id means another clock on
#: other systems (macOS: a monotonic one), so it is used on Linux only
_CLOCK_REALTIME_COARSE: Final = 5


def _coarse_clock() -> int | None:
    if not sys.platform.startswith("linux") or not hasattr(time, "clock_gettime_ns"):
        return None
    try:
        time.clock_gettime_ns(_CLOCK_REALTIME_COARSE)
    except OSError:
        return None
    return _CLOCK_REALTIME_COARSE


#: the clock Linux stamps file times from, else None
COARSE_CLOCK: int | None = _coarse_clock()


# -- processes ----------------------------------------------------------------------------------


def has_proc() -> bool:
    """Whether there is a Linux-style /proc to read processes from."""
    return (PROC / "self").is_dir()


def new_group() -> dict[str, Any]:
    """`subprocess.Popen` arguments that start a process in a group of its own (a session on
    POSIX; a new process group on Windows, which `kill_group` cannot kill as one)."""
    if PROCESS_GROUPS:
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def kill_group(pid: int) -> None:
    """Kill process `pid` and, where process groups exist, every process of its group (it
    leads the group: `new_group`). A process already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if PROCESS_GROUPS:
            os.killpg(pid, KILL_SIGNAL)
        else:
            os.kill(pid, KILL_SIGNAL)


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs. Zombies do not count: an orphaned child
    (basedpyright's node) is reaped by whatever init the machine has, maybe never. Without
    /proc a zombie counts as alive; without process groups, `pgid` is one process, and where
    no signal can ask (Windows) it is taken as gone: callers ask once it was waited for."""
    if not PROCESS_GROUPS and not SIGNAL_PROBE:
        return False
    try:
        if PROCESS_GROUPS:
            os.killpg(pgid, 0)
        else:
            os.kill(pgid, 0)
    except OSError:  # ProcessLookupError, PermissionError
        return False
    if not has_proc():
        return True
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "stat"), "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def termination_signals() -> list[signal.Signals]:
    """The signals that ask the proxy to stop, of those this OS has (no SIGHUP on Windows)."""
    names = ("SIGTERM", "SIGINT", "SIGHUP")
    return [getattr(signal, n) for n in names if hasattr(signal, n)]


def rss_bytes(pid: int | None) -> int | None:
    """Resident memory of process `pid`: /proc where there is one, else `ps` (macOS, BSD),
    else None (unknown)."""
    if pid is None:
        return None
    statm = PROC / str(pid) / "statm"
    if has_proc():
        try:
            return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None
    ps = shutil.which("ps")
    if ps is None:
        return None
    try:
        out = subprocess.run(
            [ps, "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, timeout=2
        ).stdout
        return int(out.split()[0]) * 1024  # kilobytes
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def group_rss_bytes(pgids: set[int]) -> dict[int, int]:
    """Resident memory of each process group in `pgids` whose leader is alive (a backend
    leads its own group: basedpyright's Python wrapper holds ~12 MB, its node child hundreds):
    one pass over /proc where there is one, else one `ps`, else nothing (unknown)."""
    if not pgids:
        return {}
    totals: dict[int, int] = {}
    leaders: set[int] = set()
    if has_proc():
        page = os.sysconf("SC_PAGE_SIZE")
        for entry in os.scandir(PROC):
            if not entry.name.isdigit():
                continue
            try:
                stat = (PROC / entry.name / "stat").read_bytes()
                # the fields after the command, which may hold spaces and parentheses
                pgrp = int(stat[stat.rindex(b")") + 2 :].split()[2])
                if pgrp not in pgids:
                    continue
                pages = int((PROC / entry.name / "statm").read_bytes().split()[1])
            except (OSError, ValueError, IndexError):
                continue  # exited meanwhile
            totals[pgrp] = totals.get(pgrp, 0) + pages * page
            if int(entry.name) == pgrp:
                leaders.add(pgrp)
    else:
        ps = shutil.which("ps")
        if ps is None:
            return {}
        try:
            out = subprocess.run(
                [ps, "-A", "-o", "pid=,pgid=,rss="], capture_output=True, text=True, timeout=2
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return {}
        for line in out.splitlines():
            try:
                pid, pgrp, rss = (int(field) for field in line.split())
            except ValueError:
                continue
            if pgrp in pgids:
                totals[pgrp] = totals.get(pgrp, 0) + rss * 1024  # kilobytes
                if pid == pgrp:
                    leaders.add(pgrp)
    return {pgid: size for pgid, size in totals.items() if pgid in leaders}


# -- files and pipes ------------------------------------------------------------------------------


def fs_clock_ns() -> int:
    """Now, on the clock file times are taken from: every file written from now on has a
    time at least this. Linux stamps files from its coarse clock, up to one tick (1-10 ms)
    behind the real time; elsewhere 20 ms before the real time is taken. (Too early costs a
    needless update of a backend; too late would miss a change.)"""
    if COARSE_CLOCK is not None:
        with contextlib.suppress(OSError):
            return time.clock_gettime_ns(COARSE_CLOCK)
    return time.time_ns() - 20_000_000


def writev(fd: int, buffers: Sequence[Any]) -> int:
    """`os.writev` where it exists, else one write of the buffers joined."""
    if WRITEV is not None:
        return WRITEV(fd, buffers)
    return os.write(fd, b"".join(buffers))


def inotify_limits() -> dict[str, int]:
    """The inotify watch limits in force (Linux), the lower of the machine's `fs.inotify` and
    the user namespace's `/proc/sys/user` for each; empty where there are none to read."""
    limits: dict[str, int] = {}
    for name, paths in (
        ("max_user_watches", ("fs/inotify/max_user_watches", "user/max_inotify_watches")),
        ("max_user_instances", ("fs/inotify/max_user_instances", "user/max_inotify_instances")),
    ):
        values = []
        for path in paths:
            with contextlib.suppress(OSError, ValueError):
                values.append(int((PROC / "sys" / path).read_text()))
        if values:
            limits[name] = min(values)
    return limits


# -- what --doctor says ---------------------------------------------------------------------------


def unsupported() -> list[str]:
    """What does not work here as on Linux, in plain words (empty on Linux)."""
    gaps = []
    if not PROCESS_GROUPS:
        gaps.append(
            "no process groups: stopping a backend kills its process only, not the processes "
            "it started (basedpyright's node may be left running); the watchdog that stops "
            "backends when typemux-lsp is killed outright kills their processes only"
        )
    if not has_proc():
        gaps.append(
            "no /proc: a backend's memory in typemux/status comes from `ps` (or is unknown), "
            "and a stopped backend's zombie children are waited for up to 2 s"
        )
    if not inotify_limits():
        gaps.append(
            "no inotify limits to read: --doctor cannot say how close freshness is to the OS "
            "file-watch limit"
        )
    if COARSE_CLOCK is None:
        gaps.append(
            "no coarse real-time clock: changes are looked for from 20 ms before a backend "
            "starts (a few needless updates at most)"
        )
    if not hasattr(signal, "SIGHUP"):
        gaps.append(
            "no SIGHUP: an editor that hangs up without closing stdin leaves typemux-lsp "
            "running until its stdin closes"
        )
    if not NONBLOCKING_PIPES:
        gaps.append("no non-blocking pipes: every write to a backend goes through a thread")
    if WRITEV is None:
        gaps.append("no writev: batched messages are joined before writing")
    if sys.platform == "win32":
        gaps.append(
            "Windows is not tested: typemux-lsp imports and --doctor runs; serving is untried"
        )
    return gaps
