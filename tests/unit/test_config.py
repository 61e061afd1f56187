"""Settings: each level beats the next, per field; per-project rules; mistakes are reported with
their line and never cost the valid parts of the configuration."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from typemux_lsp.backends import KINDS
from typemux_lsp.cli import build_parser, setup_logging
from typemux_lsp.config import (
    KeyLines,
    LoadedSettings,
    ProjectRule,
    Settings,
    env_var,
    load_settings,
    problems_summary,
)

# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_real_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the developer's own ~/.config/typemux-lsp/config.toml."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / "services" / "api").mkdir(parents=True)
    return root.resolve()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(
    repo: Path,
    *,
    project: str | None = None,
    user: str | None = None,
    env: dict[str, str] | None = None,
    flags: list[str] | None = None,
    cwd: Path | None = None,
) -> LoadedSettings:
    """Load settings for a session started in `cwd` (default: the repository)."""
    if project is not None:
        write(repo / "pyproject.toml", project)
    environ = dict(env or {})
    argv = list(flags or [])
    if user is not None:
        argv += ["--config", str(write(repo.parent / "user" / "config.toml", user))]
    return load_settings(build_parser().parse_args(argv), environ, cwd or repo)


# -- precedence --------------------------------------------------------------------------------

#: per field, a distinct valid value for each level: user, project, env, flag (None: the level
#: cannot set it)
LEVEL_VALUES: dict[str, tuple[Any, Any, Any, Any]] = {
    "backend": ("pyrefly", "ty", "basedpyright", "pyright"),
    "max_backends": (2, 3, 4, 5),
    "backend_ttl": (10.0, 20.0, 30.0, 40.0),
    "warmup_timeout": (1.0, 3.0, 4.0, 5.0),
    "start_timeout": (11.0, 12.0, 13.0, 14.0),
    "request_timeout": (21.0, 22.0, 23.0, 24.0),
    "freshness": (False, True, False, True),
    "freshness_debounce_ms": (100, 200, 400, 500),
    "log_file": ("/tmp/user.log", None, "/tmp/env.log", "/tmp/flag.log"),
    "log_level": ("debug", "warning", "error", "trace"),
    "no_venv_diagnostic": (False, True, False, True),
    "event_loop": ("uvloop", "asyncio", "uvloop", "asyncio"),
    "backend_sharing": ("all", "none", "pyright,ty", "pyrefly"),
    "max_backend_memory": (100.0, 200.0, 300.0, 400.0),
    "backend_command": ("user-cmd --x", None, "env-cmd", "flag-cmd"),
    "backend_settings": ({"u": {"a": 1}}, {"p": 1}, {"e": 1}, {"f": 1}),
    "projects": (
        [{"path": "user/*"}],
        [{"path": "project/*", "backend": "ty"}],
        [{"path": "env/*"}],
        [{"path": "flag/*"}],
    ),
}

LEVELS = ("user", "project", "env", "flag")


def test_every_setting_has_a_value_per_level() -> None:
    assert set(LEVEL_VALUES) == set(Settings.names())


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def _env(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _comparable(name: str, value: Any) -> Any:
    if name == "projects":
        return [(rule.path, rule.backend) for rule in value]
    return value


@pytest.mark.parametrize("name", Settings.names())
@pytest.mark.parametrize("top", [*LEVELS, "default"])
def test_each_level_beats_the_next(repo: Path, name: str, top: str) -> None:
    """Set `name` at `top` and every level below it: `top` must win, with its source."""
    values = dict(zip(LEVELS, LEVEL_VALUES[name], strict=True))
    given = LEVELS[: LEVELS.index(top) + 1] if top != "default" else ()
    key = name.replace("_", "-")
    user = f"{key} = {_toml(values['user'])}\n" if "user" in given else ""
    project = "[project]\nname = 'x'\n"
    if "project" in given and values["project"] is not None:
        project += f"\n[tool.typemux-lsp]\n{key} = {_toml(values['project'])}\n"
    env = {env_var(name): _env(values["env"])} if "env" in given else {}
    flags = []
    if "flag" in given:
        raw = values["flag"]
        text = json.dumps(raw) if isinstance(raw, dict | list) else _env(raw)
        flags = [f"--{key}", "true" if raw is True else text]

    loaded = load(repo, project=project, user=user, env=env, flags=flags)

    assert loaded.problems == []
    winner = next((level for level in reversed(given) if values[level] is not None), "default")
    source = loaded.sources[name]
    if winner == "default":
        assert source == "default"
        if name == "backend":  # "auto", resolved: all four are installed with the test extra
            assert loaded.settings.backend == "pyright", loaded.backend_reason
            assert loaded.backend_reason and "4 backends installed" in loaded.backend_reason
            return
        assert getattr(loaded.settings, name) == getattr(Settings(), name)
        return
    level_source = {
        "user": f"user config {repo.parent / 'user' / 'config.toml'}:1",
        "project": f"project config {repo / 'pyproject.toml'}:5",
        "env": f"env {env_var(name)}",
        "flag": f"flag --{key}",
    }
    if name == "projects":  # rules merge: every level's apply, the highest level's first
        levels = [level for level in reversed(given) if values[level] is not None]
        assert source == ", then ".join(level_source[level] for level in levels)
        merged = [rule for level in levels for rule in _rules(values[level])]
        assert _comparable(name, loaded.settings.projects) == _comparable(name, merged)
    else:
        assert source == level_source[winner]
        assert getattr(loaded.settings, name) == values[winner]
    # Nothing leaks into the other fields.
    for other in Settings.names():
        if other != name:
            assert loaded.sources[other] == "default"


def _rules(raw: list[dict[str, Any]]) -> list[ProjectRule]:
    return [ProjectRule(r["path"], Path("/"), r.get("backend")) for r in raw]


def test_user_config_is_found_in_the_user_config_directory(repo: Path, tmp_path: Path) -> None:
    config = write(tmp_path / "xdg" / "typemux-lsp" / "config.toml", 'backend = "ty"\n')
    loaded = load_settings(None, {}, repo)
    assert loaded.settings.backend == "ty"
    assert loaded.sources["backend"] == f"user config {config}:1"
    assert [(f.level, f.found, f.explicit) for f in loaded.config_files] == [
        ("user", True, False),
        ("project", False, False),
    ]


def test_config_env_points_at_another_user_config(repo: Path, tmp_path: Path) -> None:
    other = write(tmp_path / "elsewhere.toml", "max-backends = 3\n")
    loaded = load_settings(None, {"TYPEMUX_LSP_CONFIG": str(other)}, repo)
    assert loaded.settings.max_backends == 3
    assert loaded.problems == []


def test_a_missing_explicit_config_is_a_problem(repo: Path, tmp_path: Path) -> None:
    loaded = load(repo, flags=["--config", str(tmp_path / "nope.toml")])
    (problem,) = loaded.problems
    assert problem.file == str(tmp_path / "nope.toml")
    assert "does not exist" in problem.message


def test_project_config_is_read_at_the_git_toplevel(repo: Path) -> None:
    write(repo / "pyproject.toml", "[tool.typemux-lsp]\nbackend = 'ty'\n")
    write(repo / "services" / "api" / "pyproject.toml", "[tool.typemux-lsp]\nbackend = 'pyrefly'\n")
    loaded = load_settings(None, {}, repo / "services" / "api")
    assert loaded.settings.backend == "ty"
    assert loaded.git_toplevel == repo


def test_snake_case_keys_are_accepted(repo: Path) -> None:
    loaded = load(repo, project="[tool.typemux-lsp]\nmax_backends = 3\nwarmup-timeout = 1\n")
    assert (loaded.settings.max_backends, loaded.settings.warmup_timeout) == (3, 1.0)
    assert loaded.problems == []


def test_integers_are_accepted_for_seconds(repo: Path) -> None:
    loaded = load(repo, project="[tool.typemux-lsp]\nbackend-ttl = 60\n")
    assert loaded.settings.backend_ttl == 60.0
    assert isinstance(loaded.settings.backend_ttl, float)


def test_empty_environment_variables_count_as_unset(repo: Path) -> None:
    loaded = load(repo, user="backend = 'ty'\n", env={"TYPEMUX_LSP_BACKEND": ""})
    assert loaded.settings.backend == "ty"
    assert loaded.problems == []


def test_backend_settings_table_reaches_the_settings(repo: Path) -> None:
    loaded = load(
        repo,
        project="[tool.typemux-lsp.backend-settings.python.analysis]\n"
        'typeCheckingMode = "strict"\n',
    )
    assert loaded.settings.backend_settings == {
        "python": {"analysis": {"typeCheckingMode": "strict"}}
    }
    assert loaded.sources["backend_settings"] == f"project config {repo / 'pyproject.toml'}:1"


# -- per-project rules -------------------------------------------------------------------------

RULES = """\
[tool.typemux-lsp]
backend = "basedpyright"

