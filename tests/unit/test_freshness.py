"""Freshness policy: what is watched for a backend, what a batch means, what is done about it."""

from __future__ import annotations

import queue
import shutil
import sys
from pathlib import Path

import pytest

from typemux_lsp.environments.model import pth_paths
from typemux_lsp.freshness import (
    STRATEGIES,
    Classification,
    RecentEvents,
    WatchPlan,
    classify,
    decide,
    describe,
    disk_text_wins,
    plan_watch,
    read_environment,
)
from typemux_lsp.watcher import Change, Changes, Watcher

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"


def make_venv(prefix: Path) -> Path:
    site = prefix / "lib" / PY / "site-packages"
    site.mkdir(parents=True)
    (prefix / "bin").mkdir()
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return site


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    root.mkdir()
    make_venv(root / ".venv")
    (root / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    (root / "main.py").write_text("import shapes\n")
    return root


# -- the environment, read not run -----------------------------------------------------------


def test_pth_paths_are_read_and_import_lines_never_run(tmp_path: Path) -> None:
    site = make_venv(tmp_path / "venv")
    src = tmp_path / "work" / "src"
    src.mkdir(parents=True)
    (tmp_path / "rel").mkdir()
    ran = tmp_path / "ran"
    (site / "_editable_work.pth").write_text(
        f"# a comment\n\n{src}\n../../../../rel\n/does/not/exist\n"
        f"import pathlib; pathlib.Path({str(ran)!r}).write_text('x')\n"
    )
    assert [p.resolve() for p in pth_paths(site)] == [src.resolve(), (tmp_path / "rel").resolve()]
    assert not ran.exists()


def test_setuptools_editable_finder_mapping_is_read_as_data(tmp_path: Path) -> None:
    site = make_venv(tmp_path / "venv")
    package = tmp_path / "checkout" / "mypkg"
    package.mkdir(parents=True)
    (site / "__editable__.mypkg-1.0.pth").write_text("import __editable___mypkg_1_0_finder\n")
    (site / "__editable___mypkg_1_0_finder.py").write_text(
        f"import sys\nMAPPING = {{'mypkg': {str(package)!r}}}\nsys.exit('never run')\n"
    )
    assert [p.resolve() for p in pth_paths(site)] == [package.parent.resolve()]


def test_read_environment_finds_site_packages_and_outside_roots(tmp_path: Path) -> None:
    site = make_venv(tmp_path / "venv")
    outside = tmp_path / "lib-src"
    outside.mkdir()
    (site / "x.pth").write_text(f"{outside}\n{site / 'inner'}\n")
    (site / "inner").mkdir()
    env = read_environment(tmp_path / "venv")
    assert env.site_packages == (site.resolve(),)
    assert env.import_roots == (outside.resolve(),)  # inside site-packages: already watched
    assert env.cfg == tmp_path / "venv" / "pyvenv.cfg"


# -- what is watched -----------------------------------------------------------------------


def test_plan_orders_roots_by_importance(project: Path) -> None:
    env = read_environment(project / ".venv")
    plan = plan_watch(env, project)
    assert [(r.path, r.recursive) for r in plan.roots] == [
        (project / ".venv", False),
        (project, True),
        (env.site_packages[0], True),
    ]


def test_plan_filter_skips_other_environments_vcs_and_caches(project: Path) -> None:
    make_venv(project / "tools" / "venv")
    plan = plan_watch(read_environment(project / ".venv"), project, skip=[project / "sub"])
    flt = plan.filter
    for skipped in (".git", "node_modules", "__pycache__", ".mypy_cache", "build", "sub"):
        (project / skipped).mkdir(exist_ok=True)
        assert not flt.include_dir(project / skipped), skipped
    assert not flt.include_dir(project / "tools" / "venv")  # it has a pyvenv.cfg
    assert flt.include_dir(project / "tools")
    make_venv(project / "services" / "api" / ".venv")
    assert not flt.include_dir(project / "services" / "api")  # served by its own backend
    assert flt.include_dir(project / "services")
    assert flt.include_file(project / "a.py")
    assert flt.include_file(project / "pyrightconfig.json")
    assert not flt.include_file(project / "notes.txt")
    assert not flt.include_file(project / "m.cpython-311.pyc")


def test_planned_watch_reports_each_change_once_by_its_meaning(project: Path) -> None:
    """The plan on a real watcher: the venv inside the project is watched as the
    environment (once), another venv and .git are not watched at all."""
    env = read_environment(project / ".venv")
    plan = plan_watch(env, project)
    other_site = make_venv(project / "other" / ".venv")
    (project / ".git").mkdir()
    got: queue.Queue[Changes] = queue.Queue()
    watcher = Watcher(lambda _key, changes: got.put(changes), 100)
    try:
        watcher.watch("k", plan.roots, plan.filter)
        assert watcher.wait_armed("k")
        site = env.site_packages[0]
        (site / "shapes").mkdir()
        (site / "shapes" / "__init__.py").write_text("")
        (other_site / "noise.py").write_text("")
        (project / ".git" / "index").write_text("")
        (project / "util.py").write_text("")
        changes = got.get(timeout=10)
        assert changes == [
            (Change.CREATED, site / "shapes"),
            (Change.CREATED, site / "shapes" / "__init__.py"),
            (Change.CREATED, project / "util.py"),
        ]
        classified = classify(plan, changes)
        assert [p.name for _, p in classified.environment] == ["shapes", "__init__.py"]
        assert [p.name for _, p in classified.sources] == ["util.py"]
    finally:
        watcher.close()


# -- what a batch means ----------------------------------------------------------------------


def test_classify_sorts_by_meaning_and_reads_package_versions(project: Path) -> None:
    plan = plan_watch(read_environment(project / ".venv"), project)
    site = plan.environment.site_packages[0]
    changes = [
        (Change.DELETED, site / "shapes-1.0.dist-info"),
        (Change.DELETED, site / "shapes-1.0.dist-info" / "RECORD"),
        (Change.CREATED, site / "shapes-2.0.dist-info"),
        (Change.CHANGED, site / "shapes" / "__init__.py"),
        (Change.CREATED, site / "extra_pkg-0.3.dist-info" / "METADATA"),
        (Change.DELETED, site / "gone-4.1.dist-info"),
        (Change.CHANGED, project / "main.py"),
        (Change.CREATED, project / "pkg"),
        (Change.CHANGED, project / "pyproject.toml"),
        (Change.CREATED, project / "pyrightconfig.json"),
        (Change.CREATED, project / ".venv" / "bin" / "tool"),
    ]
    classified = classify(plan, changes)
    assert len(classified.environment) == 6
    assert [p.name for _, p in classified.sources] == ["main.py", "pkg"]
    assert [p.name for _, p in classified.configs] == ["pyproject.toml", "pyrightconfig.json"]
    assert dict(classified.packages) == {
        "extra-pkg": (None, "0.3"),
        "gone": ("4.1", None),
        "shapes": ("1.0", "2.0"),
    }
    assert not classified.environment_replaced


def test_pyvenv_cfg_changed_means_replaced_and_gone_means_deleted(project: Path) -> None:
    plan = plan_watch(read_environment(project / ".venv"), project)
    recreated = classify(plan, [(Change.CHANGED, project / ".venv" / "pyvenv.cfg")])
    assert recreated.environment_replaced and not recreated.environment_deleted
    (project / ".venv" / "pyvenv.cfg").unlink()
    deleted = classify(plan, [(Change.DELETED, project / ".venv")])
    assert deleted.environment_replaced and deleted.environment_deleted


def test_a_conda_prefix_replaced_is_restarted_not_stopped(tmp_path: Path) -> None:
    """A conda-style prefix has no pyvenv.cfg: it is deleted only when it holds no
    environment at all any more."""
    project = tmp_path / "app"
    prefix = project / ".conda-env"
    make_venv(prefix)
    (prefix / "pyvenv.cfg").unlink()
    (prefix / "conda-meta").mkdir()
    plan = plan_watch(read_environment(prefix), project)
    recreated = classify(plan, [(Change.CREATED, prefix)])
    assert recreated.environment_replaced and not recreated.environment_deleted
    (prefix / "conda-meta").rmdir()
    deleted = classify(plan, [(Change.DELETED, prefix)])
    assert deleted.environment_deleted


def test_changes_elsewhere_mean_nothing(project: Path, tmp_path: Path) -> None:
    plan = plan_watch(read_environment(project / ".venv"), project)
    assert not classify(plan, [(Change.CHANGED, tmp_path / "elsewhere.py")])


# -- what to do ------------------------------------------------------------------------------


@pytest.fixture
def plan(project: Path) -> WatchPlan:
    return plan_watch(read_environment(project / ".venv"), project)


@pytest.fixture
def hatch_plan(project: Path, tmp_path: Path) -> WatchPlan:
    """The project served from an environment outside its tree, as Hatch makes them."""
    make_venv(tmp_path / "hatch-envs" / "app")
    return plan_watch(read_environment(tmp_path / "hatch-envs" / "app"), project)


def upgrade(site: Path) -> Changes:
    return [
        (Change.DELETED, site / "shapes-1.0.dist-info"),
        (Change.CREATED, site / "shapes-2.0.dist-info"),
        (Change.CREATED, site / "shapes-2.0.dist-info" / "METADATA"),
        (Change.CHANGED, site / "shapes" / "__init__.py"),
        (Change.CREATED, site / "shapes" / "circles.py"),  # new in 2.0
    ]


@pytest.mark.parametrize("backend", ["pyright", "basedpyright"])
def test_pyright_kinds_reconfigure_when_library_files_are_created(
    backend: str, hatch_plan: WatchPlan
) -> None:
    site = hatch_plan.environment.site_packages[0]
    action = decide(backend, classify(hatch_plan, upgrade(site)))
    assert action is not None and action.kind == "reconfigure" and action.params is not None
    assert (
        action.cause
        == "site-packages changed: 5 files (3 created, 1 changed, 1 deleted) (shapes 1.0 -> 2.0)"
    )
    # the library files are not named: each would re-arm pyright's 5 s library timer, a
    # second full re-analysis after the one the reconfiguration makes
    assert action.params["changes"] == []


def test_pyrefly_is_restarted_for_library_changes(plan: WatchPlan, project: Path) -> None:
    """Restarted, pyrefly follows a real upgrade faster than told (0.8-0.9 s against
    1.9-2.6 s), holds half the memory and is spared its panic on large swaps; a source
    change stays an event."""
    site = plan.environment.site_packages[0]
    for changes in (upgrade(site), [(Change.CHANGED, site / "shapes" / "__init__.py")]):
        action = decide("pyrefly", classify(plan, changes))
        assert action is not None and action.kind == "restart"
        assert "site-packages changed" in action.cause
    action = decide("pyrefly", classify(plan, [(Change.CHANGED, project / "util.py")]))
    assert action is not None and action.kind == "notify"


def test_ty_is_told_files_and_directories(plan: WatchPlan) -> None:
    site = plan.environment.site_packages[0]
    action = decide("ty", classify(plan, upgrade(site)))
    assert action is not None and action.kind == "notify" and action.params is not None
    assert action.params["changes"] == [
        {"uri": (site / "shapes-1.0.dist-info").as_uri(), "type": 3},
        {"uri": (site / "shapes-2.0.dist-info").as_uri(), "type": 1},
        {"uri": (site / "shapes-2.0.dist-info" / "METADATA").as_uri(), "type": 1},
        {"uri": (site / "shapes" / "__init__.py").as_uri(), "type": 2},
        {"uri": (site / "shapes" / "circles.py").as_uri(), "type": 1},
    ]


@pytest.mark.parametrize("backend", ["pyright", "basedpyright"])
def test_pyright_kinds_reconfigure_for_changed_library_files_too(
    backend: str, hatch_plan: WatchPlan
) -> None:
    """A real upgrade rewrites a package's directory (an installer replaces it whole): told
    only by events, pyright acts on its 5 s library timer (bench/freshness_packages.py);
    re-reading its configuration re-resolves at once."""
    site = hatch_plan.environment.site_packages[0]
    changed = [(Change.CHANGED, site / "shapes" / "__init__.py")]
    renamed = [c for c in upgrade(site) if c[0] is not Change.CREATED or "dist-info" in str(c[1])]
    for changes in (changed, renamed):
        action = decide(backend, classify(hatch_plan, changes))
        assert action is not None and action.kind == "reconfigure" and action.params is not None
        assert action.params["changes"] == []


@pytest.mark.parametrize("backend", ["pyright", "basedpyright"])
def test_pyright_kinds_are_told_of_a_venv_inside_the_project(backend: str, plan: WatchPlan) -> None:
    """A `.venv` in the project is pyright's include root: it re-reads changed files there
    at once (0.6-0.9 s for a real release; reconfigured, it re-analyses everything); a new
    package there still waits for its 5 s library timer, so that is reconfigured."""
    site = plan.environment.site_packages[0]
    changed = [c for c in upgrade(site) if c[0] is not Change.CREATED or "dist-info" in str(c[1])]
    action = decide(backend, classify(plan, changed))
    assert action is not None and action.kind == "notify" and action.params is not None
    assert len(action.params["changes"]) == len(changed)
    action = decide(backend, classify(plan, upgrade(site)))  # (shapes/circles.py is new)
    assert action is not None and action.kind == "reconfigure"


def test_a_reconfigure_still_names_project_files(hatch_plan: WatchPlan, project: Path) -> None:
    site = hatch_plan.environment.site_packages[0]
    changes = [
        (Change.CHANGED, site / "shapes" / "__init__.py"),
        (Change.CREATED, project / "u.py"),
    ]
    action = decide("pyright", classify(hatch_plan, changes))
    assert action is not None and action.kind == "reconfigure" and action.params is not None
    assert action.params["changes"] == [{"uri": (project / "u.py").as_uri(), "type": 1}]


@pytest.mark.parametrize(
    ("backend", "change", "kind"),
    [
        ("pyright", Change.CREATED, "reconfigure"),  # a new pyrightconfig.json alone: ignored
        ("pyright", Change.CHANGED, "notify"),
        ("basedpyright", Change.CREATED, "reconfigure"),
        ("ty", Change.CREATED, "notify"),
        ("pyrefly", Change.CHANGED, "notify"),
    ],
)
def test_config_changes(
    backend: str, change: Change, kind: str, plan: WatchPlan, project: Path
) -> None:
    action = decide(backend, classify(plan, [(change, project / "pyrightconfig.json")]))
    assert action is not None and action.kind == kind
    assert "config changed: pyrightconfig.json" in action.cause


def test_sources_are_told_except_open_documents(plan: WatchPlan, project: Path) -> None:
    changes = [(Change.CHANGED, project / "main.py"), (Change.CREATED, project / "util.py")]
    for backend in STRATEGIES:
        action = decide(
            backend, classify(plan, changes), open_uris=[(project / "main.py").as_uri()]
        )
        assert action is not None and action.kind == "notify" and action.params is not None
        assert action.params["changes"] == [{"uri": (project / "util.py").as_uri(), "type": 1}]
    only_open = decide(
        "ty", classify(plan, changes[:1]), open_uris=[(project / "main.py").as_uri()]
    )
    assert only_open is None


def test_environment_replaced_restarts_and_deleted_stops(plan: WatchPlan, project: Path) -> None:
    cfg = project / ".venv" / "pyvenv.cfg"
    action = decide("ty", classify(plan, [(Change.CHANGED, cfg)]))
    assert action is not None and action.kind == "restart"
    assert "recreated" in action.cause
    cfg.unlink()
    action = decide("ty", classify(plan, [(Change.DELETED, cfg)]))
    assert action is not None and action.kind == "stop"


def test_the_stop_names_the_environment_not_a_file_in_it(plan: WatchPlan, project: Path) -> None:
    """`rm -rf .venv`: the batch lists its files first; the log names the environment."""
    site = plan.environment.site_packages[0]
    shutil.rmtree(project / ".venv")
    changes: Changes = [
        (Change.DELETED, project / ".venv"),
        (Change.DELETED, project / ".venv" / "bin"),
        (Change.DELETED, site / "aaa.py"),
        (Change.DELETED, project / ".venv" / "pyvenv.cfg"),
    ]
    action = decide("pyright", classify(plan, sorted(changes, key=lambda c: str(c[1]))))
    assert action is not None and action.kind == "stop"
    assert action.cause == f"the environment {project / '.venv'} was deleted"


def test_an_unmeasured_backend_is_restarted(plan: WatchPlan) -> None:
    site = plan.environment.site_packages[0]
    action = decide("future-checker", classify(plan, [(Change.CHANGED, site / "a.py")]))
    assert action is not None and action.kind == "restart"


def test_nothing_to_do_for_an_empty_batch() -> None:
    assert decide("pyright", Classification()) is None


def test_describe_a_big_sync() -> None:
    site = Path("/v/lib/site-packages")
    changes = tuple((Change.CREATED, site / f"pkg{i}.py") for i in range(312))
    text = describe(
        Classification(environment=changes, packages={f"p{i}": ("1", "2") for i in range(7)})
    )
    assert text == (
        "site-packages changed: 312 files (312 created) "
        "(p0 1 -> 2, p1 1 -> 2, p2 1 -> 2, p3 1 -> 2, p4 1 -> 2, and 2 more)"
    )


# -- open documents --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "clean", "disk", "watches", "wins"),
    [
        ("a", "a", "b", False, True),  # saved in the client, rewritten behind its back
        ("a", "a", "a", False, False),  # nothing new on disk
        ("edited", "a", "b", False, False),  # unsaved edits in the client: never overwritten
        ("a", None, "b", False, False),  # never known clean
        ("a", "a", "b", True, False),  # the client watches files: it reloads itself
    ],
)
def test_disk_text_wins_only_over_a_clean_document_of_a_blind_client(
    client: str, clean: str | None, disk: str, watches: bool, wins: bool
) -> None:
    assert (
        disk_text_wins(
            client_text=client, clean_text=clean, disk_text=disk, client_watches_files=watches
        )
        is wins
    )


