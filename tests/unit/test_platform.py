"""Every Linux-only mechanism has a fallback chosen by capability: each test here takes the
capability away (the attribute platform.py checks) and shows what is done instead, on this
machine, with real processes, pipes and files. The last test imports the whole package the way
Windows would meet it (no fcntl, no killpg, no SIGHUP, no writev, ...) and runs `--doctor`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from typemux_lsp import platform, transport
from typemux_lsp.transport import Outbox

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_proc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A machine without /proc (macOS, Windows): an empty directory in its place."""
    fake = tmp_path / "proc"
    fake.mkdir()
    monkeypatch.setattr(platform, "PROC", fake)
    return fake


def zombie() -> subprocess.Popen[bytes]:
    """A child in a group of its own that has exited and is not reaped yet."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"], **platform.new_group())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if Path(f"/proc/{proc.pid}/stat").read_bytes().split(b") ")[1][:1] == b"Z":
            return proc
        time.sleep(0.01)
    raise AssertionError("the child did not exit")


def test_group_alive_ignores_zombies_with_proc_and_counts_them_without(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    proc = zombie()
    try:
        assert platform.group_alive(proc.pid) is False  # /proc: a zombie is not alive
        monkeypatch.setattr(platform, "PROC", tmp_path)
        assert platform.group_alive(proc.pid) is True  # fallback: killpg(pgid, 0) alone
    finally:
        proc.wait()
    assert platform.group_alive(proc.pid) is False  # reaped: gone either way


def test_without_process_groups_the_process_alone_is_killed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(platform, "PROCESS_GROUPS", False)
    kwargs = platform.new_group()
    assert "start_new_session" not in kwargs  # creationflags (0 here: no such flag on Linux)
    # a shell with a child, as basedpyright's wrapper with node
    proc = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!; wait"],
        stdout=subprocess.PIPE,
        start_new_session=True,  # only so the test can clean up the child below
        **kwargs,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    try:
        assert platform.group_alive(proc.pid)
        platform.kill_group(proc.pid)
        assert proc.wait(10) == -platform.KILL_SIGNAL
        assert not platform.group_alive(proc.pid)  # the process itself
        os.kill(child, 0)  # its child lives on: the gap --doctor names
        assert any("process groups" in gap for gap in platform.unsupported())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    platform.kill_group(proc.pid)  # gone already: not an error


def test_where_no_signal_can_ask_a_waited_for_process_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows: os.kill(pid, 0) would terminate the process (a pid maybe reused), so it is
    never sent; group_alive is asked only of a process already waited for."""
    monkeypatch.setattr(platform, "PROCESS_GROUPS", False)
    monkeypatch.setattr(platform, "SIGNAL_PROBE", False)
    sent: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append(sig))
    assert platform.group_alive(os.getpid()) is False
    assert sent == []


def test_memory_without_proc_comes_from_ps(no_proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "PROC", Path("/proc"))
    from_proc = platform.rss_bytes(os.getpid())
    monkeypatch.setattr(platform, "PROC", no_proc)
    from_ps = platform.rss_bytes(os.getpid())
    assert from_proc is not None and from_ps is not None
    assert 0.5 < from_ps / from_proc < 2, (from_ps, from_proc)
    monkeypatch.setattr(shutil, "which", lambda _: None)
    assert platform.rss_bytes(os.getpid()) is None  # unknown, never made up
    assert any("no /proc" in gap for gap in platform.unsupported())


def test_inotify_limits_read_from_proc_else_none(no_proc: Path) -> None:
    assert platform.inotify_limits() == {}
    assert any("inotify" in gap for gap in platform.unsupported())
    (no_proc / "sys" / "fs" / "inotify").mkdir(parents=True)
    (no_proc / "sys" / "user").mkdir()
    (no_proc / "sys" / "fs" / "inotify" / "max_user_watches").write_text("8192\n")
    (no_proc / "sys" / "user" / "max_inotify_watches").write_text("100\n")
    assert platform.inotify_limits() == {"max_user_watches": 100}


