"""`typemux-lsp --doctor`, run as a user runs it (a subprocess) on a monorepo with real venvs.

Exit code 0 when the setup can work and 2 when it cannot; every project with its manager and
environment (or what is missing); every environment with the backend it gets; files without an
environment; problems with file, line and fix; the JSON form matches its documentation.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from procs import in_user_namespace

REPO_ROOT = Path(__file__).resolve().parents[2]

PYPROJECT = """\
[project]
name = "mono"

[tool.typemux-lsp]
max-backends = 4

[[tool.typemux-lsp.projects]]
path = "services/worker"
backend = "ty"
settings = { ty = { diagnosticMode = "workspace" } }
"""


def make_venv(project: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(project / ".venv")],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def monorepo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """services/api (venv, default backend), services/worker (venv, ty by rule), scripts (none)."""
    root = (tmp_path_factory.mktemp("doctor") / "mono").resolve()
    (root / ".git").mkdir(parents=True)
    for project in ("services/api", "services/worker"):
        (root / project).mkdir(parents=True)
        (root / project / "main.py").write_text("x = 1\n")
        make_venv(root / project)
    (root / "scripts").mkdir()
    (root / "scripts" / "pyproject.toml").write_text("[project]\nname = 'scripts'\n")
    (root / "scripts" / "a.py").write_text("")
    (root / "scripts" / "b.pyi").write_text("")
    (root / "node_modules" / "pkg").mkdir(parents=True)
    (root / "node_modules" / "pkg" / "x.py").write_text("")  # never searched
    return root


@pytest.fixture
def mono(monorepo: Path) -> Iterator[Path]:
    (monorepo / "pyproject.toml").write_text(PYPROJECT)
    yield monorepo
    (monorepo / "pyproject.toml").write_text(PYPROJECT)


def doctor_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TYPEMUX_LSP_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")  # no user config from the developer
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


def run_doctor(
    *args: str, env: dict[str, str], python: str = sys.executable, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "typemux_lsp", "--doctor", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def doctor_json(*args: str, env: dict[str, str], **kwargs: Any) -> tuple[int, dict[str, Any]]:
    done = run_doctor("--json", *args, env=env, **kwargs)
    return done.returncode, json.loads(done.stdout)


# -- a setup that works ------------------------------------------------------------------------


def test_ready_setup_exits_0_and_shows_each_venv_with_its_backend(
    mono: Path, tmp_path: Path
) -> None:
    done = run_doctor(str(mono), env=doctor_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    api = next(line for line in out.splitlines() if line.startswith("  services/api/.venv"))
    worker = next(line for line in out.splitlines() if line.startswith("  services/worker/.venv"))
    assert "pyright" in api and "default" in api and version in api
    assert " ty " in worker and "rule 1 (services/worker)" in worker
    assert re.search(r"ok\s+pyright\s+\S+pyright-langserver\s+pyright \d+\.\d+", out)
    assert re.search(r"ok\s+ty\s+\S+/ty\s+ty \d+\.\d+", out)
    assert "max_backends" in out and f"project config {mono / 'pyproject.toml'}:5" in out
    assert "Python files without an environment (1)" in out
    assert "scripts                      venv          NO ENVIRONMENT" in out
    assert "scripts" in out and "2 file(s)" in out
    assert "node_modules" not in out
    assert out.rstrip().endswith("Result: ready (exit 0)")


def test_json_report(mono: Path, tmp_path: Path) -> None:
    code, report = doctor_json(env=doctor_env(tmp_path), cwd=mono / "services")
    assert code == 0
    assert report["schemaVersion"] == 2
    assert (report["ok"], report["exitCode"]) == (True, 0)
    assert report["path"] == str(mono / "services")  # default PATH: the working directory
    assert report["gitToplevel"] == str(mono)
    assert report["settings"]["max_backends"] == {
        "value": 4,
        "source": f"project config {mono / 'pyproject.toml'}:5",
    }
    assert report["settings"]["backend"] == {
        "value": "pyright",
        "source": "default",
        "reason": "auto: 4 backends installed (pyright, basedpyright, ty, pyrefly), "
        "so pyright (the default)",
    }
    venvs = {Path(v["projectDir"]).name: v for v in report["environments"]}
    assert set(venvs) == {"api", "worker"}
    assert venvs["api"]["backend"] == "pyright" and venvs["api"]["rule"] is None
    assert venvs["worker"]["backend"] == "ty"
    assert venvs["worker"]["backendSettings"] == {"ty": {"diagnosticMode": "workspace"}}
    assert venvs["worker"]["rule"]["index"] == 0
    assert venvs["worker"]["pythonVersion"].startswith(
        f"{sys.version_info.major}.{sys.version_info.minor}."
    )
    assert all(v["interpreterFound"] and v["pythonFiles"] == 1 for v in venvs.values())
    assert venvs["api"]["manager"] == "venv"
    assert venvs["api"]["foundBy"] == f".venv directory in {mono / 'services' / 'api'}"
    projects = {Path(p["directory"]).name: p for p in report["projects"]}
    assert projects["api"] == {
        "directory": str(mono / "services" / "api"),
        "manager": "venv",
        "environment": venvs["api"]["path"],
        "foundBy": venvs["api"]["foundBy"],
        "missing": None,
        "pythonFiles": 1,
    }
    backends = {b["kind"]: b for b in report["backends"]}
    assert [b["kind"] for b in report["backends"]] == ["pyright", "ty"]  # default first
    assert backends["pyright"]["usedBy"] == [venvs["api"]["path"]]
    assert re.fullmatch(r"pyright \d+\.\d+\.\d+", backends["pyright"]["version"])
    assert re.fullmatch(r"ty \d+\.\d+\.\d+.*", backends["ty"]["version"])
    assert report["withoutEnvironment"] == []  # scripts/ is not under PATH=services
    assert report["problems"] == []


def test_every_json_key_is_documented(mono: Path, tmp_path: Path) -> None:
    """docs/doctor-json.md lists every key the report has, and no key it does not have."""
    (mono / "pyproject.toml").write_text(PYPROJECT.replace("max-backends = 4", "bogus = 1"))
    _, with_problems = doctor_json(str(mono), env=doctor_env(tmp_path))
    assert with_problems["problems"] and with_problems["withoutEnvironment"]
    assert any(p["missing"] for p in with_problems["projects"])
    produced = _key_paths(with_problems)
    documented = set(
        re.findall(r"^\| `([^`]+)` \|", (REPO_ROOT / "docs" / "doctor-json.md").read_text(), re.M)
    )
    assert produced == documented


#: values whose keys are the user's (backend settings), not the report's
FREE_FORM = {"environments[].backendSettings", "settings.projects.value[].settings"}


def _key_paths(report: dict[str, Any]) -> set[str]:
    """Dotted key paths of a report: `a[].b` for arrays, `settings.*.x` for each setting."""
    paths: set[str] = set()

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item, prefix + "[]")
        elif isinstance(value, dict):
            for key, item in value.items():
                path = f"{prefix}.{key}" if prefix else key
                paths.add(path)
                if path not in FREE_FORM:
                    walk(item, path)

    walk({k: v for k, v in report.items() if k != "settings"}, "")
    paths.add("settings")
    for entry in report["settings"].values():
        paths.update(f"settings.*.{key}" for key in entry)
    walk(report["settings"]["projects"]["value"], "settings.projects.value")
    return paths


# -- setups that cannot work -------------------------------------------------------------------


def test_invalid_config_exits_2_with_file_line_and_fix(mono: Path, tmp_path: Path) -> None:
    (mono / "pyproject.toml").write_text(
        PYPROJECT.replace("max-backends = 4", 'max-backends = "4"\nbackend = "pyrite"')
    )
    done = run_doctor(str(mono), env=doctor_env(tmp_path))
    assert done.returncode == 2
    assert f"{mono / 'pyproject.toml'}:5: max-backends" in done.stdout
    assert f'{mono / "pyproject.toml"}:6: backend = "pyrite"' in done.stdout
    assert 'fix: did you mean "pyright"?' in done.stdout
    assert "Result: NOT ready, 2 error(s) above (exit 2)" in done.stdout
    # The valid parts still apply: the worker's rule.
    worker = next(
        line for line in done.stdout.splitlines() if line.startswith("  services/worker/.venv")
    )
    assert " ty " in worker


def test_bad_toml_exits_2_with_its_line(mono: Path, tmp_path: Path) -> None:
    (mono / "pyproject.toml").write_text(PYPROJECT.replace('backend = "ty"', 'backend = "ty'))
    code, report = doctor_json(str(mono), env=doctor_env(tmp_path))
    assert code == 2
    (problem,) = report["problems"]
    assert (problem["file"], problem["line"], problem["severity"]) == (
        str(mono / "pyproject.toml"),
        9,
        "error",
    )
    assert "not valid TOML" in problem["message"] and problem["fix"]
    assert {v["backend"] for v in report["environments"]} == {"pyright"}  # rules are gone


def bare_python(tmp_path: Path) -> Path:
    """A venv with typemux-lsp and its dependencies, but no backend next to its python."""
    bare = tmp_path / "bare"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, capture_output=True
    )
    site = Path(
        subprocess.run(
            [
                str(bare / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # typemux-lsp and its dependencies, but none of the backends' executables next to python.
    (site / "typemux.pth").write_text(f"{REPO_ROOT}\n{sysconfig.get_paths()['purelib']}\n")
    return bare / "bin" / "python"


def test_missing_backend_exits_2_with_the_install_command(mono: Path, tmp_path: Path) -> None:
    """typemux-lsp installed without its backend: a venv that has typemux-lsp but no pyright."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = doctor_env(tmp_path, PATH=str(empty))
    code, report = doctor_json(
        str(mono / "services" / "api"), env=env, python=str(bare_python(tmp_path))
    )
    assert code == 2
    backends = {b["kind"]: b for b in report["backends"]}
    assert (backends["pyright"]["found"], backends["pyright"]["executable"]) == (False, None)
    severities = {p["message"].split(" not found")[0]: p for p in report["problems"]}
    # pyright serves the venv under PATH: an error. ty is only named by a rule: a warning.
    assert severities["backend pyright"]["severity"] == "error"
    assert "-m pip install 'pyright[nodejs]'" in severities["backend pyright"]["fix"]
    assert severities["backend ty"]["severity"] == "warning"


