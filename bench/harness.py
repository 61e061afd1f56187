"""What both benchmarks share: a workspace copy, the clients, and small LSP helpers.

The "direct" client starts the backend exactly as the proxy would for one venv (same
command, cwd, environment, initialize params and configuration answers), so the only
difference between it and the proxied client is the proxy itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from typemux_lsp.backends import BackendKind
from typemux_lsp.client import LspClient
from typemux_lsp.demo import CLAUDE_CODE_CAPABILITIES, prepare
from typemux_lsp.example import build_venvs
from typemux_lsp.features import backend_initialize_params
from typemux_lsp.jsonrpc import Message, MsgId
from typemux_lsp.tree import get_path
from typemux_lsp.venv import Venv

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "monorepo"
CLIENT_INFO = {"name": "typemux-lsp bench"}


def make_workspace(tmp: Path, copies: Mapping[str, str] | None = None) -> Path:
    """Copy the example monorepo under `tmp` with its own git root and build its venvs.

    `copies` maps a new project name to the project it is copied from (with its own
    `.venv`), for tests that need more venvs than the example has. Progress goes to
    stderr so `--json` output stays clean.
    """
    with contextlib.redirect_stdout(sys.stderr):
        root = prepare(EXAMPLE, tmp / "monorepo")
        for name, source in (copies or {}).items():
            shutil.copytree(
                root / source, root / name, ignore=shutil.ignore_patterns(".venv", "__pycache__")
            )
        if copies:
            build_venvs(root)
    return root.resolve()


def remake_venv(project: Path) -> Path:
    """`rm -rf .venv && python -m venv .venv` (offline), then the project's vendored `shapes`
    copied into it: what a recreated environment looks like. Returns its site-packages."""
    venv = project / ".venv"
    shutil.rmtree(venv)
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    (site,) = (venv / "lib").glob("python*/site-packages")
    shutil.copytree(project / "vendor" / "shapes", site / "shapes")
    return site


def client_params(root: Path) -> dict[str, Any]:
    """The initialize params an editor sends (what `LspClient.initialize` builds)."""
    return {
        "processId": os.getpid(),
        "rootUri": root.as_uri(),
        "rootPath": str(root),
        "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
        "capabilities": CLAUDE_CODE_CAPABILITIES,
        "clientInfo": CLIENT_INFO,
    }


class CountingClient(LspClient):
    """An `LspClient` that counts every response by id.

    Counting before `LspClient` drops an answer it no longer waits for is what catches
    a duplicated or stray answer. `forget_history` keeps a long run from holding every
    message it ever received.
    """

    def __init__(self, answer: Callable[[Message], Any] | None = None) -> None:
        if answer is None:
            super().__init__()
        else:
            super().__init__(answer)
        self.answer_counts: Counter[MsgId | None] = Counter()

    def _on_message(self, body: bytes, message: Message) -> None:
        if "method" not in message:
            self.answer_counts[message.get("id")] += 1
        super()._on_message(body, message)

    def forget_history(self) -> None:
        """Drop the messages `LspClient` keeps for inspection (counts are kept)."""
        for name in ("notifications", "server_requests", "responses"):
            kept = getattr(self, name, None)
            if isinstance(kept, list):
                kept.clear()


def configuration_answer(kind: BackendKind, venv: Venv) -> Callable[[Message], Any]:
    """Answer server requests as the proxy does for this venv's backend."""

    def answer(message: Message) -> Any:
        if message.get("method") == "workspace/configuration":
            items = get_path(message, "params", "items") or []
            return [kind.configuration(get_path(i, "section"), venv, None) for i in items]
        return None

    return answer


async def start_proxy(
    root: Path,
    backend: str,
    *,
    profile: Path | None = None,
    source: Path | None = None,
    extra_args: Sequence[str] = (),
) -> CountingClient:
    """The proxy with cwd = the workspace root, initialized as the editor would.

    With `profile`, it runs under yappi (CPU time of every thread; cProfile, the main
    thread only, if yappi is not installed) and writes its stats there when it exits.
    With `source`, `typemux_lsp` is imported from that directory (a patched copy to
    compare against the installed one).
    """
    client = CountingClient()
    cmd = [sys.executable]
    if profile is not None and importlib.util.find_spec("yappi") is not None:
        cmd += [str(Path(__file__).with_name("yappi_proxy.py")), str(profile)]
    else:
        if profile is not None:
            cmd += ["-m", "cProfile", "-o", str(profile)]
        cmd += ["-m", "typemux_lsp"]
    cmd += ["--backend", backend, *extra_args]
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    await client.start(cmd, cwd=root, env=env)
    try:
        await asyncio.wait_for(
            client.initialize(root, CLAUDE_CODE_CAPABILITIES, clientInfo=CLIENT_INFO), 60
        )
    except (ConnectionError, TimeoutError) as exc:
        client.kill()
        tail = bytes(client.stderr[-2000:]).decode(errors="replace")
        raise RuntimeError(f"the proxy did not initialize ({exc!r}); its stderr:\n{tail}") from exc
    return client


