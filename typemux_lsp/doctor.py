"""`typemux-lsp --doctor [--json] [PATH]`: can this setup work, and if not, what to change.

An editor shows little when a language server is misconfigured (Claude Code shows nothing),
so the doctor answers the questions a user would otherwise debug by hand: which settings are in
force and where each comes from, which backend executables would run (and their versions),
every project under PATH with its manager, its environment and how it was found (or what is
missing and the command that creates it), the backend each environment gets, which Python
files have no environment, and every problem with its fix. Exit code 0 means the setup can
work, 2 means it cannot (a needed backend is missing or the configuration is invalid).

The report is built once as JSON data (`collect`), stable and documented in
docs/doctor-json.md; the text form is rendered from that same data.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import __version__, platform, projects
from .backends import KINDS, BackendKind, backend_environment
from .config import Settings, load_settings
from .environments import Lookup, canonical
from .freshness import plan_watch, read_environment
from .projects import MAX_DIRECTORIES
from .watcher import os_limits, planned_directories

VENV_DIR = ".venv"
SCHEMA_VERSION = 2
#: seconds a backend gets to print its version
VERSION_TIMEOUT = 20.0
#: the program that prints the version, when the language server itself cannot
_VERSION_PROGRAM = {"pyright": "pyright", "basedpyright": "basedpyright"}

Json = dict[str, Any]


def run(args: Any, environ: Mapping[str, str], path: Path) -> int:
    """Print the report for `path` (text, or JSON with `args.json`); return the exit code."""
    report = collect(args, environ, path)
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(render_text(report))
    code: int = report["exitCode"]
    return code


# -- collecting --------------------------------------------------------------------------------


def _orphan_json(directory: Path, lookup: Lookup, files: int) -> Json:
    missing = lookup.missing
    return {
        "directory": str(directory),
        "pythonFiles": files,
        "manager": missing.manager if missing else None,
        "reason": missing.reason
        if missing
        else "no project and no .venv between the files and "
        + (str(lookup.boundary) if lookup.boundary else "the filesystem root"),
        "fix": missing.fix
        if missing
        else f"cd {directory} && uv sync (or `python -m venv {VENV_DIR}` and install the "
        "dependencies)",
    }


def _project_json(directory: Path, lookup: Lookup, files: int) -> Json:
    env, missing = lookup.environment, lookup.missing
    return {
        "directory": str(directory),
        "manager": env.manager if env else missing.manager if missing else None,
        "environment": str(env.path) if env else None,
        "foundBy": env.found_by if env else None,
        "missing": None
        if missing is None
        else {
            "manager": missing.manager,
            "reason": missing.reason,
            "looked": [str(p) for p in missing.looked],
            "fix": missing.fix,
        },
        "pythonFiles": files,
    }


def _problem(severity: str, message: str, fix: str, file: str | None = None) -> Json:
    return {"severity": severity, "file": file, "line": None, "message": message, "fix": fix}


def backend_version(
    kind: BackendKind, executable: Path, env: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """`<program> --version` for a backend: (version, None) or (None, why not).

    pyright-langserver and basedpyright-langserver have no --version; the `pyright` /
    `basedpyright` program installed next to them has.
    """
    program = _VERSION_PROGRAM.get(kind.name)
    target: str | None = str(executable)
    if program is not None:
        target = shutil.which(program, path=str(executable.parent))
        if target is None:
            return None, f"{program} is not next to {executable}, so its version is unknown"
    try:
        done = subprocess.run(
            [str(target), "--version"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=VERSION_TIMEOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return None, f"`{target} --version` did not answer within {VERSION_TIMEOUT:g} s"
    except OSError as error:
        return None, f"`{target} --version` could not run: {error.strerror or error}"
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        detail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return None, f"`{target} --version` failed: {detail}"
    return lines[0], None


def _custom_executable(command: str) -> tuple[list[str], Path | None]:
    try:
        argv = shlex.split(command)
    except ValueError:
        return [command], None
    if not argv:
        return [], None
    first = os.path.expanduser(argv[0])
    if os.sep in first:
        path = Path(first)
        found = path.is_file() and os.access(path, os.X_OK)
        return argv, path if found else None
    located = shutil.which(first)
    return argv, Path(located) if located else None


def _backends(
    settings: Settings,
    sources: Mapping[str, str],
    used_by: Mapping[str, list[str]],
    env: Mapping[str, str],
) -> tuple[list[Json], list[Json]]:
    """One entry per backend kind in use or named by the configuration, and the problems.
    Backends are found and asked their version in `env` (`backend_environment`): the
    doctor runs nothing the repository ships either."""
    problems: list[Json] = []
    named = {settings.backend, *(rule.backend for rule in settings.projects if rule.backend)}
    needed = set(used_by) if used_by else {settings.backend}
    order = sorted(named | needed, key=lambda k: (k != settings.backend, k))
    entries: list[Json] = []
    for name in order:
        kind = KINDS[name]
        users = used_by.get(name, [])
        entry: Json = {
            "kind": name,
            "default": name == settings.backend,
            "usedBy": users,
            "custom": settings.backend_command is not None,
            "command": None,
            "executable": None,
            "found": False,
            "version": None,
            "versionError": None,
            "installHint": kind.install_hint(),
        }
        severity = "error" if name in needed else "warning"
        why = (
            f"{len(users)} environment(s) under the checked path need it"
            if users
            else "it is the default backend"
            if name == settings.backend
            else "a project rule names it, so projects matching that rule will get no answers"
        )
        if settings.backend_command is not None:
            argv, exe = _custom_executable(settings.backend_command)
            entry.update(command=argv, executable=str(exe) if exe else None, found=exe is not None)
            entry["versionError"] = "not checked: backend-command is a custom command"
            if exe is None and not entries:  # one command for every kind: report it once
                problems.append(
                    _problem(
                        severity,
                        f"backend-command {settings.backend_command!r} cannot run: "
                        f"{argv[0] if argv else 'the command is empty'} is not an executable "
                        f"file or on PATH; {why}.",
                        f"fix backend-command (set by {sources['backend_command']}), or remove "
                        "it to run each backend's own language server.",
                    )
                )
            entries.append(entry)
            continue
        exe = kind.resolve_executable(env["PATH"])
        if exe is None:
            problems.append(
                _problem(
                    severity,
                    f"backend {name} not found: {kind.executable} is neither next to "
                    f"typemux-lsp ({Path(sys.executable).parent}) nor on PATH; {why}.",
                    kind.install_hint() + ".",
                )
            )
        else:
            version, error = backend_version(kind, exe, env)
            entry.update(
                command=kind.command(exe, env["PATH"]),
                executable=str(exe),
                found=True,
                version=version,
                versionError=error,
            )
        entries.append(entry)
    return entries, problems


def collect(args: Any, environ: Mapping[str, str], path: Path) -> Json:
    """The doctor's report for `path` as JSON data (schema: docs/doctor-json.md)."""
    target = canonical(path)
    report: Json = {
        "schemaVersion": SCHEMA_VERSION,
        "ok": False,
        "exitCode": 2,
        "typemuxLsp": {
            "version": __version__,
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "platform": sys.platform,
            "unsupported": platform.unsupported(),
        },
        "path": str(target),
        "gitToplevel": None,
        "configFiles": [],
        "settings": {},
        "backends": [],
        "projects": [],
        "environments": [],
        "withoutEnvironment": [],
        "truncated": False,
        "problems": [],
    }
    if not target.exists():
        report["problems"].append(
            _problem(
                "error",
                f"{path} does not exist, so there is nothing to check.",
                "pass a project directory, e.g. `typemux-lsp --doctor .`.",
            )
        )
        return report
    loaded = load_settings(args, environ, target if target.is_dir() else target.parent)
    settings = loaded.settings
    problems: list[Json] = [{"severity": "error", **p.to_json()} for p in loaded.problems]
    report["gitToplevel"] = str(loaded.git_toplevel) if loaded.git_toplevel else None
    report["configFiles"] = [
        {
            "level": f.level,
            "path": str(f.path),
            "found": f.found,
            "explicit": f.explicit,
            "used": f.used,
        }
        for f in loaded.config_files
    ]
    report["settings"] = {
        name: {"value": settings.to_json(name), "source": loaded.sources[name]}
        for name in Settings.names()
    }
    # `backend = "auto"` is resolved to a kind: which, and why
    report["settings"]["backend"]["reason"] = loaded.backend_reason

    scan = projects.scan(target, rules=settings.projects)
    used_by: dict[str, list[str]] = {}
    sharing = settings.sharing_kinds()
    #: the shared processes planned so far: (group, project dirs), as the pool would fill them
    shared: list[tuple[str, list[Path]]] = []
    for _, (env, files) in sorted(scan.environments.items()):
        kind, backend_settings = settings.backend_for(env.project_dir)
        process = None
        if (
            kind in sharing
            and not settings.backend_command
            and KINDS[kind].can_share(env.project_dir)  # (as the proxy decides: server._share)
        ):
            group = kind + json.dumps(backend_settings, sort_keys=True, default=str)
            process = next(
                (
                    i
                    for i, (g, dirs) in enumerate(shared)
                    if g == group and not any(_nested(d, env.project_dir) for d in dirs)
                ),
                None,
            )
            if process is None:
                shared.append((group, []))
                process = len(shared) - 1
            shared[process][1].append(env.project_dir)
        match = settings.rule_for(env.project_dir)
        used_by.setdefault(kind, []).append(str(env.path))
        interpreter = env.python.exists()
        report["environments"].append(
            {
                "path": str(env.path),
                "key": str(env.key),
                "manager": env.manager,
                "foundBy": env.found_by,
                "projectDir": str(env.project_dir),
                "python": str(env.python),
                "pythonVersion": env.python_version(),
                "interpreterFound": interpreter,
                "pythonFiles": files,
                "backend": kind,
                # which backend process serves it: its own (null), or shared process N
                # (`backend-sharing`; projects nested in each other never share one)
                "sharedProcess": None if process is None else process + 1,
                "backendSettings": backend_settings,
                "rule": None
                if match is None
                else {"index": match[0], "path": match[1].path, "source": match[1].source},
            }
        )
        if not interpreter:
            problems.append(
                _problem(
                    "warning",
                    f"{env.path} has no working interpreter ({env.python} is missing or a "
                    "broken link), so its backend cannot resolve imports.",
                    f"recreate it: `cd {env.project_dir} && rm -rf {VENV_DIR} && uv sync` "
                    f"(or `python -m venv {VENV_DIR}` and reinstall the dependencies)"
                    if env.manager == "venv"
                    else f"recreate it with {env.manager} (it was found as: {env.found_by}).",
                )
            )
    report["projects"] = [
        _project_json(directory, lookup, scan.project_files.get(directory, 0))
        for directory, lookup in sorted(scan.projects.items())
    ]
    report["withoutEnvironment"] = [
        _orphan_json(directory, lookup, count)
        for directory, (lookup, count) in sorted(scan.orphans.items())
    ]

    backends, backend_problems = _backends(
        settings, loaded.sources, used_by, backend_environment(target, base=environ)
    )
    report["backends"] = backends
    problems.extend(backend_problems)

    report["freshness"] = _freshness(settings, scan, problems)

    if settings.log_file:
        log_dir = Path(os.path.expanduser(settings.log_file)).parent
        if not (log_dir.is_dir() and os.access(log_dir, os.W_OK)):
            problems.append(
                _problem(
                    "warning",
                    f"log-file {settings.log_file}: {log_dir} is not a writable directory, so "
                    "the server will log to stderr instead.",
                    f"create {log_dir} or change log-file (set by {loaded.sources['log_file']}).",
                )
            )
    if scan.truncated:
        report["truncated"] = True
        problems.append(
            _problem(
                "warning",
                f"stopped after {MAX_DIRECTORIES} directories; the project and environment "
                "lists are incomplete.",
                "run the doctor on a smaller directory (one project or one service).",
            )
        )
    report["problems"] = problems
    report["ok"] = not any(p["severity"] == "error" for p in problems)
    report["exitCode"] = 0 if report["ok"] else 2
    return report


