"""Finding a file's project and environment: the walk, its bounds, symlinks, the cache.

Every manager's own rule is tested in test_environments_locators.py; this file tests what
holds for all of them: which directory is the project, where the walk stops, how symlinks
are treated (walked as spelled, canonical only for identity), that a project without an
environment never borrows an enclosing one, and that cached answers stay true to the disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from envkit import fake_conda, fake_venv, site_packages

from typemux_lsp.config import ProjectRule
from typemux_lsp.environments import (
    Environment,
    _fs,
    fallback_environment,
    find_environment,
    is_project,
    no_environment_message,
    uri_to_path,
)

PROJECT = "[project]\nname = 'p'\n"


def settle(root: Path) -> None:
    """Date everything under `root` back, so no stamp is racy (too recent to be trusted)."""
    for current, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.utime(os.path.join(current, name), (1e9, 1e9), follow_symlinks=False)
    os.utime(root, (1e9, 1e9))


def env_of(path: Path, **kwargs: Any) -> Environment:
    found = find_environment(path, **kwargs).environment
    assert found is not None, find_environment(path, **kwargs)
    return found


# -- the project and its environment --------------------------------------------------------------


def test_the_nearest_venv_wins_and_its_directory_is_the_project(repo: Path) -> None:
    fake_venv(repo / ".venv")
    api = fake_venv(repo / "services" / "api" / ".venv")
    (repo / "services" / "api" / "src").mkdir()
    found = env_of(repo / "services" / "api" / "src" / "main.py")
    assert (found.path, found.project_dir, found.manager) == (api, api.parent, "venv")
    assert found.python == api / "bin" / "python"


def test_a_plain_directory_uses_the_enclosing_projects_environment(repo: Path) -> None:
    venv = fake_venv(repo / ".venv")
    (repo / "src" / "pkg" / "sub").mkdir(parents=True)
    assert env_of(repo / "src" / "pkg" / "sub" / "m.py").path == venv


def test_a_pyproject_that_only_configures_tools_is_not_a_project(repo: Path) -> None:
    venv = fake_venv(repo / ".venv")
    (repo / "tests").mkdir()
    (repo / "tests" / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    assert env_of(repo / "tests" / "test_x.py").path == venv


def test_a_nested_project_without_environment_never_gets_the_root_one(repo: Path) -> None:
    """Issue 8's hole: a naive fallback to the workspace root's .venv fails this test."""
    fake_venv(repo / ".venv")
    nested = repo / "packages" / "lib"
    nested.mkdir(parents=True)
    (nested / "pyproject.toml").write_text("[project]\nname = 'lib'\n")
    lookup = find_environment(nested / "lib.py")
    assert lookup.environment is None
    assert lookup.project_dir == nested
    assert lookup.missing is not None and lookup.missing.project_dir == nested
    message = no_environment_message(nested / "lib.py", "file:///x", lookup)
    assert "no .venv found" in message and f"cd {nested} && uv sync" in message
    assert str(repo / ".venv") not in message.split("Looked at")[0]


def test_setup_py_and_manager_files_also_make_a_project(repo: Path) -> None:
    fake_venv(repo / ".venv")
    for name in ("setup.py", "Pipfile", "pixi.toml", "environment.yml", "uv.lock"):
        nested = repo / name.replace(".", "_")
        nested.mkdir()
        (nested / name).write_text("")
        lookup = find_environment(nested / "m.py")
        assert lookup.environment is None and lookup.project_dir == nested, name


def test_a_nested_project_installed_in_editable_mode_uses_the_root_environment(
    repo: Path,
) -> None:
    """pip install -e / a path dependency: the root environment has the project installed."""
    root = fake_venv(repo / ".venv")
    nested = repo / "packages" / "lib"
    (nested / "src").mkdir(parents=True)
    (nested / "pyproject.toml").write_text("[project]\nname = 'lib'\n")
    dist = site_packages(root) / "lib-1.0.dist-info"
    dist.mkdir()
    (dist / "direct_url.json").write_text(
        f'{{"url": "{nested.as_uri()}", "dir_info": {{"editable": true}}}}'
    )
    found = env_of(nested / "src" / "lib.py")
    assert found.path == root and found.project_dir == repo
    assert "editable" in found.found_by


def test_a_pth_file_naming_the_project_counts_as_installed(repo: Path) -> None:
    root = fake_venv(repo / ".venv")
    nested = repo / "tools"
    (nested / "src").mkdir(parents=True)
    (nested / "setup.py").write_text("")
    assert find_environment(nested / "t.py").environment is None
    (site_packages(root) / "_tools.pth").write_text(f"{nested / 'src'}\n")
    assert env_of(nested / "t.py").path == root


def test_a_venv_directory_without_pyvenv_cfg_is_an_error_not_a_reason_to_go_up(
    repo: Path,
) -> None:
    fake_venv(repo / ".venv")
    broken = repo / "api" / ".venv"
    broken.mkdir(parents=True)
    lookup = find_environment(repo / "api" / "x.py")
    assert lookup.environment is None
    assert lookup.missing is not None and "no pyvenv.cfg" in lookup.missing.reason


def test_a_conda_style_prefix_named_venv_is_an_environment(repo: Path) -> None:
    prefix = fake_conda(repo / ".venv")
    found = env_of(repo / "x.py")
    assert found.path == prefix and not found.is_venv
    assert found.python_version() is not None


# -- bounds -----------------------------------------------------------------------------------


def test_the_search_stops_at_the_git_toplevel(tmp_path: Path, repo: Path) -> None:
    fake_venv(tmp_path / ".venv")  # above the repository: never used
    (repo / "src").mkdir()
    lookup = find_environment(repo / "src" / "main.py")
    assert lookup.environment is None and lookup.missing is None
    assert lookup.boundary == repo and lookup.searched == (repo / "src", repo)
    message = no_environment_message(repo / "src" / "main.py", "file:///x", lookup)
    assert "no .venv found" in message and "(the git toplevel)" in message
    assert f"cd {repo / 'src'} && uv sync" in message


def test_a_workspace_folder_above_the_repository_bounds_the_search(
    tmp_path: Path, repo: Path
) -> None:
    shared = fake_venv(tmp_path / ".venv")
    (repo / "src").mkdir()
    assert find_environment(repo / "src" / "m.py").environment is None
    assert env_of(repo / "src" / "m.py", roots=[tmp_path]).path == shared


def test_a_workspace_folder_inside_the_repository_still_reaches_its_root(repo: Path) -> None:
    """Claude Code started in a subdirectory of a monorepo whose .venv is at the top."""
    venv = fake_venv(repo / ".venv")
    (repo / "services" / "api").mkdir(parents=True)
    found = env_of(repo / "services" / "api" / "m.py", roots=[repo / "services" / "api"])
    assert found.path == venv


def test_outside_git_a_workspace_folder_bounds_the_search(tmp_path: Path, home: Path) -> None:
    fake_venv(tmp_path / ".venv")
    project = tmp_path / "work" / "proj"
    project.mkdir(parents=True)
    lookup = find_environment(project / "m.py", roots=[project])
    assert lookup.environment is None and lookup.boundary == project
    assert "(the workspace folder)" in no_environment_message(project / "m.py", "u", lookup)


# -- symlinks ---------------------------------------------------------------------------------


def test_two_spellings_of_one_environment_have_one_key(tmp_path: Path, repo: Path) -> None:
    fake_venv(repo / "services" / "api" / ".venv")
    (repo / "services" / "api" / "src").mkdir()
    link = repo / "svc"
    link.symlink_to(repo / "services")
    via_link = env_of(link / "api" / "src" / "m.py")
    direct = env_of(repo / "services" / "api" / "src" / ".." / "src" / "m.py")
    assert via_link.key == direct.key == (repo / "services" / "api" / ".venv").resolve()
    assert via_link.project_dir == link / "api"  # as the client spells it
    assert direct.project_dir == repo / "services" / "api"


def test_a_symlinked_venv_does_not_move_the_project(tmp_path: Path, repo: Path) -> None:
    """Issue 8: the project is the directory holding the .venv entry, not the link's target's
    parent."""
    real = fake_venv(tmp_path / "elsewhere" / "envs" / "api")
    api = repo / "services" / "api"
    api.mkdir(parents=True)
    (api / ".venv").symlink_to(real)
    found = env_of(api / "m.py")
    assert found.project_dir == api
    assert found.path == api / ".venv" and found.key == real.resolve()
    assert "symlink" in found.found_by


def test_a_broken_venv_symlink_is_an_error(tmp_path: Path, repo: Path) -> None:
    (repo / ".venv").symlink_to(tmp_path / "gone")
    lookup = find_environment(repo / "m.py")
    assert lookup.environment is None
    assert lookup.missing is not None and "does not exist" in lookup.missing.reason


def test_a_file_reached_through_a_symlink_out_of_the_repository_starts_nothing_outside(
    tmp_path: Path, repo: Path
) -> None:
    outside = tmp_path / "outside" / "proj"
    fake_venv(outside / ".venv")
    (repo / "vendored").symlink_to(outside)
    lookup = find_environment(repo / "vendored" / "m.py")
    assert lookup.environment is None
    assert lookup.missing is not None and lookup.missing.manager == "symlink"
    assert str(outside) in lookup.missing.reason and str(repo) in lookup.missing.reason
    # opened from where it really is, it has its environment
    assert env_of(outside / "m.py").project_dir == outside


# -- a file inside an environment ------------------------------------------------------------------


def test_a_library_file_inside_an_environment_belongs_to_it(tmp_path: Path, home: Path) -> None:
    cache_env = fake_venv(home / ".cache" / "pypoetry" / "virtualenvs" / "p-AbCdEfGh-py3.11")
    library = site_packages(cache_env) / "shapes"
    library.mkdir()
    found = env_of(library / "__init__.py")
    assert found.path == cache_env and found.key == cache_env.resolve()


# -- PEP 832 redirect files and explicit configuration ---------------------------------------------


@pytest.mark.parametrize("newline", ["", "\n", "\r\n"])
def test_a_pep_832_redirect_file_points_at_the_environment(
    tmp_path: Path, repo: Path, newline: str
) -> None:
    target = fake_venv(repo / ".envs" / "dev")
    (repo / ".venv").write_text(f".envs/dev{newline}")
    found = env_of(repo / "m.py")
    assert (found.path, found.manager, found.project_dir) == (target, "pep832", repo)
    absolute = fake_venv(tmp_path / "abs-env")
    (repo / ".venv").write_text(str(absolute))
    assert env_of(repo / "m.py").path == absolute


@pytest.mark.parametrize("content", ["", "nowhere\n", "a\nb\n"])
def test_a_redirect_file_to_no_environment_is_an_error(repo: Path, content: str) -> None:
    (repo / ".venv").write_text(content)
    lookup = find_environment(repo / "m.py")
    assert lookup.environment is None
    assert lookup.missing is not None and lookup.missing.manager == "pep832"
    assert str(repo / ".venv") in lookup.missing.message(repo / "m.py")


def rule(path: str, base: Path, environment: str, **kwargs: Any) -> ProjectRule:
    return ProjectRule(path, base, environment=environment, source="test rule", **kwargs)


def test_explicit_configuration_wins_over_a_redirect_file_and_a_directory(
    tmp_path: Path, repo: Path
) -> None:
    chosen = fake_venv(repo / "api" / "envs" / "chosen")
    fake_venv(repo / "api" / ".venv")
    rules = [rule("api", repo, "envs/chosen")]
    found = env_of(repo / "api" / "m.py", rules=rules)
    assert (found.path, found.manager, found.project_dir) == (chosen, "config", repo / "api")
    assert "test rule" in found.found_by
    # without the rule the directory wins; a redirect file likewise loses to the rule
    assert env_of(repo / "api" / "m.py").manager == "venv"


def test_a_rule_makes_a_directory_a_project_and_may_name_the_interpreter(repo: Path) -> None:
    env = fake_venv(repo / "envs" / "tools")
    (repo / "tools").mkdir()
    rules = [rule("tools", repo, "../envs/tools/bin/python")]
    found = env_of(repo / "tools" / "t.py", rules=rules)
    assert found.path == env and found.project_dir == repo / "tools"


def test_environment_none_refuses_even_with_a_venv(repo: Path) -> None:
    fake_venv(repo / "api" / ".venv")
    lookup = find_environment(repo / "api" / "m.py", rules=[rule("api", repo, "none")])
    assert lookup.environment is None
    assert lookup.missing is not None and 'environment = "none"' in lookup.missing.reason


def test_a_repository_rule_cannot_lead_outside_the_repository(tmp_path: Path, repo: Path) -> None:
    outside = fake_venv(tmp_path / "outside-env")
    (repo / "api").mkdir()
    (repo / "api" / "link").symlink_to(outside)
    confined = [rule("api", repo, "link", confine=repo)]
    lookup = find_environment(repo / "api" / "m.py", rules=confined)
    assert lookup.environment is None
    assert lookup.missing is not None and "outside the repository" in lookup.missing.reason
    # the same rule from the user's own config may
    assert env_of(repo / "api" / "m.py", rules=[rule("api", repo, "link")]).key == outside


def test_the_environment_comes_from_the_first_matching_rule_that_names_one(repo: Path) -> None:
    """Rules merge: a rule that only picks a backend does not hide a later rule's
    environment."""
    fake_venv(repo / "api" / ".venv")
    other = fake_venv(repo / "other")
    fake_venv(repo / "third")
    rules = [
        ProjectRule("api", repo, backend="ty"),
        rule("api", repo, "../other"),
        rule("api", repo, "../third"),
    ]
    assert env_of(repo / "api" / "m.py", rules=rules).path == other


def test_a_rule_naming_no_environment_is_an_error(repo: Path) -> None:
    (repo / "api").mkdir()
    lookup = find_environment(repo / "api" / "m.py", rules=[rule("api", repo, "missing-env")])
    assert lookup.missing is not None and lookup.missing.manager == "config"
    assert "not a Python environment" in lookup.missing.reason


# -- freshness and cost of the cache -------------------------------------------------------------


def test_a_late_environment_is_found_by_the_next_lookup(repo: Path) -> None:
    target = repo / "api" / "main.py"
    (repo / "api").mkdir()
    (repo / "api" / "pyproject.toml").write_text(PROJECT)
    assert find_environment(target).environment is None
    fake_venv(repo / "api" / ".venv")
    assert env_of(target).path == repo / "api" / ".venv"


def test_a_deleted_environment_is_dropped_and_a_recreated_one_has_a_new_identity(
    repo: Path,
) -> None:
    venv = fake_venv(repo / ".venv")
    found = env_of(repo / "a.py")
    before = found.identity()
    assert env_of(repo / "a.py") == found  # cached
    (venv / "pyvenv.cfg").unlink()
    assert found.identity() is None
    lookup = find_environment(repo / "a.py")
    assert lookup.environment is None  # the cached answer was not trusted
    (venv / "pyvenv.cfg").write_text("version = 3.12.1\n")
    assert found.identity() not in (None, before)
    assert env_of(repo / "a.py").python_version() == "3.12.1"


def test_a_venv_created_closer_to_the_file_replaces_the_cached_one(repo: Path) -> None:
    fake_venv(repo / ".venv")
    (repo / "api").mkdir()
    assert env_of(repo / "api" / "m.py").path == repo / ".venv"
    fake_venv(repo / "api" / ".venv")
    assert env_of(repo / "api" / "m.py").path == repo / "api" / ".venv"


def test_a_cached_lookup_is_a_few_stat_calls_and_nothing_else(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the request path: no listing, no read, no parse; one stat per observed path."""
    fake_venv(repo / ".venv")
    (repo / "pyproject.toml").write_text(PROJECT)
    deep = repo / "src" / "pkg"
    deep.mkdir(parents=True)
    settle(repo)
    first = find_environment(deep / "m.py")
    calls: list[str] = []
    real_stat, real_listdir = os.stat, os.listdir

    def counting_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        calls.append(f"stat {path}")
        return real_stat(path, *args, **kwargs)

    def no_listdir(path: Any) -> list[str]:
        calls.append(f"listdir {path}")
        return real_listdir(path)

    monkeypatch.setattr(os, "stat", counting_stat)
    monkeypatch.setattr(os, "listdir", no_listdir)
    again = find_environment(deep / "m.py")
    monkeypatch.undo()
    assert again is first
    assert not [c for c in calls if not c.startswith("stat")], calls
    assert len(calls) <= 8, calls