# -- a client that watches files itself --------------------------------------------------------


def test_one_change_is_told_once_whoever_reports_it_first() -> None:
    recent = RecentEvents(window_s=10)
    event = {"uri": "file:///p/a.py", "type": 2}
    assert recent.fresh([event], "client", now=100.0) == [event]  # the client's own event
    assert recent.fresh([event, {"uri": "file:///p/b.py", "type": 1}], "watcher", now=101.0) == [
        {"uri": "file:///p/b.py", "type": 1}
    ]  # the watcher's batch: a.py already told
    assert recent.fresh([{"uri": "file:///p/a.py", "type": 3}], "watcher", now=102.0) != []
    # a second change of a.py, seconds later: news, whoever reports it first
    assert recent.fresh([event], "watcher", now=104.0) == [event]
    assert recent.fresh([event], "client", now=104.5) == []  # (the client's report of it)
    assert recent.fresh([event], "client", now=105.0) == [event]  # and a third
    assert recent.fresh([event], "client", now=106.0) == [event]  # one source: every change
    assert recent.fresh([event], "watcher", now=117.0) == [event]  # past the window: news


def test_a_venv_deleted_then_recreated_is_seen_through_the_project_watch(project: Path) -> None:
    """The venv's own watch dies with its directory; the project's watch still sees the
    `.venv` entry go and come back, and the re-armed watch covers the new venv."""
    plan = plan_watch(read_environment(project / ".venv"), project)
    got: queue.Queue[Changes] = queue.Queue()
    watcher = Watcher(lambda _key, changes: got.put(changes), 100)
    try:
        watcher.watch("k", plan.roots, plan.filter)
        assert watcher.wait_armed("k")
        shutil.rmtree(project / ".venv")
        gone = classify(plan, got.get(timeout=10))
        assert gone.environment_deleted
        action = decide("pyright", gone)
        assert action is not None and action.kind == "stop"

        site = make_venv(project / ".venv")
        back = classify(plan, got.get(timeout=10))
        assert back.environment_replaced and not back.environment_deleted
        action = decide("ty", back)
        assert action is not None and action.kind == "restart"

        (site / "late.py").write_text("")  # the new venv is watched again
        later = classify(plan, got.get(timeout=10))
        assert [p.name for _, p in later.environment] == ["late.py"]
    finally:
        watcher.close()
