"""How the answers of several backends to one question become one answer.

A fan-out (workspace symbols, references across projects, incoming calls) asks several
backends; each may return the same item, spelled the same or not. Items are the same when
they name the same place (file and range); the merged answer keeps one of each, in a stable
order, so it does not depend on which backend answered first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .session import BackendSession
from .tree import get_path


def merge_answers(method: str, answers: list[Any]) -> list[Any]:
    """Locations de-duplicated and ordered; call-hierarchy items merged by (uri, range)."""
    if method == "callHierarchy/incomingCalls":
        calls: dict[str, dict[str, Any]] = {}
        for answer in answers:
            for call in answer if isinstance(answer, list) else []:
                if not isinstance(call, dict):
                    continue
                known = calls.setdefault(answer_key(method, call), {**call, "fromRanges": []})
                for rng in call.get("fromRanges") or []:
                    if rng not in known["fromRanges"]:
                        known["fromRanges"].append(rng)
        for call in calls.values():
            call["fromRanges"].sort(key=range_key)
        return sorted(calls.values(), key=lambda c: _order(c.get("from")))
    merged: dict[str, Any] = {}
    for answer in answers:
        for item in answer if isinstance(answer, list) else [answer] if answer else []:
            merged.setdefault(answer_key(method, item), item)
    return sorted(merged.values(), key=_order)


def answer_key(method: str, item: Any) -> str:
    """What makes two answers' items the same: a location's file and range, a hierarchy
    item's file and range, a caller's file and range."""
    if method == "typeHierarchy/subtypes":
        return json.dumps([get_path(item, "uri"), get_path(item, "range")], sort_keys=True)
    if method == "callHierarchy/incomingCalls":
        caller = get_path(item, "from")
        return json.dumps([get_path(caller, "uri"), get_path(caller, "range")], sort_keys=True)
    found = location_of(item)
    if found is None:
        return json.dumps(item, sort_keys=True)
    rng = get_path(item, "range") or get_path(item, "targetSelectionRange")
    return json.dumps([found[0], rng], sort_keys=True)


def _order(item: Any) -> tuple[str, tuple[int, int, int, int]]:
    found = location_of(item)
    rng = get_path(item, "range") or get_path(item, "targetSelectionRange")
    return (found[0] if found else "", range_key(rng))


def location_of(location: Any) -> tuple[str, dict[str, Any]] | None:
    """(uri, start) of a Location or LocationLink (its name, not its whole body)."""
    if not isinstance(location, dict):
        return None
    uri = location.get("uri", location.get("targetUri"))
    rng = location.get("range", location.get("targetSelectionRange"))
    start = get_path(rng, "start")
    if not isinstance(uri, str) or not isinstance(start, dict):
        return None
    return uri, start


def range_key(rng: Any) -> tuple[int, int, int, int]:
    try:
        s, e = rng["start"], rng["end"]
        return (int(s["line"]), int(s["character"]), int(e["line"]), int(e["character"]))
    except (TypeError, KeyError, ValueError):
        return (0, 0, 0, 0)


def any_list(answers: dict[BackendSession, Any]) -> bool:
    return any(isinstance(a, list) for a in answers.values())


def merge_symbols(results: Iterable[Any], limit: int) -> tuple[list[Any], bool]:
    """One `workspace/symbol` answer from several backends, duplicates dropped, at most
    `limit` symbols; and whether any backend answered a list (else the answer is null)."""
    merged: list[Any] = []
    seen: set[str] = set()
    listed = False
    for result in results:
        if not isinstance(result, list):
            continue
        listed = True
        for item in result:
            key = json.dumps(item, sort_keys=True)
            if key not in seen and len(merged) < limit:
                seen.add(key)
                merged.append(item)
    return merged, listed
