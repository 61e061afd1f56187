"""One backend process for one venv, and the LSP session with it.

A session owns the process (in its own process group, so a backend's children
die with it), the handshake, the table of requests in flight, and the warmup
queue. It knows nothing of the client: what the backend sends that is not an
answer to the proxy's own requests goes up through `Upstream`, which the server
implements. Requests are forwarded with the client's own ids, so a backend's
response is relayed as the very bytes it wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from . import jsonrpc
from .backends import BackendKind
from .documents import Document
from .jsonrpc import Message, MsgId
from .reaper import Reaper
from .venv import Venv

logger = logging.getLogger(__name__)

#: Requests whose answer depends on the backend's cross-file index: held while it warms up.
WARMUP_METHODS = frozenset(
    {
        "textDocument/definition",
        "textDocument/references",
        "textDocument/implementation",
        "textDocument/typeDefinition",
        "textDocument/declaration",
        "textDocument/prepareCallHierarchy",
        "callHierarchy/incomingCalls",
        "callHierarchy/outgoingCalls",
    }
)

_STDERR_TAIL_BYTES = 8 * 1024
_ids = itertools.count(1)


class State(enum.Enum):
    STARTING = "starting"
    WARMING = "warming"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"


class BackendError(Exception):
    """A backend could not start or died; the message says what to do about it."""


@dataclass(slots=True)
class Timeouts:
    start: float = 30.0
    warmup: float = 2.0
    stop: float = 2.0


class Upstream(Protocol):
    """What a session needs from the client side of the proxy."""

    def initialize_params(self, session: BackendSession) -> Message: ...

    def session_started(self, session: BackendSession) -> None:
        """Handshake done: replay the session's documents."""

    def backend_response(self, session: BackendSession, msg_id: MsgId, body: bytes) -> None:
        """The answer to a client request forwarded with `forward`."""

    def backend_request(self, session: BackendSession, message: Message) -> None: ...

    def backend_notification(
        self, session: BackendSession, body: bytes, message: Message
    ) -> None: ...

    def session_lost(self, session: BackendSession, error: BackendError) -> None:
        """The session stopped (crash, failed start or stop); fail what it still held."""


@dataclass(slots=True)
class Queued:
    msg_id: MsgId
    method: str
    body: bytes


