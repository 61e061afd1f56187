"""Random programs of open/change/close/request/cancel and malformed frames, against the proxy.

Invariants after every program: the proxy is still serving, every request got exactly
one response, no response came for an id that was never sent, and each open document's
text at its backend equals the client's (the fake backend applies edits with pygls's
`TextDocument`, independently of typemux-lsp's own document store).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faults.test_faults import CAPS, FAKE, make_workspace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from typemux_lsp.client import LspClient, ResponseError

PROJECTS = ("a", "b", "c", "novenv")
NAMES = [f"{p}/f{i}.py" for p in PROJECTS for i in range(2)]
ALPHABET = st.sampled_from(list("ab =\n\t🚀éπ#"))


@dataclass
class Model:
    """What the client believes."""

    texts: dict[str, str] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    desynced: set[str] = field(default_factory=set)


def utf16_position(text: str, index: int) -> dict[str, int]:
    before = text[:index]
    line = before.count("\n")
    col = before[before.rfind("\n") + 1 :]
    return {"line": line, "character": len(col.encode("utf-16-le")) // 2}


op = st.one_of(
    st.tuples(st.just("open"), st.sampled_from(NAMES), st.text(ALPHABET, max_size=30)),
    st.tuples(
        st.just("edit"),
        st.sampled_from(NAMES),
        st.floats(0, 1),
        st.floats(0, 1),
        st.text(ALPHABET, max_size=8),
    ),
    st.tuples(st.just("full"), st.sampled_from(NAMES), st.text(ALPHABET, max_size=30)),
    st.tuples(st.just("bad_edit"), st.sampled_from(NAMES)),
    st.tuples(st.just("close"), st.sampled_from(NAMES)),
    st.tuples(st.just("hover"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(
        st.just("garbage"),
        st.sampled_from(["notjson", "array", "noheader", "badid", "nomethod"]),
        st.binary(max_size=20),
    ),
)


async def run_program(root: Path, ops: list[tuple[Any, ...]]) -> None:
    env = dict(os.environ)
    env["TYPEMUX_LSP_BACKEND_COMMAND"] = f"{sys.executable} {FAKE}"
    client = LspClient()
    await client.start(
        [sys.executable, "-m", "typemux_lsp", "--backend", "ty", "--warmup-timeout", "0"],
        cwd=root,
        env=env,
    )
    model = Model()
    sent: list[Any] = []
    futures: list[asyncio.Future[Any]] = []
    try:
        await client.initialize(root, CAPS)
        for item in ops:
            kind, name = item[0], item[1]
            path = root / name if kind != "garbage" else root
            uri = path.as_uri()
            if kind == "open":
                model.texts[name] = item[2]
                model.versions[name] = 1
                model.desynced.discard(name)
                client.open(path, item[2])
            elif kind in ("edit", "full", "bad_edit") and name in model.texts:
                model.versions[name] += 1
                text = model.texts[name]
                if kind == "edit":
                    a, b = sorted((int(item[2] * len(text)), int(item[3] * len(text))))
                    rng = {"start": utf16_position(text, a), "end": utf16_position(text, b)}
                    change: dict[str, Any] = {"range": rng, "text": item[4]}
                    if name not in model.desynced:
                        model.texts[name] = text[:a] + item[4] + text[b:]
                elif kind == "full":
                    change = {"text": item[2]}
                    model.texts[name] = item[2]
                    model.desynced.discard(name)
                else:
                    line = text.count("\n") + 3
                    zero = {"line": line, "character": 0}
                    change = {"range": {"start": zero, "end": zero}, "text": "x"}
                    model.desynced.add(name)
                client.notify(
                    "textDocument/didChange",
                    {
                        "textDocument": {"uri": uri, "version": model.versions[name]},
                        "contentChanges": [change],
                    },
                )
            elif kind == "close" and name in model.texts:
                del model.texts[name]
                model.desynced.discard(name)
                client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
            elif kind == "hover":
                fut = client.send_request(
                    "textDocument/hover",
                    {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}},
                )
                sent.append(client.last_id)
                futures.append(fut)
                if item[2]:
                    client.notify("$/cancelRequest", {"id": client.last_id})
            elif kind == "garbage":
                body = {
                    "notjson": b"{" + item[2],
                    "array": b"[1,2]",
                    "noheader": None,
                    "badid": b'{"jsonrpc":"2.0","id":[1],"method":"x"}',
                    "nomethod": b'{"jsonrpc":"2.0","params":{}}',
                }[name]
                if body is None:
                    client.send_raw(b"X-Junk: " + item[2].hex().encode() + b"\r\n\r\n")
                else:
                    client.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 60)
        # Every open document's text at its backend is the client's, or it is out of sync.
        for name, text in model.texts.items():
            uri = (root / name).as_uri()
            params = {"textDocument": {"uri": uri}}
            if name.startswith("novenv/"):
                continue
            if name in model.desynced:
                with pytest.raises(ResponseError, match="out of sync"):
                    await client.request("fake/text", params)
                continue
            answer = await client.request("fake/text", params)
            assert answer["text"] == text, name
        assert (await client.stop()) == 0
        answered = [r["id"] for r in client.responses if r.get("id") is not None]
        assert len(answered) == len(set(answered)), "some request was answered twice"
        assert sorted(answered) == sorted(client.sent_ids), "missing or unasked-for responses"
        assert set(sent) <= set(answered)
    finally:
        client.kill()


@settings(
    max_examples=int(os.environ.get("TYPEMUX_PROPERTY_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(op, min_size=1, max_size=60))
def test_random_programs_keep_every_invariant(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_workspace(Path(tmp) / "ws")
        for project in PROJECTS:
            (root / project).mkdir(exist_ok=True)
        asyncio.run(run_program(root, ops))
