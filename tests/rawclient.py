"""A minimal raw JSON-RPC client over a subprocess's stdio, for checks a typed client cannot make.

pygls/pytest-lsp structure every message with lsprotocol, so a response ``{"id": 1, "result":
null}`` and one without ``result`` both come back as ``None``, ids are always generated uuids and
unknown fields are dropped. This client keeps every message as the exact ``dict`` that was on the
wire: tests can assert ``"result" in msg``, send id 0, and compare results JSON-for-JSON.

Framing is checked strictly (only ``Content-Length``/``Content-Type`` headers, UTF-8 JSON
bodies): anything else on the server's stdout is a protocol error, recorded in
``protocol_errors`` and failing every pending request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

JSON = Any
Message = dict[str, Any]
ServerRequestHandler = Callable[[Message], JSON]

DEFAULT_TIMEOUT = 60.0


class ProtocolError(Exception):
    """The server wrote something that is not a well-formed LSP message."""


def encode_message(message: Message) -> bytes:
    """Frame one message: ``Content-Length`` counts bytes of the UTF-8 body."""
    try:
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate: valid JSON only as an escape
        body = json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


async def read_message(reader: asyncio.StreamReader) -> Message | None:
    """Read one framed message; ``None`` at a clean EOF between messages."""
    length: int | None = None
    first = True
    while True:
        line = await reader.readline()
        if not line:
            if first:
                return None
            raise ProtocolError("EOF inside a message header")
        first = False
        if line == b"\r\n":
            break
        if not line.endswith(b"\r\n") or b":" not in line:
            raise ProtocolError(f"malformed header line {line[:200]!r}")
        name, _, value = line[:-2].decode("ascii").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() != "content-type":
            raise ProtocolError(f"unexpected header {name!r}")
    if length is None:
        raise ProtocolError("message without Content-Length")
    body = await reader.readexactly(length)
    message = json.loads(body.decode("utf-8"))
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise ProtocolError(f"not a JSON-RPC 2.0 message: {body[:200]!r}")
    return message


def _id_key(msg_id: JSON) -> str:
    """Ids 0 and "0" are different ids: key them by their JSON text."""
    return json.dumps(msg_id)


def default_server_request_handler(message: Message) -> JSON:
    """Answer like Claude Code: ``null`` per configuration item, ``null`` for anything else."""
    if message["method"] == "workspace/configuration":
        return [None] * len(message.get("params", {}).get("items", []))
    return None


class RawClient:
    """One server process driven over raw JSON-RPC; keeps a log of every message both ways."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.messages: list[tuple[str, Message]] = []  # ("in" | "out", message)
        self.notifications: list[Message] = []
        self.server_requests: list[Message] = []
        self.protocol_errors: list[BaseException] = []
        self.stderr = bytearray()
        self.server_request_handler: ServerRequestHandler = default_server_request_handler
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._next_id = 1
        self._changed = asyncio.Condition()
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> RawClient:
        """Start ``argv`` in its own session (so the whole tree can be ended) and attach."""
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
        return cls(process, name or Path(argv[0]).name)

    @property
    def pid(self) -> int:
        return self.process.pid

    # -- sending -----------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Write one message as is (ids, missing fields and all)."""
        assert self.process.stdin is not None
        self.messages.append(("out", message))
        self.process.stdin.write(encode_message(message))

    def notify(self, method: str, params: JSON = None) -> None:
        message: Message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    async def request(
        self,
        method: str,
        params: JSON = None,
        *,
        msg_id: JSON = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Message:
        """Send a request and return the whole response message (``result`` or ``error``)."""
        if msg_id is None:
            msg_id = self._next_id
            self._next_id += 1
        message: Message = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[_id_key(msg_id)] = future
        self.send(message)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: no response to {method} (id {msg_id!r}) within {timeout} s"
                f"\n--- stderr tail ---\n{self.stderr_text()[-3000:]}"
            ) from None
        finally:
            self._pending.pop(_id_key(msg_id), None)

    async def result(self, method: str, params: JSON = None, **kwargs: Any) -> JSON:
        """``request`` that insists on success and returns ``result``."""
        response = await self.request(method, params, **kwargs)
        if "error" in response:
            raise AssertionError(f"{self.name}: {method} failed: {response['error']}")
        assert "result" in response, f"{self.name}: response without result: {response}"
        return response["result"]

    async def initialize(
        self, params: dict[str, Any], *, msg_id: JSON = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> Message:
        """``initialize`` (with id 0 by default, as Claude Code) then ``initialized``."""
        response = await self.request("initialize", params, msg_id=msg_id, timeout=timeout)
        if "result" in response:
            self.notify("initialized", {})
        return response

    def open(self, path: Path, text: str | None = None) -> str:
        """didOpen ``path`` with version 1 and its text from disk (unless given); its URI."""
        uri = path.as_uri()
        content = path.read_text(encoding="utf-8") if text is None else text
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": content}},
        )
        return uri

    # -- receiving ---------------------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[Message], bool], *, timeout: float = DEFAULT_TIMEOUT
    ) -> Message:
        """Wait for (or find, if already received) a notification matching ``predicate``."""

        def find() -> Message | None:
            return next((m for m in self.notifications if predicate(m)), None)

        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: find() is not None or self._dead()), timeout
                )
            except TimeoutError:
                raise TimeoutError(
                    f"{self.name}: no matching notification within {timeout} s"
                ) from None
        found = find()
        if found is None:
            raise ConnectionError(f"{self.name} ended: {self.protocol_errors or 'EOF'}")
        return found

    async def wait_for_diagnostics(
        self,
        uri: str,
        predicate: Callable[[list[Message]], bool] = lambda _: True,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[Message]:
        """The latest published diagnostics of ``uri`` once they satisfy ``predicate``."""

        def latest() -> list[Message] | None:
            for message in reversed(self.notifications):
                if (
                    message.get("method") == "textDocument/publishDiagnostics"
                    and message["params"]["uri"] == uri
                ):
                    diagnostics: list[Message] = message["params"]["diagnostics"]
                    return diagnostics if predicate(diagnostics) else None
            return None

        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: latest() is not None or self._dead()), timeout
                )
            except TimeoutError:
                raise TimeoutError(
                    f"{self.name}: no matching diagnostics for {uri} within {timeout} s; "
                    f"last: {self.last_diagnostics(uri)}"
                ) from None
        result = latest()
        if result is None:
            raise ConnectionError(f"{self.name} ended: {self.protocol_errors or 'EOF'}")
        return result

    def last_diagnostics(self, uri: str) -> JSON:
        for message in reversed(self.notifications):
            if (
                message.get("method") == "textDocument/publishDiagnostics"
                and message["params"]["uri"] == uri
            ):
                return message["params"]["diagnostics"]
        return "none published"

    def _dead(self) -> bool:
        return self._tasks[0].done()

    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        error: BaseException | None = None
        try:
            while (message := await read_message(self.process.stdout)) is not None:
                self.messages.append(("in", message))
                await self._dispatch(message)
        except (ProtocolError, ValueError, asyncio.IncompleteReadError) as exc:
            error = exc
            self.protocol_errors.append(exc)
        finally:
            reason = error or ConnectionError(f"{self.name} closed its stdout")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(reason)
            async with self._changed:
                self._changed.notify_all()

    async def _dispatch(self, message: Message) -> None:
        if "method" not in message:  # a response
            future = self._pending.get(_id_key(message.get("id")))
            if future is not None and not future.done():
                future.set_result(message)
            return
        if "id" in message:  # a server -> client request
            self.server_requests.append(message)
            reply: Message = {"jsonrpc": "2.0", "id": message["id"]}
            try:
                reply["result"] = self.server_request_handler(message)
            except Exception as exc:
                reply["error"] = {"code": -32603, "message": str(exc)}
            with contextlib.suppress(ConnectionError):
                self.send(reply)
            return
        async with self._changed:
            self.notifications.append(message)
            self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self.stderr.extend(chunk)
            if os.environ.get("TYPEMUX_TEST_STDERR"):
                sys.stderr.write(chunk.decode("utf-8", "replace"))

    # -- ending ------------------------------------------------------------------------------

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        if not self.process.stdin.is_closing():
            self.process.stdin.close()

    async def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Wait for the process to end and its output to be drained; its exit code."""
        await asyncio.wait_for(self.process.wait(), timeout)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)
        assert self.process.returncode is not None
        return self.process.returncode

    async def shutdown(self, timeout: float = 30.0) -> int:
        """The polite end: shutdown, exit, wait; the exit code."""
        await self.result("shutdown", timeout=timeout)
        self.notify("exit")
        return await self.wait(timeout)

    async def kill(self) -> None:
        """End the process group (idempotent): used by fixtures after a failing test."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.process.wait(), 10)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
