"""Fuzzing the proxy as a hostile client would, against a real backend (ty).

Hypothesis generates sequences of frames: well-formed requests with every id shape JSON-RPC
allows (huge and negative integers, strings with quotes, astral characters and unpaired
surrogates), notification methods sent with ids, malformed headers and bodies, JSON nested
past any sane depth, random bytes. After each sequence, on a proxy shared by all of them
(state accumulates, as in a long session), it must hold that:

- the proxy is alive;
- every well-formed request got exactly one response, with exactly its id;
- a normal hover is still answered correctly.

The proxy runs under both event loops.
"""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from clients import CLAUDE_CODE, position_of, proxy_command, proxy_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from conftest import Monorepo

AREA_V1 = "def area(radius: float) -> float"


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def encode(message: dict[str, Any]) -> bytes:
    try:
        return json.dumps(message, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(message).encode()


def id_key(msg_id: Any) -> str:
    return json.dumps(msg_id)


@dataclass
class Proxy:
    """A proxy process driven with blocking pipes; a thread collects what it writes."""

    process: subprocess.Popen[bytes]
    hover: dict[str, Any]
    answers: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    counts: Counter[str] = field(default_factory=Counter)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def write(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.write(frame(encode(message)))

    def await_ids(self, expected: set[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
        """Collect answers until every id in `expected` has one; count every answer."""
        got: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while not expected <= set(got):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no answer for {sorted(expected - set(got))[:5]}"
            assert self.process.poll() is None, f"the proxy exited ({self.process.returncode})"
            try:
                message = self.answers.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            key = id_key(message.get("id"))
            self.counts[key] += 1
            got[key] = message
        return got


def _read(proxy: Proxy) -> None:
    stdout = proxy.process.stdout
    assert stdout is not None
    while True:
        header = b""
        while not header.endswith(b"\r\n\r\n"):
            byte = stdout.read(1)
            if not byte:
                return
            header += byte
        length = int(header.split(b":")[1].split(b"\r")[0])
        message = json.loads(stdout.read(length))
        if "method" in message and "id" in message:  # a request to the client
            answer = [None] * len(message.get("params", {}).get("items", []))
            is_config = message["method"] == "workspace/configuration"
            proxy.send(
                {"jsonrpc": "2.0", "id": message["id"], "result": answer if is_config else None}
            )
        elif "method" not in message and message.get("id") is not None:
            proxy.answers.put(message)


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def fuzzed(request: pytest.FixtureRequest, monorepo: Monorepo) -> Iterator[Proxy]:
    env = proxy_env()
    env["TYPEMUX_LSP_EVENT_LOOP"] = request.param
    process = subprocess.Popen(
        proxy_command("ty"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=monorepo.root,
        env=env,
        start_new_session=True,
    )
    app = monorepo.path("alpha/app.py")
    text = app.read_text(encoding="utf-8")
    hover = {"textDocument": {"uri": app.as_uri()}, "position": position_of(text, "area(2.0)")}
    proxy = Proxy(process, hover)
    threading.Thread(target=_read, args=(proxy,), daemon=True).start()
    proxy.send(
        {
            "jsonrpc": "2.0",
            "id": "init",
            "method": "initialize",
            "params": CLAUDE_CODE.initialize_params(monorepo.root),
        }
    )
    proxy.await_ids({id_key("init")})
    proxy.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
    proxy.send(
        {
            "jsonrpc": "2.0",
            "method": "textDocument/didOpen",
            "params": {
                "textDocument": {
                    "uri": app.as_uri(),
                    "languageId": "python",
                    "version": 1,
                    "text": text,
                }
            },
        }
    )
    proxy.send({"jsonrpc": "2.0", "id": "warm", "method": "textDocument/hover", "params": hover})
    assert AREA_V1 in json.dumps(proxy.await_ids({id_key("warm")})[id_key("warm")])
    yield proxy
    process.kill()
    process.wait()


# -- what is generated --------------------------------------------------------------------------

_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\ud800", "\udfff", '"', "\\", "🚀", "\x00"]),
    ),
    max_size=12,
)
_id_shape = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**53 + 1, -(2**63)]),
    _text,
)
_METHODS = [
    "textDocument/hover",  # with the real params: forwarded, answered by ty
    "textDocument/definition",
    "no/such/method",
    "typemux/status",
    "workspace/symbol",
    "completionItem/resolve",
    "textDocument/didOpen",  # a notification method sent with an id
    "$/cancelRequest",
    "initialized",
]
_MALFORMED = [
    b"Content-Length: 99999999999\r\n\r\n{}",
    b"Content-Length: -3\r\n\r\n{}",
    b"Content-Length: x\r\n\r\n{}",
    b"Content-Type: text/plain\r\n\r\n{}",
    b'Content-Length: 7\n\n{"a":1}',
    b"Content-Length: 300\r\n\r\n{",
    b"Content-Length: 5\r\n\r\n{nope",
    b"Content-Length: 2\r\n\r\n[]",
    b"Content-Length: 4\r\n\r\nnull",
    b"\r\n\r\n",
]


