"""The real Claude Code CLI as a test client, with a scripted stand-in for the model.

Claude Code talks to its model over the Anthropic Messages API. ``ScriptedModel`` is a local
HTTP server speaking that API (streamed as server-sent events): instead of thinking, it answers
each turn with the next ``tool_use`` blocks of a script, and records every request Claude Code
sends. What comes back in the next request (tool results, ``<new-diagnostics>`` blocks) is
exactly what a real model would read, so tests assert on the text the model receives.

``ClaudeCode`` runs ``claude -p`` (the npm package, version pinned in package-lock.json next to
this file, installed with ``npm ci`` on first use) in an isolated ``HOME``/``CLAUDE_CONFIG_DIR``
with the plugin installed as the README says: ``claude plugin marketplace add <checkout>`` then
``claude plugin install typemux-lsp@typemux-lsp``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
CLAUDE = HERE / "node_modules" / ".bin" / "claude"
PACKAGE = "@anthropic-ai/claude-code"

# -- installing the CLI -----------------------------------------------------------------------


def pinned_version() -> str:
    lock = json.loads((HERE / "package-lock.json").read_text(encoding="utf-8"))
    return str(lock["packages"][f"node_modules/{PACKAGE}"]["version"])


def installed_version() -> str | None:
    if not CLAUDE.exists():
        return None
    try:
        done = subprocess.run(
            [str(CLAUDE), "--version"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.split()[0] if done.returncode == 0 and done.stdout.strip() else None


def install_claude() -> Path:
    """The pinned ``claude`` binary, installed by ``npm ci`` into tests/real/node_modules if needed.

    Raises ``RuntimeError`` (tests fail, never skip) when it cannot be installed.
    """
    want = pinned_version()
    if installed_version() == want:
        return CLAUDE
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "the real-client tests need the Claude Code CLI, installed with npm: no `npm` on PATH."
            " Install Node.js 20+ with npm (e.g. `apt-get install nodejs npm`), then run the"
            " tests again."
        )
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=900,
    )
    got = installed_version()
    if done.returncode != 0 or got != want:
        raise RuntimeError(
            f"`npm ci` in {HERE} did not install {PACKAGE}@{want} (exit {done.returncode}, "
            f"`claude --version` gives {got!r}):\n{done.stdout}\n{done.stderr}"
        )
    return CLAUDE


# -- the scripted model -----------------------------------------------------------------------

_ids = itertools.count(1)


@dataclass(frozen=True)
class Call:
    """One ``tool_use`` block the model emits."""

    tool: str
    input: dict[str, Any]
    id: str = field(default_factory=lambda: f"toolu_{next(_ids):04d}")


def lsp(operation: str, file: Path, line: int, character: int, **extra: Any) -> Call:
    """A call of Claude Code's LSP tool; ``line``/``character`` are 1-based, as the tool takes."""
    return Call(
        "LSP",
        {
            "operation": operation,
            "filePath": str(file),
            "line": line,
            "character": character,
            **extra,
        },
    )


def position(path: Path, needle: str, *, occurrence: int = 0, offset: int = 0) -> tuple[int, int]:
    """1-based (line, character) of the ``occurrence``-th ``needle`` in the file (+ ``offset``)."""
    text = path.read_text(encoding="utf-8")
    index = -1
    for _ in range(occurrence + 1):
        index = text.index(needle, index + 1)
    index += offset
    line = text.count("\n", 0, index)
    column = index - (text.rfind("\n", 0, index) + 1)
    return line + 1, column + 1


@dataclass
class ModelRequest:
    """One request Claude Code sent to the model."""

    body: dict[str, Any]

    @property
    def tools(self) -> list[str]:
        return [str(tool.get("name")) for tool in self.body.get("tools", [])]

    def blocks(self) -> Iterator[dict[str, Any]]:
        for message in self.body.get("messages", []):
            content = message.get("content")
            if isinstance(content, str):
                yield {"type": "text", "text": content}
            elif isinstance(content, list):
                yield from (block for block in content if isinstance(block, dict))

    def tool_results(self) -> dict[str, str]:
        """The text of each tool result in the conversation, by ``tool_use_id``."""
        results = {}
        for block in self.blocks():
            if block.get("type") == "tool_result":
                results[str(block["tool_use_id"])] = _text_of(block.get("content"))
        return results

    def texts(self) -> list[str]:
        """Every text block the conversation holds (reminders, diagnostics, prompts)."""
        return [str(block["text"]) for block in self.blocks() if block.get("type") == "text"]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text_of(part.get("text", "")) for part in content)
    return str(content)


#: A script: a generator that yields the tool calls of each turn and is sent the request that
#: carries their results. When it returns, the model ends the conversation.
Script = Generator[list[Call], ModelRequest, None]


