"""Which environments see a file (environments.model.ImportRoots), and how answers from
several environments are merged (across.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from typemux_lsp.across import CannotAnswer, _no_overlaps
from typemux_lsp.environments import Environment
from typemux_lsp.environments.model import import_roots
from typemux_lsp.merge import answered_once, merge_answers


def venv(project: Path) -> tuple[Environment, Path]:
    prefix = project / ".venv"
    site = prefix / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    (prefix / "pyvenv.cfg").write_text("version = 3.12.0\n")
    return Environment(prefix), site


def test_pth_path_entries_are_import_roots(tmp_path: Path) -> None:
    """uv, hatchling and PDM write the source directory; setuptools' compat mode too."""
    core, tools = tmp_path / "libs/core/src", tmp_path / "libs/tools"
    core.mkdir(parents=True)
    tools.mkdir(parents=True)
    env, site = venv(tmp_path / "services/a")
    (site / "_core.pth").write_text(f"{core}\n")
    (site / "__editable__.tools-0.1.pth").write_text(f"{tools}\nimport os\n")
    (site / "distutils-precedence.pth").write_text("import os; var = 'x'\n")
    roots = import_roots(env)
    assert set(roots.extra) == {core.resolve(), tools.resolve()}
    assert roots.imports_from((core / "core/__init__.py").resolve())
    assert not roots.imports_from((tmp_path / "services/a/app.py").resolve())
    assert roots.sees((tmp_path / "services/a/app.py").resolve())


def test_setuptools_editable_finder_mappings_are_read_never_run(tmp_path: Path) -> None:
    package = tmp_path / "libs/core/src/core"
    package.mkdir(parents=True)
    env, site = venv(tmp_path / "services/a")
    (site / "__editable___core_0_1_finder.py").write_text(
        f"import sys\nraise SystemExit('run')\nMAPPING = {{'core': {str(package)!r}}}\n"
    )
    assert import_roots(env).extra == ((tmp_path / "libs/core/src").resolve(),)


def test_extra_paths_settings_and_what_lies_inside_the_prefix(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    env, site = venv(tmp_path / "services/a")
    (site / "inside").mkdir()
    (site / "inside.pth").write_text("inside\n")  # a directory of site-packages: a package
    roots = import_roots(env, (Path("../../shared"),))
    assert roots.extra == (shared.resolve(),)


def test_shares_with_a_library_two_consumers_and_the_owner(tmp_path: Path) -> None:
    core = tmp_path / "libs/core"
    (core / "src").mkdir(parents=True)
    envs = {}
    for name in ("a", "b", "lone"):
        env, site = venv(tmp_path / "services" / name)
        if name != "lone":
            (site / "_core.pth").write_text(f"{core / 'src'}\n")
        envs[name] = import_roots(env)
    owner = import_roots(venv(core)[0])
    assert envs["a"].shares_with(envs["b"]) and envs["a"].shares_with(owner)
    assert owner.shares_with(envs["a"])
    assert not envs["lone"].shares_with(envs["a"]) and not envs["lone"].shares_with(owner)


def test_nested_projects_do_not_share_by_nesting_alone(tmp_path: Path) -> None:
    """A repository-root environment does not see a nested project that has its own."""
    top = import_roots(venv(tmp_path)[0])
    nested = import_roots(venv(tmp_path / "services/a")[0])
    assert not top.shares_with(nested) and not nested.shares_with(top)


def loc(uri: str, line: int, start: int, end: int) -> dict[str, Any]:
    return {
        "uri": uri,
        "range": {
            "start": {"line": line, "character": start},
            "end": {"line": line, "character": end},
        },
    }


def test_locations_are_deduplicated_and_ordered() -> None:
    a = [loc("file:///b.py", 3, 0, 5), loc("file:///a.py", 1, 0, 5)]
    b = [loc("file:///a.py", 1, 0, 5), loc("file:///a.py", 0, 4, 9)]
    merged = merge_answers("textDocument/references", [a, b, None])
    assert merged == [
        loc("file:///a.py", 0, 4, 9),
        loc("file:///a.py", 1, 0, 5),
        loc("file:///b.py", 3, 0, 5),
    ]


def test_incoming_calls_are_merged_by_caller() -> None:
    main = {
        "name": "main",
        "uri": "file:///a.py",
        **{k: loc("", 2, 0, 9)["range"] for k in ("range", "selectionRange")},
    }
    one = [{"from": main, "fromRanges": [loc("", 3, 11, 16)["range"]]}]
    two = [{"from": main, "fromRanges": [loc("", 3, 11, 16)["range"], loc("", 4, 1, 6)["range"]]}]
    merged = merge_answers("callHierarchy/incomingCalls", [one, two])
    assert len(merged) == 1 and len(merged[0]["fromRanges"]) == 2


def test_overlapping_different_edits_are_an_error_identical_ones_one_edit() -> None:
    edit = {"range": loc("", 1, 4, 9)["range"], "newText": "salute"}
    assert _no_overlaps("file:///a.py", [edit, dict(edit)]) == [edit]
    other = {"range": loc("", 1, 6, 12)["range"], "newText": "x"}
    with pytest.raises(CannotAnswer, match="disagree"):
        _no_overlaps("file:///a.py", [edit, other])


def test_a_shared_backends_repeated_calls_are_one_the_richer_kept_in_order() -> None:
    """ty 1.2.0 shared lists `main` once per folder that sees its file, without its module's
    name (`detail`) from the folders whose project the file is not in."""
    main = {
        "name": "main",
        "kind": 12,
        "uri": "file:///beta/app.py",
        **{k: loc("", 10, 4, 8)["range"] for k in ("range", "selectionRange")},
    }
    other = {**main, "name": "other", "uri": "file:///beta/other.py"}
    at = [loc("", 11, 10, 16)["range"]]
    answer = [
        {"from": other, "fromRanges": at},
        {"from": main, "fromRanges": at},
        {"from": {**main, "detail": "app"}, "fromRanges": [*at, loc("", 12, 1, 5)["range"]]},
    ]
    assert answered_once("callHierarchy/incomingCalls", answer) == [
        {"from": other, "fromRanges": at},
        {"from": {**main, "detail": "app"}, "fromRanges": [*at, loc("", 12, 1, 5)["range"]]},
    ]
    greeter = {**main, "name": "Greeter", "kind": 5, "detail": "core"}
    assert answered_once("typeHierarchy/supertypes", [greeter, dict(greeter)]) == [greeter]
    assert answered_once("callHierarchy/outgoingCalls", None) is None