[tool.typemux-lsp.backend-settings.python.analysis]
typeCheckingMode = "strict"
extraPaths = ["lib"]

[[tool.typemux-lsp.projects]]
path = "services/legacy-*"
backend = "pyright"
settings = { python = { analysis = { typeCheckingMode = "basic" } } }

[[tool.typemux-lsp.projects]]
path = "services/*"
backend = "ty"

[[tool.typemux-lsp.projects]]
path = "tools/**"
settings = { ty = { x = 1 } }

[[tool.typemux-lsp.projects]]
path = "."
backend = "pyrefly"
"""


def test_first_matching_rule_wins_and_merges_its_settings(repo: Path) -> None:
    settings = load(repo, project=RULES).settings
    kind, merged = settings.backend_for(repo / "services" / "legacy-billing")
    assert kind == "pyright"
    assert merged == {"python": {"analysis": {"typeCheckingMode": "basic", "extraPaths": ["lib"]}}}
    kind, merged = settings.backend_for(repo / "services" / "api")
    assert kind == "ty"
    assert merged["python"]["analysis"]["typeCheckingMode"] == "strict"


def test_a_rule_without_backend_keeps_the_global_one(repo: Path) -> None:
    settings = load(repo, project=RULES).settings
    assert settings.backend_for(repo / "tools" / "a" / "b") == (
        "basedpyright",
        {
            "python": {"analysis": {"typeCheckingMode": "strict", "extraPaths": ["lib"]}},
            "ty": {"x": 1},
        },
    )


def test_dot_matches_the_base_directory_only(repo: Path) -> None:
    settings = load(repo, project=RULES).settings
    assert settings.backend_for(repo)[0] == "pyrefly"
    assert settings.backend_for(repo / "other")[0] == "basedpyright"


def test_star_stays_in_one_segment(repo: Path) -> None:
    settings = load(repo, project=RULES).settings
    assert settings.backend_for(repo / "services" / "api" / "sub")[0] == "basedpyright"


def test_projects_outside_the_base_do_not_match(repo: Path, tmp_path: Path) -> None:
    settings = load(repo, project=RULES).settings
    assert settings.backend_for(tmp_path / "services" / "api")[0] == "basedpyright"


def test_absolute_globs_match_anywhere(repo: Path, tmp_path: Path) -> None:
    user = f'[[projects]]\npath = "{tmp_path.resolve()}/elsewhere/*"\nbackend = "ty"\n'
    settings = load(repo, user=user).settings
    assert settings.backend_for(tmp_path / "elsewhere" / "x")[0] == "ty"


def test_user_rules_are_relative_to_the_git_toplevel_of_the_session(repo: Path) -> None:
    user = '[[projects]]\npath = "services/*"\nbackend = "ty"\n'
    settings = load(repo, user=user, cwd=repo / "services").settings
    assert settings.projects[0].base == repo
    assert settings.backend_for(repo / "services" / "api")[0] == "ty"


def test_no_rule_gives_the_global_backend_and_a_copy_of_its_settings(repo: Path) -> None:
    settings = load(
        repo, project="[tool.typemux-lsp.backend-settings]\npython = { a = 1 }\n"
    ).settings
    kind, merged = settings.backend_for(repo / "services" / "api")
    assert (kind, merged) == ("pyright", {"python": {"a": 1}})
    merged["python"]["a"] = 2
    assert settings.backend_settings == {"python": {"a": 1}}


def test_rules_from_the_environment_are_json(repo: Path) -> None:
    env = {"TYPEMUX_LSP_PROJECTS": '[{"path": "services/*", "backend": "pyrefly"}]'}
    settings = load(repo, env=env).settings
    assert settings.backend_for(repo / "services" / "api")[0] == "pyrefly"


# -- mistakes ----------------------------------------------------------------------------------


def test_bad_toml_is_reported_with_its_line_and_other_levels_still_apply(repo: Path) -> None:
    project = '[tool.typemux-lsp]\nbackend = "ty"\nmax-backends = 3 3\n'
    loaded = load(
        repo, project=project, user="log-level = 'debug'\n", env={"TYPEMUX_LSP_MAX_BACKENDS": "5"}
    )
    (problem,) = loaded.problems
    assert problem.file == str(repo / "pyproject.toml")
    assert problem.line == 3
    assert "not valid TOML" in problem.message
    assert "line 3" in problem.message
    # The broken file contributes nothing; the other levels do.
    assert loaded.settings.backend == "pyright"
    assert loaded.settings.log_level == "debug"
    assert loaded.settings.max_backends == 5


def test_unknown_key_has_its_line_and_a_suggestion(repo: Path) -> None:
    project = "[project]\nname = 'x'\n\n[tool.typemux-lsp]\nbackend = 'ty'\nmax-backend = 3\n"
    loaded = load(repo, project=project)
    (problem,) = loaded.problems
    assert (problem.file, problem.line) == (str(repo / "pyproject.toml"), 6)
    assert '"max-backend"' in problem.message
    assert '"max-backends"' in problem.fix
    assert loaded.settings.backend == "ty"  # the valid key next to it is used


def test_wrong_type_falls_back_to_the_next_level(repo: Path) -> None:
    loaded = load(
        repo,
        project='[tool.typemux-lsp]\n\nmax-backends = "4"\nlog-level = "info"\n',
        user="max-backends = 6\n",
    )
    (problem,) = loaded.problems
    assert problem.line == 3
    assert "string" in problem.message and "whole number" in problem.message
    assert "max-backends = 8" in problem.fix
    assert loaded.settings.max_backends == 6
    assert loaded.sources["max_backends"].startswith("user config ")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('backend = "mypy"', "not one of"),
        ("max-backends = 0", "out of range"),
        ("start-timeout = 0", "greater than 0"),
        ("no-venv-diagnostic = 1", "true or false"),
        ("backend-settings = 3", "a table"),
        ("max-backends = true", "a boolean"),
        ('log-level = "verbose"', "not one of"),
        ('backend-sharing = "pyright,mypy"', "no backend kind: mypy"),
        ('backend-sharing = ""', "names nothing"),
        ("max-backend-memory = -1", "out of range"),
    ],
)
def test_invalid_values_are_reported_and_ignored(repo: Path, line: str, expected: str) -> None:
    loaded = load(repo, project=f"[tool.typemux-lsp]\n{line}\n")
    (problem,) = loaded.problems
    assert problem.line == 2
    assert expected in problem.message
    assert problem.fix
    assert all(source == "default" for source in loaded.sources.values())


@pytest.mark.parametrize(
    ("value", "kinds"),
    [
        ("none", set()),
        ("all", {"pyright", "basedpyright", "ty", "pyrefly"}),
        ("pyright, ty", {"pyright", "ty"}),
        ("auto", {n for n, k in KINDS.items() if k.shares_by_default}),
        ("auto,ty", {n for n, k in KINDS.items() if k.shares_by_default} | {"ty"}),
    ],
)
def test_backend_sharing_names_the_kinds_that_share(
    repo: Path, value: str, kinds: set[str]
) -> None:
    loaded = load(repo, env={"TYPEMUX_LSP_BACKEND_SHARING": value})
    assert not loaded.problems
    assert loaded.settings.sharing_kinds() == kinds


def test_unknown_backend_suggests_the_close_one(repo: Path) -> None:
    (problem,) = load(repo, project='[tool.typemux-lsp]\nbackend = "pyrite"\n').problems
    assert '"pyright"' in problem.fix


def test_invalid_rules_are_dropped_one_by_one(repo: Path) -> None:
    project = """\
