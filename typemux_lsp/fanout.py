"""Requests about the whole workspace, answered by asking every environment's backend.

- `workspace/symbol`: "where is class X defined" is how an agent finds its way around a
  monorepo, so every project environment under the client's workspace folders is
  searched — backends not running yet are started, within `--max-backends` (never
  evicting one) and a time budget. A project that could not be searched is never
  silently left out: with no symbol found the answer is an error naming the projects not
  searched and why; with symbols found, they are answered (and the gap is logged).
- `workspace/diagnostic` (pull diagnostics of VS Code-like clients): sent to every running
  backend that pulls, each given the previous result ids of its own documents only;
  partial results stream to the client under its own token; the answer merges them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from . import jsonrpc
from .documents import DocumentStore
from .feedback import first_sentence
from .ledger import Ledger, Pending, answering
from .merge import merge_symbols
from .plane import Plane
from .pool import Pool
from .projects import a_python_file, scan
from .router import NoVenv, Router
from .session import BackendError, BackendSession
from .venv import Venv

logger = logging.getLogger(__name__)

#: seconds workspace/symbol waits for backends, started ones included
SYMBOL_BUDGET: Final = 15.0
#: seconds after its start an empty answer from a backend is asked again (still indexing)
SETTLE: Final = 5.0
#: most symbols in one merged answer
MAX_SYMBOLS: Final = 1000
#: seconds a listing of the workspace's environments is reused
PROJECTS_TTL: Final = 30.0
#: seconds a workspace/diagnostic is held when no backend pulls (long-polling semantics)
IDLE_PULL: Final = 30.0
#: The client's own progress tokens, kept from the sub-requests of a merged answer.
_CLIENT_TOKENS: Final = frozenset({"workDoneToken", "partialResultToken"})


@dataclass(frozen=True, slots=True)
class Unsearched:
    venv: Path
    why: str


class FanOut:
    def __init__(
        self,
        plane: Plane,
        ledger: Ledger,
        pool: Pool,
        router: Router,
        store: DocumentStore,
        roots: Callable[[], list[Path]],
        deadline: Callable[[], float],
    ) -> None:
        self._plane = plane
        self._ledger = ledger
        self._pool = pool
        self._router = router
        self._store = store
        self._roots = roots
        #: the request deadline (0 = none): a fan-out never waits on a frozen backend past it
        self._deadline = deadline
        self._projects: tuple[float, tuple[Path, ...], list[Venv]] | None = None
        self._tokens = iter(range(1, 1 << 62))

    # -- workspace/symbol ----------------------------------------------------------------------

    def workspace_symbol(self, entry: Pending, params: Any) -> None:
        # The merged answer is the proxy's: no backend reports progress or partial results
        # under the client's tokens (N backends would begin and end one token N times).
        if isinstance(params, dict):
            params = {k: v for k, v in params.items() if k not in _CLIENT_TOKENS}
        entry.task = self._spawn(entry, self._symbols(entry, params))

    def _spawn(self, entry: Pending, work: Coroutine[Any, Any, None]) -> asyncio.Task[Any]:
        """Run a fan-out; whatever goes wrong in it, its request is answered."""
        return self._plane.spawn(answering(self._ledger, self._plane.lock, entry, work))

    async def _symbols(self, entry: Pending, params: Any) -> None:
        asked: list[tuple[BackendSession, asyncio.Task[Any]]] = []
        try:
            await self._symbols_from(entry, params, asked)
        finally:  # answered, failed or cancelled: no backend goes on searching for it
            for _, task in asked:
                task.cancel()

    async def _symbols_from(
        self,
        entry: Pending,
        params: Any,
        asked: list[tuple[BackendSession, asyncio.Task[Any]]],
    ) -> None:
        venvs = await self._workspace_venvs()
        missing: list[Unsearched] = []
        with self._plane.lock:
            for session in self._pool.live():
                if session.venv.key not in {v.key for v in venvs}:
                    venvs.append(session.venv)
            #: each session once, with the projects it is asked for (a shared one serves several)
            chosen: dict[BackendSession, list[Venv]] = {}
            for venv in sorted(venvs, key=lambda v: str(v.key)):
                found = self._pool.get(venv)
                if found is not None:
                    session = found
                else:
                    if len(self._pool.live()) >= self._pool.max_backends:
                        missing.append(
                            Unsearched(
                                venv.path,
                                f"no backend slot free (--max-backends {self._pool.max_backends})",
                            )
                        )
                        continue
                    try:
                        session = self._pool.get_or_start(venv)
                    except BackendError as exc:
                        missing.append(Unsearched(venv.path, first_sentence(str(exc))))
                        continue
                chosen.setdefault(session, []).append(venv)
            for session, served in chosen.items():
                fresh = not session.ready.done()
                projects = [v.project_dir for v in served]
                task = self._plane.loop.create_task(
                    self._ask(session, params, fresh=fresh, projects=projects)
                )
                asked.append((session, task))
        budget = min(SYMBOL_BUDGET, self._deadline() or SYMBOL_BUDGET)
        deadline = time.monotonic() + budget
        if asked:
            await asyncio.wait([t for _, t in asked], timeout=max(0.0, deadline - time.monotonic()))
        results: list[Any] = []
        for session, task in asked:
            if not task.done():
                task.cancel()
                missing.append(Unsearched(session.venv.path, f"no answer within {budget:g} s"))
                continue
            if task.cancelled() or task.exception() is not None:
                error = task.exception() if not task.cancelled() else None
                missing.append(Unsearched(session.venv.path, first_sentence(str(error))))
                continue
            results.append(task.result())
        merged, any_list = merge_symbols(results, MAX_SYMBOLS)
        with self._plane.lock:
            query = params.get("query") if isinstance(params, dict) else None
            if missing:
                gaps = "; ".join(f"{m.venv.parent} ({m.why})" for m in missing)
                logger.warning("workspace/symbol %r: not searched: %s", query, gaps)
            if not merged and missing:
                searched = [s.venv.project_dir for s, t in asked if t.done() and not t.cancelled()]
                self._ledger.fail(
                    entry,
                    jsonrpc.REQUEST_FAILED,
                    f"typemux-lsp: no symbol matching {query!r} was found"
                    + (f" in {', '.join(map(str, searched))}" if searched else "")
                    + f", but these projects could not be searched: {gaps}. The symbol may be "
                    "there. Fix: open a file of that project first, or raise --max-backends.",
                )
                return
            self._ledger.answer(entry, merged if any_list or not asked else None)

    async def _ask(
        self, session: BackendSession, params: Any, *, fresh: bool, projects: list[Path]
    ) -> Any:
        """The session's answer for `projects` (a shared one serves several). A backend still
        warming up is given one file of each project and waited for (measured: pyright finds
        nothing for ~1 s after start, pyrefly nothing until a file of the project is open),
        then asked until it answers or the budget ends."""
        if fresh:
            paths = await asyncio.get_running_loop().run_in_executor(
                None, lambda: [a_python_file(p) for p in projects]
            )
            await asyncio.shield(session.started)
            with self._plane.lock:
                for path in paths:
                    if path is not None and session.alive:
                        session.open_file(path)
            await asyncio.shield(session.ready)
        else:
            await asyncio.shield(session.started)
        await session.wait_joined()
        while True:
            with self._plane.lock:
                if not session.alive:
                    raise BackendError(f"its backend stopped ({session.error})")
                answer = session.request("workspace/symbol", params)
            try:
                result = await answer
            except asyncio.CancelledError:
                with self._plane.lock:
                    session.cancel_internal(answer)  # ($/cancelRequest to the backend)
                raise
            if result or not fresh or time.monotonic() - session.started_at > SETTLE:
                return result
            await asyncio.sleep(0.25)

    async def workspace_venvs(self) -> list[Venv]:
        """Every environment serving Python files under the workspace folders (cached)."""
        return await self._workspace_venvs()

    async def _workspace_venvs(self) -> list[Venv]:
        """Every environment serving Python files under the workspace folders (cached)."""
        roots = tuple(self._roots())
        now = time.monotonic()
        if (
            self._projects is not None
            and self._projects[1] == roots
            and now - self._projects[0] < PROJECTS_TTL
        ):
            return list(self._projects[2])
        loop = asyncio.get_running_loop()
        found: dict[Path, Venv] = {}
        for root in roots:
            listing = await loop.run_in_executor(
                None, functools.partial(scan, root, rules=self._router.rules)
            )
            for key, (env, _files) in listing.environments.items():
                found.setdefault(key, env)
        venvs = list(found.values())
        self._projects = (now, roots, venvs)
        return list(venvs)

    # -- workspace/diagnostic ----------------------------------------------------------------

    def workspace_diagnostic(self, entry: Pending, params: Any) -> None:
        params = params if isinstance(params, dict) else {}
        params = {k: v for k, v in params.items() if k != "workDoneToken"}  # (as for symbols)
        entry.task = self._spawn(entry, self._pull(entry, params))

    async def _pull(self, entry: Pending, params: dict[str, Any]) -> None:
        token = params.get("partialResultToken")
        asked: list[tuple[BackendSession, asyncio.Future[Any], str | None]] = []
        with self._plane.lock:
            sessions = [s for s in self._pool.live() if _pulls(s)]
            previous = params.get("previousResultIds")
            previous = previous if isinstance(previous, list) else []
            owners = [(p, self._owner(p)) for p in previous]  # once per id, not per backend
            for session in sessions:
                mine = [p for p, key in owners if key == session.venv.key]
                sub_token = None
                sub = {**params, "previousResultIds": mine}
                if token is not None:
                    sub_token = f"typemux-lsp/{session.id}/pull/{next(self._tokens)}"
                    session.remote_tokens[json.dumps(sub_token)] = token
                    sub["partialResultToken"] = sub_token
                asked.append((session, session.request("workspace/diagnostic", sub), sub_token))
        try:
            if not asked:
                await asyncio.sleep(IDLE_PULL)
                with self._plane.lock:
                    self._ledger.answer(entry, {"items": []})
                return
            results = await asyncio.gather(*(f for _, f, _ in asked), return_exceptions=True)
        except asyncio.CancelledError:
            with self._plane.lock:
                for session, fut, _ in asked:
                    session.cancel_internal(fut)
            raise
        finally:
            with self._plane.lock:
                for session, _, sub_token in asked:
                    if sub_token is not None:
                        session.remote_tokens.pop(json.dumps(sub_token), None)
        items: list[Any] = []
        errors: list[str] = []
        for (session, _, _), result in zip(asked, results, strict=True):
            if isinstance(result, BaseException):
                errors.append(f"{session.venv}: {result}")
            elif isinstance(result, dict) and isinstance(result.get("items"), list):
                items.extend(result["items"])
        with self._plane.lock:
            if errors and len(errors) == len(asked):
                self._ledger.fail(
                    entry,
                    jsonrpc.REQUEST_FAILED,
                    "typemux-lsp: workspace/diagnostic failed in every backend: "
                    + "; ".join(errors),
                )
            else:
                self._ledger.answer(entry, {"items": items})

    def _owner(self, previous: Any) -> Path | None:
        uri = previous.get("uri") if isinstance(previous, dict) else None
        if not isinstance(uri, str):
            return None
        with contextlib.suppress(ValueError, OSError):
            venv = self._router.venv_for(uri, self._store.get(uri))
            return None if isinstance(venv, NoVenv) else venv.key
        return None


def _pulls(session: BackendSession) -> bool:
    """Whether the backend answers workspace/diagnostic: declared at initialize, or
    registered later (ty and pyright register pull diagnostics with clients that allow it)."""
    for provider in (
        session.capabilities.get("diagnosticProvider"),
        session.registered.get("textDocument/diagnostic"),
    ):
        if isinstance(provider, dict) and provider.get("workspaceDiagnostics"):
            return True
    return False
