"""The Claude Code plugin: manifests Claude Code accepts, and a launcher that starts the server.

The manifest rules are Claude Code's (plugins reference and marketplace reference, checked
2026-11; see /work/shared/notes/backends.md): `lspServers` entries need `command` and
`extensionToLanguage`, a command has no spaces unless it is an absolute path, unknown keys are
rejected, a marketplace needs `name`, `owner.name` and `plugins[]` entries with `name` and a
`source` (a relative source starts with "./" and has no ".."). Some keys the schema allows make
released Claude Code versions drop the server silently (`restartOnCrash`, `shutdownTimeout`,
and `startupTimeout` before 2.1.50), so the manifest must not use them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from clients import CLAUDE_CODE
from rawclient import RawClient

import typemux_lsp
from typemux_lsp.client import LspClient
from typemux_lsp.example import build_venvs

REPO_ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = REPO_ROOT / "bin" / "typemux-lsp-launch"
MANIFEST = REPO_ROOT / ".claude-plugin" / "plugin.json"
TOP_MANIFEST = REPO_ROOT / "plugin.json"
MARKETPLACE = REPO_ROOT / ".claude-plugin" / "marketplace.json"

LSP_SERVER_KEYS = {
    "command",
    "args",
    "extensionToLanguage",
    "transport",
    "env",
    "initializationOptions",
    "settings",
    "workspaceFolder",
    "startupTimeout",
    "shutdownTimeout",
    "requestTimeout",
    "restartOnCrash",
    "maxRestarts",
    "diagnostics",
}
#: allowed by the schema, but a server that has them is dropped by some Claude Code releases
DROPPED_BY_SOME_RELEASES = {"restartOnCrash", "shutdownTimeout", "startupTimeout", "maxRestarts"}
RESERVED_MARKETPLACE_NAMES = {
    "claude-code-marketplace",
    "claude-code-plugins",
    "claude-plugins-official",
    "anthropic-marketplace",
    "anthropic-plugins",
    "agent-skills",
    "anthropic-agent-skills",
    "life-sciences",
}
KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


# -- manifests ---------------------------------------------------------------------------------


def test_one_plugin_manifest_top_level_plugin_json_links_to_it() -> None:
    """One source of truth: the top-level plugin.json is a link to .claude-plugin/plugin.json.

    Claude Code 2.1.332 reads only .claude-plugin/plugin.json when .claude-plugin/marketplace.json
    is beside it (a root plugin.json alone loads no server), and `claude plugin validate
    --strict` rejects a .claude-plugin/plugin.json that is a link; so the real file is there and
    the top-level name the design requires points at it (tests/real/test_claude_plugin.py runs
    both checks with the real CLI).
    """
    assert TOP_MANIFEST.is_symlink(), "a copy would drift: link it"
    assert TOP_MANIFEST.readlink() == Path(".claude-plugin/plugin.json")
    assert not MANIFEST.is_symlink()
    assert load(TOP_MANIFEST) == load(MANIFEST)


@pytest.mark.parametrize("path", [MANIFEST, TOP_MANIFEST], ids=["claude-plugin", "top-level"])
def test_plugin_manifest(path: Path) -> None:
    manifest = load(path)
    assert KEBAB.match(manifest["name"]), "plugin names are kebab-case"
    assert manifest["version"] == typemux_lsp.__version__  # (pyproject.toml reads it too)
    servers = manifest["lspServers"]
    assert isinstance(servers, dict) and servers
    for name, server in servers.items():
        unknown = set(server) - LSP_SERVER_KEYS
        assert not unknown, f"lspServers.{name}: Claude Code rejects {unknown}"
        risky = set(server) & DROPPED_BY_SOME_RELEASES
        assert not risky, f"lspServers.{name}: {risky} make some releases drop the server"
        command = server["command"]
        assert isinstance(command, str) and command
        absolute = command.startswith(("/", "${CLAUDE_PLUGIN_ROOT}/"))
        assert absolute or not re.search(r"\s", command), "no spaces unless absolute"
        mapping = server["extensionToLanguage"]
        assert mapping[".py"] == "python" and mapping[".pyi"] == "python"
        assert all(ext.startswith(".") for ext in mapping)
        assert server.get("transport", "stdio") == "stdio"
        assert isinstance(server.get("args", []), list)


def test_manifest_command_is_the_launcher() -> None:
    (server,) = load(MANIFEST)["lspServers"].values()
    command = Path(server["command"].replace("${CLAUDE_PLUGIN_ROOT}", str(REPO_ROOT)))
    assert command == LAUNCHER
    assert os.access(command, os.X_OK), "the launcher must be executable (git keeps the bit)"


def test_marketplace() -> None:
    market = load(MARKETPLACE)
    assert KEBAB.match(market["name"]) and market["name"] not in RESERVED_MARKETPLACE_NAMES
    assert market["owner"]["name"]
    (entry,) = market["plugins"]
    assert entry["name"] == load(MANIFEST)["name"], "/plugin install NAME@marketplace"
    source = entry["source"]
    assert source.startswith("./") and ".." not in source
    # Relative sources resolve from the directory that holds .claude-plugin/.
    assert (REPO_ROOT / source / ".claude-plugin" / "plugin.json").is_file()
    assert "lspServers" not in entry, "declared once, in plugin.json"


# -- the launcher, its choices -----------------------------------------------------------------


def test_launcher_is_posix_sh() -> None:
    text = LAUNCHER.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert "\nset -eu\n" in text
    subprocess.run(["sh", "-n", str(LAUNCHER)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-s", "sh", str(LAUNCHER)], check=True)


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Path]:
    """A plugin root without a venv and a PATH with only the tools the launcher needs."""
    root = tmp_path / "plugin"
    root.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "grep", "cat"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    return {"root": root, "bin": bin_dir, "record": tmp_path / "record"}


def fake(path: Path, name: str, record: Path) -> None:
    """A stand-in program that writes its name and arguments to `record`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "{name}" "$@" > "{record}"\n')
    path.chmod(0o755)