def test_the_doctor_runs_no_backend_the_repository_ships(mono: Path, tmp_path: Path) -> None:
    """A `pyright-langserver` in the repository, on PATH (an activated venv, a `bin/` it
    ships), is neither reported as the backend nor run for its version."""
    shipped = mono / "tools" / "bin"
    shipped.mkdir(parents=True, exist_ok=True)
    ran = tmp_path / "ran"
    for name in ("pyright-langserver", "pyright"):
        (shipped / name).write_text(f"#!/bin/sh\ntouch {ran}\necho 'pyright 0.0.evil'\n")
        (shipped / name).chmod(0o755)
    env = doctor_env(tmp_path, PATH=f"{shipped}{os.pathsep}/usr/bin{os.pathsep}/bin")
    _, report = doctor_json(
        str(mono / "services" / "api"), env=env, python=str(bare_python(tmp_path))
    )
    backends = {b["kind"]: b for b in report["backends"]}
    assert (backends["pyright"]["found"], backends["pyright"]["executable"]) == (False, None)
    assert not ran.exists()


def test_custom_backend_command_that_does_not_exist_exits_2(mono: Path, tmp_path: Path) -> None:
    env = doctor_env(tmp_path, TYPEMUX_LSP_BACKEND_COMMAND="/nonexistent/wrapper --stdio")
    code, report = doctor_json(str(mono), env=env)
    assert code == 2
    (problem,) = report["problems"]  # one command for every kind: one problem
    assert "/nonexistent/wrapper" in problem["message"]
    assert "env TYPEMUX_LSP_BACKEND_COMMAND" in problem["fix"]


