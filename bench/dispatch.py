"""The proxy's own Python cost per relayed hover, in process, without pipes or threads.

bench/relay.py measures the whole hop (pipes, thread wake-ups, the backend); this isolates
what typemux-lsp itself does per request and per response on the hot path (decode, route,
ledger, write), so a change to that code can be judged on a busy machine too. Writes go
to /dev/null.

    .venv/bin/python bench/dispatch.py [N]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from typemux_lsp.config import Settings
from typemux_lsp.server import TypemuxServer
from typemux_lsp.session import State
from typemux_lsp.transport import Outbox


async def main(n: int) -> None:
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
        doc = server.store.open(uri, "python", 1, "x = 1\n")
        server.router.refresh(doc, force=True)
        assert doc.venv is not None
        session = server.pool._make(doc.venv)  # not started: fed by hand, writes to /dev/null
        server.pool.sessions[doc.venv.key] = session
        session.state = State.READY
        session.open_docs.add(uri)
        session._outbox = Outbox(devnull, "backend")
        requests = [
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "textDocument/hover",
                    "params": {
                        "textDocument": {"uri": uri},
                        "position": {"line": 0, "character": 0},
                    },
                },
                separators=(",", ":"),
            ).encode()
            for i in range(1, n + 1)
        ]
        responses = [
            b'{"jsonrpc":"2.0","id":%d,"result":{"contents":{"kind":"markdown","value":"x"}}}' % i
            for i in range(1, n + 1)
        ]
        relay = server.relay
        # Routing is re-checked once a second by the control plane (a request handed to
        # it): let the loop run between batches, as it does in the proxy.
        t0 = time.perf_counter()
        for start in range(0, n, 1000):
            for body in requests[start : start + 1000]:
                relay.client_body(body)
            await asyncio.sleep(0)
        t1 = time.perf_counter()
        for start in range(0, n, 1000):
            for body in responses[start : start + 1000]:
                relay.backend_body(session, body)
            await asyncio.sleep(0)
        t2 = time.perf_counter()
        assert not session.inflight and len(server.ledger) == 0, "every hover answered"
        print(f"per request  {(t1 - t0) / n * 1e6:6.2f} us  (client body in -> backend write)")
        print(f"per response {(t2 - t1) / n * 1e6:6.2f} us  (backend body in -> client write)")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