def launch(sandbox: dict[str, Path], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(LAUNCHER), *args],
        env={"PATH": str(sandbox["bin"]), "CLAUDE_PLUGIN_ROOT": str(sandbox["root"]), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def recorded(sandbox: dict[str, Path]) -> list[str]:
    return sandbox["record"].read_text().splitlines()


def as_checkout(root: Path) -> None:
    (root / "pyproject.toml").write_text((REPO_ROOT / "pyproject.toml").read_text())


def test_prefers_the_checkouts_own_venv(sandbox: dict[str, Path]) -> None:
    fake(sandbox["root"] / ".venv" / "bin" / "typemux-lsp", "venv", sandbox["record"])
    fake(sandbox["bin"] / "typemux-lsp", "path", sandbox["record"])
    done = launch(sandbox, "--stdio")
    assert done.returncode == 0, done.stderr
    assert recorded(sandbox) == ["venv", "--stdio"]


def test_then_an_installed_typemux_lsp(sandbox: dict[str, Path]) -> None:
    fake(sandbox["bin"] / "typemux-lsp", "path", sandbox["record"])
    fake(sandbox["bin"] / "uvx", "uvx", sandbox["record"])
    assert launch(sandbox, "--log-level", "debug").returncode == 0
    assert recorded(sandbox) == ["path", "--log-level", "debug"]


def test_then_uvx_from_the_plugins_own_source(sandbox: dict[str, Path]) -> None:
    as_checkout(sandbox["root"])
    fake(sandbox["bin"] / "uvx", "uvx", sandbox["record"])
    fake(sandbox["bin"] / "pipx", "pipx", sandbox["record"])
    done = launch(sandbox, "--stdio", TYPEMUX_LSP_BACKEND="ty")
    assert done.returncode == 0 and done.stdout == ""
    assert recorded(sandbox) == [
        "uvx",
        "--from",
        f"{sandbox['root']}[ty]",
        "typemux-lsp",
        "--stdio",
    ]


def test_uvx_from_pypi_when_not_a_checkout(sandbox: dict[str, Path]) -> None:
    fake(sandbox["bin"] / "uvx", "uvx", sandbox["record"])
    assert launch(sandbox).returncode == 0
    assert recorded(sandbox) == ["uvx", "--from", "typemux-lsp[pyright]", "typemux-lsp"]


def test_then_pipx(sandbox: dict[str, Path]) -> None:
    as_checkout(sandbox["root"])
    fake(sandbox["bin"] / "pipx", "pipx", sandbox["record"])
    assert launch(sandbox, "--stdio", TYPEMUX_LSP_BACKEND="pyrefly").returncode == 0
    assert recorded(sandbox) == [
        "pipx",
        "run",
        "--spec",
        f"{sandbox['root']}[pyrefly]",
        "typemux-lsp",
        "--stdio",
    ]


def test_nothing_to_run_without_python3_is_explained_on_stderr(sandbox: dict[str, Path]) -> None:
    """No python3 for the stand-in server: the message goes to stderr, the exit code says 127."""
    as_checkout(sandbox["root"])
    done = launch(sandbox, TYPEMUX_LSP_BACKEND="basedpyright")
    assert done.returncode == 127
    assert done.stdout == "", "stdout is the LSP channel"
    assert "typemux-lsp is not running: it is not installed" in done.stderr
    root = sandbox["root"]
    assert f"-m pip install -e '{root}[basedpyright]'" in done.stderr, done.stderr


def test_auto_fetches_pyright_and_leaves_the_choice_to_typemux_lsp(
    sandbox: dict[str, Path],
) -> None:
    """`auto` is typemux-lsp's own default: the launcher accepts it and fetches the default
    backend's extra (typemux-lsp then takes whichever backend is installed)."""
    as_checkout(sandbox["root"])
    fake(sandbox["bin"] / "uvx", "uvx", sandbox["record"])
    done = launch(sandbox, TYPEMUX_LSP_BACKEND="auto")
    assert done.returncode == 0 and done.stderr == ""
    assert recorded(sandbox) == ["uvx", "--from", f"{sandbox['root']}[pyright]", "typemux-lsp"]


def test_unknown_backend_is_refused(sandbox: dict[str, Path]) -> None:
    fake(sandbox["bin"] / "typemux-lsp", "path", sandbox["record"])
    done = launch(sandbox, TYPEMUX_LSP_BACKEND="mypy")
    assert done.returncode == 2
    assert "TYPEMUX_LSP_BACKEND=mypy" in done.stderr and "pyright, basedpyright" in done.stderr
    assert not sandbox["record"].exists()


def test_finds_its_root_without_claude_plugin_root(tmp_path: Path) -> None:
    """Run by hand from a checkout: the root is the launcher's parent directory."""
    root = tmp_path / "checkout"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(LAUNCHER, root / "bin" / LAUNCHER.name)
    record = tmp_path / "record"
    fake(root / ".venv" / "bin" / "typemux-lsp", "venv", record)
    done = subprocess.run(
        [str(root / "bin" / LAUNCHER.name), "x"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert record.read_text().splitlines() == ["venv", "x"]


# -- the launcher when it cannot start typemux-lsp: a stand-in server explains ----------------

RESPONDER = REPO_ROOT / "bin" / "typemux-lsp-unavailable"
REQUEST_FAILED = -32803


def _system_python3() -> str:
    """A python3 that is not the test venv's (the responder must need nothing installed)."""
    found = shutil.which("python3", path=os.defpath) or shutil.which("python3")
    assert found, "the launcher's stand-in server needs a python3"
    return found


@pytest.fixture
def bare_plugin(sandbox: dict[str, Path]) -> dict[str, Path]:
    """A plugin checkout with no venv; PATH has python3 but no typemux-lsp, uvx nor pipx."""
    (sandbox["root"] / "bin").mkdir()
    shutil.copy2(RESPONDER, sandbox["root"] / "bin" / RESPONDER.name)
    as_checkout(sandbox["root"])
    (sandbox["bin"] / "python3").symlink_to(_system_python3())
    return sandbox


UNAVAILABLE_CASES = {
    # name: (environment, what the message must say)
    "not-installed": (
        {"TYPEMUX_LSP_BACKEND": "ty"},
        [
            "typemux-lsp is not running: it is not installed",
            "neither uvx nor pipx",
            "python3 -m venv '{root}/.venv' && '{root}/.venv/bin/python' -m pip install -e "
            "'{root}[ty]'",
            "start a new Claude Code session",
        ],
    ),
    "bad-backend": (
        {"TYPEMUX_LSP_BACKEND": "mypy"},
        [
            "typemux-lsp is not running: TYPEMUX_LSP_BACKEND=mypy is not a backend it runs",
            "set TYPEMUX_LSP_BACKEND to auto, pyright, basedpyright, ty or pyrefly",
        ],
    ),
}

#: Every request Claude Code's LSP tool sends, plus one nobody implements.
TOOL_REQUESTS = [
    "textDocument/hover",
    "textDocument/definition",
    "textDocument/references",
    "textDocument/implementation",
    "textDocument/documentSymbol",
    "workspace/symbol",
    "textDocument/prepareCallHierarchy",
    "callHierarchy/incomingCalls",
    "custom/anything",
]


@pytest.mark.parametrize("case", UNAVAILABLE_CASES)
async def test_launcher_explains_over_lsp_why_typemux_lsp_cannot_start(
    bare_plugin: dict[str, Path], tmp_path: Path, case: str
) -> None:
    """What Claude Code's model can see: error responses and diagnostics, never stderr."""
    env, expected = UNAVAILABLE_CASES[case]
    root = bare_plugin["root"]
    parts = [part.format(root=root) for part in expected]
    doc = tmp_path / "work" / "app.py"
    doc.parent.mkdir()
    doc.write_text("x = 1\n")
    client = await RawClient.start(
        ["/bin/sh", str(LAUNCHER)],
        cwd=doc.parent,
        env={"PATH": str(bare_plugin["bin"]), "CLAUDE_PLUGIN_ROOT": str(root), **env},
        name="launcher",
    )
    try:
        # At once: Claude Code 2.1.207-2.1.211 hang when initialize is answered late.
        started = await client.initialize(CLAUDE_CODE.initialize_params(doc.parent), timeout=10)
        capabilities = started["result"]["capabilities"]
        for provider in ("hover", "definition", "references", "documentSymbol", "callHierarchy"):
            assert capabilities[f"{provider}Provider"] is True, provider
        assert capabilities["workspaceSymbolProvider"] and capabilities["implementationProvider"]
        assert capabilities["textDocumentSync"]["openClose"] is True

        uri = client.open(doc)
        (diagnostic,) = await client.wait_for_diagnostics(uri, timeout=10)
        message = diagnostic["message"]
        for part in parts:
            assert part in message, f"{part!r} not in {message!r}"
        assert diagnostic["severity"] == 1

        at = {"line": 0, "character": 0}
        position: dict[str, Any] = {"textDocument": {"uri": uri}, "position": at}
        item = {"name": "x", "kind": 13, "uri": uri, "range": at}
        special: dict[str, dict[str, Any]] = {
            "workspace/symbol": {"query": "x"},
            "callHierarchy/incomingCalls": {"item": item},
        }
        for method in TOOL_REQUESTS:
            params = special.get(method, position)
            response = await client.request(method, params, timeout=10)
            assert response.get("error") == {"code": REQUEST_FAILED, "message": message}, method
        # Opened again elsewhere: the same explanation there too.
        other = client.open(doc.with_name("other.py"), text="")
        (again,) = await client.wait_for_diagnostics(other, timeout=10)
        assert again["message"] == message
        assert message in client.stderr_text(), "and in the server log, as before"
        assert await client.shutdown(timeout=10) == 0
    finally:
        await client.kill()


async def test_stand_in_server_ends_when_stdin_closes(bare_plugin: dict[str, Path]) -> None:
    client = await RawClient.start(
        ["/bin/sh", str(LAUNCHER)],
        cwd=bare_plugin["root"],
        env={"PATH": str(bare_plugin["bin"]), "CLAUDE_PLUGIN_ROOT": str(bare_plugin["root"])},
        name="launcher",
    )
    try:
        await client.initialize(CLAUDE_CODE.initialize_params(bare_plugin["root"]), timeout=10)
        client.close_stdin()
        assert await client.wait(timeout=10) == 0
        assert client.protocol_errors == []
    finally:
        await client.kill()


async def test_stand_in_server_answers_bad_json_and_keeps_serving(
    bare_plugin: dict[str, Path],
) -> None:
    client = await RawClient.start(
        [_system_python3(), "-I", str(RESPONDER), "the reason. Fix: the command."],
        cwd=bare_plugin["root"],
        env={"PATH": str(bare_plugin["bin"])},
        name="responder",
    )
    try:
        assert client.process.stdin is not None
        client.process.stdin.write(b"Content-Length: 5\r\n\r\n{nope")
        response = await client.request("textDocument/hover", {}, timeout=10)
        assert response["error"] == {
            "code": REQUEST_FAILED,
            "message": "the reason. Fix: the command.",
        }
        (parse_error,) = [m for d, m in client.messages if d == "in" and m.get("id") is None]
        assert parse_error["error"]["code"] == -32700
        client.notify("exit")  # without shutdown first: exit code 1, as the spec says
        assert await client.wait(timeout=10) == 1
    finally:
        await client.kill()


# -- the launcher, end to end ------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """examples/monorepo's alpha project (shapes 1.x in its .venv), in a git repository."""
    root = tmp_path / "repo"
    shutil.copytree(
        REPO_ROOT / "examples" / "monorepo",
        root,
        ignore=shutil.ignore_patterns(".venv", "__pycache__"),
    )
    (root / ".git").mkdir()
    build_venvs(root)
    return root.resolve()


def _launcher_env(tmp_path: Path, path: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TYPEMUX_LSP_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(PATH=path, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    return env


async def test_launcher_serves_hover_from_the_files_venv(
    project: Path, tmp_path: Path, reaper: Any
) -> None:
    """What Claude Code does: start the plugin's command, initialize, open, hover, shut down."""
    installed = shutil.which("typemux-lsp", path=str(Path(sys.executable).parent))
    assert installed, "typemux-lsp must be installed in the test environment"
    plugin_root = tmp_path / "plugin"  # no .venv: the launcher takes typemux-lsp from PATH
    plugin_root.mkdir()
    env = _launcher_env(tmp_path, f"{Path(installed).parent}{os.pathsep}{os.defpath}")
    env["CLAUDE_PLUGIN_ROOT"] = str(plugin_root)
    client = LspClient()
    await client.start([str(LAUNCHER)], cwd=project, env=env)
    assert client.pid is not None
    reaper.track(client.pid)
    try:
        await client.initialize(project, {"general": {"positionEncodings": ["utf-16"]}})
        app = project / "alpha" / "app.py"
        uri = client.open(app)
        line_no, line = next(
            (n, text) for n, text in enumerate(app.read_text().splitlines()) if "{area(" in text
        )
        hover = await client.request(
            "textDocument/hover",
            {
                "textDocument": {"uri": uri},
                "position": {"line": line_no, "character": line.index("area(") + 1},
            },
            timeout=90,
        )
        reaper.snapshot()
        text = json.dumps(hover)
        # shapes 1.x from alpha/.venv: a function (beta's shapes 2.x has no `area` function).
        assert "def area(radius: float) -> float" in text, text
        assert await client.stop(timeout=30) == 0
    finally:
        client.kill()
