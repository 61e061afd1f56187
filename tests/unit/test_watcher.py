"""The file watcher: real files, real OS events, one settled batch per burst, limits degrade.

Synchronisation is on the batches themselves (a queue the callback fills); the only bounded
waits are where the point is that nothing more arrives.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from procs import in_user_namespace

from typemux_lsp.watcher import Change, Changes, Root, Watcher, WatchFilter, fs_clock_ns

#: long enough that a stalled writer on a loaded machine does not split one burst in two
DEBOUNCE_MS = 250
#: how long a test waits for a batch it expects (generous: the machine is shared)
ARRIVES = 10.0
#: how long a test waits to be sure no further batch comes: several debounce periods
SETTLES = 1.5


class Batches:
    """The callback: records each batch, with the thread it ran on."""

    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, Changes]] = queue.Queue()
        self.threads: set[str] = set()

    def __call__(self, key: str, changes: Changes) -> None:
        self.threads.add(threading.current_thread().name)
        self.queue.put((key, changes))

    def next(self, timeout: float = ARRIVES) -> tuple[str, Changes]:
        return self.queue.get(timeout=timeout)

    def none_within(self, timeout: float = SETTLES) -> bool:
        try:
            extra = self.queue.get(timeout=timeout)
        except queue.Empty:
            return True
        pytest.fail(f"an unexpected batch arrived: {extra}")


@pytest.fixture
def batches() -> Batches:
    return Batches()


@pytest.fixture
def watcher(batches: Batches) -> Iterator[Watcher]:
    w = Watcher(batches, DEBOUNCE_MS)
    yield w
    w.close()


def armed(watcher: Watcher, key: str, roots: list[Path | Root], **kw: object) -> None:
    watcher.watch(key, roots, **kw)  # type: ignore[arg-type]
    assert watcher.wait_armed(key), watcher.status()


def test_created_changed_deleted_each_reported(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    target = tmp_path / "mod.py"
    armed(watcher, "k", [tmp_path])
    target.write_text("x = 1\n")
    assert batches.next() == ("k", [(Change.CREATED, target)])
    target.write_text("x = 2\n")
    assert batches.next() == ("k", [(Change.CHANGED, target)])
    target.unlink()
    assert batches.next() == ("k", [(Change.DELETED, target)])


def test_a_burst_of_thousands_is_one_batch(batches: Batches, tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    (site / "pkg").mkdir(parents=True)
    existing = [site / "pkg" / f"m{i}.py" for i in range(1500)]
    for path in existing:
        path.write_text("old\n")
    watcher = Watcher(batches, 1000)  # a writer stalled for a few 100 ms still makes one batch
    try:
        armed(watcher, "venv", [site])
        for path in existing:  # an upgrade in place
            path.write_text("new\n")
        added = [site / "pkg" / f"n{i}.py" for i in range(1500)]
        for path in added:
            path.write_text("new\n")
        key, changes = batches.next()
        assert key == "venv"
        assert sorted(changes) == sorted(
            [(Change.CHANGED, p) for p in existing] + [(Change.CREATED, p) for p in added]
        )
        batches.none_within(3.0)
    finally:
        watcher.close()


def test_deleted_and_recreated_in_one_batch_is_changed(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    target = tmp_path / "cfg.toml"
    target.write_text("a\n")
    armed(watcher, "k", [tmp_path])
    target.unlink()
    target.write_text("b\n")
    assert batches.next() == ("k", [(Change.CHANGED, target)])


def test_excluded_directories_and_files_are_not_watched(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    for name in (".git", "node_modules", "__pycache__", ".mypy_cache", "src/__pycache__"):
        (tmp_path / name).mkdir(parents=True)
    other_venv = tmp_path / "other" / ".venv"
    other_venv.mkdir(parents=True)
    armed(
        watcher,
        "k",
        [tmp_path],
        filter=WatchFilter(skip_paths=frozenset({other_venv})),
    )
    watched = watcher.status()["keys"]["k"]["watchedDirectories"]
    assert watched == 3  # tmp_path, src, other: nothing excluded is costing a watch
    (tmp_path / ".git" / "index").write_text("x")
    (tmp_path / "node_modules" / "a.js").write_text("x")
    (tmp_path / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"x")
    (tmp_path / "src" / "m.pyc").write_bytes(b"x")
    (other_venv / "pyvenv.cfg").write_text("x")
    sentinel = tmp_path / "src" / "m.py"
    sentinel.write_text("x")
    assert batches.next() == ("k", [(Change.CREATED, sentinel)])


def test_suffix_filter_reports_only_sources_and_named_configs(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    flt = WatchFilter(suffixes=(".py", ".pyi"), names=frozenset({"pyproject.toml"}))
    armed(watcher, "k", [tmp_path], filter=flt)
    for name in ("notes.txt", "data.json", "a.py", "b.pyi", "pyproject.toml"):
        (tmp_path / name).write_text("x")
    _, changes = batches.next()
    assert [p.name for _, p in changes] == ["a.py", "b.pyi", "pyproject.toml"]


def test_a_new_directory_is_reported_with_what_it_holds_and_then_watched(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    armed(watcher, "k", [tmp_path])
    package = tmp_path / "newpkg"
    (package / "sub").mkdir(parents=True)  # written faster than any watch can be added
    (package / "__init__.py").write_text("")
    (package / "sub" / "deep.py").write_text("")
    _, changes = batches.next()
    assert changes == [
        (Change.CREATED, package),
        (Change.CREATED, package / "__init__.py"),
        (Change.CREATED, package / "sub"),
        (Change.CREATED, package / "sub" / "deep.py"),
    ]
    (package / "sub" / "deep.py").write_text("changed")
    assert batches.next() == ("k", [(Change.CHANGED, package / "sub" / "deep.py")])


def test_a_removed_directory_is_reported_once(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    package = tmp_path / "site" / "gone"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    armed(watcher, "k", [tmp_path / "site"])
    shutil.rmtree(package)
    _, changes = batches.next()
    assert changes == [(Change.DELETED, package), (Change.DELETED, package / "__init__.py")]
    assert watcher.status()["keys"]["k"]["watchedDirectories"] == 1


def test_non_recursive_root_sees_only_its_own_entries(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    armed(watcher, "k", [Root(venv, recursive=False)])
    (venv / "bin" / "tool").write_text("x")
    (venv / "pyvenv.cfg").write_text("home = /usr\n")
    assert batches.next() == ("k", [(Change.CREATED, venv / "pyvenv.cfg")])


def test_unwatch_stops_delivery_and_the_thread(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    armed(watcher, "gone", [tmp_path])
    armed(watcher, "kept", [tmp_path])
    threads = {t.name: t for t in threading.enumerate()}
    watcher.unwatch("gone")
    (tmp_path / "a.py").write_text("x")
    assert batches.next() == ("kept", [(Change.CREATED, tmp_path / "a.py")])
    batches.none_within()
    threads["typemux-watch:gone"].join(ARRIVES)
    assert not threads["typemux-watch:gone"].is_alive()
    assert watcher.keys() == ["kept"]


def test_watch_again_replaces_the_roots(watcher: Watcher, batches: Batches, tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    armed(watcher, "k", [old])
    armed(watcher, "k", [new])
    (old / "a.py").write_text("x")
    (new / "b.py").write_text("x")
    assert batches.next() == ("k", [(Change.CREATED, new / "b.py")])
    batches.none_within()


def test_callback_runs_on_the_watcher_thread(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    armed(watcher, "k", [tmp_path])
    (tmp_path / "a.py").write_text("x")
    batches.next()
    assert batches.threads == {"typemux-watch:k"}


def test_missing_root_is_reported_not_fatal(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    armed(watcher, "k", [tmp_path / "nope", tmp_path])
    status = watcher.status()["keys"]["k"]
    assert status["missing"] == [str(tmp_path / "nope")]
    assert status["state"] == "watching"
    (tmp_path / "a.py").write_text("x")
    assert batches.next()[1] == [(Change.CREATED, tmp_path / "a.py")]


def test_status_is_json(watcher: Watcher, tmp_path: Path) -> None:
    armed(watcher, "k", [tmp_path, Root(tmp_path / "x", recursive=False)])
    status = json.loads(json.dumps(watcher.status()))
    assert status["debounceMs"] == DEBOUNCE_MS
    assert status["keys"]["k"]["roots"] == [
        {"path": str(tmp_path), "recursive": True},
        {"path": str(tmp_path / "x"), "recursive": False},
    ]


# -- the OS watch limit ------------------------------------------------------------------------

LIMIT_MESSAGE = (
    'OS file watch limit reached. about ["{path}"] (Error {{ kind: MaxFilesWatch, paths: '
    '["{path}"] }})'
)


def test_watch_limit_degrades_the_roots_that_do_not_fit(
    batches: Batches, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Injected: the OSError watchfiles 1.x raises for inotify ENOSPC, for any watch set that
    includes the big root; the small root stays watched and the fix is reported."""
    from typemux_lsp.watcher import rust_notify

    small, big = tmp_path / "project", tmp_path / "site-packages"
    small.mkdir()
    (big / "pkg").mkdir(parents=True)

    def limited(paths: list[str]) -> object:
        if any(p.startswith(str(big)) for p in paths):
            raise OSError(LIMIT_MESSAGE.format(path=big / "pkg"))
        return rust_notify(paths)

    w = Watcher(batches, DEBOUNCE_MS, notify_factory=limited)  # type: ignore[arg-type]
    try:
        for key in ("k", "k"):  # arming twice logs once
            w.watch(key, [small, big])
            assert w.wait_armed(key)
        status = w.status()["keys"]["k"]
        assert status["state"] == "degraded"
        (degraded,) = status["degraded"]
        assert degraded["root"] == str(big)
        assert "max_user_watches" in degraded["reason"]
        assert "sysctl fs.inotify.max_user_watches" in degraded["fix"]
        warnings = [r for r in caplog.records if "not watching" in r.getMessage()]
        assert len(warnings) == 1
        (small / "a.py").write_text("x")
        assert batches.next() == ("k", [(Change.CREATED, small / "a.py")])
    finally:
        w.close()


