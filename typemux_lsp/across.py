"""Answers across projects: references, rename, incoming calls, subtypes and implementations
of a symbol that other environments see.

Each backend is rooted at its own project, so it knows only the callers in that project. A
library `libs/core` installed editable into `services/a` and `services/b` is seen by three
environments; "who calls `greet`" has three partial answers. For the methods in
`features.ACROSS_METHODS` the definition is resolved first (the document's own backend), then
the owner of the definition's file and every environment that sees that file
(`environments.model.ImportRoots`) is asked at the definition's position, with the
definition's file open in each (the client's text when it has it open, else the disk's),
and the answers are merged. Backends not running are started within `--max-backends`
(never evicting one).

Never silently partial: an environment that sees the definition and could not be asked
(pool full, crash loop, its backend crashed, the deadline) makes a rename an error and no
edit; references and the others answer what was found, and the gap is logged and shown in
`typemux/status` — or, with nothing found, an error naming the projects and why.

No cost where there is nothing to merge: an environment whose import roots share nothing
with another's (`BackendSession.crosses` False) keeps the relay's hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from . import jsonrpc, probe, projects
from .documents import DocumentStore, Encoding, text_in
from .environments import canonical
from .environments.model import ImportRoots, import_roots
from .features import ClientSupport, unsupported
from .feedback import first_sentence
from .jsonrpc import Message
from .ledger import Ledger, Pending, answering
from .merge import answer_key, answered_once, any_list, location_of, merge_answers, range_key
from .plane import Plane
from .pool import Pool
from .router import BadUri, NoVenv, Router, local_path
from .session import BackendAnswered, BackendError, BackendSession, State
from .tree import get_path
from .venv import Venv

logger = logging.getLogger(__name__)

#: seconds the import roots of the workspace's environments are reused
ROOTS_TTL: Final = 5.0
#: seconds a fan-out waits for its backends when no request deadline is set
BUDGET: Final = 45.0
#: times a sub-request given up for a change under it is asked again
RETRIES: Final = 3
#: gaps kept for `typemux/status`
KEEP_GAPS: Final = 20
#: Backend kinds whose first answers after their start lack the uses in files not open
#: (bench/across_habits.py: pyright, basedpyright and pyrefly answer without the consumer's
#: importing file until their background analysis has reached it, 0.05-0.2 s after their
#: first answer; complete at once with the importer open; ty is complete at once).
_OPENS_IMPORTERS: Final = frozenset({"pyright", "basedpyright", "pyrefly"})
#: seconds after its start a backend gets the importing files opened for it
IMPORTERS_WHILE_YOUNGER: Final = 30.0
#: files of a project opened at most for one question
MAX_IMPORTERS: Final = 50
#: methods whose params carry the definition as an item (prepared by the client)
_ITEM_METHODS: Final = frozenset({"callHierarchy/incomingCalls", "typeHierarchy/subtypes"})
_PREPARE: Final = {
    "callHierarchy/incomingCalls": "textDocument/prepareCallHierarchy",
    "typeHierarchy/subtypes": "textDocument/prepareTypeHierarchy",
}
#: asked of the document's backend first, of the definition's owner when it refuses
_PREPARES: Final = frozenset(
    {
        "textDocument/prepareRename",
        "textDocument/prepareCallHierarchy",
        "textDocument/prepareTypeHierarchy",
    }
)
#: answered as partial results under the client's token as each backend answers (incoming
#: calls are not: a caller's ranges from two backends are one item, which a partial result
#: cannot amend)
_STREAMED: Final = frozenset(
    {"textDocument/references", "textDocument/implementation", "typeHierarchy/subtypes"}
)
_CLIENT_TOKENS: Final = frozenset({"workDoneToken", "partialResultToken"})
_IDENTIFIER: Final = re.compile(r"[^\W\d]\w*")

Forward = Callable[[Pending, Message, bytes], None]


@dataclass(frozen=True, slots=True)
class Gap:
    """An environment that sees the definition and could not be asked."""

    project: Path
    why: str

    def __str__(self) -> str:
        return f"{self.project} ({self.why})"


@dataclass(frozen=True, slots=True, eq=False)
class Asked:
    """One environment's view of the definition, asked of `session`: at the definition's
    file, or (a shared process answers that file from another folder) through a probe."""

    session: BackendSession
    venv: Venv
    probe: bool = False


class CannotAnswer(Exception):
    """The merged answer would be wrong: the client gets this message as an error."""


class Across:
    def __init__(
        self,
        plane: Plane,
        ledger: Ledger,
        pool: Pool,
        router: Router,
        store: DocumentStore,
        workspace_venvs: Callable[[], Awaitable[list[Venv]]],
        extra_paths: Callable[[Venv], tuple[Path, ...]],
        support: Callable[[], ClientSupport],
        deadline: Callable[[], float],
        warmup: Callable[[], float],
        send: Callable[[Message], None],
    ) -> None:
        self._plane = plane
        #: a message to the client (partial results)
        self._send = send
        self._ledger = ledger
        self._pool = pool
        self._router = router
        self._store = store
        self._workspace_venvs = workspace_venvs
        self._extra_paths = extra_paths
        self._support = support
        self._deadline = deadline
        self._warmup = warmup
        #: environment key -> (the environment, its import roots)
        self._index: dict[Path, tuple[Venv, ImportRoots]] = {}
        self._indexed_at = float("-inf")
        self._indexing: asyncio.Future[None] | None = None
        #: environment key -> (the mtimes of its site-packages directories, its roots)
        self._roots: dict[Path, tuple[tuple[int, ...], ImportRoots]] = {}
        self._ticking = False
        #: (session id, uri) -> (questions using it, the text given) for the files opened
        #: in a backend for questions asked across projects
        self._lent: dict[tuple[int, str], tuple[int, str | None]] = {}
        #: (session id, uri) of the probe documents in use (opened or about to be)
        self._probing: set[tuple[int, str]] = set()
        #: the latest answers that left an environment out (for `typemux/status`)
        self.gaps: deque[dict[str, Any]] = deque(maxlen=KEEP_GAPS)

    # -- which environments see what ---------------------------------------------------------

    def refresh(self) -> None:
        """A backend started, or an environment's `.pth` files changed (an editable install
        added or removed): the import roots are read again now, so a backend that took the
        hot path until now leaves it at once when it starts to share files."""
        self._indexed_at = float("-inf")
        self._roots = {}  # (a .pth rewritten in place leaves its directory's mtime alone)
        self._plane.spawn(self.index())
        if not self._ticking:
            self._ticking = True
            self._plane.later(ROOTS_TTL, self._tick)

    def _tick(self) -> None:
        """While backends run, the import roots are looked at every `ROOTS_TTL` seconds (a
        `stat` per site-packages; read again only where one changed): an editable install
        added to an environment whose backend is not running changes what others see."""
        if not self._pool.live():
            self._ticking = False
            return
        self._indexed_at = float("-inf")
        self._plane.spawn(self.index())
        self._plane.later(ROOTS_TTL, self._tick)

    async def index(self) -> dict[Path, tuple[Venv, ImportRoots]]:
        """Every known environment's import roots (the workspace's and the running ones'),
        and each running session's `crosses` set from them."""
        if time.monotonic() - self._indexed_at < ROOTS_TTL:
            return self._index
        if self._indexing is None or self._indexing.done():
            self._indexing = asyncio.ensure_future(self._build())
        await asyncio.shield(self._indexing)
        return self._index

    async def _build(self) -> None:
        venvs = {v.key: v for v in await self._workspace_venvs()}
        with self._plane.lock:
            for session in self._pool.live():
                venvs.setdefault(session.venv.key, session.venv)
            extras = {key: self._extra_paths(venv) for key, venv in venvs.items()}
        loop = asyncio.get_running_loop()

        known = dict(self._roots)

        def build() -> dict[Path, tuple[Venv, ImportRoots]]:
            index = {}
            for key, venv in venvs.items():
                stamp = _stamp(venv, extras[key])
                cached = known.get(key)
                if cached is None or cached[0] != stamp:
                    cached = (stamp, import_roots(venv, extras[key]))
                    known[key] = cached
                index[key] = (venv, cached[1])
            return index

        index = await loop.run_in_executor(None, build)
        with self._plane.lock:
            self._roots = known
            self._index, self._indexed_at = index, time.monotonic()
            for session in self._pool.live():
                session.crosses = self._crosses(session.venv.key)

    def _crosses(self, key: Path) -> bool:
        mine = self._index.get(key)
        if mine is None:
            return True  # not known yet: looked at on the control plane
        return any(k != key and mine[1].shares_with(r) for k, (_, r) in self._index.items())

    def seers(self, path: Path) -> tuple[bool, list[Venv]]:
        """The environments that see the source file `path`: its owner first (the
        environment routing gives it; the flag says whether it has one), then every one
        importing it from outside."""
        real = canonical(path)
        if any(real.is_relative_to(key) for key in self._index):
            return False, []  # an installed package, not a project's source
        found: dict[Path, Venv] = {}
        with contextlib.suppress(BadUri, ValueError, OSError):
            owner = self._router.venv_for(path.as_uri(), self._store.get(path.as_uri()))
            if not isinstance(owner, NoVenv):
                found[owner.key] = owner
        owned = bool(found)
        for key, (venv, roots) in sorted(self._index.items(), key=lambda kv: str(kv[0])):
            if key not in found and roots.imports_from(real):
                found[key] = venv
        return owned, list(found.values())

    def status(self) -> dict[str, Any]:
        return {
            "crossing": sorted(
                str(k) for k in self._index if self._crosses(k) and len(self._index) > 1
            ),
            "gaps": list(self.gaps),
        }

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        entry: Pending,
        message: Message,
        body: bytes,
        target: BackendSession,
        forward: Forward,
    ) -> None:
        """Answer `entry` across projects, or hand it to `forward` when nothing is to merge."""

        async def answered() -> None:
            try:
                await self._answer(entry, message, body, target, forward)
            except CannotAnswer as exc:
                with self._plane.lock:
                    self._ledger.fail(entry, jsonrpc.REQUEST_FAILED, str(exc))

        entry.task = self._plane.spawn(answering(self._ledger, self._plane.lock, entry, answered()))

    def answer_once(self, entry: Pending, message: Message, target: BackendSession) -> None:
        """Answer `entry` from `target`, a shared backend that repeats an item once per folder
        that sees it (`BackendKind.repeats_per_folder`), with each item once: what the backend
        of the one environment answers. Asked on the control plane (these methods are not the
        relay's hot path), within the request deadline; the backend's error is the client's."""
        params = message.get("params")
        params = {
            k: v
            for k, v in (params if isinstance(params, dict) else {}).items()
            if k not in _CLIENT_TOKENS
        }

        async def answered() -> None:
            deadline = self._deadline()
            ask = self._asker(target, entry.method, params)
            try:
                await self._wait_ready(target)
                answer = await (asyncio.wait_for(ask(), deadline) if deadline > 0 else ask())
            except TimeoutError:
                with self._plane.lock:
                    self._ledger.fail(
                        entry,
                        jsonrpc.REQUEST_FAILED,
                        f"typemux-lsp: the {target.kind.name} backend for {target.venv} did not "
                        f"answer {entry.method} within {deadline:g} s (--request-timeout). "
                        "Retry; if it keeps happening, the log has the backend's stderr.",
                    )
                return
            except BackendAnswered as exc:
                code = exc.code if isinstance(exc.code, int) else jsonrpc.REQUEST_FAILED
                with self._plane.lock:
                    self._ledger.fail(entry, code, str(exc.message))
                return
            except BackendError as exc:
                with self._plane.lock:
                    self._ledger.fail(entry, jsonrpc.REQUEST_FAILED, str(exc))
                return
            with self._plane.lock:
                self._ledger.answer(entry, answered_once(entry.method, answer))

        entry.task = self._plane.spawn(answering(self._ledger, self._plane.lock, entry, answered()))

    async def _answer(
        self,
        entry: Pending,
        message: Message,
        body: bytes,
        target: BackendSession,
        forward: Forward,
    ) -> None:
        method = entry.method
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        await self.index()
        with self._plane.lock:
            crosses = self._crosses(target.venv.key)
            target.crosses = crosses
        if not crosses:
            return self._hand_back(entry, message, body, forward)
        mine: Any = None
        error: BackendError | None = None
        if method in _PREPARES:
            # The document's own backend first: it answers unless the symbol is another
            # project's (pyrefly: "Third-party symbols cannot be renamed", no call hierarchy).
            await self._wait_ready(target)
            try:
                mine = await self._asker(target, method, params)()
            except BackendError as exc:
                error = exc
            if mine or (error is not None and method != "textDocument/prepareRename"):
                with self._plane.lock:
                    if error is not None:
                        self._ledger.fail(entry, jsonrpc.REQUEST_FAILED, str(error))
                    else:
                        self._ledger.answer(entry, mine)
                return None
        if method in _ITEM_METHODS:
            where = _item_position(params.get("item"))
        else:
            where = await self._definition(target, params)
        if where is None:
            return self._hand_back(entry, message, body, forward, asked=(mine, error))
        uri, position = where
        path = local_path(uri)
        if path is None:
            return self._hand_back(entry, message, body, forward, asked=(mine, error))
        with self._plane.lock:
            owned, venvs = self.seers(path)
            alone = not venvs or (len(venvs) == 1 and venvs[0].key == target.venv.key)
            if not alone:
                asked, gaps, covered = self._sessions(venvs, method, path)
                text = self._text(uri, path)
        if alone:
            return self._hand_back(entry, message, body, forward, asked=(mine, error))
        owner = next(
            (a for a in asked if owned and a.venv.key == venvs[0].key and not a.probe), None
        )
        if method in _PREPARES:
            return await self._prepare(entry, params, target, owner, where, text, (mine, error))
        if text is None:
            raise CannotAnswer(f"typemux-lsp: cannot read {path}, the definition of the symbol.")
        reach = self._reach(asked, text, position)
        work: dict[Asked, Coroutine[Any, Any, Any]] = {}
        new_name = params.get("newName")
        for one in asked:
            session = one.session
            if one.probe:
                assert reach is not None
                if reach.local:
                    continue  # (bound in a function: no other module can name it)
                if not reach.path:
                    gaps.append(Gap(one.venv.project_dir, self._unprobed(one, reach.why)))
                    continue
                work[one] = self._probed(one, method, params, uri, position, path, text, reach)
                continue
            if method == "textDocument/rename":
                if one is owner:
                    ask = self._asker(session, method, {**_at(uri, position), "newName": new_name})
                else:
                    ask = self._asker(
                        session,
                        "textDocument/references",
                        {**_at(uri, position), "context": {"includeDeclaration": True}},
                    )
            elif method in _ITEM_METHODS:
                ask = self._item_asker(session, method, uri, position)
            else:
                sub = {k: v for k, v in params.items() if k not in _CLIENT_TOKENS}
                ask = self._asker(session, method, {**sub, **_at(uri, position)})
            work[one] = self._in(one, uri, text, ask, covered.get(one.session, ()))
        token = params.get("partialResultToken") if method in _STREAMED else None
        streamed: set[str] = set()

        def stream(answer: Any) -> None:
            """A backend's answer, as partial results under the client's token: what no
            other backend already gave."""
            new = [
                i for i in merge_answers(method, [answer]) if answer_key(method, i) not in streamed
            ]
            if new:
                streamed.update(answer_key(method, i) for i in new)
                with self._plane.lock:
                    if self._ledger.get(entry.client_id) is entry:
                        self._send(
                            jsonrpc.notification("$/progress", {"token": token, "value": new})
                        )

        answers = await self._gather(work, gaps, stream if token is not None else None)
        if method == "textDocument/rename":
            old = self._identifier(text, position)
            edit = self._rename(answers, owner, gaps, old, new_name)
            with self._plane.lock:
                self._ledger.answer(entry, edit)
            return None
        merged = merge_answers(method, [a for a in answers.values() if a is not None])
        with self._plane.lock:
            if gaps:
                said = "; ".join(map(str, gaps))
                logger.warning("%s at %s: not asked: %s", method, uri, said)
                self.gaps.append({"method": method, "uri": uri, "notAsked": [str(g) for g in gaps]})
                if not merged and not streamed:
                    raise CannotAnswer(
                        f"typemux-lsp: {method} found nothing, but these projects that see "
                        f"{path} could not be asked: {said}. The answer may be there. Fix: "
                        "retry; raise --max-backends if the pool is full."
                    )
            if streamed:  # (the whole result went as partial results: the answer is empty)
                merged = []
            self._ledger.answer(entry, merged if merged or any_list(answers) else None)
        return None

    def _hand_back(
        self,
        entry: Pending,
        message: Message,
        body: bytes,
        forward: Forward,
        *,
        asked: tuple[Any, BackendError | None] | None = None,
    ) -> None:
        """Nothing to merge: the request goes to the document's backend as it is (a prepare
        it was asked already is answered with what it said)."""
        with self._plane.lock:
            if entry.method in _PREPARES and asked is not None:
                if asked[1] is not None:
                    self._ledger.fail(entry, jsonrpc.REQUEST_FAILED, str(asked[1]))
                else:
                    self._ledger.answer(entry, asked[0])
                return
            entry.task = None
            if entry.client_id in self._ledger and self._ledger.get(entry.client_id) is entry:
                forward(entry, message, body)

    async def _definition(
        self, target: BackendSession, params: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        """Where the symbol at the request's position is defined, by the document's backend
        (asked again if it gives up for a change under it); the request's own position when
        the backend names none (the cursor is on it)."""
        uri = get_path(params, "textDocument", "uri")
        position = params.get("position")
        if not isinstance(uri, str) or not isinstance(position, dict):
            return None
        await self._wait_ready(target)
        try:
            result = await self._asker(
                target,
                "textDocument/definition",
                {"textDocument": {"uri": uri}, "position": position},
            )()
        except BackendError as exc:
            # Without the definition the other projects cannot be asked: the document's own
            # backend's answer alone would be partial.
            raise CannotAnswer(
                f"typemux-lsp: {uri} may be used across projects, but its backend could not "
                f"say where the symbol is defined ({first_sentence(str(exc))}), so the other "
                "projects could not be asked. Fix: retry."
            ) from exc
        for location in result if isinstance(result, list) else [result]:
            found = location_of(location)
            if found is not None and found[0].endswith((".py", ".pyi")):
                return found
        return uri, position

    def _sessions(
        self, venvs: list[Venv], method: str, path: Path
    ) -> tuple[list[Asked], list[Gap], dict[BackendSession, list[Venv]]]:
        """Who to ask for each of `venvs`, started where a slot is free (never evicting one).
        A shared process answers the definition's file from the one folder that holds it
        (pyright's `_getBestWorkspaceForFile`), so the other projects' view of the file cannot
        be asked there: a kind that probes `method` (`BackendKind.probes`) is asked it through
        a probe; another kind's process once, for the first, the others gaps, never silently
        left out — unless its kind answers `method` for every folder it serves in one ask
        (`BackendKind.spans_folders`): those projects are returned, per session, as covered."""
        asked: list[Asked] = []
        gaps: list[Gap] = []
        covered: dict[BackendSession, list[Venv]] = {}
        first: dict[int, Venv] = {}
        real = canonical(path)
        for venv in venvs:
            session = self._pool.get(venv)
            if session is None:
                if len(self._pool.live()) >= self._pool.max_backends:
                    why = f"no backend slot free (--max-backends {self._pool.max_backends})"
                    gaps.append(Gap(venv.project_dir, why))
                    continue
                try:
                    session = self._pool.get_or_start(venv)
                except BackendError as exc:
                    gaps.append(Gap(venv.project_dir, first_sentence(str(exc))))
                    continue
            if session.shared and method in session.kind.probes:
                known = self._index.get(venv.key)
                holds = real.is_relative_to(known[1].project if known else venv.project_dir)
                asked.append(Asked(session, venv, probe=not holds))
                continue
            if session.id in first:
                if method in session.kind.spans_folders:
                    covered.setdefault(session, []).append(venv)
                    continue  # (asked once, for all of them)
                gaps.append(
                    Gap(
                        venv.project_dir,
                        f"it shares a {session.kind.name} process with "
                        f"{first[session.id].project_dir}, which answers the file for that "
                        "project only (set backend-sharing = none, or leave "
                        f"{session.kind.name} out of it, to ask each project)",
                    )
                )
                continue
            first[session.id] = venv
            asked.append(Asked(session, venv))
        return asked, gaps, covered

    def _reach(self, asked: list[Asked], text: str, position: dict[str, Any]) -> probe.Reach | None:
        """How the definition at `position` is named from another module, when a probe is
        to be asked (None otherwise)."""
        if not any(a.probe for a in asked):
            return None
        name = self._identifier(text, position)
        if name is None:
            return probe.Reach(why="no identifier at the definition the backend named")
        return probe.reach(text, position["line"], name)

    def _unprobed(self, one: Asked, why: str) -> str:
        return (
            f"it shares a {one.session.kind.name} process that answers the definition's file "
            f"from another project's folder, and asks each project through an import of the "
            f"symbol, which cannot be made here: {why} (set backend-sharing = none, or leave "
            f"{one.session.kind.name} out of it, to ask each project)"
        )

    async def _probed(
        self,
        one: Asked,
        method: str,
        params: dict[str, Any],
        uri: str,
        position: dict[str, Any],
        path: Path,
        text: str,
        reach: probe.Reach,
    ) -> Any:
        """`method` asked of a shared session as `one.venv`'s folder sees the definition:
        through a probe document under that folder that imports the symbol (probe.py). The
        probe's references must include the definition, else the folder is a gap; its own
        locations are left out of the answer; it is closed after."""
        session, venv = one.session, one.venv
        known = self._index.get(venv.key)
        module = None
        for root in known[1].extra if known is not None else ():
            if canonical(path).is_relative_to(root):
                module = probe.module_name(root, canonical(path))
                break
        if module is None:
            raise BackendError(self._unprobed(one, f"{path} has no module name in it"))
        source, at = probe.probe_text(module, reach.path)
        line = source.splitlines()[1]
        at = {"line": 1, "character": _units(line[: at["character"]], self._store.encoding)}
        name = reach.path[-1]
        probe_uri = ""

        async def ask() -> Any:
            assert probe_uri
            here = _at(probe_uri, at)
            # The probe's references with the declarations name the definition when the import
            # reaches it (a module of the folder's own may shadow the library's): asked first,
            # as the check (a definition request right after the probe opens costs ~30 ms on
            # pyright, references ~5), and the answer itself for a rename and most references.
            # ty 1.2.0 leaves a declaration outside the folder's project out of its references:
            # its probe's definition is the check.
            whole = {"includeDeclaration": True}
            found = await self._asker(
                session, "textDocument/references", {**here, "context": whole}
            )()
            if not _names(found, path, position) and not _names(
                await self._asker(session, "textDocument/definition", here)(), path, position
            ):
                raise BackendError(
                    f"its import of {module}.{'.'.join(reach.path)} does not reach the "
                    "definition (a module of its own may have that name)"
                )
            if method == "textDocument/rename" or (
                method == "textDocument/references" and params.get("context") == whole
            ):
                answer = found
            elif method in _ITEM_METHODS:
                end = at["character"] + _units(name, self._store.encoding)
                span = {"start": at, "end": {"line": 1, "character": end}}
                item = {"name": name, "kind": 12, "uri": probe_uri, "range": span}
                answer = await self._asker(
                    session, method, {"item": {**item, "selectionRange": span}}
                )()
            else:
                sub = {k: v for k, v in params.items() if k not in _CLIENT_TOKENS}
                answer = await self._asker(session, method, {**sub, **here})()
            return _without(answer, probe_uri)

        directory = probe.probe_dir(venv.project_dir, session.kind.name)
        if directory is None:
            raise BackendError(
                self._unprobed(
                    one,
                    f"its {session.kind.name} configuration (`include`) names no directory "
                    "to put the import in, or cannot be read",
                )
            )
        with self._plane.lock:
            probe_uri = self._probe_uri(session, directory)
        try:
            return await self._in(one, uri, text, ask, probing=(probe_uri, source))
        finally:
            with self._plane.lock:
                self._probing.discard((session.id, probe_uri))

    def _probe_uri(self, session: BackendSession, directory: Path) -> str:
        """A probe's uri in `directory` (the folder's own): one not open in `session` nor on
        disk (the names are reused, so the diagnostics of the few are told apart forever)."""
        for n in itertools.count(1):
            path = directory / f"__typemux_probe_{n}__.py"
            uri = path.as_uri()
            if (session.id, uri) not in self._probing and not path.exists():
                self._probing.add((session.id, uri))
                session.probes.add(uri)
                return uri
        raise AssertionError("unreachable")

    def _text(self, uri: str, path: Path) -> str | None:
        doc = self._store.get(uri)
        if doc is not None and not doc.desynced:
            return doc.backend_text
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    async def _wait_ready(self, session: BackendSession) -> None:
        await asyncio.shield(session.started)
        if session.state is State.WARMING:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(session.ready), self._warmup() or 2.0)

    async def _in(
        self,
        one: Asked,
        uri: str,
        text: str,
        ask: Callable[[], Coroutine[Any, Any, Any]],
        covered: Iterable[Venv] = (),
        probing: tuple[str, str] | None = None,
    ) -> Any:
        """`ask` of `one.session` once it runs, with the definition's file open in it: the
        client's document where it belongs to this session, else opened for the question
        with the client's (or the disk's) text and closed after. The projects a shared
        session answers for too (`covered`) get their importing files opened, whatever its
        age: nothing else makes it read them. `probing`: the (uri, text) of a probe document
        opened for the question too."""
        session, venv = one.session, one.venv
        await asyncio.shield(session.started)
        importers: list[Path] = []
        since = max(session.started_at, session.joined.get(venv.key, session.started_at))
        young = time.monotonic() - since < IMPORTERS_WHILE_YOUNGER
        if session.kind.name in _OPENS_IMPORTERS:
            for each in [venv] if young else []:
                importers += await self._importers(each, uri)
            for each in covered:
                importers += await self._importers(each, uri)
        borrowed: list[str] = []
        with self._plane.lock:
            if not session.alive:
                raise BackendError(first_sentence(str(session.error or "its backend stopped")))
            for importer in importers:
                if self._borrow(session, importer.as_uri(), None):
                    borrowed.append(importer.as_uri())
            doc = self._store.get(uri)
            if doc is not None and doc.venv is not None and session.serves(doc.venv):
                if uri not in session.open_docs and not doc.desynced:
                    session.open_document(doc)
            elif self._borrow(session, uri, text):
                borrowed.append(uri)
            if probing is not None:
                session.open_text(*probing)
        try:
            await self._wait_ready(session)
            return await ask()
        finally:
            with self._plane.lock:
                if probing is not None and session.alive:
                    session.close_document(probing[0])
                for done in borrowed:
                    self._give_back(session, done)

    def _borrow(self, session: BackendSession, uri: str, text: str | None) -> bool:
        """Open `uri` in `session` for a question (`text`, else the disk's), unless it is the
        client's there; shared by the questions asked at once (each open or close while
        another is asked would be a change under it: pyrefly cancels the request)."""
        key = (session.id, uri)
        held = self._lent.get(key)
        if held is not None and uri in session.proxy_docs:
            if text is not None and text != held[1]:
                session.close_document(uri)  # (the client's text changed meanwhile)
                session.open_text(uri, text)
            self._lent[key] = (held[0] + 1, text if text is not None else held[1])
            return True
        if uri in session.open_docs and uri not in session.proxy_docs:
            return False  # the client's own document
        if uri in session.proxy_docs:
            session.close_document(uri)  # opened by another part of the proxy: maybe older
        if text is None:
            session.open_file(Path(local_path(uri) or uri))
        else:
            session.open_text(uri, text)
        self._lent[key] = (1, text)
        return True

    def _give_back(self, session: BackendSession, uri: str) -> None:
        key = (session.id, uri)
        held = self._lent.get(key)
        if held is None:
            return
        if held[0] > 1:
            self._lent[key] = (held[0] - 1, held[1])
            return
        del self._lent[key]
        if session.alive and uri in session.proxy_docs:
            session.close_document(uri)

    async def _importers(self, venv: Venv, uri: str) -> list[Path]:
        """Files of `venv`'s project that import the file `uri` (another project's)."""
        module = self._module(venv, uri)  # (its top package: `from core import x`)
        if module is None:
            return []
        return await asyncio.get_running_loop().run_in_executor(
            None,
            functools.partial(projects.importers, venv.project_dir, module, limit=MAX_IMPORTERS),
        )

    def _module(self, venv: Venv, uri: str) -> str | None:
        """The top package `venv` imports the file `uri` from, when it is another project's
        (under one of its extra import roots)."""
        path = local_path(uri)
        known = self._index.get(venv.key)
        if path is None or known is None:
            return None
        real = canonical(path)
        for root in known[1].extra:
            if real.is_relative_to(root):
                parts = list(real.relative_to(root).with_suffix("").parts)
                if parts and parts[-1] == "__init__":
                    parts.pop()
                return parts[0] if parts else None
        return None

    def _asker(
        self, session: BackendSession, method: str, params: dict[str, Any]
    ) -> Callable[[], Coroutine[Any, Any, Any]]:
        async def ask() -> Any:
            attempt = 0
            while True:
                attempt += 1
                with self._plane.lock:
                    refusal = unsupported(session.kind, method, session.capabilities)
                    if refusal is not None:
                        raise BackendError(first_sentence(refusal))
                    if not session.alive:
                        raise BackendError("its backend stopped")
                    joining = bool(session.joining)
                if joining:  # (a shared backend's folder joining: not yet its own environment)
                    await session.wait_joined()
                    continue
                with self._plane.lock:
                    fut = session.request(method, params)
                try:
                    return await fut
                except asyncio.CancelledError:
                    with self._plane.lock:
                        session.cancel_internal(fut)
                    raise
                except BackendError as exc:
                    # Given up because something changed under it (ty: ContentModified; pyrefly
                    # cancels on "subsequent mutation": a change of the disk told, or another
                    # question's file opened): asked again. (A request withdrawn by the proxy
                    # never gets here: its future is cancelled.)
                    given_up = (jsonrpc.CONTENT_MODIFIED, jsonrpc.REQUEST_CANCELLED)
                    if attempt > RETRIES or not str(exc).startswith(
                        tuple(f"{code}:" for code in given_up)
                    ):
                        raise

        return ask

    def _item_asker(
        self, session: BackendSession, method: str, uri: str, position: dict[str, Any]
    ) -> Callable[[], Coroutine[Any, Any, Any]]:
        """Each backend is asked with its own item (items carry backend-private `data`)."""
        prepare = self._asker(session, _PREPARE[method], _at(uri, position))

        async def ask() -> Any:
            items = await prepare()
            item = next(
                (i for i in items or [] if _item_position(i) == (uri, position)),
                (items or [None])[0],
            )
            if item is None:
                return []
            return await self._asker(session, method, {"item": item})()

        return ask

    async def _gather(
        self,
        work: dict[Asked, Coroutine[Any, Any, Any]],
        gaps: list[Gap],
        each: Callable[[Any], None] | None = None,
    ) -> dict[Asked, Any]:
        """Every session's answer within the budget (`each` is given each as it comes); the
        others are gaps. Cancelled (the client's `$/cancelRequest`): every sub-request is
        withdrawn from its backend."""
        tasks = {s: asyncio.ensure_future(w) for s, w in work.items()}
        if each is not None:
            for task in tasks.values():
                task.add_done_callback(
                    lambda t: (
                        each(t.result()) if not t.cancelled() and t.exception() is None else None
                    )
                )
        budget = self._deadline() or BUDGET
        try:
            await asyncio.wait(tasks.values(), timeout=budget)
        finally:
            for task in tasks.values():
                if not task.done():
                    task.cancel()
        answers: dict[Asked, Any] = {}
        for one, task in tasks.items():
            project = one.venv.project_dir
            if task.cancelled():
                gaps.append(Gap(project, f"no answer within {budget:g} s"))
            elif task.exception() is not None:
                gaps.append(Gap(project, first_sentence(str(task.exception()))))
            else:
                answers[one] = task.result()
        return answers

    # -- rename ------------------------------------------------------------------------------

    def _identifier(self, text: str, position: dict[str, Any]) -> str | None:
        found = self._identifier_span(text, position)
        return found[0] if found is not None else None

    def _identifier_span(self, text: str, position: dict[str, Any]) -> tuple[str, int, int] | None:
        """The identifier at `position`, and its start and end characters (in the
        negotiated encoding)."""
        line, char = position.get("line"), position.get("character")
        if not isinstance(line, int) or not isinstance(char, int):
            return None
        lines = text.splitlines()
        if line >= len(lines):
            return None
        content = lines[line]
        before = text_in(content, _line_range(0, char), self._store.encoding)
        if before is None:
            return None
        for match in _IDENTIFIER.finditer(content):
            if match.start() <= len(before) <= match.end():
                return (
                    match.group(),
                    _units(content[: match.start()], self._store.encoding),
                    _units(content[: match.end()], self._store.encoding),
                )
        return None

    def _rename(
        self,
        answers: dict[Asked, Any],
        owner: Asked | None,
        gaps: list[Gap],
        old: str | None,
        new: Any,
    ) -> dict[str, Any]:
        """One WorkspaceEdit: the owner's rename, and every other environment's references
        as edits of the identifier (a reference whose text is not the old name, such as an
        alias's uses, is left alone: `import core.greet as g` keeps `g`)."""
        if gaps:
            raise CannotAnswer(
                f"typemux-lsp: cannot rename {old!r}: these projects use it and could not be "
                f"asked: {'; '.join(map(str, gaps))}. No edit was made, since a rename without "
                "them would break them. Fix: retry; raise --max-backends if the pool is full."
            )
        if old is None:
            raise CannotAnswer(
                "typemux-lsp: cannot rename across projects: no identifier at the definition "
                "the backend named. No edit was made."
            )
        edits: dict[str, list[dict[str, Any]]] = {}
        operations: list[Any] = []
        stale: list[str] = []
        if owner is not None and owner in answers:
            self._owner_edits(answers[owner], edits, operations, stale)
        texts: dict[str, str | None] = {}
        for one, answer in answers.items():
            if one is owner:
                continue
            for location in answer if isinstance(answer, list) else []:
                found = location_of(location)
                if found is None or not isinstance(location.get("range"), dict):
                    continue
                uri = found[0]
                if uri not in texts:
                    path = local_path(uri)
                    texts[uri] = self._text(uri, path) if path is not None else None
                text = texts[uri]
                if text is None or text_in(text, location["range"], self._store.encoding) != old:
                    continue
                edits.setdefault(uri, []).append({"range": location["range"], "newText": new})
        if stale:
            raise CannotAnswer(
                "typemux-lsp: cannot rename: the backend answered for an older text of "
                f"{', '.join(stale)} than the client has. No edit was made. Fix: retry."
            )
        for uri, those in edits.items():
            edits[uri] = _no_overlaps(uri, those)
        return self._workspace_edit(edits, operations)

    def _owner_edits(
        self,
        answer: Any,
        edits: dict[str, list[dict[str, Any]]],
        operations: list[Any],
        stale: list[str],
    ) -> None:
        if not isinstance(answer, dict):
            return
        changes = answer.get("changes")
        if isinstance(changes, dict):
            for uri, those in changes.items():
                edits.setdefault(uri, []).extend(those if isinstance(those, list) else [])
        for change in answer.get("documentChanges") or []:
            if not isinstance(change, dict) or "kind" in change:
                operations.append(change)
                continue
            uri = get_path(change, "textDocument", "uri")
            version = get_path(change, "textDocument", "version")
            if not isinstance(uri, str):
                continue
            doc = self._store.get(uri)
            if isinstance(version, int) and doc is not None and version != doc.sync_version:
                stale.append(uri)
            those = change.get("edits")
            edits.setdefault(uri, []).extend(those if isinstance(those, list) else [])

    def _workspace_edit(
        self, edits: dict[str, list[dict[str, Any]]], operations: list[Any]
    ) -> dict[str, Any]:
        if not get_path(self._support().caps, "workspace", "workspaceEdit", "documentChanges"):
            return {"changes": edits}
        changes: list[Any] = list(operations)
        for uri in sorted(edits):
            doc = self._store.get(uri)
            changes.append(
                {
                    "textDocument": {
                        "uri": uri,
                        "version": doc.client_version if doc is not None else None,
                    },
                    "edits": edits[uri],
                }
            )
        return {"documentChanges": changes}

    async def _prepare(
        self,
        entry: Pending,
        params: dict[str, Any],
        target: BackendSession,
        owner: Asked | None,
        where: tuple[str, dict[str, Any]],
        text: str | None,
        asked: tuple[Any, BackendError | None],
    ) -> None:
        """The document's backend refused a symbol another project owns: the owner is asked
        at the definition. Its items are answered as they are (they name the definition);
        for a rename, the cursor's identifier is the range to rename when the owner agrees.
        Without another owner, the document's backend's own answer (or error) stands."""
        theirs: Any = None
        uri, position = where
        moved = (uri, position) != (
            get_path(params, "textDocument", "uri"),
            params.get("position"),
        )  # (a shared backend serving the owner too is asked again, at the definition)
        if owner is not None and (owner.session is not target or moved) and text is not None:
            theirs = await self._in(
                owner, uri, text, self._asker(owner.session, entry.method, _at(uri, position))
            )
            if theirs is not None and entry.method == "textDocument/prepareRename":
                theirs = self._cursor_range(params)
        with self._plane.lock:
            if not theirs and asked[1] is not None:
                self._ledger.fail(entry, jsonrpc.REQUEST_FAILED, str(asked[1]))
            else:
                self._ledger.answer(entry, theirs or asked[0])

    def _cursor_range(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The identifier at the request's position, with its name as placeholder."""
        uri = get_path(params, "textDocument", "uri")
        position = params.get("position")
        path = local_path(uri) if isinstance(uri, str) else None
        text = self._text(uri, path) if isinstance(uri, str) and path is not None else None
        if text is None or not isinstance(position, dict):
            return None
        found = self._identifier_span(text, position)
        if found is None:
            return None
        name, start, end = found
        line = position["line"]
        return {
            "range": {
                "start": {"line": line, "character": start},
                "end": {"line": line, "character": end},
            },
            "placeholder": name,
        }


def _stamp(venv: Venv, extra: tuple[Path, ...]) -> tuple[int, ...]:
    """Changes when a file is added to or removed from the environment's site-packages (a
    new or removed `.pth`), or the settings' extra paths change."""
    stamp: list[int] = [hash(extra)]
    for site in sorted(venv.path.glob("lib*/python3*/site-packages")) or [
        venv.path / "Lib" / "site-packages"
    ]:
        with contextlib.suppress(OSError):
            stamp.append(site.stat().st_mtime_ns)
    return tuple(stamp)


def _names(answer: Any, path: Path, position: dict[str, Any]) -> bool:
    """Whether the locations `answer` name the line of `position` in the file `path`."""
    return any(
        (t := location_of(f)) is not None
        and t[1].get("line") == position.get("line")
        and _same_file(t[0], path)
        for f in (answer if isinstance(answer, list) else [answer])
    )


def _same_file(uri: str, path: Path) -> bool:
    found = local_path(uri)
    return found is not None and canonical(found) == canonical(path)


def _without(answer: Any, uri: str) -> Any:
    """A backend's answer minus the locations (or callers) in the probe document `uri`."""
    if not isinstance(answer, list):
        found = location_of(answer)
        return None if found is not None and found[0] == uri else answer
    kept = []
    for item in answer:
        found = location_of(item.get("from") if isinstance(item, dict) and "from" in item else item)
        if found is None or found[0] != uri:
            kept.append(item)
    return kept


def _no_overlaps(uri: str, edits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The edits of one document, duplicates removed, in order; different edits of
    overlapping ranges are an error (no way to know which is right)."""
    unique: dict[str, dict[str, Any]] = {}
    for edit in edits:
        unique.setdefault(json.dumps(edit, sort_keys=True), edit)
    ordered = sorted(unique.values(), key=lambda e: range_key(e.get("range")))
    for before, after in itertools.pairwise(ordered):
        if range_key(after.get("range"))[:2] < range_key(before.get("range"))[2:]:
            raise CannotAnswer(
                f"typemux-lsp: cannot rename: two projects' backends disagree on {uri} "
                f"(overlapping edits {before} and {after}). No edit was made."
            )
    return ordered


def _line_range(start: int, end: int) -> dict[str, Any]:
    return {"start": {"line": 0, "character": start}, "end": {"line": 0, "character": end}}


def _units(text: str, encoding: Encoding) -> int:
    """The length of `text` in the encoding's code units."""
    if encoding is Encoding.UTF32:
        return len(text)
    return len(text.encode("utf-16-le" if encoding is Encoding.UTF16 else "utf-8")) // (
        2 if encoding is Encoding.UTF16 else 1
    )


def _at(uri: str, position: dict[str, Any]) -> dict[str, Any]:
    return {"textDocument": {"uri": uri}, "position": position}


def _item_position(item: Any) -> tuple[str, dict[str, Any]] | None:
    uri = get_path(item, "uri")
    start = get_path(item, "selectionRange", "start")
    if not isinstance(uri, str) or not isinstance(start, dict):
        return None
    return uri, start