def test_an_observation_made_right_after_a_change_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    seen = _fs.Seen()
    seen.note(path)
    assert seen.racy
    os.utime(path, (1_000_000_000, 1_000_000_000))
    settled = _fs.Seen()
    settled.note(path)
    assert not settled.racy


# -- URIs, messages, the fallback ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///home/me/a.py", "/home/me/a.py"),
        ("file://localhost/home/me/a.py", "/home/me/a.py"),
        ("file://LOCALHOST/home/me/a%20b.py", "/home/me/a b.py"),
        ("file:/home/me/a.py", "/home/me/a.py"),
        ("file://server/share/a.py", None),
        ("file:relative.py", None),
        ("file:///home/me/%00a.py", None),
        ("untitled:Untitled-1", None),
        ("vscode-notebook-cell:/a.ipynb#W1", None),
    ],
)
def test_uri_to_path(uri: str, expected: str | None) -> None:
    path = uri_to_path(uri)
    assert (str(path) if path is not None else None) == expected


def test_a_document_that_is_not_a_file_is_told_so() -> None:
    message = no_environment_message(None, "untitled:Untitled-1", None)
    assert "untitled:Untitled-1" in message and "not a file" in message


def test_fallback_is_the_project_at_the_git_toplevel_then_at_cwd(repo: Path) -> None:
    cwd = repo / "services" / "api"
    cwd.mkdir(parents=True)
    assert fallback_environment(cwd) is None
    local = fake_venv(cwd / ".venv")
    found = fallback_environment(cwd)
    assert found is not None and found.path == local
    top = fake_venv(repo / ".venv")
    found = fallback_environment(cwd)
    assert found is not None and found.path == top