LIMITED_RUN = textwrap.dedent(
    """
    import json, sys, queue
    from pathlib import Path
    from typemux_lsp.watcher import Watcher
    small, big = Path(sys.argv[1]), Path(sys.argv[2])
    got = queue.Queue()
    w = Watcher(lambda key, changes: got.put(changes), 100)
    w.watch("k", [small, big])
    assert w.wait_armed("k")
    changes = []
    if sys.argv[3] == "expect-change":
        (small / "a.py").write_text("x")
        changes = got.get(timeout=10)
    print(json.dumps({"status": w.status(), "changes": [str(p) for _, p in changes]}))
    w.close()
    """
)


def _in_user_namespace(limit_file: str, value: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Run LIMITED_RUN in a new user namespace whose inotify limit is lowered: a real
    ENOSPC/EMFILE from the kernel, without touching the machine's own limit."""
    completed = subprocess.run(
        in_user_namespace([sys.executable, "-c", LIMITED_RUN, *args], value, limit_file),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    if completed.returncode != 0 and "echo" in completed.stderr + completed.stdout:
        pytest.skip(f"cannot lower the inotify limit here: {completed.stderr.strip()}")
    if "Operation not permitted" in completed.stderr and not completed.stdout:
        pytest.skip(f"user namespaces are not available: {completed.stderr.strip()}")
    return completed


def test_real_watch_limit_in_a_user_namespace(tmp_path: Path) -> None:
    small, big = tmp_path / "project", tmp_path / "site-packages"
    small.mkdir()
    for i in range(50):
        (big / f"pkg{i}").mkdir(parents=True)
    run = _in_user_namespace("max_inotify_watches", 10, str(small), str(big), "expect-change")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    status = report["status"]["keys"]["k"]
    assert [d["root"] for d in status["degraded"]] == [str(big)]
    assert "max_user_watches" in status["degraded"][0]["fix"]
    assert report["changes"] == [str(small / "a.py")]
    assert "not watching" in run.stderr  # logged


def test_real_instance_limit_in_a_user_namespace(tmp_path: Path) -> None:
    small, big = tmp_path / "project", tmp_path / "site-packages"
    small.mkdir()
    big.mkdir()
    run = _in_user_namespace("max_inotify_instances", 0, str(small), str(big), "status-only")
    assert run.returncode == 0, run.stderr
    status = json.loads(run.stdout)["status"]["keys"]["k"]
    assert status["state"] == "degraded"
    assert [d["root"] for d in status["degraded"]] == [str(small), str(big)]
    assert "max_user_instances" in status["degraded"][0]["fix"]


def test_os_limits_reads_the_lower_of_machine_and_namespace(tmp_path: Path) -> None:
    from typemux_lsp.watcher import os_limits

    limits = os_limits()
    if not Path("/proc/sys/fs/inotify/max_user_watches").exists():
        assert limits == {}
        return
    machine = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    assert 0 < limits["max_user_watches"] <= machine
    assert limits["max_user_instances"] > 0


def test_what_changed_while_arming_is_caught_up(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    """A package installed (or a file rewritten in place) between a backend's start and the
    moment its watch is armed (the walk takes a while on a big site-packages) arrives as the
    first batch; nothing older does."""
    site = tmp_path / "site-packages"
    (site / "old").mkdir(parents=True)
    (site / "old" / "__init__.py").write_text("x = 1\n")
    (site / "kept").mkdir()
    (site / "kept" / "__init__.py").write_text("y = 1\n")
    written = (site / "old" / "__init__.py").stat().st_mtime_ns
    while (started := fs_clock_ns()) <= written:  # the backend starts reading the disk
        time.sleep(0.002)  # (the file clock moves by ticks)
    (site / "extra").mkdir()
    (site / "extra" / "__init__.py").write_text("def grow(n: int) -> int: ...\n")
    (site / "kept" / "__init__.py").write_text("y = 2\n")  # in place: its directory unchanged
    watcher.watch("k", [site], since_ns=started)
    _, changes = batches.next()
    paths = {path: change for change, path in changes}
    assert paths.get(site / "extra") is Change.CREATED
    assert paths.get(site / "extra" / "__init__.py") is Change.CHANGED
    assert paths.get(site / "kept" / "__init__.py") is Change.CHANGED
    assert site / "old" not in paths and site / "old" / "__init__.py" not in paths
    # without `since_ns`, the same tree gives no batch
    watcher.watch("k2", [site])
    assert watcher.wait_armed("k2")
    batches.none_within()


def test_the_catch_up_never_reports_a_root_as_created(
    watcher: Watcher, batches: Batches, tmp_path: Path
) -> None:
    """A root inside another (the venv inside its project) changes its times whenever an
    entry is added to it: that is no new environment (which would restart its backend)."""
    project = tmp_path / "app"
    venv = project / ".venv"
    (venv / "lib").mkdir(parents=True)
    (project / "app.py").write_text("x = 1\n")
    written = (project / "app.py").stat().st_mtime_ns
    while (started := fs_clock_ns()) <= written:
        time.sleep(0.002)
    (venv / ".lock").write_text("")
    (project / "new.py").write_text("y = 1\n")
    watcher.watch("k", [project, venv], since_ns=started)
    _, changes = batches.next()
    paths = {path: change for change, path in changes}
    assert paths.get(project / "new.py") is Change.CHANGED
    assert venv not in paths


# -- what the watcher costs the disk -----------------------------------------------------------


class DiskCalls:
    """Counts listings and stats (`stat` and `lstat`) of paths under `top` (any thread)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, top: Path) -> None:
        self.top = str(top)
        self.listed: list[str] = []
        self.stated: list[str] = []
        self.counting = False
        scandir, stat, lstat = os.scandir, os.stat, os.lstat

        def counted(calls: list[str], real: Any) -> Any:
            def call(path: Any, *args: Any, **kwargs: Any) -> Any:
                if self.counting and str(path).startswith(self.top):
                    calls.append(str(path))
                return real(path, *args, **kwargs)

            return call

        monkeypatch.setattr(os, "scandir", counted(self.listed, scandir))
        monkeypatch.setattr(os, "stat", counted(self.stated, stat))
        monkeypatch.setattr(os, "lstat", counted(self.stated, lstat))


def test_arming_lists_each_directory_once(
    watcher: Watcher, batches: Batches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catch-up of what changed while arming reads the arming walk's listing: a
    12,000-file site-packages is listed once, not twice."""
    site = tmp_path / "site-packages"
    for name in ("a", "b", "b/c"):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("x = 1\n")
    written = (site / "b" / "c" / "__init__.py").stat().st_mtime_ns
    while (started := fs_clock_ns()) <= written:
        time.sleep(0.002)
    (site / "a" / "__init__.py").write_text("x = 2\n")  # in place, while the backend starts
    calls = DiskCalls(monkeypatch, tmp_path)
    calls.counting = True
    watcher.watch("k", [site], since_ns=started)
    assert batches.next() == ("k", [(Change.CHANGED, site / "a" / "__init__.py")])
    calls.counting = False
    assert sorted(calls.listed) == sorted(str(site / d) for d in ("", "a", "b", "b/c"))


def test_a_new_directory_walks_only_itself(
    watcher: Watcher, batches: Batches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package installed lists the package's directories, not every watched one again; a
    package removed lists nothing."""
    project, site = tmp_path / "project", tmp_path / "site-packages"
    for directory in (project / "src", site / "old" / "sub"):
        directory.mkdir(parents=True)
    armed(watcher, "k", [project, site])
    calls = DiskCalls(monkeypatch, tmp_path)
    calls.counting = True
    (site / "new" / "sub").mkdir(parents=True)
    (site / "new" / "sub" / "m.py").write_text("")
    _, changes = batches.next()
    assert (Change.CREATED, site / "new" / "sub" / "m.py") in changes
    assert sorted(calls.listed) == [str(site / "new"), str(site / "new" / "sub")]
    calls.listed.clear()
    shutil.rmtree(site / "old")
    _, changes = batches.next()
    assert (Change.DELETED, site / "old" / "sub") in changes
    assert calls.listed == []
    calls.counting = False
    status = watcher.status()["keys"]["k"]
    assert status["watchedDirectories"] == 5  # project, src, site-packages, new, new/sub
    (site / "new" / "sub" / "m.py").write_text("changed")  # the new directories are watched
    assert batches.next() == ("k", [(Change.CHANGED, site / "new" / "sub" / "m.py")])


def test_each_changed_path_is_looked_at_once(
    watcher: Watcher, batches: Batches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    armed(watcher, "k", [tmp_path])
    calls = DiskCalls(monkeypatch, tmp_path)
    calls.counting = True
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg").mkdir()
    _, changes = batches.next()
    calls.counting = False
    assert [p.name for _, p in changes] == ["a.py", "pkg"]
    for path in (tmp_path / "a.py", tmp_path / "pkg"):
        assert calls.stated.count(str(path)) == 1, calls.stated


def test_the_planned_count_stops_at_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--doctor` counts the watches a tree needs without walking past what it must know."""
    from typemux_lsp.watcher import planned_directories

    for i in range(30):
        (tmp_path / "a" / f"d{i}" / "sub").mkdir(parents=True)
    roots = [Root(tmp_path / "a")]
    assert planned_directories(roots, WatchFilter()) == 61
    calls = DiskCalls(monkeypatch, tmp_path)
    calls.counting = True
    assert planned_directories(roots, WatchFilter(), limit=5) == 5
    assert len(calls.listed) <= 5


def test_a_package_installed_while_arming_is_reported_whole_and_watched(
    batches: Batches, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package written after the arming walk listed site-packages and before the OS watch
    is in place (a backend starting during `uv add`): its files are reported, not only its
    directory, and it is watched from then on."""
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "old.py").write_text("x = 1\n")
    written = (site / "old.py").stat().st_mtime_ns
    while (started := fs_clock_ns()) <= written:
        time.sleep(0.002)
    real_start = Watcher._start
    installed = threading.Event()

    def start_after_an_install(self: Watcher, dirs_by_root: Any) -> Any:
        if not installed.is_set():
            installed.set()
            (site / "extra").mkdir()
            (site / "extra" / "__init__.py").write_text("def grow(n: int) -> int: ...\n")
        return real_start(self, dirs_by_root)

    monkeypatch.setattr(Watcher, "_start", start_after_an_install)
    watcher = Watcher(batches, DEBOUNCE_MS)
    try:
        watcher.watch("k", [site], since_ns=started)
        _, changes = batches.next()
        paths = {path: change for change, path in changes}
        assert paths.get(site / "extra") is Change.CREATED
        assert site / "extra" / "__init__.py" in paths
        (site / "extra" / "__init__.py").write_text("def grow(n: int, m: int) -> int: ...\n")
        assert batches.next() == ("k", [(Change.CHANGED, site / "extra" / "__init__.py")])
    finally:
        watcher.close()
