"""Edits reach the backend intact: incremental edits after non-ASCII text, Claude Code's sync.

Each test has its own proxy (the documents it edits stay in the editor, never on disk, so the
shared monorepo is untouched). Diagnostics are the witness that the backend has the right text:
an error appears exactly on the ``"x"`` the edit introduced, and disappears when it is removed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from clients import (
    MuxClient,
    apply_change,
    definition_targets,
    hover_text,
    position_of,
    text_of_range,
    uri_path,
)

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Monorepo

StartProxy = Callable[..., Awaitable[MuxClient]]

AREA_V1 = "def area(radius: float) -> float"
CALL = "area(2.0)"


def errors(diagnostics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in diagnostics if d.get("severity", 1) == 1]


def error_on(client: MuxClient, uri: str, literal: str) -> Callable[[list[Any]], bool]:
    """Predicate: exactly one error, and its range covers ``literal`` in the current text."""

    def check(diagnostics: list[dict[str, Any]]) -> bool:
        found = errors(diagnostics)
        return len(found) == 1 and (
            text_of_range(client.text(uri), found[0]["range"], client.encoding) == literal
        )

    return check


def no_errors(diagnostics: list[dict[str, Any]]) -> bool:
    return not errors(diagnostics)


async def open_alpha(client: MuxClient, monorepo: Monorepo) -> str:
    uri = client.open(monorepo.path("alpha/app.py"))
    assert errors(await client.wait_for_diagnostics(uri)) == []
    return uri


def insert(document: str, after: str, text: str, encoding: str) -> dict[str, Any]:
    """An incremental change inserting ``text`` right after the first ``after`` in ``document``."""
    position = position_of(document, after, offset=len(after), encoding=encoding)
    return {"range": {"start": position, "end": position}, "text": text}


async def test_incremental_edits_after_non_ascii(
    backend: str, monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    client = await start_proxy(backend, monorepo.root)
    uri = await open_alpha(client, monorepo)
    original = client.text(uri)
    line = original.split("\n")[position_of(original, CALL)["line"]]
    assert "🚀" in line  # the edits happen after an astral-plane character on the same line

    # `print("π ≈ 3.14 — 🚀", area(2.0))` -> `print("π ≈ 3.14 — 🚀", area(2.0), area("x"))`
    encoding = client.encoding
    mark = client.seq
    client.change(uri, [insert(client.text(uri), CALL, ", ar", encoding)])
    client.change(uri, [insert(client.text(uri), CALL + ", ar", "ea(", encoding)])
    # two changes in one notification: applied in order, the second sees the first's result
    text = client.text(uri)
    first = insert(text, CALL + ", area(", '"x"', encoding)
    second = insert(apply_change(text, first, encoding), CALL + ', area("x"', ")", encoding)
    client.change(uri, [first, second])
    assert 'print("π ≈ 3.14 — 🚀", area(2.0), area("x"))  #' in client.text(uri)

    diagnostics = await client.wait_for_diagnostics(
        uri, error_on(client, uri, '"x"'), after=mark, timeout=30
    )
    assert len(errors(diagnostics)) == 1

    # positions after the non-ASCII text still resolve, in the edited text
    hover = hover_text(await client.hover(uri, 'area("x")'))
    assert AREA_V1 in hover, hover
    targets = definition_targets(await client.definition(uri, 'area("x")'))
    assert {uri_path(t) for t, _ in targets} == {monorepo.shapes_init("alpha")}

    # remove the call with one ranged deletion: back to the original text, no error
    start = client.position(uri, ', area("x")')
    end = client.position(uri, ', area("x")', offset=len(', area("x")'))
    mark = client.seq
    client.change(uri, [{"range": {"start": start, "end": end}, "text": ""}])
    assert client.text(uri) == original
    await client.wait_for_diagnostics(uri, no_errors, after=mark, timeout=30)
    assert AREA_V1 in hover_text(await client.hover(uri, CALL))


async def test_claude_code_full_text_sync_with_version_1(
    backend: str, monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """Claude Code sends the full text with version 1 after every edit, then didSave.

    A backend that drops a change whose version did not grow (ty does) would keep stale text:
    the proxy has to make the versions it forwards increase.
    """
    client = await start_proxy(backend, monorepo.root)
    uri = await open_alpha(client, monorepo)
    original = client.text(uri)

    async def edit(text: str, expect: Callable[[list[Any]], bool]) -> None:
        mark = client.seq
        client.change(uri, [{"text": text}], version=1)
        client.save(uri)
        await client.wait_for_diagnostics(uri, expect, after=mark, timeout=30)

    await edit(original.replace(CALL, 'area("x")'), error_on(client, uri, '"x"'))
    await edit(original, no_errors)
    # a new line moves everything below it: hover must see the new text, not the old one
    shifted = original.replace("import area\n", 'import area\n\nEXTRA = area("y")\n')
    await edit(shifted, error_on(client, uri, '"y"'))
    assert AREA_V1 in hover_text(await client.hover(uri, 'area("y")'))
    assert AREA_V1 in hover_text(await client.hover(uri, CALL))
    await edit(original, no_errors)


async def test_reopen_after_close(
    backend: str, monorepo: Monorepo, start_proxy: StartProxy
) -> None:
    """didClose then didOpen (Claude Code reopens files) with different text is honoured."""
    client = await start_proxy(backend, monorepo.root)
    uri = await open_alpha(client, monorepo)
    path: Path = monorepo.path("alpha/app.py")
    original = client.text(uri)
    client.close(uri)
    mark = client.seq
    client.open(path, text=original.replace(CALL, 'area("z")'))
    await client.wait_for_diagnostics(uri, error_on(client, uri, '"z"'), after=mark, timeout=30)
