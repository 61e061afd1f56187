"""A scriptable LSP backend for fault injection, never a stand-in for a real one.

Behaviour comes from the `FAKE_BACKEND` environment variable, comma-separated:
  slow_start=S        sleep S seconds before answering initialize
  never_initialize    never answer initialize
  stderr_flood=MB     write MB mebibytes to stderr before answering initialize
  crash_on=METHOD     exit(3) on receiving a request for METHOD, without answering
  panic_on=METHOD     the same as a Rust backend's own bug does: a panic report, exit(101)
  garbage_on=METHOD   write bytes that are not LSP on receiving METHOD
  hang_on=METHOD      never answer METHOD
  delay=S             answer hover after S seconds (cancellable meanwhile)
  hang_once_on=METHOD the first process in the project to get METHOD never answers it
                      (it writes its pid to `.fake_hung` in the project directory)
  cancel_on_watched   hold hovers (writing `.fake_held`) until workspace/didChangeWatchedFiles
                      comes, then fail them with RequestCancelled like pyrefly does; later
                      hovers are answered at once
  spawn_child         start a child process that outlives this one unless its group is killed
  ignore_stdin_eof    keep running after stdin closes (a badly behaved backend)
  diag_on_open        publish one warning for every opened document
  log_requests=METHOD write the params of the last METHOD request to `.fake_requests`
  log_cancels         append the id of every $/cancelRequest to `.fake_cancels`
  linger_on_exit=S    on `exit`, publish an empty diagnostics list for every document after
                      S seconds, then exit (a backend slow to go, still talking)
Options in a file `.fake_backend` in the project directory apply to that project only.

It keeps its own copy of each document with pygls's `TextDocument` (an implementation
independent of typemux-lsp's), answers `fake/text` with that copy, and answers hover with
the venv and pid it runs in, so tests can see which backend answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from lsprotocol import types as lsp
from lsprotocol.converters import get_converter
from pygls.workspace import PositionCodec, TextDocument

OPTS: dict[str, str] = {}
_per_project = ""
if os.path.exists(".fake_backend"):  # options for this project only (cwd = project dir)
    with open(".fake_backend") as _f:
        _per_project = _f.read()
for item in filter(None, f"{os.environ.get('FAKE_BACKEND', '')},{_per_project}".split(",")):
    key, _, value = item.partition("=")
    OPTS[key.strip()] = value.strip()

_out_lock = threading.Lock()
_converter = get_converter()
_docs: dict[str, TextDocument] = {}
_cancelled: set[Any] = set()
_config: dict[str, Any] = {}
_encoding = "utf-16"
_held: list[Any] = []
_watched_seen = False


def send(message: dict[str, Any]) -> None:
    body = json.dumps(message).encode()
    with _out_lock:
        sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        sys.stdout.buffer.flush()


def respond(msg_id: Any, result: Any) -> None:
    send({"jsonrpc": "2.0", "id": msg_id, "result": result})


def read() -> dict[str, Any] | None:
    length = None
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    assert length is not None
    message: dict[str, Any] = json.loads(sys.stdin.buffer.read(length))
    return message


def handle_initialize(msg: dict[str, Any]) -> None:
    global _encoding
    if "stderr_flood" in OPTS:
        chunk = b"x" * 1023 + b"\n"
        for _ in range(int(float(OPTS["stderr_flood"]) * 1024)):
            sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
    if "slow_start" in OPTS:
        time.sleep(float(OPTS["slow_start"]))
    if "never_initialize" in OPTS:
        return
    offered = msg["params"]["capabilities"].get("general", {}).get("positionEncodings", [])
    _encoding = offered[0] if offered else "utf-16"
    respond(
        msg["id"],
        {
            "capabilities": {
                "positionEncoding": _encoding,
                "textDocumentSync": {"openClose": True, "change": 2, "save": True},
                "hoverProvider": True,
                "definitionProvider": True,
                "referencesProvider": True,
                "workspaceSymbolProvider": True,
            },
            "serverInfo": {"name": "fake"},
        },
    )


def _open_diagnostics() -> list[Any]:
    if "diag_on_open" not in OPTS:
        return []
    zero = {"line": 0, "character": 0}
    return [{"range": {"start": zero, "end": zero}, "message": "fake warning", "severity": 2}]


def hover(msg: dict[str, Any]) -> None:
    uri = msg["params"]["textDocument"]["uri"]
    result = {
        "contents": {
            "kind": "plaintext",
            "value": f"venv={os.environ.get('VIRTUAL_ENV')} pid={os.getpid()} uri={uri}",
        }
    }
    if "delay" in OPTS:

        def later() -> None:
            time.sleep(float(OPTS["delay"]))
            if msg["id"] in _cancelled:
                send(
                    {
                        "jsonrpc": "2.0",
                        "id": msg["id"],
                        "error": {"code": -32800, "message": "cancelled by the client"},
                    }
                )
            else:
                respond(msg["id"], result)

        threading.Thread(target=later, daemon=True).start()
        return
    respond(msg["id"], result)


def main() -> None:
    global _watched_seen
    if "spawn_child" in OPTS:
        subprocess.Popen(  # like node under basedpyright's Python wrapper
            [sys.executable, "-c", "import time; time.sleep(3600)"],
            stdin=subprocess.DEVNULL,
        )
    while True:
        msg = read()
        if msg is None:
            if "ignore_stdin_eof" in OPTS:
                while True:
                    time.sleep(3600)
            return
        method = msg.get("method")
        msg_id = msg.get("id")
        if method is None:
            if msg_id == "fake-config":
                _config["answer"] = msg.get("result")
            continue
        if method == OPTS.get("log_requests"):  # (on receipt, even of one never answered)
            with open(".fake_requests", "w") as log:
                json.dump(msg.get("params"), log)
        if msg_id is not None:
            if OPTS.get("panic_on") == method:
                sys.stderr.write(
                    "thread 'checker-3' panicked at crates/fake/src/solve.rs:812:27:\n"
                    "index out of bounds: the len is 3 but the index is 7\n"
                    "note: run with `RUST_BACKTRACE=1` environment variable to display a "
                    "backtrace\n"
                )
                sys.stderr.flush()
                os._exit(101)
            if OPTS.get("crash_on") == method:
                sys.stderr.write(f"fake: crashing on {method} on purpose\n")
                sys.stderr.flush()
                os._exit(3)
            if OPTS.get("garbage_on") == method:
                with _out_lock:
                    sys.stdout.buffer.write(b"this is not LSP\r\n\r\n{{{")
                    sys.stdout.buffer.flush()
                continue
            if OPTS.get("hang_on") == method:
                continue
            if OPTS.get("hang_once_on") == method and not os.path.exists(".fake_hung"):
                with open(".fake_hung", "w") as marker:
                    marker.write(str(os.getpid()))
                continue
            if method == "textDocument/hover" and "cancel_on_watched" in OPTS and not _watched_seen:
                _held.append(msg_id)
                with open(".fake_held", "w") as marker:
                    marker.write(str(len(_held)))
                continue
        params = msg.get("params") or {}
        if method == "initialize":
            handle_initialize(msg)
        elif method == "initialized":
            # Ask like pyright does; the answer is kept for `fake/config`.
            send(
                {
                    "jsonrpc": "2.0",
                    "id": "fake-config",
                    "method": "workspace/configuration",
                    "params": {"items": [{"section": "python"}, {"section": "ty"}]},
                }
            )
        elif method == "textDocument/didOpen":
            item = params["textDocument"]
            _docs[item["uri"]] = TextDocument(
                item["uri"],
                item["text"],
                version=item["version"],
                language_id="python",
                position_codec=PositionCodec(encoding=_encoding),
            )
            send(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/publishDiagnostics",
                    "params": {"uri": item["uri"], "diagnostics": _open_diagnostics()},
                }
            )
        elif method == "textDocument/didChange":
            doc = _docs[params["textDocument"]["uri"]]
            typed = _converter.structure(params, lsp.DidChangeTextDocumentParams)
            for change in typed.content_changes:
                doc.apply_change(change)
            doc.version = typed.text_document.version
        elif method == "textDocument/didClose":
            _docs.pop(params["textDocument"]["uri"], None)
        elif method == "workspace/didChangeWatchedFiles" and "cancel_on_watched" in OPTS:
            _watched_seen = True
            for held in _held:
                send(
                    {
                        "jsonrpc": "2.0",
                        "id": held,
                        "error": {
                            "code": -32800,
                            "message": "canceled due to subsequent mutation",
                        },
                    }
                )
            _held.clear()
        elif method == "$/cancelRequest":
            _cancelled.add(params.get("id"))
            if "log_cancels" in OPTS:
                with open(".fake_cancels", "a") as log:
                    log.write(f"{params.get('id')}\n")
        elif method == "textDocument/hover":
            hover(msg)
        elif method == "fake/config":
            respond(msg_id, _config.get("answer"))
        elif method == "fake/text":
            known = _docs.get(params["textDocument"]["uri"])
            respond(
                msg_id, None if known is None else {"text": known.source, "version": known.version}
            )
        elif method == "workspace/symbol":
            respond(
                msg_id,
                [
                    {
                        "name": f"sym-{os.getpid()}",
                        "kind": 12,
                        "location": {
                            "uri": "file:///x.py",
                            "range": {
                                "start": {"line": 0, "character": 0},
                                "end": {"line": 0, "character": 1},
                            },
                        },
                    }
                ],
            )
        elif method == "shutdown":
            respond(msg_id, None)
        elif method == "exit":
            if "linger_on_exit" in OPTS:
                time.sleep(float(OPTS["linger_on_exit"]))
                for uri in list(_docs):
                    send(
                        {
                            "jsonrpc": "2.0",
                            "method": "textDocument/publishDiagnostics",
                            "params": {"uri": uri, "diagnostics": []},
                        }
                    )
            return
        elif msg_id is not None:
            send(
                {
                    "jsonrpc": "2.0",
                    "id": msg_id,
                    "error": {"code": -32601, "message": f"fake: no {method}"},
                }
            )


if __name__ == "__main__":
    main()