def test_site_packages_include_directories_named_by_pth_files(tmp_path: Path) -> None:
    prefix = fake_venv(tmp_path / "env")
    site = site_packages(prefix)
    (tmp_path / "src").mkdir()
    (site / "a.pth").write_text(f"# comment\n{tmp_path / 'src'}\nimport os; print(1)\nmissing\n")
    found = Environment(prefix)
    assert found.site_packages() == (site, tmp_path / "src")


def test_a_library_file_in_a_pixi_environment_belongs_to_the_pixi_project(repo: Path) -> None:
    prefix = fake_conda(repo / ".pixi" / "envs" / "default")
    (repo / "pixi.toml").write_text("[workspace]\nname = 'p'\n")
    library = site_packages(prefix) / "numpy"
    library.mkdir()
    found = env_of(library / "__init__.py")
    assert (found.path, found.project_dir, found.manager) == (prefix, repo, "pixi")
    assert found.key == env_of(repo / "app.py").key  # the project's own backend answers


def test_lib64_linked_to_lib_is_one_site_packages(tmp_path: Path) -> None:
    prefix = fake_venv(tmp_path / "env")
    (prefix / "lib64").symlink_to("lib")
    assert Environment(prefix).site_packages() == (site_packages(prefix),)


def test_a_project_template_is_not_a_project(repo: Path) -> None:
    """Files of a template (`name = "$pkg"`, a `{{ cookiecutter.x }}` directory) belong to the
    project around them, not to a "project" that has no environment."""
    (repo / "pyproject.toml").write_text("[project]\nname = 'top'\n")
    top = fake_venv(repo / ".venv")
    template = repo / "templates" / "$pkg"
    template.mkdir(parents=True)
    (template / "pyproject.toml").write_text('[project]\nname = "$pkg"\n')
    lookup = find_environment(template / "src" / "m.py")
    assert lookup.environment is not None and lookup.environment.path == top
    assert not is_project(template)
    cookie = repo / "{{ cookiecutter.slug }}"
    cookie.mkdir()
    (cookie / "pyproject.toml").write_text("[project]\nname = 'real-looking'\n")
    assert not is_project(cookie)
    named = repo / "named"
    named.mkdir()
    (named / "pyproject.toml").write_text('[tool.poetry]\nname = "${name}"\n')
    assert not is_project(named)
    (named / "pyproject.toml").write_text('[project]\nname = "dollar-free"\n')
    assert is_project(named)  # a real project next to them is still one