[[tool.typemux-lsp.projects]]
path = "a/*"
backend = "mypy"

[[tool.typemux-lsp.projects]]
path = "b/*"
colour = "red"

[[tool.typemux-lsp.projects]]
backend = "ty"

[[tool.typemux-lsp.projects]]
path = "c/*"
backend = "ty"

[[tool.typemux-lsp.projects]]
path = 3
"""
    loaded = load(repo, project=project)
    assert [rule.path for rule in loaded.settings.projects] == ["c/*"]
    assert loaded.settings.projects[0].source == f"project config {repo / 'pyproject.toml'}:12"
    lines = [(p.line, p.message) for p in loaded.problems]
    assert [line for line, _ in lines] == [3, 7, 9, 17]
    assert '"mypy"' in lines[0][1]
    assert "colour" in lines[1][1]
    assert "no path" in lines[2][1]
    assert "path = 3 is a whole number, expected a string" in lines[3][1]


def test_a_project_cannot_choose_the_backend_command_or_log_file(repo: Path) -> None:
    project = '[tool.typemux-lsp]\nbackend-command = "./evil.sh"\nlog-file = "/tmp/x"\n'
    loaded = load(repo, project=project, user='backend-command = "wrapper"\n')
    assert loaded.settings.backend_command == "wrapper"
    assert loaded.settings.log_file is None
    assert [p.line for p in loaded.problems] == [2, 3]
    assert all("cannot be set in a project" in p.message for p in loaded.problems)


def test_rules_name_environments_and_a_repository_only_its_own(repo: Path) -> None:
    project = """\
