"""The proxy's own Python cost per relayed message, in process, without pipes or threads.

bench/relay.py measures the whole hop (pipes, thread wake-ups, the backend); this isolates
what typemux-lsp itself does per message on the hot path (decode, route, ledger, write),
so a change to that code can be judged on a busy machine too. Writes go to /dev/null.

First the decoders a router could read a client message with, on the hot path's own
bodies (a hover request, an incremental didChange): the whole-message parsers (json as
`jsonrpc.decode` uses it, with its guards; msgspec untyped; orjson if installed) and
`jsonrpc.peek`, msgspec with the minimal typed schema of what routing reads. Then the
relay itself per request, per response and per didChange.

    .venv/bin/python bench/dispatch.py [N] [--profile]

`--profile` runs the relay part under cProfile (only the timed loops) and prints where
its time goes, by function.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from typemux_lsp import jsonrpc
from typemux_lsp.config import Settings
from typemux_lsp.server import TypemuxServer
from typemux_lsp.session import State
from typemux_lsp.transport import Outbox


def compact(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def hover(uri: str, i: int) -> bytes:
    return compact(
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "textDocument/hover",
            "params": {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}},
        }
    )


def did_change(uri: str, version: int) -> bytes:
    at = {"line": 1, "character": 0}
    insert = version % 2 == 0
    change = {"range": {"start": at, "end": at if insert else {"line": 2, "character": 0}}}
    return compact(
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didChange",
            "params": {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{**change, "text": "#x\n" if insert else ""}],
            },
        }
    )


def per_call_us(fn: Callable[[bytes], object], body: bytes, n: int) -> float:
    """The best of 5 runs of `n` calls, CPU µs per call (the best: the least disturbed;
    CPU time, so a busy machine preempting this thread does not count)."""
    best = float("inf")
    for _ in range(5):
        start = time.thread_time()
        for _ in range(n):
            fn(body)
        best = min(best, (time.thread_time() - start) / n)
    return best * 1e6


def decoders(n: int) -> None:
    uri = "file:///tmp/typemux-bench/monorepo/alpha/app.py"
    bodies = {"hover": hover(uri, 12345), "didChange": did_change(uri, 42)}
    candidates: dict[str, Callable[[bytes], object]] = {
        "json (jsonrpc.decode: whole message, guards)": jsonrpc.decode,
        "msgspec untyped (whole message)": msgspec.json.Decoder().decode,
    }
    if hasattr(jsonrpc, "peek"):  # (PYTHONPATH=an older checkout: its relay is measured too)
        candidates["msgspec typed Head (jsonrpc.peek, guards)"] = jsonrpc.peek
    try:
        import orjson  # type: ignore[import-not-found,import-untyped,unused-ignore]

        # (not exact: an id beyond 64 bits comes back a float, so it would need a guard)
        candidates["orjson (whole message, no guards)"] = orjson.loads
    except ImportError:
        pass
    print(f"decoding a client message, µs per body (best of 5 x {n}):")
    print(f"  {'':46} " + " ".join(f"{k:>10}" for k in bodies))
    for name, fn in candidates.items():
        cells = " ".join(f"{per_call_us(fn, body, n):10.2f}" for body in bodies.values())
        print(f"  {name:46} {cells}")


async def relay(n: int, profiler: cProfile.Profile | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / ".git").mkdir()
        (root / "p" / ".venv").mkdir(parents=True)
        (root / "p" / ".venv" / "pyvenv.cfg").write_text("version = 3.11\n")
        server = TypemuxServer(Settings(backend="ty"), cwd=str(root))
        devnull = os.open(os.devnull, os.O_WRONLY)
        stdin, _ = os.pipe()
        server.connect(asyncio.get_running_loop(), stdin, devnull)
        initialize = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"processId": None, "rootUri": None, "capabilities": {}},
        }
        server.relay.client_body(json.dumps(initialize).encode())
        await asyncio.sleep(0.05)  # the control plane answers it (no event to wait on here)
        assert server.initialized
        uri = (root / "p" / "m.py").as_uri()
        doc = server.store.open(uri, "python", 1, "x = 1\n#\n\n")
        server.router.refresh(doc, force=True)
        assert doc.venv is not None
        session = server.pool._make(doc.venv)  # not started: fed by hand, writes to /dev/null
        server.pool.sessions[doc.venv.key] = session
        session.state = State.READY
        session.open_docs.add(uri)
        session._outbox = Outbox(devnull, "backend")
        route = getattr(server.relay, "route", None)  # (an older checkout: on first use)
        if route is not None:
            route(doc, session)
        requests = [hover(uri, i) for i in range(1, n + 1)]
        responses = [
            b'{"jsonrpc":"2.0","id":%d,"result":{"contents":{"kind":"markdown","value":"x"}}}' % i
            for i in range(1, n + 1)
        ]
        changes = [did_change(uri, v) for v in range(2, n + 2)]
        relay = server.relay

        async def timed(feed: Callable[[bytes], None], bodies: list[bytes]) -> float:
            # Routes are re-checked once a second by the control plane (the first message
            # after that is handed to it): let the loop run between batches, as it does in
            # the proxy.
            start = time.thread_time()
            if profiler is not None:
                profiler.enable()
            for at in range(0, len(bodies), 1000):
                for body in bodies[at : at + 1000]:
                    feed(body)
                await asyncio.sleep(0)
            if profiler is not None:
                profiler.disable()
            return (time.thread_time() - start) / len(bodies) * 1e6

        request_us = await timed(relay.client_body, requests)
        response_us = await timed(lambda body: relay.backend_body(session, body), responses)
        change_us = await timed(relay.client_body, changes)
        assert not session.inflight and len(server.ledger) == 0, "every hover answered"
        assert doc.client_version == n + 1 and not doc.desynced, "every change applied"
        print(f"relay, CPU µs per message ({n} each):")
        print(f"  per request   {request_us:6.2f}  (client body in -> backend write)")
        print(f"  per response  {response_us:6.2f}  (backend body in -> client write)")
        print(f"  per didChange {change_us:6.2f}  (client body in -> store -> backend write)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int, nargs="?", default=20000, help="messages of each kind")
    parser.add_argument("--profile", action="store_true", help="profile the relay part")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        asyncio.run(relay(args.n, profiler))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    else:
        decoders(args.n)
        asyncio.run(relay(args.n))