def test_a_refused_repository_rule_names_itself_and_a_user_rule_gives_the_environment(
    tmp_path: Path, repo: Path
) -> None:
    """The advice for a refused rule ("set it in your user config") works: the user's rule
    comes after the repository's and gives the environment; without it, the file's error names
    the refused rule, its file:line and why (not "no .venv found")."""
    from typemux_lsp.cli import build_parser
    from typemux_lsp.config import load_settings

    outside = fake_venv(tmp_path / "elsewhere" / "env")
    (repo / "api").mkdir()
    (repo / "api" / "pyproject.toml").write_text(PROJECT)
    (repo / "pyproject.toml").write_text(
        "[project]\nname = 'top'\n\n"
        f'[[tool.typemux-lsp.projects]]\npath = "api"\nenvironment = "{outside}"\n'
    )
    alone = load_settings(build_parser().parse_args([]), {}, repo).settings.projects
    lookup = find_environment(repo / "api" / "m.py", rules=alone)
    assert lookup.environment is None and lookup.missing is not None
    message = lookup.missing.message(repo / "api" / "m.py")
    assert f"The rule at project config {repo / 'pyproject.toml'}:4 (path = 'api')" in message
    assert "outside the repository" in message and "user config" in message
    assert "no .venv found" not in message
    user = tmp_path / "user.toml"
    user.write_text(f'[[projects]]\npath = "api"\nenvironment = "{outside}"\n')
    merged = load_settings(build_parser().parse_args(["--config", str(user)]), {}, repo)
    found = env_of(repo / "api" / "m.py", rules=merged.settings.projects)
    assert found.path == outside and "user config" in found.found_by


def test_a_rule_leading_out_through_a_symlink_is_passed_over_for_a_later_one(
    tmp_path: Path, repo: Path
) -> None:
    outside = fake_venv(tmp_path / "outside-env")
    (repo / "api").mkdir()
    (repo / "api" / "link").symlink_to(outside)
    rules = [rule("api", repo, "link", confine=repo), rule("api", repo, str(outside))]
    assert env_of(repo / "api" / "m.py", rules=rules).path == outside