[[tool.typemux-lsp.projects]]
path = "services/api"
environment = ".venv-api"

[[tool.typemux-lsp.projects]]
path = "services/worker"
environment = "none"

[[tool.typemux-lsp.projects]]
path = "services/evil"
environment = "/opt/somewhere/env"

[[tool.typemux-lsp.projects]]
path = "services/home"
environment = "~/envs/x"

[[tool.typemux-lsp.projects]]
path = "services/empty"
environment = ""

[[tool.typemux-lsp.projects]]
path = "services/typed"
environment = false
"""
    loaded = load(repo, project=project)
    rules = loaded.settings.projects
    assert [(r.path, r.environment, r.confine, r.refused is not None) for r in rules] == [
        ("services/api", ".venv-api", repo, False),
        ("services/worker", "none", repo, False),
        # kept, refused: their files get an error naming them, a user rule may give theirs
        ("services/evil", "/opt/somewhere/env", repo, True),
        ("services/home", "~/envs/x", repo, True),
    ]
    assert rules[0].to_json()["environment"] == ".venv-api"
    assert "outside the repository" in (rules[2].to_json()["environmentRefused"] or "")
    problems = [(p.line, p.message) for p in loaded.problems]
    assert [line for line, _ in problems] == [11, 15, 19, 23]
    assert "outside the repository" in problems[0][1] and "outside" in problems[1][1]
    assert "Its environment is not used" in problems[0][1]
    assert "user config" in loaded.problems[0].fix
    assert "empty environment" in problems[2][1]
    assert "environment = false" in problems[3][1]
    # the user's own config may name any environment; its rules are not confined
    user = '[[projects]]\npath = "services/api"\nenvironment = "/opt/somewhere/env"\n'
    mine = load(repo, user=user, project="[project]\nname='x'\n").settings.projects
    assert [(r.environment, r.confine) for r in mine] == [("/opt/somewhere/env", None)]


def test_user_rules_still_apply_in_a_repository_that_has_rules(repo: Path) -> None:
    """Rules merge: the repository's first, then the user's; each key from the first matching
    rule that sets it, settings merged (earlier rules win)."""
    project = """\