def _nested(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _freshness(settings: Settings, scan: projects.Scan, problems: list[Json]) -> Json:
    """What freshness would watch for each environment, against the OS watch limit."""
    limits = os_limits()
    report: Json = {
        "enabled": settings.freshness,
        "debounceMs": settings.freshness_debounce_ms,
        "osLimits": limits,
        "environments": [],
    }
    report["truncated"] = False
    if not settings.freshness:
        return report
    limit = limits.get("max_user_watches")
    # Counting stops once the answer is known: past the OS limit (one more is enough to say
    # so) or at the walk's own bound; a huge tree is not walked whole for a number.
    budget = MAX_DIRECTORIES if limit is None else min(MAX_DIRECTORIES, limit + 1)
    total = 0
    for _, (env, _files) in sorted(scan.environments.items()):
        plan = plan_watch(read_environment(env), env.project_dir)
        count = planned_directories(plan.roots, plan.filter, limit=budget - total)
        total += count
        report["environments"].append(
            {
                "path": str(env.path),
                "roots": [str(r.path) for r in plan.roots],
                "directories": count,
            }
        )
        if total >= budget:
            report["truncated"] = True
            break
    report["directories"] = total
    if report["truncated"] and (limit is None or total <= limit):
        problems.append(
            _problem(
                "warning",
                f"stopped counting the directories freshness would watch at {total}: the "
                "figures under freshness are lower bounds.",
                "run the doctor on a smaller directory (one project or one service).",
            )
        )
    if limit is not None and total > limit:
        problems.append(
            _problem(
                "warning",
                f"watching every environment and project here takes {total} OS watches, more "
                f"than the limit of {limit}: answers for some may go stale after the disk "
                "changes (typemux/status then lists the roots not watched).",
                f"raise it: `sudo sysctl fs.inotify.max_user_watches={max(2 * total, 65536)}`",
            )
        )
    return report


# -- text --------------------------------------------------------------------------------------


def _short(value: Any, width: int = 48) -> str:
    if value is None:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 3] + "..."