@pytest.mark.parametrize("coarse", [True, False])
def test_file_clock_never_after_a_file_written_later(
    coarse: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not coarse:
        monkeypatch.setattr(platform, "COARSE_CLOCK", None)
        assert any("coarse" in gap for gap in platform.unsupported())
    elif platform.COARSE_CLOCK is None:
        pytest.skip("no coarse clock on this machine")
    for i in range(200):
        before = platform.fs_clock_ns()
        path = tmp_path / f"f{i}"
        path.write_text("x")
        assert path.stat().st_mtime_ns >= before


def read_all(fd: int, size: int, into: bytearray) -> None:
    while len(into) < size:
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        into.extend(chunk)


def test_outbox_without_writev_or_nonblocking_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows before Python 3.12: no writev, no non-blocking pipes. A sender still never
    blocks (a writer thread takes every write) and the bytes arrive whole and in order."""
    monkeypatch.setattr(platform, "WRITEV", None)
    monkeypatch.setattr(platform, "NONBLOCKING_PIPES", False)
    monkeypatch.setattr(transport, "_writev", platform.writev)
    assert any("writev" in gap for gap in platform.unsupported())
    read_fd, write_fd = os.pipe()
    try:
        outbox = Outbox(write_fd, "test", limit=1 << 30)
        assert os.get_blocking(write_fd)  # left blocking: the writer thread may wait
        parts = [bytes([i % 251]) * 70_000 for i in range(40)]  # 2.8 MB: far over a pipe
        started = time.monotonic()
        for i in range(0, len(parts), 4):
            outbox.send_parts(*parts[i : i + 4])  # several buffers in one write
        assert time.monotonic() - started < 1.0, "a sender blocked"
        got = bytearray()
        reader = threading.Thread(target=read_all, args=(read_fd, sum(map(len, parts)), got))
        reader.start()
        assert outbox.flush(10)
        reader.join(10)
        assert bytes(got) == b"".join(parts)
        outbox.close()
    finally:
        os.close(read_fd)
        os.close(write_fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="FIONREAD on a pipe: Linux")
def test_a_sender_never_waits_for_a_writer_thread_blocked_on_a_full_pipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without non-blocking pipes the writer thread's writes may wait for the reader; they
    must not hold the outbox's lock meanwhile, or every sender waits for the reader too (a
    relay thread stuck behind a client that does not read)."""
    import fcntl
    import termios

    monkeypatch.setattr(platform, "WRITEV", None)
    monkeypatch.setattr(platform, "NONBLOCKING_PIPES", False)
    monkeypatch.setattr(transport, "_writev", platform.writev)
    read_fd, write_fd = os.pipe()
    try:
        outbox = Outbox(write_fd, "test", limit=1 << 30)
        capacity = fcntl.fcntl(write_fd, 1032)  # F_GETPIPE_SZ (after the outbox grew it)
        first = b"x" * (capacity * 2)
        outbox.send_parts(first)  # the writer thread fills the pipe, then waits for a reader
        deadline = time.monotonic() + 10
        while fcntl.ioctl(read_fd, termios.FIONREAD, b"\0\0\0\0") != capacity.to_bytes(
            4, sys.byteorder
        ):
            assert time.monotonic() < deadline, "the writer thread never filled the pipe"
            time.sleep(0.01)
        sent = threading.Event()

        def send() -> None:
            outbox.send_parts(b"y")
            sent.set()

        threading.Thread(target=send, daemon=True).start()
        assert sent.wait(5), "a sender waited for the writer thread, which waits for a reader"
        got = bytearray()
        read_all(read_fd, len(first) + 1, got)
        assert bytes(got) == first + b"y"
        outbox.close()
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_writev_fallback_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "WRITEV", None)
    read_fd, write_fd = os.pipe()
    try:
        assert platform.writev(write_fd, [b"ab", memoryview(b"cd"), b"e"]) == 5
        assert os.read(read_fd, 10) == b"abcde"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_signals_the_os_has(monkeypatch: pytest.MonkeyPatch) -> None:
    assert signal.SIGHUP in platform.termination_signals()
    monkeypatch.delattr(signal, "SIGHUP")
    assert platform.termination_signals() == [signal.SIGTERM, signal.SIGINT]
    assert any("SIGHUP" in gap for gap in platform.unsupported())