def test_nonexistent_path_exits_2(tmp_path: Path) -> None:
    done = run_doctor(str(tmp_path / "nope"), env=doctor_env(tmp_path))
    assert done.returncode == 2
    assert "does not exist" in done.stdout


def test_broken_venv_is_a_warning(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".venv").mkdir()
    (repo / ".venv" / "pyvenv.cfg").write_text("home = /nowhere\nversion = 3.9.1\n")
    (repo / "a.py").write_text("")
    done = run_doctor(str(repo), env=doctor_env(tmp_path))
    assert done.returncode == 0
    assert "Python 3.9.1" in done.stdout and "INTERPRETER MISSING" in done.stdout
    assert "warning" in done.stdout and "recreate it" in done.stdout


def test_text_and_json_agree_on_the_exit_code(mono: Path, tmp_path: Path) -> None:
    shutil.rmtree(tmp_path / "xdg", ignore_errors=True)
    user = tmp_path / "xdg" / "typemux-lsp" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("max-backends = 0\n")
    env = doctor_env(tmp_path)
    code, report = doctor_json(str(mono), env=env)
    assert (code, run_doctor(str(mono), env=env).returncode, report["exitCode"]) == (2, 2, 2)
    assert report["configFiles"][0] == {
        "level": "user",
        "path": str(user),
        "found": True,
        "explicit": False,
        "used": True,
    }
    assert report["problems"][0]["line"] == 1


