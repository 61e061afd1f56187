"""The proxy's own Python cost per relayed hover, in process, without any I/O.

bench/relay.py measures the whole hop (pipes, wake-ups, the event loop); this
isolates what typemux-lsp itself adds per request and per response, so a change
to the dispatch code can be judged on a busy machine too.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from lsprotocol import types as lsp

from typemux_lsp.config import Settings
from typemux_lsp.jsonrpc import frame
from typemux_lsp.server import TypemuxServer
from typemux_lsp.session import State


async def main(n: int = 20000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / ".git").mkdir()
        (root / "p" / ".venv").mkdir(parents=True)
        (root / "p" / ".venv" / "pyvenv.cfg").write_text("version = 3.11\n")
        server = TypemuxServer(Settings(backend="ty"), cwd=str(root))
        out: list[bytes] = []
        server._write = out.append
        server.on_client_message(
            b"",
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"processId": None, "rootUri": None, "capabilities": {}},
            },
        )
        uri = (root / "p" / "m.py").as_uri()
        item = lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text="x = 1\n")
        doc = server.store.open(item)
        server.router.refresh(doc, force=True)
        assert doc.venv is not None
        session = server.pool._make(doc.venv)  # not started: we feed it by hand
        server.pool.sessions[doc.venv.key] = session
        session.state = State.READY
        session.open_docs.add(uri)
        sent: list[bytes] = []
        session._channel._write = sent.append
        requests = []
        for i in range(1, n + 1):
            body = json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "textDocument/hover",
                    "params": {
                        "textDocument": {"uri": uri},
                        "position": {"line": 0, "character": 0},
                    },
                }
            ).encode()
            requests.append(frame(body))
        responses = [
            frame(b'{"jsonrpc":"2.0","id":%d,"result":{"contents":"x"}}' % i)
            for i in range(1, n + 1)
        ]
        reader = server_channel(server)
        t0 = time.perf_counter()
        for data in requests:
            reader.data_received(data)
        t1 = time.perf_counter()
        for data in responses:
            session.data_received(data)
        t2 = time.perf_counter()
        assert len(sent) == n and len(out) >= n, (len(sent), len(out))
        print(f"per request  {(t1 - t0) / n * 1e6:6.2f} us  (client frame in -> backend write)")
        print(f"per response {(t2 - t1) / n * 1e6:6.2f} us  (backend frame in -> client write)")


def server_channel(server: TypemuxServer) -> object:
    from typemux_lsp.jsonrpc import Channel

    return Channel(server._write, server.on_client_message, server.on_bad_frame)


if __name__ == "__main__":
    asyncio.run(main())