def test_nothing_unsupported_on_this_linux() -> None:
    if not Path("/proc/sys/fs/inotify").is_dir():
        pytest.skip("no inotify here")
    assert platform.unsupported() == []


# What Windows lacks that the package or its callers could touch at import or in --doctor.
_WINDOWS = textwrap.dedent(
    """
    import asyncio, json, os, pathlib, pkgutil, selectors, signal, subprocess, sys, time
    import importlib
    # third-party libraries that support Windows themselves, loaded as on this machine (their
    # Windows code needs Windows itself, e.g. platformdirs's ctypes.windll)
    import platformdirs, pygls.uris, watchfiles
    for name in ("fcntl", "termios", "resource", "pwd", "grp", "uvloop"):
        sys.modules[name] = None  # import fails, as on Windows
    for name in ("killpg", "setsid", "setpgid", "getpgid", "writev", "readv", "sysconf",
                 "getuid", "geteuid", "getgid", "fork", "set_blocking", "pipe2", "WNOHANG"):
        if hasattr(os, name):
            delattr(os, name)
    for name in ("SIGHUP", "SIGKILL", "SIGQUIT", "SIGCHLD", "SIGUSR1", "SIGUSR2", "SIGPIPE",
                 "SIGALRM", "SIGSTOP", "SIGCONT"):
        if hasattr(signal, name):
            delattr(signal, name)
    for name in ("clock_gettime_ns", "clock_gettime"):
        delattr(time, name)
    sys.platform = "win32"
    import typemux_lsp
    names = [m.name for m in pkgutil.walk_packages(typemux_lsp.__path__, "typemux_lsp.")]
    for name in names:
        if name != "typemux_lsp.__main__":  # (it runs the CLI)
            importlib.import_module(name)
    from typemux_lsp import platform
    import contextlib, io
    from typemux_lsp.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--doctor", "--json", sys.argv[1]])
    report = json.loads(out.getvalue())
    print(json.dumps({"modules": names, "typemuxLsp": report["typemuxLsp"], "code": code,
                      "groups": platform.PROCESS_GROUPS, "writev": platform.WRITEV is None,
                      "signals": [s.name for s in platform.termination_signals()]}))
    """
)


def test_the_package_imports_without_what_windows_lacks(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    run = subprocess.run(
        [sys.executable, "-c", _WINDOWS, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.splitlines()[-1])
    assert "typemux_lsp.transport" in out["modules"] and "typemux_lsp.server" in out["modules"]
    assert out["groups"] is False and out["writev"] is True
    assert out["signals"] == ["SIGTERM", "SIGINT"]
    assert out["code"] == 0  # the setup can work: nothing here is an error
    tool = out["typemuxLsp"]
    assert tool["platform"] == "win32"
    gaps = "\n".join(tool["unsupported"])
    for said in ("process groups", "SIGHUP", "writev", "non-blocking", "Windows is not tested"):
        assert said in gaps, gaps


def test_reaper_without_process_groups_kills_the_processes() -> None:
    """The watchdog (reaper.py) runs its own script: without killpg it kills each backend's
    process (os.kill) when the proxy's pipe closes."""
    from typemux_lsp.reaper import _SCRIPT

    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        reaper = subprocess.Popen(
            [sys.executable, "-I", "-c", "import os; del os.killpg\n" + _SCRIPT],
            stdin=subprocess.PIPE,
        )
        reaper.communicate(f"+ {victim.pid}\n".encode(), timeout=10)
        assert victim.wait(10) == -signal.SIGKILL
    finally:
        victim.kill()
        victim.wait()


def test_group_memory_without_proc_comes_from_ps(
    no_proc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = os.getpgrp()
    monkeypatch.setattr(platform, "PROC", Path("/proc"))
    from_proc = platform.group_rss_bytes({group})
    monkeypatch.setattr(platform, "PROC", no_proc)
    from_ps = platform.group_rss_bytes({group})
    assert from_proc.keys() == from_ps.keys() == {group}
    assert 0.5 < from_ps[group] / from_proc[group] < 2, (from_ps, from_proc)
    monkeypatch.setattr(shutil, "which", lambda _: None)
    assert platform.group_rss_bytes({group}) == {}  # unknown, never made up
