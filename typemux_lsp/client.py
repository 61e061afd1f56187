"""A small LSP client over a child process's stdio, for the demo and the benchmarks.

It drives a server the way an editor would (raw JSON both ways, so what it
prints is what was on the wire) and is cheap enough per message not to hide the
cost it measures: frames are decoded in `pipe_data_received`, no task per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from . import jsonrpc
from .jsonrpc import Message, MsgId
from .platform import new_group


class ResponseError(Exception):
    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.code = error.get("code")
        self.message = str(error.get("message", ""))


def claude_code_answer(message: Message) -> Any:
    """Answer server requests as Claude Code does: null per configuration item, else null."""
    if message.get("method") == "workspace/configuration":
        return [None] * len((message.get("params") or {}).get("items", []))
    return None


class LspClient:
    def __init__(self, answer: Callable[[Message], Any] = claude_code_answer) -> None:
        self._answer = answer
        self._ids = itertools.count(1)
        self._pending: dict[MsgId, asyncio.Future[Any]] = {}
        self._decoder = jsonrpc.FrameDecoder()
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._exited: asyncio.Future[int | None] | None = None
        self.diagnostics: dict[str, list[Any]] = {}
        self._diag_event = asyncio.Event()
        self.notifications: list[Message] = []
        self.server_requests: list[Message] = []
        #: every response received, in order (to check each request got exactly one)
        self.responses: list[Message] = []
        self.stderr = bytearray()
        self.pid: int | None = None
        self.last_id: MsgId | None = None
        self.sent_ids: list[MsgId] = []

    async def start(
        self,
        cmd: Sequence[str],
        *,
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        transport, _ = await loop.subprocess_exec(
            lambda: _Protocol(self),
            *cmd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=dict(os.environ if env is None else env),
            **new_group(),
        )
        self._transport = transport
        # uvloop's pipe transports are not asyncio.WriteTransport subclasses: cast, not assert.
        self._stdin = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))
        self.pid = transport.get_pid()

    def _write(self, data: bytes) -> None:
        if self._stdin is not None and not self._stdin.is_closing():
            self._stdin.write(data)

    def _send(self, message: Message) -> None:
        self._write(jsonrpc.frame(jsonrpc.dumps(message)))

    def _data_received(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if isinstance(item, jsonrpc.FrameError):
                raise RuntimeError(f"the server wrote something that is not LSP: {item.reason}")
            decoded = jsonrpc.decode(item)
            if isinstance(decoded, jsonrpc.BadMessage):
                raise RuntimeError(f"the server wrote something that is not LSP: {decoded.reason}")
            message, body = decoded
            self._on_message(body, message)

    def _on_message(self, body: bytes, message: Message) -> None:
        if "method" in message:
            if "id" in message:
                self.server_requests.append(message)
                self._send(jsonrpc.response(message["id"], self._answer(message)))
                return
            self.notifications.append(message)
            if message["method"] == "textDocument/publishDiagnostics":
                params = message.get("params") or {}
                self.diagnostics[params.get("uri", "")] = params.get("diagnostics", [])
                self._diag_event.set()
            return
        self.responses.append(message)
        fut = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
        if fut is None or fut.done():
            return
        if "error" in message:
            fut.set_exception(ResponseError(message["error"] or {}))
        else:
            fut.set_result(message.get("result"))

    def send_request(
        self, method: str, params: Any, msg_id: MsgId | None = None
    ) -> asyncio.Future[Any]:
        """Send now; the future resolves with the result or raises `ResponseError`."""
        rid: MsgId = next(self._ids) if msg_id is None else msg_id
        self.last_id = rid
        self.sent_ids.append(rid)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self._send(jsonrpc.request(rid, method, params))
        return fut

    async def request(self, method: str, params: Any, timeout: float = 60.0) -> Any:
        return await asyncio.wait_for(self.send_request(method, params), timeout)

    def notify(self, method: str, params: Any) -> None:
        self._send(jsonrpc.notification(method, params))

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are, framing included: for feeding malformed input."""
        self._write(data)

    async def wait_diagnostics(
        self, uri: str, predicate: Callable[[list[Any]], bool] = lambda d: True, timeout: float = 30
    ) -> list[Any]:
        """The first published diagnostics for `uri` that satisfy `predicate`."""
        async with asyncio.timeout(timeout):
            while True:
                diags = self.diagnostics.get(uri)
                if diags is not None and predicate(diags):
                    return diags
                self._diag_event.clear()
                await self._diag_event.wait()

    async def initialize(self, root: Path, capabilities: Mapping[str, Any], **extra: Any) -> Any:
        result = await self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "rootPath": str(root),
                "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
                "capabilities": dict(capabilities),
                **extra,
            },
        )
        self.notify("initialized", {})
        return result

    def open(self, path: Path, text: str | None = None, version: int = 1) -> str:
        uri = path.as_uri()
        self.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": uri,
                    "languageId": "python",
                    "version": version,
                    "text": path.read_text("utf-8") if text is None else text,
                }
            },
        )
        return uri

    async def stop(self, timeout: float = 10.0) -> int | None:
        """shutdown, exit, and the exit code (the process is killed if it lingers)."""
        with contextlib.suppress(Exception):
            await self.request("shutdown", None, timeout=timeout)
        self.notify("exit", None)
        return await self.wait_exit(timeout)

    async def wait_exit(self, timeout: float = 10.0) -> int | None:
        assert self._exited is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._exited), timeout)
        except TimeoutError:
            self.kill()
            return await asyncio.wait_for(asyncio.shield(self._exited), 5)

    def close_stdin(self) -> None:
        if self._stdin is not None:
            self._stdin.close()

    def kill(self) -> None:
        if self._transport is not None and self._transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                self._transport.kill()

    def _exit(self, code: int | None) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"server exited with code {code}"))
        self._pending.clear()
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(code)

    def dump(self, message: Any) -> str:
        return json.dumps(message, ensure_ascii=False)


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self, client: LspClient) -> None:
        self._client = client

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._client._data_received(data)
        else:
            self._client.stderr += data[-65536:]

    def process_exited(self) -> None:
        transport = self._client._transport
        self._client._exit(transport.get_returncode() if transport else None)