class BackendSession:
    def __init__(
        self,
        kind: BackendKind,
        venv: Venv,
        upstream: Upstream,
        timeouts: Timeouts,
        command: list[str] | None = None,
        reaper: Reaper | None = None,
    ) -> None:
        self.id = next(_ids)
        self.kind = kind
        self.venv = venv
        self.upstream = upstream
        self.timeouts = timeouts
        #: overrides the kind's command (`--backend-command`)
        self.command = command
        self._reaper = reaper
        self.state = State.STARTING
        self.started_at = time.monotonic()
        self.last_used = time.monotonic()
        self.pid: int | None = None
        self.capabilities: dict[str, Any] = {}
        self.venv_identity = venv.identity()
        self._identity_checked_at = time.monotonic()
        #: client requests sent to the backend: id -> method
        self.inflight: dict[MsgId, str] = {}
        #: client requests held until the backend is started (all) or warm (index-dependent)
        self.queue: deque[Queued] = deque()
        #: uris of the documents this backend has open
        self.open_docs: set[str] = set()
        #: uris this backend published non-empty diagnostics for (cleared if it goes away)
        self.diagnosed: set[str] = set()
        #: set when the session ended by failing rather than by being stopped
        self.crashed = False
        #: backend settings for this venv (config `backend-settings`, per-project rules)
        self.settings: dict[str, Any] = {}
        #: progress tokens the proxy accepted on the client's behalf (JSON of the token)
        self.local_tokens: set[str] = set()
        #: progress tokens forwarded to the client: JSON of the token -> renamed token
        self.remote_tokens: dict[str, str] = {}
        self._internal: dict[str, asyncio.Future[Any]] = {}
        self._internal_ids = itertools.count(1)
        self._transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._channel = jsonrpc.Channel(
            self._write, self._on_message, self._on_bad_frame, on_response=self._on_response
        )
        self._stderr_tail = bytearray()
        self._stderr_line = bytearray()
        self._exited: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        #: resolved once the backend can take requests, or has failed to start
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._warmup_timer: asyncio.TimerHandle | None = None
        self._ready_waiters: list[Callable[[], None]] = []
        self.tag = f"{kind.name}#{self.id}"
        self._tracing = logger.isEnabledFor(jsonrpc.TRACE)
        self.log = _SessionLog(logger, f"[{self.tag} {venv}]")

    # -- lifecycle ---------------------------------------------------------------------

    def venv_recreated(self) -> bool:
        """Whether pyvenv.cfg changed since the start; the filesystem is asked once a second."""
        now = time.monotonic()
        if now - self._identity_checked_at < 1.0:
            return False
        self._identity_checked_at = now
        return self.venv.identity() != self.venv_identity

    @property
    def alive(self) -> bool:
        return self.state in (State.STARTING, State.WARMING, State.READY)

    async def start(self) -> None:
        """Spawn, handshake, replay documents; on failure the session ends `STOPPED`."""
        try:
            await self._spawn()
            params = self.upstream.initialize_params(self)
            try:
                result = await asyncio.wait_for(
                    self.request("initialize", params), self.timeouts.start
                )
            except TimeoutError:
                raise BackendError(
                    f"typemux-lsp: {self.kind.name} for {self.venv} did not answer initialize "
                    f"within {self.timeouts.start:g} s.{self._stderr_hint()} Fix: check the "
                    "backend runs by hand, or raise --start-timeout."
                ) from None
            if not self.alive:
                return
            caps = result.get("capabilities") if isinstance(result, dict) else None
            self.capabilities = caps if isinstance(caps, dict) else {}
            self.notify("initialized", {})
            self.state = State.WARMING
            self.upstream.session_started(self)
            if self.timeouts.warmup > 0:
                loop = asyncio.get_running_loop()
                self._warmup_timer = loop.call_later(
                    self.timeouts.warmup, self.mark_ready, "timeout"
                )
            else:
                self.mark_ready("warmup disabled")
            self._flush()
            if not self.started.done():
                self.started.set_result(None)
        except BackendError as exc:
            self._fail(exc)
        except Exception as exc:
            self.log.exception("backend start failed")
            self._fail(BackendError(f"typemux-lsp: {self.kind.name} for {self.venv}: {exc}"))

    async def _spawn(self) -> None:
        if self.command:
            cmd = list(self.command)
        else:
            executable = self.kind.resolve_executable()
            if executable is None:
                raise BackendError(
                    f"typemux-lsp: cannot start {self.kind.name} for {self.venv}: the executable "
                    f"`{self.kind.executable}` was not found next to typemux-lsp or on PATH. "
                    f"Fix: {self.kind.install_hint()}."
                )
            cmd = self.kind.command(executable)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _ProcessProtocol(self),
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.venv.project_dir,
                env=self.kind.environment(self.venv),
                start_new_session=True,
            )
        except OSError as exc:
            raise BackendError(
                f"typemux-lsp: cannot start {self.kind.name} ({' '.join(cmd)}) for {self.venv}: "
                f"{exc}. Fix: {self.kind.install_hint()}."
            ) from exc
        self._transport = transport
        # uvloop's pipe transports are not asyncio.WriteTransport subclasses: cast, not assert.
        self._stdin = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))
        self.pid = transport.get_pid()
        if self._reaper is not None:
            self._reaper.add(self.pid)
        self.log.info("started %s (pid %s) in %s", " ".join(cmd), self.pid, self.venv.project_dir)

    def mark_ready(self, reason: str) -> None:
        if self.state is not State.WARMING:
            return
        self.log.info(
            "ready (%s) after %.0f ms", reason, (time.monotonic() - self.started_at) * 1e3
        )
        self.state = State.READY
        if self._warmup_timer is not None:
            self._warmup_timer.cancel()
            self._warmup_timer = None
        self._flush()

    async def stop(self) -> None:
        """shutdown, exit, then the process group is killed after a bounded wait."""
        if self.state in (State.STOPPING, State.STOPPED):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), 2 * self.timeouts.stop)
            return
        was_running = self.state in (State.WARMING, State.READY)
        self.state = State.STOPPING
        if self._warmup_timer is not None:
            self._warmup_timer.cancel()
        if was_running and self._stdin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.request("shutdown", None), self.timeouts.stop)
            self.notify("exit", None)
        if self._transport is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), self.timeouts.stop)
        self.kill()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._exited), self.timeouts.stop)
        self._finish(
            BackendError(f"typemux-lsp: the {self.kind.name} backend for {self.venv} was stopped.")
        )

    def kill(self) -> None:
        """Kill the backend's whole process group (basedpyright's wrapper leaves node behind)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()

    def _fail(self, error: BackendError) -> None:
        """The one way a session ends badly (failed start, exit, garbage): it counts as a
        crash for the pool's crash-loop guard."""
        if self.state is State.STOPPED:
            return
        self.log.error("%s", error)
        self.crashed = True
        self._finish(error)

    def _finish(self, error: BackendError) -> None:
        if self.state is State.STOPPED:
            return
        self.state = State.STOPPED
        if self._warmup_timer is not None:
            self._warmup_timer.cancel()
        if not self.started.done():
            self.started.set_result(None)
        if self._transport is None and not self._exited.done():
            self._exited.set_result(None)  # never spawned: nothing to wait for
        self._channel.closed = True
        self.kill()  # the whole group, whatever the leader did
        if self._reaper is not None and self.pid is not None:
            self._reaper.remove(self.pid)
        for fut in self._internal.values():
            if not fut.done():
                fut.set_exception(error)
        self._internal.clear()
        self.upstream.session_lost(self, error)
        self.inflight.clear()
        self.queue.clear()

    def _process_exited(self, returncode: int | None) -> None:
        if not self._exited.done():
            self._exited.set_result(returncode)
        if self.state in (State.STOPPING, State.STOPPED):
            return
        self._fail(
            BackendError(
                f"typemux-lsp: the {self.kind.name} backend for {self.venv} exited "
                f"(code {returncode}) while handling requests.{self._stderr_hint()} "
                "The next request for this venv starts a fresh backend."
            )
        )

    # -- traffic to the backend ----------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._stdin is not None and not self._stdin.is_closing():
            if self._tracing:
                self.log.log(jsonrpc.TRACE, "proxy -> backend: %s", data.decode(errors="replace"))
            self._stdin.write(data)

    def forward(self, msg_id: MsgId, method: str, body: bytes) -> None:
        """Send a client request, or hold it until the backend can answer it well."""
        self.last_used = time.monotonic()
        if self.state is State.READY or (
            self.state is State.WARMING and method not in WARMUP_METHODS
        ):
            self.inflight[msg_id] = method
            self._channel.send_raw(body)
        else:
            self.queue.append(Queued(msg_id, method, body))

    def cancel_queued(self, msg_id: MsgId) -> bool:
        for item in self.queue:
            if item.msg_id == msg_id:
                self.queue.remove(item)
                return True
        return False

    def _flush(self) -> None:
        held: deque[Queued] = deque()
        while self.queue:
            item = self.queue.popleft()
            if self.state is State.WARMING and item.method in WARMUP_METHODS:
                held.append(item)
                continue
            self.inflight[item.msg_id] = item.method
            self._channel.send_raw(item.body)
        self.queue = held

    def send_raw(self, body: bytes) -> None:
        self._channel.send_raw(body)

    def send(self, message: Message) -> None:
        self._channel.send(message)

    def notify(self, method: str, params: Any) -> None:
        self._channel.send(jsonrpc.notification(method, params))

    def request(self, method: str, params: Any) -> asyncio.Future[Any]:
        """A request of the proxy's own; its ids never collide with the client's numbers."""
        msg_id = f"typemux-lsp:{next(self._internal_ids)}"
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._internal[msg_id] = fut
        self._channel.send(jsonrpc.request(msg_id, method, params))
        return fut

    def open_document(self, doc: Document) -> None:
        self.open_docs.add(doc.uri)
        self.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": doc.uri,
                    "languageId": doc.language_id,
                    "version": doc.sync_version,
                    "text": doc.text,
                }
            },
        )

    def close_document(self, uri: str) -> None:
        if uri in self.open_docs:
            self.open_docs.discard(uri)
            self.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    # -- traffic from the backend ---------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._tracing:
            self.log.log(jsonrpc.TRACE, "backend -> proxy: %s", data.decode(errors="replace"))
        self._channel.data_received(data)

    def _on_response(self, body: bytes, msg_id: MsgId) -> bool:
        """The hot path: a client request's answer, relayed without being parsed."""
        if msg_id in self.inflight:
            del self.inflight[msg_id]
            self.upstream.backend_response(self, msg_id, body)
            return True
        return False  # one of the proxy's own: parse it

    def _on_message(self, body: bytes, message: Message) -> None:
        if "method" in message:
            if "id" in message:
                self.upstream.backend_request(self, message)
            else:
                self.upstream.backend_notification(self, body, message)
            return
        msg_id = message.get("id")
        if isinstance(msg_id, str) and msg_id in self._internal:
            fut = self._internal.pop(msg_id)
            if fut.done():
                return
            if "error" in message:
                err = message["error"] or {}
                fut.set_exception(BackendError(f"{err.get('code')}: {err.get('message')}"))
            else:
                fut.set_result(message.get("result"))
        elif isinstance(msg_id, (int, str)) and msg_id in self.inflight:
            del self.inflight[msg_id]
            self.upstream.backend_response(self, msg_id, body)
        else:
            self.log.debug("dropping response to unknown id %r", msg_id)

    def _on_bad_frame(self, code: int, reason: str) -> None:
        """A backend whose output is not LSP cannot be trusted with another request."""
        if not self.alive:
            return
        self._fail(
            BackendError(
                f"typemux-lsp: the {self.kind.name} backend for {self.venv} wrote output that is "
                f"not LSP ({reason}), so it was stopped.{self._stderr_hint()} The next request "
                "for this venv starts a fresh backend."
            )
        )

    def _on_stderr(self, data: bytes) -> None:
        """Drained always; logged at debug (pyrefly writes two lines per request); the tail is
        kept for error messages."""
        tail = self._stderr_tail
        tail += data
        if len(tail) > _STDERR_TAIL_BYTES:
            del tail[: len(tail) - _STDERR_TAIL_BYTES]
        line = self._stderr_line
        line += data
        while (nl := line.find(b"\n")) >= 0:
            text = line[:nl].decode(errors="replace").rstrip()
            del line[: nl + 1]
            if text:
                self.log.debug("stderr: %s", text)
        if len(line) > 4096:
            self.log.debug("stderr: %s", line.decode(errors="replace"))
            line.clear()

    def stderr_tail(self, max_chars: int = 800) -> str:
        return self._stderr_tail.decode(errors="replace")[-max_chars:].strip()

    def _stderr_hint(self) -> str:
        tail = self.stderr_tail()
        return f" Its stderr ended with: {tail!r}." if tail else ""

    def __repr__(self) -> str:
        return f"<BackendSession {self.tag} {self.state.value} {self.venv}>"


class _SessionLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the session and its venv."""

    def __init__(self, base: logging.Logger, prefix: str) -> None:
        super().__init__(base, {})
        self.prefix = prefix

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{self.prefix} {msg}", kwargs


class _ProcessProtocol(asyncio.SubprocessProtocol):
    """Feeds stdout to the session's decoder and drains stderr, so a backend never
    blocks on a full pipe. The exit is reported once stdout is drained too (a last
    response written just before exiting is not lost), or shortly after the exit if
    a child process still holds the pipe open."""

    def __init__(self, session: BackendSession) -> None:
        self._session = session
        self._stdout_closed = False
        self._exited = False
        self._reported = False

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._session.data_received(data)
        else:
            self._session._on_stderr(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._stdout_closed = True
            if self._exited:
                self._report()

    def process_exited(self) -> None:
        self._exited = True
        if self._stdout_closed:
            self._report()
        else:
            asyncio.get_running_loop().call_later(0.2, self._report)

    def _report(self) -> None:
        if self._reported:
            return
        self._reported = True
        transport = self._session._transport
        code = transport.get_returncode() if transport is not None else None
        self._session._process_exited(code)