def _rel(path: str, base: str) -> str:
    try:
        relative = Path(path).relative_to(base)
    except ValueError:
        return path
    return str(relative) if str(relative) != "." else "."


def render_text(report: Json) -> str:
    """The report for a person: the verdict last, problems just above it."""
    out: list[str] = []
    add = out.append
    base = report["path"]
    tool = report["typemuxLsp"]
    add(f"typemux-lsp {tool['version']} (Python {tool['python']}, {tool['executable']})")
    gaps = tool.get("unsupported", [])
    add(
        f"platform        {tool.get('platform', '?')}"
        + (f": {len(gaps)} thing(s) not supported here yet" if gaps else "")
    )
    for gap in gaps:
        add(f"  - {gap}")
    add(f"checked         {base}")
    add(f"git toplevel    {report['gitToplevel'] or '(none: not in a git repository)'}")
    for f in report["configFiles"]:
        if not f["found"]:
            state = "not found"
        elif f["level"] == "project":
            state = "[tool.typemux-lsp] used" if f["used"] else "no [tool.typemux-lsp] table"
        else:
            state = "used"
        add(f"{f['level'] + ' config':<15} {f['path']} ({state})")

    if report["settings"]:
        add("")
        add("Settings")
        for name, item in report["settings"].items():
            value = item["value"]
            shown = f"{len(value)} rule(s)" if name == "projects" else _short(value, 30)
            add(f"  {name:<19} {shown:<31} {item['source']}")
            if item.get("reason"):
                add(f"  {'':<19} ({item['reason']})")
            if name == "projects":
                for index, rule in enumerate(value, start=1):
                    extra = " +settings" if rule["settings"] else ""
                    add(
                        f"    {index}. {rule['path']} -> {rule['backend'] or '(default backend)'}"
                        f"{extra}   {rule['source']}"
                    )

    if report["backends"]:
        add("")
        add("Backends")
        for b in report["backends"]:
            mark = "ok     " if b["found"] else "MISSING"
            role = ["default"] if b["default"] else []
            if b["usedBy"]:
                role.append(f"{len(b['usedBy'])} environment(s)")
            version = b["version"] or (b["versionError"] if b["found"] else "")
            add(
                f"  {mark} {b['kind']:<13} {b['executable'] or 'not found':<40} "
                f"{version}  [{', '.join(role) or 'named by a rule'}]"
            )

    add("")
    add(f"Projects ({len(report['projects'])})")
    for proj in report["projects"]:
        missing = proj["missing"]
        state = (
            f"-> {_rel(proj['environment'], base)}"
            if proj["environment"]
            else "NO ENVIRONMENT"
            if missing
            else "-"
        )
        add(f"  {_rel(proj['directory'], base):<28} {proj['manager'] or '?':<13} {state}")
        if missing:
            add(f"      {missing['reason']}")
            add(f"      fix: {missing['fix']}")
    if not report["projects"]:
        add("  none found")

    add("")
    add(f"Environments ({len(report['environments'])})")
    for v in report["environments"]:
        rule = v["rule"]
        why = "default" if rule is None else f"rule {rule['index'] + 1} ({rule['path']})"
        broken = "" if v["interpreterFound"] else "  INTERPRETER MISSING"
        add(
            f"  {_rel(v['path'], base):<28} {v['manager']:<13} Python "
            f"{v['pythonVersion'] or '?':<8} {v['backend']:<12} {why:<24} "
            f"{v['pythonFiles']} file(s){broken}"
        )
        add(f"      found: {v['foundBy']}")
        if v["sharedProcess"] is not None:
            together = [
                _rel(o["projectDir"], base)
                for o in report["environments"]
                if o["sharedProcess"] == v["sharedProcess"] and o is not v
            ]
            add(
                f"      process: shared {v['backend']} #{v['sharedProcess']}"
                + (f", with {', '.join(together)}" if together else "")
            )
        else:
            add("      process: its own")
    if not report["environments"]:
        add("  none found")

    if report["withoutEnvironment"]:
        add("")
        add(f"Python files without an environment ({len(report['withoutEnvironment'])})")
        for item in report["withoutEnvironment"]:
            add(f"  {_rel(item['directory'], base):<28} {item['pythonFiles']} file(s)")
            add(f"      fix: {item['fix']}")

    fresh = report.get("freshness", {})
    add("")
    if not fresh.get("enabled"):
        add("Freshness       off: backends see only what the client sends")
    else:
        limit = fresh["osLimits"].get("max_user_watches")
        add(
            f"Freshness       on, {fresh['debounceMs']} ms debounce; "
            f"{'at least ' if fresh.get('truncated') else ''}{fresh.get('directories', 0)} "
            f"directories to watch" + (f" (OS limit {limit})" if limit is not None else "")
        )
        for env in fresh["environments"]:
            add(f"  {_rel(env['path'], base):<28} {env['directories']} directories")

    problems = report["problems"]
    if problems:
        add("")
        add(f"Problems ({len(problems)})")
        for p in problems:
            where = p["file"] if p["line"] is None else f"{p['file']}:{p['line']}"
            add(f"  {p['severity']:<8} {(where + ': ') if where else ''}{p['message']}")
            add(f"           fix: {p['fix']}")

    add("")
    errors = sum(1 for p in problems if p["severity"] == "error")
    if report["ok"]:
        add(f"Result: ready (exit {report['exitCode']})")
    else:
        add(f"Result: NOT ready, {errors} error(s) above (exit {report['exitCode']})")
    return "\n".join(out)
