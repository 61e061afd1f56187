"""Shared backends with the real type checkers: one process serves several environments, a
workspace folder each, and every answer is still the file's own environment's.

The routing and freshness suites run in the other mode too (CI sets
`TYPEMUX_LSP_BACKEND_SHARING`); these check what only sharing does: which projects share a
process, that nested projects never do, a crash brought back with every folder, and the
memory budget evicting the least recently used project.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import procs
import pytest
from clients import VSCODE, definition_targets, hover_text, proxy_env, uri_path
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from typemux_lsp.backends import KINDS
from typemux_lsp.example import build_venvs

if TYPE_CHECKING:
    from clients import MuxClient
    from conftest import Monorepo, StartProxy

ALPHA = "alpha/app.py"
BETA = "beta/app.py"
AREA_V1 = "def area(radius: float) -> float"
CIRCLE_V2_DOC = "A circle that knows its own area."  # beta's shapes only


def sharing_env(kinds: str, **settings: str) -> dict[str, str]:
    env = proxy_env()
    env["TYPEMUX_LSP_BACKEND_SHARING"] = kinds
    env.update(settings)
    return env


async def status(client: Any) -> dict[str, Any]:
    result = await client.request(
        "workspace/executeCommand", {"command": "typemux.status", "arguments": []}
    )
    assert isinstance(result, dict)
    return result


def process_environment(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def projects_by_pid(state: dict[str, Any]) -> dict[int, set[str]]:
    return {b["pid"]: {p["project"] for p in b["projects"]} for b in state["backends"]}


async def assert_alpha_right(client: MuxClient, monorepo: Monorepo, uri: str) -> None:
    assert AREA_V1 in hover_text(await client.hover(uri, "area(2.0)"))
    targets = definition_targets(await client.definition(uri, "area(2.0)"))
    assert {uri_path(t) for t, _ in targets} == {monorepo.shapes_init("alpha")}


async def assert_beta_right(
    client: MuxClient, monorepo: Monorepo, uri: str, project: str = "beta"
) -> None:
    hover = hover_text(await client.hover(uri, "Circle"))
    assert "class" in hover and CIRCLE_V2_DOC in hover, hover
    targets = definition_targets(await client.definition(uri, "Circle"))
    assert {uri_path(t) for t, _ in targets} == {monorepo.shapes_init(project)}


async def test_one_process_serves_both_projects_each_from_its_own_venv(
    backend: str, monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    alpha = client.open(monorepo.path(ALPHA))
    beta = client.open(monorepo.path(BETA))
    await client.wait_for_diagnostics(alpha)
    await client.wait_for_diagnostics(beta)
    await assert_alpha_right(client, monorepo, alpha)
    await assert_beta_right(client, monorepo, beta)

    state = await status(client)
    assert state["backendProcesses"] == 1
    (entry,) = state["backends"]
    assert entry["shared"] is True
    assert {p["project"]: p["openDocuments"] for p in entry["projects"]} == {
        str(monorepo.path("alpha")): [alpha],
        str(monorepo.path("beta")): [beta],
    }
    # No environment variable names an interpreter for a process serving several.
    environ = process_environment(entry["pid"])
    assert "VIRTUAL_ENV" not in environ and "CONDA_PREFIX" not in environ


#: a module of a project or an environment that uses beta's `shapes.Circle`
USES_CIRCLE = "from shapes import Circle\n\nCircle(1.0)\n"


async def alpha_settled_then_beta(client: MuxClient, monorepo: Monorepo) -> tuple[str, str]:
    """alpha opened and checked first (the shared process runs with alpha's folder), then
    beta opened: beta's folder joins a running backend."""
    alpha = client.open(monorepo.path(ALPHA))
    await client.wait_for_diagnostics(alpha)
    return alpha, client.open(monorepo.path(BETA))


def environment_elsewhere(monorepo: Monorepo, project: str) -> Path:
    """Move `project`'s venv out of the repository, to where pdm keeps one (named by
    `.pdm-python`): no backend finds it by itself, only through the proxy's answer."""
    env = monorepo.root.parent / "pdm-envs" / project
    env.parent.mkdir(exist_ok=True)
    monorepo.venv(project).rename(env)
    monorepo.path(f"{project}/.pdm-python").write_text(f"{env}/bin/python\n")
    return env


def beta_elsewhere_with_a_module(monorepo: Monorepo) -> tuple[Path, Path]:
    """beta's environment moved outside the repository, with a module `extra_b` in its
    site-packages that no project file imports: its path and the module's."""
    env = environment_elsewhere(monorepo, "beta")
    (site,) = env.glob("lib/python*/site-packages")
    extra = site / "extra_b.py"
    extra.write_text(USES_CIRCLE)
    return env, extra


async def assert_beta_from(client: MuxClient, uri: str, env: Path) -> None:
    hover = hover_text(await client.hover(uri, "Circle"))
    assert "class" in hover and CIRCLE_V2_DOC in hover, hover
    targets = definition_targets(await client.definition(uri, "Circle"))
    assert targets and all(uri_path(t).resolve().is_relative_to(env) for t, _ in targets)


@pytest.mark.parametrize("when", ["joining", "first"])
async def test_a_project_is_answered_from_its_own_environment_from_its_first_request(
    backend: str, when: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """beta's environment is one only the proxy's answer names. pyrefly checks a folder (one
    added to it running, or one of the handshake) with its default interpreter until that
    answer is applied in a recheck of its own: until then beta's requests wait, and what it
    publishes for beta is not relayed (it would say `shapes` cannot be found)."""
    monorepo = fresh_monorepo
    env = environment_elsewhere(monorepo, "beta")
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    if when == "joining":
        alpha = client.open(monorepo.path(ALPHA))
        await client.wait_for_diagnostics(alpha)
        await assert_alpha_right(client, monorepo, alpha)
    beta = client.open(monorepo.path(BETA))
    await assert_beta_from(client, beta, env)  # asked at once
    assert await client.wait_for_diagnostics(beta) == []
    if when == "first":
        alpha = client.open(monorepo.path(ALPHA))
        await assert_alpha_right(client, monorepo, alpha)
    assert [d for _, uri, d in client.published if uri == beta and d] == []
    (entry,) = (await status(client))["backends"]
    assert len(entry["projects"]) == 2


async def test_a_library_file_of_an_environment_outside_its_project_is_answered_from_it(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """A file of beta's environment, which lives outside the repository (pdm's), opened as
    "go to definition" leads there: its imports resolve in beta's environment, not in
    whichever environment a shared backend falls back to for a file outside its folders
    (pyright's default workspace: the proxy pins it to beta's folder, pin.py)."""
    monorepo = fresh_monorepo
    env, extra = beta_elsewhere_with_a_module(monorepo)
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    _alpha, beta = await alpha_settled_then_beta(client, monorepo)
    await assert_beta_from(client, beta, env)
    library = client.open(extra)
    await assert_beta_from(client, library, env)
    if backend not in ("pyright", "basedpyright"):
        return
    # pyright: the pin (an import of `extra_b` in beta's folder) stays while it is open, its
    # edits reach beta's program, a crash brings both back, closing it closes the pin.
    assert len(pins(await status(client))) == 1
    client.change(library, [{"text": "from shapes import Circle\n\nring = Circle(2.0)\n"}])
    hover = hover_text(await client.hover(library, "ring"))
    assert "ring: Circle" in hover, hover
    await assert_beta_from(client, library, env)
    (victim,) = (await status(client))["backends"]
    os.killpg(victim["pid"], signal.SIGKILL)
    for _ in range(1000):
        state = await status(client)
        if [b["pid"] for b in state["backends"]] not in ([], [victim["pid"]]) and pins(state):
            break
    else:
        raise AssertionError(f"the shared backend was not restarted with the pin: {state}")
    hover = hover_text(await client.hover(library, "ring"))
    assert "ring: Circle" in hover, hover
    await assert_beta_from(client, library, env)
    client.close(library)
    for _ in range(1000):
        if not pins(await status(client)):
            break
    else:
        raise AssertionError("the pin was left open after its document closed")
    await assert_beta_from(client, beta, env)


async def test_a_library_file_leaves_with_its_projects_folder_and_comes_back_with_it(
    fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """A budget of 1 MiB: alpha opening evicts beta, whose folder leaves the shared pyright
    with the library file (closed there); asked again, the file is answered from beta's
    environment once more. (One folder at a time: pyright sends the file to the one folder
    there is, so no pin is needed.)"""
    monorepo = fresh_monorepo
    env, extra = beta_elsewhere_with_a_module(monorepo)
    sharing = sharing_env("pyright", TYPEMUX_LSP_MAX_BACKEND_MEMORY="1")
    client = await start_proxy("pyright", monorepo.root, env=sharing)
    beta = client.open(monorepo.path(BETA))
    await assert_beta_from(client, beta, env)
    library = client.open(extra)
    await assert_beta_from(client, library, env)
    alpha = client.open(monorepo.path(ALPHA))
    await assert_alpha_right(client, monorepo, alpha)
    (entry,) = (await status(client))["backends"]
    assert [p["project"] for p in entry["projects"]] == [str(monorepo.path("alpha"))]
    assert library not in entry["openDocuments"]
    await assert_beta_from(client, library, env)


@pytest.mark.parametrize("backend", ["pyright", "basedpyright"], indirect=True)
async def test_a_stub_of_the_backends_own_typeshed_is_answered(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """ "Go to definition" of `print` leads into the typeshed the backend bundles, a file no
    folder tracks and no site-packages holds: opened, it is answered (pinned as `builtins`)."""
    monorepo = fresh_monorepo
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    alpha = client.open(monorepo.path(ALPHA))
    await client.wait_for_diagnostics(alpha)
    use = client.open(monorepo.path("beta/use_print.py"), "print(1)\n")
    stubs = {uri_path(t) for t, _ in definition_targets(await client.definition(use, "print"))}
    assert [s.name for s in stubs] == ["builtins.pyi"], stubs
    (stub,) = stubs
    builtins = client.open(stub)
    hover = hover_text(await client.hover(builtins, "def print", offset=4))
    assert "print" in hover, hover


async def test_a_pinned_file_is_closed_with_its_projects_folder_and_pinned_again_after(
    fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """beta idle past the TTL leaves the shared pyright (alpha, asked meanwhile, stays): the
    library file pinned to beta's folder is closed there, its pin too. Asked again, beta joins
    again and the file is pinned again, answered from beta's environment."""
    monorepo = fresh_monorepo
    env, extra = beta_elsewhere_with_a_module(monorepo)
    sharing = sharing_env("pyright", TYPEMUX_LSP_BACKEND_TTL="3")
    client = await start_proxy("pyright", monorepo.root, env=sharing)
    alpha, beta = await alpha_settled_then_beta(client, monorepo)
    library = client.open(extra)
    await assert_beta_from(client, library, env)
    assert len(pins(await status(client))) == 1
    for _ in range(3000):
        await assert_alpha_right(client, monorepo, alpha)  # (alpha's traffic keeps it)
        (entry,) = (await status(client))["backends"]
        if [p["project"] for p in entry["projects"]] == [str(monorepo.path("alpha"))]:
            break
    else:
        raise AssertionError(f"beta's folder did not leave when idle: {entry}")
    assert pins({"backends": [entry]}) == [], entry
    assert library not in entry["openDocuments"] and beta not in entry["openDocuments"]
    await assert_beta_from(client, library, env)
    assert len(pins(await status(client))) == 1


async def test_a_project_file_its_folder_excludes_is_an_error_not_another_answer(
    fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """beta/.scripts/tool.py: pyright's default `exclude` (`**/.*`) leaves it out of beta's
    folder, so a shared pyright serving alpha too answers it from its default workspace
    (`Circle: Unknown`), and no import can name it to pin it. Its requests get an error
    naming it; beta's own files are answered."""
    monorepo = fresh_monorepo
    tool = monorepo.path("beta/.scripts/tool.py")
    tool.parent.mkdir()
    tool.write_text(USES_CIRCLE)
    client = await start_proxy("pyright", monorepo.root, env=sharing_env("pyright"))
    _alpha, beta = await alpha_settled_then_beta(client, monorepo)
    await assert_beta_right(client, monorepo, beta)
    script = client.open(tool)
    with pytest.raises(JsonRpcException) as err:
        await client.hover(script, "Circle")
    message = err.value.message
    assert str(tool) in message and "exclude" in message and "backend-sharing" in message
    await assert_beta_right(client, monorepo, beta)


@pytest.mark.parametrize("backend", ["pyright", "basedpyright"], indirect=True)
async def test_a_project_whose_own_config_excludes_files_gets_a_process_of_its_own(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """beta's `[tool.pyright] exclude = ["scripts"]` leaves beta/scripts/tool.py out of beta's
    folder: a pyright serving alpha too would answer it from its default workspace (alpha's
    interpreter). beta gets a process of its own, where that file is answered from beta's
    environment as pyright per environment answers it; alpha keeps the shared one."""
    monorepo = fresh_monorepo
    pyproject = monorepo.path("beta/pyproject.toml")
    pyproject.write_text(pyproject.read_text("utf-8") + '\n[tool.pyright]\nexclude = ["scripts"]\n')
    tool = monorepo.path("beta/scripts/tool.py")
    tool.parent.mkdir()
    tool.write_text(USES_CIRCLE)
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    _alpha, beta = await alpha_settled_then_beta(client, monorepo)
    await assert_beta_right(client, monorepo, beta)
    script = client.open(tool)
    await assert_beta_right(client, monorepo, script)
    backends = (await status(client))["backends"]
    beta_dir = str(monorepo.path("beta"))
    (own,) = [b for b in backends if any(p["project"] == beta_dir for p in b["projects"])]
    assert len(own["projects"]) == 1 and len(backends) == 2, backends


@pytest.mark.parametrize("backend", ["pyright", "basedpyright"], indirect=True)
async def test_a_project_whose_config_comes_to_exclude_files_leaves_the_shared_process(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """beta shares a pyright with alpha until its pyproject gains `exclude = ["scripts"]`
    (an agent's edit): from then a file of beta/scripts opened would be in no folder, answered
    from pyright's default workspace (alpha's interpreter). The proxy sees the config change,
    takes beta out of the shared process, and beta's files, the excluded one included, are
    answered from beta's environment by a process of its own."""
    monorepo = fresh_monorepo
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    _alpha, beta = await alpha_settled_then_beta(client, monorepo)
    await assert_beta_right(client, monorepo, beta)
    (entry,) = (await status(client))["backends"]
    assert len(entry["projects"]) == 2, entry
    pyproject = monorepo.path("beta/pyproject.toml")
    pyproject.write_text(pyproject.read_text("utf-8") + '\n[tool.pyright]\nexclude = ["scripts"]\n')
    beta_dir = str(monorepo.path("beta"))
    deadline = time.monotonic() + 30
    while any(
        beta_dir in (p["project"] for p in b["projects"]) and len(b["projects"]) > 1
        for b in (await status(client))["backends"]
    ):
        assert time.monotonic() < deadline, "beta still shares a process after its exclude"
        await asyncio.sleep(0.1)
    tool = monorepo.path("beta/scripts/tool.py")
    tool.parent.mkdir()
    tool.write_text(USES_CIRCLE)
    await assert_beta_right(client, monorepo, client.open(tool))
    await assert_beta_right(client, monorepo, beta)


def pins(state: dict[str, Any]) -> list[str]:
    return [u for b in state["backends"] for u in b["openDocuments"] if "__typemux_pin_" in u]


@pytest.mark.parametrize("backend", ["pyright", "basedpyright"], indirect=True)
async def test_a_file_of_an_environment_no_import_names_is_an_error_not_another_answer(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """A file inside beta's environment (kept outside the repository) but under none of its
    import roots: a shared pyright would answer it from its default workspace (alpha's
    interpreter), and no import can tie it to beta's folder. Its requests get an error
    naming the file and the fix; beta is still answered."""
    monorepo = fresh_monorepo
    env = environment_elsewhere(monorepo, "beta")
    tool = env / "share" / "tool.py"
    tool.parent.mkdir()
    tool.write_text(USES_CIRCLE)
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    _alpha, beta = await alpha_settled_then_beta(client, monorepo)
    await assert_beta_from(client, beta, env)
    script = client.open(tool)
    with pytest.raises(JsonRpcException) as err:
        await client.hover(script, "Circle")
    message = err.value.message
    assert str(tool) in message and "no import names it" in message, message
    assert "backend-sharing" in message, message
    await assert_beta_from(client, beta, env)


async def test_an_interpreter_not_in_effect_in_time_is_an_error_not_a_wrong_answer(
    fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """A client slow to answer `workspace/configuration` (the proxy waits up to 1 s for its
    settings) and a start timeout of 0.5 s: beta's hover, held until pyrefly has beta's
    interpreter in effect, is answered with an error saying so; asked again later, it is
    answered from beta's own environment. alpha is answered meanwhile."""
    monorepo = fresh_monorepo
    env = environment_elsewhere(monorepo, "beta")
    client = await start_proxy(
        "pyrefly",
        monorepo.root,
        VSCODE,
        args=("--start-timeout", "0.5"),
        env=sharing_env("pyrefly"),
        initialize=False,
    )

    async def slow(params: types.ConfigurationParams) -> list[None]:
        await asyncio.sleep(2.0)
        return [None] * len(params.items)

    client.protocol.fm.features[types.WORKSPACE_CONFIGURATION] = slow
    await client.start_session(monorepo.root)
    alpha, beta = await alpha_settled_then_beta(client, monorepo)
    with pytest.raises(JsonRpcException) as err:
        await client.hover(beta, "Circle")
    message = err.value.message
    assert str(env) in message and "0.5 s" in message and "backend-sharing" in message, message

    def joining() -> dict[str, bool]:
        return {
            Path(p["project"]).name: p["joining"] for b in state["backends"] for p in b["projects"]
        }

    state = await status(client)
    assert joining() == {"alpha": False, "beta": True}  # (the proxy answers pyrefly at 1 s)
    await assert_alpha_right(client, monorepo, alpha)
    await client.wait_for_diagnostics(beta)  # (published once its interpreter is in effect)
    await assert_beta_from(client, beta, env)
    state = await status(client)
    assert joining() == {"alpha": False, "beta": False}


async def test_configuration_answered_again_never_answers_from_another_environment(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """The client's settings change: every backend asks each folder's configuration again,
    and pyrefly rechecks every folder with the answer (the same interpreters). Asked at once
    and throughout, beta is answered from its own environment."""
    monorepo = fresh_monorepo
    env = environment_elsewhere(monorepo, "beta")
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    alpha = client.open(monorepo.path(ALPHA))
    beta = client.open(monorepo.path(BETA))
    await assert_beta_from(client, beta, env)
    await assert_alpha_right(client, monorepo, alpha)
    mark = client.seq
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"python": {}})
    )
    for _ in range(10):
        await assert_beta_from(client, beta, env)
    assert [d for seq, uri, d in client.published if uri == beta and seq > mark and d] == []


async def test_a_project_under_a_repository_wide_config_is_answered_from_its_own_environment(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """pyrefly configured once, at the top (beta's pyproject.toml has no [tool.pyrefly]):
    pyrefly checks a file with the interpreter of the folder that holds its config, and no
    project's folder holds the top one. Shared, beta would be answered from the folderless
    default (alpha's environment); so pyrefly serves beta from a process of its own."""
    monorepo = fresh_monorepo
    (monorepo.root / "pyrefly.toml").write_text("")
    pyproject = monorepo.path("beta/pyproject.toml")
    pyproject.write_text(pyproject.read_text().replace("[tool.pyrefly]", ""))
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    alpha, beta = await alpha_settled_then_beta(client, monorepo)
    await assert_beta_right(client, monorepo, beta)
    await assert_alpha_right(client, monorepo, alpha)
    groups = projects_by_pid(await status(client)).values()
    if backend == "pyrefly":
        assert sorted(map(len, groups)) == [1, 1]


async def test_nested_projects_get_separate_processes(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """alpha/inner is a project of its own inside alpha, with beta's shapes 2.x: which folder a
    backend would pick for its file is not left to the backend."""
    monorepo = fresh_monorepo
    shutil.copytree(
        monorepo.path("beta"),
        monorepo.path("alpha/inner"),
        ignore=shutil.ignore_patterns(".venv"),
    )
    build_venvs(monorepo.root)
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    outer = client.open(monorepo.path(ALPHA))
    inner = client.open(monorepo.path("alpha/inner/app.py"))
    beta = client.open(monorepo.path(BETA))
    await client.wait_for_diagnostics(inner)
    assert AREA_V1 in hover_text(await client.hover(outer, "area(2.0)"))
    await assert_beta_right(client, monorepo, inner, "alpha/inner")
    await assert_beta_right(client, monorepo, beta)

    groups = sorted(projects_by_pid(await status(client)).values(), key=len)
    assert len(groups) == 2
    together = groups[1]
    assert str(monorepo.path("beta")) in together
    # alpha and alpha/inner are never in one process
    assert not {str(monorepo.path("alpha")), str(monorepo.path("alpha/inner"))} <= together
    assert not {str(monorepo.path("alpha")), str(monorepo.path("alpha/inner"))} <= groups[0]


async def test_a_crashed_shared_backend_comes_back_with_every_folder(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    monorepo = fresh_monorepo
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    alpha = client.open(monorepo.path(ALPHA))
    beta = client.open(monorepo.path(BETA))
    await client.wait_for_diagnostics(alpha)
    await client.wait_for_diagnostics(beta)
    (victim,) = (await status(client))["backends"]
    family = [p for p in procs.descendants(client.pid) if p.pid == victim["pid"]]
    family += procs.descendants(victim["pid"])

    os.killpg(victim["pid"], signal.SIGKILL)
    assert await procs.wait_gone(family, 10) == []

    # Back by itself, before any request: a new process, both folders, both documents open.
    expected = {str(monorepo.path("alpha")): [alpha], str(monorepo.path("beta")): [beta]}
    for _ in range(1000):
        state = await status(client)
        if [b["pid"] for b in state["backends"]] not in ([], [victim["pid"]]) and {
            p["project"]: p["openDocuments"] for p in state["backends"][0]["projects"]
        } == expected:
            break
    else:
        raise AssertionError(f"the shared backend was not restarted with both folders: {state}")
    (entry,) = state["backends"]
    assert entry["crashes"] == 1
    await assert_alpha_right(client, monorepo, alpha)
    await assert_beta_right(client, monorepo, beta)


@pytest.mark.parametrize("sharing", [True, False], ids=["shared", "per-process"])
async def test_past_the_memory_budget_the_least_recently_used_project_goes(
    sharing: bool, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """A budget of 1 MiB: every new project evicts the least recently used one (its folder
    removed from a shared backend, or its process stopped); coming back is a cold start,
    answered right."""
    monorepo = fresh_monorepo
    env = sharing_env("pyright" if sharing else "none", TYPEMUX_LSP_MAX_BACKEND_MEMORY="1")
    client = await start_proxy("pyright", monorepo.root, env=env)
    alpha = client.open(monorepo.path(ALPHA))
    await client.wait_for_diagnostics(alpha)
    await assert_alpha_right(client, monorepo, alpha)
    first = (await status(client))["backends"]
    beta = client.open(monorepo.path(BETA))
    await assert_beta_right(client, monorepo, beta)

    state = await status(client)
    assert [{p["project"] for p in b["projects"]} for b in state["backends"]] == [
        {str(monorepo.path("beta"))}
    ]
    assert state["maxBackendMemory"] == 1
    if sharing:  # the folder went, the process stayed
        assert state["backends"][0]["pid"] == first[0]["pid"]
        assert alpha not in state["backends"][0]["openDocuments"]

    # alpha again: served again (beta evicted in turn), from alpha's own venv
    await assert_alpha_right(client, monorepo, alpha)
    state = await status(client)
    assert [{p["project"] for p in b["projects"]} for b in state["backends"]] == [
        {str(monorepo.path("alpha"))}
    ]


async def test_no_shared_backend_falls_back_to_the_environment_it_is_installed_in(
    backend: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """pygls is in typemux-lsp's own environment (where the backends are installed), not in
    alpha's: a shared backend that took its interpreter from anywhere but alpha's folder
    setting (ty falls back to the venv it is installed in) would resolve it."""
    monorepo = fresh_monorepo
    own = monorepo.path("alpha/own.py")
    own.write_text("import pygls\nfrom shapes import area\n\nprint(pygls, area)\n")
    client = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    client.open(monorepo.path(BETA))
    uri = client.open(own)

    def unresolved(diagnostics: list[dict[str, Any]]) -> bool:
        return any(
            d["range"]["start"]["line"] == 0 and "pygls" in d["message"] for d in diagnostics
        )

    diagnostics = await client.wait_for_diagnostics(uri, unresolved)
    assert not any(d["range"]["start"]["line"] == 1 for d in diagnostics), diagnostics
    (entry,) = (await status(client))["backends"]
    assert len(entry["projects"]) == 2


async def test_a_frozen_shared_backend_is_answered_for_and_replaced_with_every_folder(
    fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    monorepo = fresh_monorepo
    client = await start_proxy(
        "pyright", monorepo.root, args=("--request-timeout", "3"), env=sharing_env("pyright")
    )
    alpha = client.open(monorepo.path(ALPHA))
    beta = client.open(monorepo.path(BETA))
    await client.wait_for_diagnostics(alpha)
    await client.wait_for_diagnostics(beta)
    (frozen,) = (await status(client))["backends"]
    os.killpg(frozen["pid"], signal.SIGSTOP)
    try:
        with pytest.raises(JsonRpcException) as err:
            await client.hover(alpha, "area(2.0)")
        assert "pyright" in err.value.message and "3 s" in err.value.message, err.value.message
        # replaced by one process serving both again, each from its own venv
        await assert_beta_right(client, monorepo, beta)
        await assert_alpha_right(client, monorepo, alpha)
        (after,) = (await status(client))["backends"]
        assert after["pid"] != frozen["pid"]
        assert {p["project"] for p in after["projects"]} == {
            str(monorepo.path("alpha")),
            str(monorepo.path("beta")),
        }
    finally:
        with contextlib.suppress(OSError):
            os.killpg(frozen["pid"], signal.SIGCONT)


async def test_a_recreated_environment_under_a_shared_backend_is_seen(
    fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """alpha's venv is rebuilt with beta's shapes 2.x: alpha's answers follow (its folder
    renewed in the shared process), beta's stay its own."""
    monorepo = fresh_monorepo
    client = await start_proxy("pyright", monorepo.root, env=sharing_env("pyright"))
    alpha = client.open(monorepo.path(ALPHA))
    beta = client.open(monorepo.path(BETA))
    await client.wait_for_diagnostics(alpha)
    await assert_alpha_right(client, monorepo, alpha)
    shutil.rmtree(monorepo.venv("alpha"))
    shutil.copytree(monorepo.venv("beta"), monorepo.venv("alpha"), symlinks=True)
    for _ in range(300):
        if "shapes 2.x" in hover_text(await client.hover(alpha, "shapes import")):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("alpha's hover never showed its recreated venv's shapes")
    await assert_beta_right(client, monorepo, beta)
    (entry,) = (await status(client))["backends"]
    assert {p["project"] for p in entry["projects"]} == {
        str(monorepo.path("alpha")),
        str(monorepo.path("beta")),
    }


async def hierarchies(client: MuxClient, monorepo: Monorepo) -> dict[str, Any]:
    """Every call-hierarchy answer about alpha's and beta's `report` and `main`."""
    found: dict[str, Any] = {}
    for relative in (ALPHA, BETA):
        uri = client.open(monorepo.path(relative))
        await client.wait_for_diagnostics(uri)
    for relative in (ALPHA, BETA):
        uri = monorepo.path(relative).as_uri()
        (report,) = await client.prepare_call_hierarchy(uri, "def report", offset=4)
        (main,) = await client.prepare_call_hierarchy(uri, "def main", offset=4)
        found[f"{relative} report incoming"] = await client.request(
            "callHierarchy/incomingCalls", {"item": report}
        )
        found[f"{relative} main outgoing"] = await client.request(
            "callHierarchy/outgoingCalls", {"item": main}
        )
        # an item that names nothing (a line past the end): the backend's own answer, null or
        # error, as it is
        nowhere = {"start": {"line": 999, "character": 0}, "end": {"line": 999, "character": 1}}
        try:
            found[f"{relative} nowhere incoming"] = await client.request(
                "callHierarchy/incomingCalls",
                {"item": {**report, "range": nowhere, "selectionRange": nowhere}},
            )
        except JsonRpcException as exc:
            found[f"{relative} nowhere incoming"] = (exc.code, exc.message)
    return found


async def test_a_shared_backend_answers_call_hierarchies_as_one_per_environment(
    backend: str, monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """alpha and beta both have an `app.py` calling `report` from `main`. ty 1.2.0 shared
    answers such a question once per folder that sees the file (bench/shared_habits.py):
    `main` twice, once without its module's name. The client gets exactly what the backend
    of the one environment answers."""
    shared = await start_proxy(backend, monorepo.root, env=sharing_env(backend))
    alone = await start_proxy(backend, monorepo.root, env=sharing_env("none"))
    answers = await hierarchies(shared, monorepo)
    assert (await status(shared))["backendProcesses"] == 1
    # (pyrefly 1.5.1 lists a function once per call site, process of its own or not: its
    # answer, as it is)
    assert answers == await hierarchies(alone, monorepo)


CIRCLE_V3_DOC = "A circle, as shapes 3.0 draws it."


def recreate_with_shapes_3(monorepo: Monorepo, project: str) -> None:
    """`rm -rf .venv && python -m venv .venv`, then shapes 3.0 installed into it (offline: the
    project's vendored shapes, its Circle documented anew, and its .dist-info)."""
    venv = monorepo.venv(project)
    shutil.rmtree(venv)
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    site = monorepo.site_packages(project)
    shutil.copytree(monorepo.path(f"{project}/vendor/shapes"), site / "shapes")
    init = site / "shapes" / "__init__.py"
    init.write_text(init.read_text("utf-8").replace(CIRCLE_V2_DOC, CIRCLE_V3_DOC), "utf-8")
    info = site / "shapes-3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shapes\nVersion: 3.0\n")


async def acted_on(client: MuxClient, project: str, pid: int) -> bool:
    """Whether the proxy renewed `project`'s folder or replaced its backend (process `pid`)."""
    for backend in (await status(client))["backends"]:
        for entry in backend["projects"]:
            if entry["project"] == project and (
                backend["pid"] != pid or entry.get("renewals", 0) + entry.get("restarts", 0) > 0
            ):
                return True
    return False


@pytest.mark.parametrize("freshness", ["watched", "unwatched"])
async def test_a_recreated_environment_renews_its_folder_alone(
    backend: str, freshness: str, fresh_monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """beta's .venv deleted and made again with shapes 3.0. With freshness on the proxy acts
    by itself (the watcher, or the check of a route used in the last second; beta is not asked
    until then); off, the once-a-second check of its pyvenv.cfg sees it as beta is asked.
    beta's hover shows 3.0 — never an
    answer from nowhere (the backend's default interpreter has no shapes) — while alpha, in
    the same process, is answered throughout by that same process, never restarted. A kind
    that does not re-read a folder added again (pyrefly) restarts the process instead."""
    monorepo = fresh_monorepo
    env = sharing_env(backend)
    if freshness == "unwatched":
        env["TYPEMUX_LSP_FRESHNESS"] = "false"
    client = await start_proxy(backend, monorepo.root, env=env)
    alpha = client.open(monorepo.path(ALPHA))
    beta = client.open(monorepo.path(BETA))
    await client.wait_for_diagnostics(alpha)
    await client.wait_for_diagnostics(beta)
    await assert_alpha_right(client, monorepo, alpha)
    await assert_beta_right(client, monorepo, beta)
    (before,) = (await status(client))["backends"]

    alpha_hovers: list[float] = []
    done = asyncio.Event()

    async def keep_asking_alpha() -> None:
        while not done.is_set():
            started = time.monotonic()
            assert AREA_V1 in hover_text(await client.hover(alpha, "area(2.0)"))
            alpha_hovers.append(time.monotonic() - started)
            await asyncio.sleep(0.02)

    asking = asyncio.create_task(keep_asking_alpha())
    recreate_with_shapes_3(monorepo, "beta")
    if freshness == "watched":  # beta not asked until the watcher alone has acted on it
        deadline = time.monotonic() + 30
        while not await acted_on(client, str(monorepo.path("beta")), before["pid"]):
            assert time.monotonic() < deadline, "the recreated venv was never acted on"
            await asyncio.sleep(0.1)
    answers: list[str] = []
    deadline = time.monotonic() + 30
    while not answers or CIRCLE_V3_DOC not in answers[-1]:
        assert time.monotonic() < deadline, f"beta's hover never showed shapes 3.0: {answers}"
        text = hover_text(await client.hover(beta, "Circle"))
        if not answers or answers[-1] != text:
            answers.append(text)
        await asyncio.sleep(0.05)
    # the old release until the change was seen, then the new one: nothing in between
    assert all(CIRCLE_V2_DOC in text for text in answers[:-1]), answers
    await asyncio.sleep(0.5)  # alpha asked on after the renewal
    done.set()
    await asking
    await assert_alpha_right(client, monorepo, alpha)
    assert CIRCLE_V3_DOC in hover_text(await client.hover(beta, "Circle"))

    deadline = time.monotonic() + 30
    while True:  # (a late batch of the watcher's may still be acted on: until it settles)
        (after,) = (await status(client))["backends"]
        projects = {p["project"]: p for p in after["projects"]}
        alpha_state = projects[str(monorepo.path("alpha"))]
        beta_state = projects[str(monorepo.path("beta"))]
        if beta_state["openDocuments"] == [beta] and not beta_state.get("renewing"):
            break
        assert time.monotonic() < deadline, f"beta's folder never settled: {after}"
        await asyncio.sleep(0.1)
    if KINDS[backend].renews_folders:
        # alpha was answered by the same process all along, which was never restarted
        assert after["pid"] == before["pid"]
        assert (alpha_state["restarts"], beta_state["restarts"], after["restarts"]) == (0, 0, 0)
        assert beta_state["renewals"] >= 1 and alpha_state["renewals"] == 0
    else:  # it would keep answering from the old release: a restart, both folders back
        assert after["pid"] != before["pid"]
        assert beta_state["restarts"] >= 1 and beta_state["renewals"] == 0
    print(f"{backend}: alpha's slowest hover during the swap {max(alpha_hovers) * 1e3:.0f} ms")


async def test_a_shared_ty_answers_a_project_while_another_joins(
    monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """ty 1.2.0 shared gives up on a request in flight (ContentModified) when the proxy adds
    a folder to it (here beta's, joining for a workspace symbol search): alpha did nothing,
    so its hover is sent again and answered, as one process per project answers it. (ty
    gives up in about one proxy in five: twelve are started.)"""
    for _ in range(12):
        client = await start_proxy("ty", monorepo.root, env=sharing_env("ty"))
        alpha = client.open(monorepo.path(ALPHA))
        assert AREA_V1 in hover_text(await client.hover(alpha, "area(2.0)"))
        asked = [client.hover(alpha, "area(2.0)") for _ in range(4)]
        symbols, *hovers = await asyncio.gather(
            client.request("workspace/symbol", {"query": "area"}), *asked
        )
        assert symbols, symbols
        assert all(AREA_V1 in hover_text(h) for h in hovers), hovers
        (entry,) = (await status(client))["backends"]
        assert len(entry["projects"]) == 2, entry
        await client.close_session()