async def start_direct(
    root: Path, kind: BackendKind, venv: Venv, *, via_relay: str | None = None
) -> tuple[CountingClient, Any]:
    """The backend alone, started and initialized as the proxy starts it for `venv`.

    With `via_relay` ("threads", "parse" or "asyncio"), behind `thread_relay.py`,
    `parse_relay.py` or `byte_relay.py`: what any hop costs, with no (or the least) LSP
    logic. Returns the client and the backend's initialize answer.
    """
    env = kind.environment(venv)
    executable = kind.resolve_executable(env["PATH"])
    if executable is None:
        raise SystemExit(f"bench: {kind.executable} not found: {kind.install_hint()}")
    cmd = kind.command(executable, env["PATH"])
    if via_relay is not None:
        script = {
            "threads": "thread_relay.py",
            "parse": "parse_relay.py",
            "asyncio": "byte_relay.py",
        }[via_relay]
        cmd = [sys.executable, str(Path(__file__).with_name(script)), *cmd]
    client = CountingClient(configuration_answer(kind, venv))
    await client.start(cmd, cwd=venv.project_dir, env=env)
    offered = CLAUDE_CODE_CAPABILITIES["general"]["positionEncodings"]
    params = backend_initialize_params(client_params(root), venv, kind.choose_encoding(offered))
    result = await client.request("initialize", params, timeout=60)
    client.notify("initialized", {})
    return client, result


def backend_version(kind: BackendKind, initialize_result: Any) -> str:
    """`serverInfo` from the backend's own initialize answer, else `--version`, else the
    installed package's version (pyright's language server has neither)."""
    info = get_path(initialize_result, "serverInfo")
    if isinstance(info, dict) and info.get("name"):
        return f"{info['name']} {info.get('version', '')}".strip()
    executable = kind.resolve_executable(os.environ.get("PATH", ""))
    if executable is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [str(executable), "--version"], capture_output=True, text=True, timeout=30
            ).stdout.strip()
            if out:
                return out.splitlines()[0]
    package = kind.package.split("[")[0]
    with contextlib.suppress(metadata.PackageNotFoundError):
        return f"{package} {metadata.version(package)}"
    return kind.name


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": f"{platform.system()} {platform.machine()}",
    }


def load_average() -> float:
    """The 1-minute load average: a busy machine makes every figure noisier."""
    return os.getloadavg()[0]


def rss_kib(pid: int | None) -> int:
    """VmRSS of a process in KiB, from /proc."""
    assert pid is not None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_ns(pid: int | None) -> int:
    """CPU time a process has used, in ns, all its threads (schedstat: finer than the 10 ms
    ticks of stat; per thread, so summed over /proc/PID/task)."""
    assert pid is not None
    try:
        return sum(
            int((task / "schedstat").read_text().split()[0])
            for task in Path(f"/proc/{pid}/task").iterdir()
        )
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def position_of(text: str, needle: str, occurrence: int = 0) -> dict[str, int]:
    """The UTF-16 position just inside the n-th occurrence of `needle`, skipping lines
    that start a comment or a string (docstrings)."""
    seen = 0
    for line_no, line in enumerate(text.splitlines()):
        if line.lstrip().startswith(("#", '"')):
            continue
        col = line.find(needle)
        while col >= 0:
            if seen == occurrence:
                return {"line": line_no, "character": utf16_len(line[:col]) + 1}
            seen += 1
            col = line.find(needle, col + 1)
    raise ValueError(f"{needle!r} (occurrence {occurrence}) not found")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def hover_text(result: Any) -> str:
    """The text of a hover answer, whatever shape its contents take."""
    contents = get_path(result, "contents")
    if isinstance(contents, dict):
        return str(contents.get("value", ""))
    if isinstance(contents, list):
        return "\n".join(str(c.get("value", "") if isinstance(c, dict) else c) for c in contents)
    return "" if contents is None else str(contents)


async def wait_hover(
    client: LspClient, params: Mapping[str, Any], expect: str, timeout: float = 90.0
) -> Any:
    """Poll hover until it mentions `expect`: the backend has analysed the file.

    pyright holds the first hover until analysis ends; ty may answer null at first.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await client.request("textDocument/hover", params, timeout=timeout)
        if expect in hover_text(last):
            return last
        await asyncio.sleep(0.05)
    raise TimeoutError(f"hover never mentioned {expect!r} within {timeout:g} s; last: {last!r}")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]