def test_every_project_with_its_manager_environment_and_what_is_missing(
    tmp_path: Path,
) -> None:
    """A Poetry project without its environment, a pixi project with one, a uv workspace."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    poetry = repo / "poetry-app"
    poetry.mkdir()
    (poetry / "pyproject.toml").write_text("[tool.poetry]\nname = 'app'\n")
    (poetry / "app.py").write_text("")
    pixi = repo / "pixi-app"
    (pixi / ".pixi" / "envs" / "default" / "conda-meta").mkdir(parents=True)
    (pixi / "pixi.toml").write_text("[workspace]\nname = 'p'\n")
    (pixi / "p.py").write_text("")
    home = tmp_path / "home"
    env = doctor_env(tmp_path, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    env.pop("POETRY_VIRTUALENVS_PATH", None)
    code, report = doctor_json(str(repo), env=env)
    assert code == 0, report["problems"]
    projects = {Path(p["directory"]).name: p for p in report["projects"]}
    assert projects["poetry-app"]["manager"] == "poetry"
    assert projects["poetry-app"]["environment"] is None
    missing = projects["poetry-app"]["missing"]
    assert missing["fix"] == f"`cd {poetry} && poetry install`"
    assert any(".cache/pypoetry/virtualenvs/app-" in p for p in missing["looked"])
    assert projects["pixi-app"]["manager"] == "pixi"
    assert projects["pixi-app"]["environment"] == str(pixi / ".pixi" / "envs" / "default")
    (without,) = report["withoutEnvironment"]
    assert (without["directory"], without["manager"]) == (str(poetry), "poetry")
    assert without["fix"] == missing["fix"]
    done = run_doctor(str(repo), env=env)
    assert "poetry-app                   poetry        NO ENVIRONMENT" in done.stdout
    assert f"fix: `cd {poetry} && poetry install`" in done.stdout


def test_templates_and_unexpanded_placeholders_are_not_projects(tmp_path: Path) -> None:
    """haystack-style: a template whose pyproject says `name = "$pkg"` under `$pkg/`, a
    cookiecutter directory, a Jinja pyproject that is not TOML: none is listed as a project
    missing its environment."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\nname = 'top'\n")
    make_venv(repo)
    hatch_template = repo / "integrations" / "template" / "$pkg"
    hatch_template.mkdir(parents=True)
    (hatch_template / "pyproject.toml").write_text(
        '[project]\nname = "$pkg"\n[tool.hatch.envs.default]\n'
    )
    (hatch_template / "m.py").write_text("")
    named = repo / "templates" / "plain"
    named.mkdir(parents=True)
    (named / "pyproject.toml").write_text('[project]\nname = "{{ cookiecutter.name }}"\n')
    cookie = repo / "cookie" / "{{cookiecutter.project_slug}}"
    cookie.mkdir(parents=True)
    (cookie / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    jinja = repo / "jinja"
    jinja.mkdir()
    (jinja / "pyproject.toml").write_text("[project]\n{% if x %}name = 'y'{% endif %}\n")
    env = doctor_env(tmp_path, HOME=str(tmp_path / "home"))
    code, report = doctor_json(str(repo), env=env)
    assert code == 0, report["problems"]
    assert [Path(p["directory"]) for p in report["projects"]] == [repo]
    assert report["withoutEnvironment"] == []


def test_freshness_shows_what_is_watched_and_warns_past_the_os_limit(
    mono: Path, tmp_path: Path
) -> None:
    """Run under a real, lowered inotify limit (a user namespace of its own, the machine's
    limit untouched): the doctor counts the watches each environment needs and says how to
    raise the limit."""
    _, report = doctor_json(str(mono), env=doctor_env(tmp_path))
    fresh = report["freshness"]
    assert fresh["enabled"] and fresh["environments"]
    assert all(e["directories"] >= 2 for e in fresh["environments"])
    assert fresh["directories"] == sum(e["directories"] for e in fresh["environments"])
    done = subprocess.run(
        in_user_namespace(
            [sys.executable, "-m", "typemux_lsp", "--doctor", "--json", str(mono)], 3
        ),
        capture_output=True,
        text=True,
        env=doctor_env(tmp_path),
        timeout=120,
    )
    if done.returncode != 0 and not done.stdout:
        pytest.skip(f"user namespaces are not available here: {done.stderr.strip()}")
    limited = json.loads(done.stdout)
    assert limited["freshness"]["osLimits"]["max_user_watches"] == 3
    # counting stopped one past the limit: enough to know, no walk of the whole tree
    assert limited["freshness"]["truncated"] and limited["freshness"]["directories"] == 4
    assert not fresh["truncated"]
    (warning,) = [p for p in limited["problems"] if "OS watches" in p["message"]]
    assert warning["severity"] == "warning" and "max_user_watches" in warning["fix"]


def test_pyrefly_projects_share_a_process_unless_a_config_above_them_governs_them(
    tmp_path: Path,
) -> None:
    """pyrefly shared (`backend-sharing`); `b` has no pyrefly config of its own under the
    repository's `pyrefly.toml` (pyrefly would check it with another folder's interpreter): a
    process of its own, as the proxy gives it."""
    root = (tmp_path / "repo").resolve()
    (root / ".git").mkdir(parents=True)
    (root / "pyrefly.toml").write_text("")
    for name, pyproject in (("a", "[tool.pyrefly]\n"), ("c", "[tool.pyrefly]\n"), ("b", "")):
        (root / name).mkdir()
        (root / name / "pyproject.toml").write_text(f"[project]\nname = '{name}'\n{pyproject}")
        (root / name / "main.py").write_text("x = 1\n")
        make_venv(root / name)
    code, report = doctor_json(
        str(root),
        env=doctor_env(
            tmp_path, TYPEMUX_LSP_BACKEND="pyrefly", TYPEMUX_LSP_BACKEND_SHARING="pyrefly"
        ),
        cwd=root,
    )
    assert code == 0, report["problems"]
    process = {Path(v["projectDir"]).name: v["sharedProcess"] for v in report["environments"]}
    assert process["a"] == process["c"] is not None
    assert process["b"] is None