[[tool.typemux-lsp.projects]]
path = "services/*"
settings = { python = { analysis = { typeCheckingMode = "basic" } } }
"""
    user = """\
[[projects]]
path = "**"
backend = "ty"
settings = { python = { analysis = { typeCheckingMode = "strict", extraPaths = ["x"] } } }

[[projects]]
path = "services/api"
environment = "/opt/envs/api"
"""
    loaded = load(repo, project=project, user=user)
    assert loaded.problems == []
    rules = loaded.settings.projects
    assert [(r.path, r.confine) for r in rules] == [
        ("services/*", repo),
        ("**", None),
        ("services/api", None),
    ]
    kind, merged = loaded.settings.backend_for(repo / "services" / "api")
    assert kind == "ty"  # the repository's rule names no backend: the user's applies
    assert merged == {"python": {"analysis": {"typeCheckingMode": "basic", "extraPaths": ["x"]}}}
    assert loaded.sources["projects"].startswith("project config ")
    assert ", then user config " in loaded.sources["projects"]


def test_a_refused_environment_leaves_the_rest_of_its_rule_in_force(repo: Path) -> None:
    project = (
        '[[tool.typemux-lsp.projects]]\npath = "api"\nbackend = "ty"\nenvironment = "/opt/env"\n'
    )
    loaded = load(repo, project=project)
    (rule,) = loaded.settings.projects
    assert rule.refused is not None and "outside the repository" in rule.refused
    assert loaded.settings.backend_for(repo / "api")[0] == "ty"
    (problem,) = loaded.problems
    assert problem.line == 4 and "Its environment is not used" in problem.message


def test_both_spellings_of_one_key_are_a_problem(repo: Path) -> None:
    loaded = load(repo, project="[tool.typemux-lsp]\nmax-backends = 3\nmax_backends = 4\n")
    assert loaded.settings.max_backends == 3
    (problem,) = loaded.problems
    assert problem.line == 3


def test_tool_table_in_the_user_config_is_explained(repo: Path) -> None:
    loaded = load(repo, user='[tool.typemux-lsp]\nbackend = "ty"\n')
    (problem,) = loaded.problems
    assert problem.line == 1
    assert "top-level keys" in problem.message


def test_underscore_table_name_is_explained(repo: Path) -> None:
    (problem,) = load(repo, project="[tool.typemux_lsp]\nbackend = 'ty'\n").problems
    assert "[tool.typemux-lsp]" in problem.fix


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("TYPEMUX_LSP_NO_VENV_DIAGNOSTIC", "maybe", "not a boolean"),
        ("TYPEMUX_LSP_MAX_BACKENDS", "many", "not a whole number"),
        ("TYPEMUX_LSP_BACKEND_SETTINGS", "{python", "not valid JSON"),
        ("TYPEMUX_LSP_BACKEND", "mypy", "not one of"),
        ("TYPEMUX_LSP_BAKEND", "ty", "not a typemux-lsp setting"),
    ],
)
def test_bad_environment_values_are_reported(
    repo: Path, var: str, value: str, expected: str
) -> None:
    loaded = load(repo, env={var: value}, user="max-backends = 2\n")
    (problem,) = loaded.problems
    assert problem.file == "environment"
    assert var in problem.message
    assert expected in problem.message
    assert problem.fix
    assert loaded.settings.max_backends == 2


def test_summary_lists_every_problem(repo: Path) -> None:
    loaded = load(repo, project="[tool.typemux-lsp]\nfoo = 1\nbar = 2\n")
    summary = problems_summary(loaded.problems)
    assert summary.startswith("typemux-lsp: 2 configuration problems")
    assert "pyproject.toml:2" in summary and "pyproject.toml:3" in summary
    assert problems_summary([]) == ""


def test_unopenable_log_file_falls_back_to_stderr(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        problem = setup_logging(Settings(log_file=str(tmp_path / "missing" / "x.log")))
        assert problem is not None
        assert "cannot be opened" in problem.message
        assert isinstance(root.handlers[0], logging.StreamHandler)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


# -- TOML positions ----------------------------------------------------------------------------


def test_key_lines_skip_multiline_values() -> None:
    text = """\
[tool.typemux-lsp]
description = \"\"\"
backend = "not a key"
\"\"\"
list = [
  "max-backends = 1",
]
"quoted key" = 1
a.b.c = 2

[[tool.typemux-lsp.projects]]
path = "x"

[[tool.typemux-lsp.projects]]
path = "y"

[tool.typemux-lsp.projects.settings]
z = 1
"""
    lines = KeyLines(text)
    tool = ("tool", "typemux-lsp")
    assert lines.line((*tool, "backend")) == 1  # inside a string: falls back to the table
    assert lines.line((*tool, "max-backends")) == 1
    assert lines.line((*tool, "quoted key")) == 8
    assert lines.line((*tool, "a", "b", "c")) == 9
    assert lines.line((*tool, "a")) == 9
    assert lines.line((*tool, "projects")) == 11
    assert lines.line((*tool, "projects", 1, "path")) == 15
    assert lines.line((*tool, "projects", 1, "settings", "z")) == 18
