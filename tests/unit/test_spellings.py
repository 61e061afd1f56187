"""Spellings of one file's URI: the store finds the document under any of them, backends get the
opened one, the client gets its own back, and the common case keeps the backend's bytes."""

from __future__ import annotations

import json
from pathlib import Path, PureWindowsPath

import pytest

from typemux_lsp import documents, jsonrpc
from typemux_lsp.documents import DocumentStore
from typemux_lsp.spellings import Spellings
from typemux_lsp.uris import path_of, without_localhost

PLAIN = "file:///home/me/proj/a%20b.py"


@pytest.mark.parametrize(
    "other",
    [
        "file://localhost/home/me/proj/a%20b.py",
        "file://LocalHost/home/me/proj/a%20b.py",
        "file:///home/me/proj/%61%20b.py",  # an escaped safe character
        "file:///home/me/proj/a%20%62.py",
        "file:///home/me/%70roj/a b.py",  # an unescaped unsafe one
    ],
)
def test_every_spelling_finds_the_open_document(other: str) -> None:
    store = DocumentStore()
    doc = store.open(PLAIN, "python", 1, "x = 1\n")
    assert store.get(other) is doc
    assert store.odd == 0  # opened as backends spell it


def test_hex_case_and_escaped_colon() -> None:
    assert path_of("file:///p/%c3%a9:x.py") == path_of("file:///p/%C3%A9%3Ax.py")
    assert path_of("file:///p/%c3%a9:x.py") == Path("/p/é:x.py")


def test_drive_letter_case_is_one_file_where_paths_ignore_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Windows a URI's path is a WindowsPath, which compares without case: `C:` and `c:`
    (and `%3A`) are one document. Simulated: the store keys documents by that path."""

    def windows_path(uri: str) -> PureWindowsPath:
        rest = uri.split("///", 1)[1].replace("%3A", ":").replace("%3a", ":")
        return PureWindowsPath(rest)

    monkeypatch.setattr(documents, "path_of", windows_path)
    monkeypatch.setattr(documents, "local_path", windows_path)
    monkeypatch.setattr(documents, "spelling", lambda p: "file:///" + p.as_posix())
    store = DocumentStore()
    doc = store.open("file:///C:/proj/a.py", "python", 1, "")
    assert store.get("file:///c%3A/proj/a.py") is doc
    assert store.get("file:///c:/proj/A.py") is doc


def test_without_localhost() -> None:
    assert without_localhost("file://localhost/a.py") == "file:///a.py"
    assert without_localhost("FILE://LOCALHOST/a.py") == "file:///a.py"
    assert without_localhost("file:///a.py") == "file:///a.py"
    assert without_localhost("untitled:1") == "untitled:1"


def request(uri: str, **extra: object) -> tuple[jsonrpc.Message, bytes]:
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "textDocument/hover",
        "params": {"textDocument": {"uri": uri}, **extra},
    }
    return message, jsonrpc.dumps(message)


def test_requests_get_the_opened_spelling_and_answers_the_asked_one() -> None:
    store = DocumentStore()
    store.open(PLAIN, "python", 1, "")
    spellings = Spellings(store)
    asked = "file://localhost/home/me/proj/a%20b.py"
    message, body = request(asked)
    respelled, new_body, spelled = spellings.to_backend(message, body)
    assert respelled["params"]["textDocument"]["uri"] == PLAIN
    assert json.loads(new_body)["params"]["textDocument"]["uri"] == PLAIN
    assert message["params"]["textDocument"]["uri"] == asked  # the client's message untouched
    assert spellings.needed(spelled)
    answer = jsonrpc.dumps(
        jsonrpc.response(
            1,
            [
                {"uri": PLAIN, "range": {}},
                {"uri": "file:///home/me/proj/a b.py", "range": {}},  # pyrefly-like spelling
                {"uri": "file:///elsewhere.py", "range": {}},
                {"uri": PLAIN, "data": {"uri": PLAIN}},  # data is the backend's own
            ],
        )
    )
    result = json.loads(spellings.body_to_client(answer, spelled))["result"]
    assert [r["uri"] for r in result] == [asked, asked, "file:///elsewhere.py", asked]
    assert result[3]["data"] == {"uri": PLAIN}


def test_a_file_not_open_loses_localhost_only() -> None:
    spellings = Spellings(DocumentStore())
    message, body = request("file://localhost/x/%61.py")
    respelled, _, spelled = spellings.to_backend(message, body)
    assert respelled["params"]["textDocument"]["uri"] == "file:///x/%61.py"
    assert spelled == {Path("/x/a.py"): "file://localhost/x/%61.py"}
    message, body = request("file:///x/%61.py")
    assert spellings.to_backend(message, body) == (message, body, {})


def test_workspace_edits_and_command_arguments() -> None:
    store = DocumentStore()
    opened = "file://localhost/p/a.py"
    store.open(opened, "python", 1, "")
    assert store.odd == 1
    spellings = Spellings(store)
    edit = {
        "changes": {"file:///p/a.py": [{"newText": "file:///p/a.py"}], "file:///p/b.py": []},
        "documentChanges": [{"textDocument": {"uri": "file:///p/a.py", "version": 1}}],
        "command": {"command": "organize", "arguments": ["file:///p/a.py", 3]},
    }
    out = spellings.to_client(edit)
    report = spellings.to_client({"relatedDocuments": {"file:///p/a.py": {"items": []}}})
    assert report == {"relatedDocuments": {opened: {"items": []}}}
    assert set(out["changes"]) == {opened, "file:///p/b.py"}
    assert out["changes"][opened] == [{"newText": "file:///p/a.py"}]  # text is text
    assert out["documentChanges"][0]["textDocument"]["uri"] == opened
    assert out["command"]["arguments"] == [opened, 3]
    # and back: the client's spelling in a command's arguments reaches the backend as opened
    message = {"jsonrpc": "2.0", "id": 2, "method": "workspace/executeCommand", "params": out}
    respelled, _, _ = spellings.to_backend(message, jsonrpc.dumps(message))
    assert respelled["params"]["command"]["arguments"] == [opened, 3]


def test_the_common_case_keeps_the_backends_bytes() -> None:
    store = DocumentStore()
    store.open(PLAIN, "python", 1, "")
    spellings = Spellings(store)
    assert not spellings.needed(None)
    answer = b'{"jsonrpc":"2.0","id":1,"result":[{"uri":"' + PLAIN.encode() + b'"}]}'
    assert spellings.body_to_client(answer, None) is answer
    message, body = request(PLAIN)
    assert spellings.to_backend(message, body) == (message, body, {})


def test_closing_forgets_the_odd_spelling() -> None:
    store = DocumentStore()
    store.open("file://localhost/p/a.py", "python", 1, "")
    store.open("file:///p/a.py", "python", 1, "")  # reopened in the backends' spelling
    assert store.odd == 0
    assert store.get("file://localhost/p/a.py") is store.get("file:///p/a.py")
    store.close("file:///p/a.py")
    assert store.get("file://localhost/p/a.py") is None
    assert store.odd == 0


def test_workspace_folders_scope_uri() -> None:
    spellings = Spellings(DocumentStore())
    spellings.add_roots(["file://localhost/p"])
    assert spellings.needed(None)
    items = {"items": [{"scopeUri": "file:///p", "section": "python"}]}
    assert spellings.to_client(items)["items"][0]["scopeUri"] == "file://localhost/p"