class ScriptedModel:
    """A local Anthropic Messages API that plays a script; records every request."""

    def __init__(self, script: Script, on_request: Callable[[ModelRequest], None] | None = None):
        self._script = script
        self._started = False
        self._done = False
        self._on_request = on_request
        self._lock = threading.Lock()
        self.requests: list[ModelRequest] = []
        self.other_requests: list[str] = []
        self.errors: list[BaseException] = []
        self.calls: dict[str, Call] = {}
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, kind, data = model._answer(self.path, body)
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                model.other_requests.append(f"GET {self.path}")
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ScriptedModel:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    # -- answering -----------------------------------------------------------------------------

    def _answer(self, path: str, raw: bytes) -> tuple[int, str, bytes]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        if "count_tokens" in path:
            return 200, "application/json", b'{"input_tokens": 100}'
        if not path.startswith("/v1/messages"):
            self.other_requests.append(f"POST {path}")
            return 404, "application/json", b"{}"
        request = ModelRequest(body)
        if not request.tools:  # a side request (a title, a summary): not the conversation
            self.other_requests.append(f"POST {path} (no tools)")
            return 200, "text/event-stream", _stream([{"type": "text", "text": "ok"}])
        with self._lock:
            self.requests.append(request)
            calls = self._next(request)
        if self._on_request is not None:
            try:
                self._on_request(request)
            except BaseException as exc:  # reported by check(), after the run
                self.errors.append(exc)
        if not calls:
            return 200, "text/event-stream", _stream([{"type": "text", "text": "Done."}])
        for call in calls:
            self.calls[call.id] = call
        blocks = [{"type": "tool_use", "id": c.id, "name": c.tool, "input": c.input} for c in calls]
        return 200, "text/event-stream", _stream(blocks)

    def _next(self, request: ModelRequest) -> list[Call]:
        if self._done:
            return []
        try:
            calls = self._script.send(request) if self._started else next(self._script)
            self._started = True
            return calls
        except StopIteration:
            self._done = True
            return []
        except BaseException as exc:
            self._done = True
            self.errors.append(exc)
            return []

    # -- what the model was told ---------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._done

    def result(self, call: Call) -> str:
        """The tool result Claude Code returned for ``call``, as the model reads it."""
        for request in reversed(self.requests):
            results = request.tool_results()
            if call.id in results:
                return results[call.id]
        raise AssertionError(f"no tool result for {call}")

    def texts(self) -> list[str]:
        """Every distinct text block Claude Code sent in any request, in order."""
        seen: dict[str, None] = {}
        for request in self.requests:
            for text in request.texts():
                seen.setdefault(text, None)
        return list(seen)

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]


def _stream(blocks: list[dict[str, Any]]) -> bytes:
    """A streamed Messages API answer made of ``blocks`` (text or tool_use)."""
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": f"msg_{next(_ids):04d}",
                "type": "message",
                "role": "assistant",
                "model": "claude-scripted",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 100, "output_tokens": 1},
            },
        }
    ]
    for index, block in enumerate(blocks):
        start: dict[str, Any]
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            start = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": 10},
        }
    )
    events.append({"type": "message_stop"})
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


# -- the CLI, isolated ------------------------------------------------------------------------

#: What a checkout copy leaves out: build products, caches, venvs, the CLI itself.
_NOT_SHIPPED = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".venv-*",
    "node_modules",
    "__pycache__",
    "*.egg-info",
    ".tox",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
    "build",
    "dist",
)


def copy_checkout(dest: Path) -> Path:
    """This repository's files as a fresh clone has them (no venvs, caches, node_modules).

    ``claude plugin install`` copies the whole marketplace directory into its cache; from a
    working checkout that is the dev venv and node_modules too (~1.4 GB, 10 s).
    """
    shutil.copytree(REPO_ROOT, dest, symlinks=True, ignore=_NOT_SHIPPED)
    return dest


class ClaudeCode:
    """``claude`` in its own ``HOME``/``CLAUDE_CONFIG_DIR``, which also tags its processes."""

    def __init__(self, binary: Path, home: Path, path: str, env: dict[str, str] | None = None):
        self.binary = binary
        self.home = home
        self.config_dir = home / ".claude"
        self.debug_file = home / "claude-debug.log"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (home / "tmp").mkdir()
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TYPEMUX_LSP_", "ANTHROPIC_", "CLAUDE"))
            and k not in {"VIRTUAL_ENV", "PYTHONPATH"}
        }
        self.env = {
            **base,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "CLAUDE_CONFIG_DIR": str(self.config_dir),
            "TMPDIR": str(home / "tmp"),  # Claude Code keeps per-project state in $TMPDIR
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "PATH": path,
            **(env or {}),
        }

    @property
    def marker(self) -> str:
        """An environment entry every process of this Claude Code (and its servers) carries."""
        return f"CLAUDE_CONFIG_DIR={self.config_dir}"

    def cli(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> str:
        """Run a ``claude`` subcommand; its output; raise with the output when it fails."""
        done = subprocess.run(
            [str(self.binary), *args],
            cwd=cwd or self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"claude {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout + done.stderr

    def install_plugin(self, checkout: Path) -> str:
        """The README's way: add the checkout as a marketplace, install the plugin from it."""
        added = self.cli("plugin", "marketplace", "add", str(checkout))
        installed = self.cli("plugin", "install", "typemux-lsp@typemux-lsp")
        return added + installed

    def run(
        self, prompt: str, model: ScriptedModel, cwd: Path, tools: str, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """One non-interactive session (``claude -p``) against the scripted model."""
        return subprocess.run(
            [
                str(self.binary),
                "-p",
                prompt,
                "--allowedTools",
                tools,
                "--debug-file",
                str(self.debug_file),
            ],
            cwd=cwd,
            # (an API key without a reachable base URL makes even `claude plugin` commands wait
            # ~18 s for api.anthropic.com: the key is given only with the local model's URL)
            env={**self.env, "ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "sk-test"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def debug_log(self, grep: str = "LSP") -> str:
        """The lines of Claude Code's debug log that mention ``grep`` (the server's stderr too)."""
        if not self.debug_file.exists():
            return "(no debug log)"
        return "\n".join(
            line
            for line in self.debug_file.read_text(errors="replace").splitlines()
            if grep in line
        )