@dataclass(frozen=True)
class Item:
    data: bytes
    #: the id a response must carry, for a well-formed request
    expect: Any = None
    answered: bool = False


@st.composite
def items(draw: st.DrawFn, proxy_ids: Iterator[int]) -> Item:
    kind = draw(
        st.sampled_from(["request", "request", "notification", "malformed", "nested", "garbage"])
    )
    if kind == "request":
        shape = draw(_id_shape)
        serial = next(proxy_ids)
        msg_id: Any = f"{shape}#{serial}" if isinstance(shape, str) else shape * 10**6 + serial
        method = draw(st.sampled_from(_METHODS))
        params: Any = draw(
            st.one_of(
                st.just("HOVER"),
                st.none(),
                st.dictionaries(_text, st.one_of(_text, st.integers()), max_size=3),
            )
        )
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = "HOVER" if params == "HOVER" else params
        return Item(encode(message), expect=msg_id, answered=True)
    if kind == "notification":
        method = draw(st.sampled_from(["$/setTrace", "unknown/notification", "$/cancelRequest"]))
        params = {"id": draw(_id_shape), "value": draw(_text)}
        return Item(frame(encode({"jsonrpc": "2.0", "method": method, "params": params})))
    if kind == "malformed":
        return Item(draw(st.sampled_from(_MALFORMED)))
    if kind == "nested":
        depth = draw(st.integers(101, 3000))  # past MAX_DEPTH: a ParseError, id null
        body = (
            b'{"jsonrpc":"2.0","id":"deep","method":"no/such","params":'
            + b"[" * depth
            + b"]" * depth
            + b"}"
        )
        return Item(frame(body))
    garbage = draw(st.binary(max_size=64)).replace(b"\n", b" ")
    return Item(garbage + b"\r\n\r\n")


def _data(item: Item, proxy: Proxy) -> bytes:
    if item.answered:
        message = json.loads(item.data)
        if message.get("params") == "HOVER":
            message["params"] = proxy.hover
        return frame(encode(message))
    return item.data


# -- the property --------------------------------------------------------------------------------

_IDS = itertools.count(1)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(items(_IDS), min_size=1, max_size=12))
def test_hostile_input_never_kills_hangs_or_double_answers(
    fuzzed: Proxy, sequence: list[Item]
) -> None:
    proxy = fuzzed
    expected = {id_key(item.expect) for item in sequence if item.answered}
    if len(expected) < sum(item.answered for item in sequence):
        return  # two requests with one id: not this test's question
    proxy.write(b"".join(_data(item, proxy) for item in sequence))
    sentinel = f"hover-{next(proxy.ids)}"
    proxy.send(
        {"jsonrpc": "2.0", "id": sentinel, "method": "textDocument/hover", "params": proxy.hover}
    )
    got = proxy.await_ids(expected | {id_key(sentinel)})
    assert AREA_V1 in json.dumps(got[id_key(sentinel)].get("result")), got[id_key(sentinel)]
    for item in sequence:
        if item.answered:
            answer = got[id_key(item.expect)]
            assert answer["id"] == item.expect and type(answer["id"]) is type(item.expect)
            assert ("result" in answer) != ("error" in answer), answer
    twice = [key for key, count in proxy.counts.items() if count > 1 and key != "null"]
    assert twice == [], f"answered more than once: {twice}"
    assert proxy.process.poll() is None


def test_the_fuzzed_proxy_leaves_nothing(fuzzed: Proxy) -> None:
    """(Runs after the property, on the same proxy:) shutdown and exit still work."""
    proxy = fuzzed
    proxy.send({"jsonrpc": "2.0", "id": "bye", "method": "shutdown"})
    assert "result" in proxy.await_ids({id_key("bye")})[id_key("bye")]
    proxy.send({"jsonrpc": "2.0", "method": "exit"})
    assert proxy.process.wait(10) == 0
