"""How the answers of several backends to one question become one answer.

A fan-out (workspace symbols, references across projects, incoming calls) asks several
backends; each may return the same item, spelled the same or not. Items are the same when
they name the same place (file and range); the merged answer keeps one of each, in a stable
order, so it does not depend on which backend answered first. One shared backend (ty) repeats
an item once per workspace folder that sees it: its answer is made one the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .tree import get_path

#: the end of a call that names the other function
_CALL_ENDS = {"callHierarchy/incomingCalls": "from", "callHierarchy/outgoingCalls": "to"}
#: methods whose items are hierarchy items (a name, a file, a range and a selectionRange)
_HIERARCHY = frozenset({"typeHierarchy/subtypes", "typeHierarchy/supertypes"})
#: methods whose answer a shared backend may give with an item once per workspace folder
#: that sees it (`BackendKind.repeats_per_folder`): `answered_once` makes it one
REPEATED_PER_FOLDER = frozenset({*_CALL_ENDS, *_HIERARCHY})


def merge_answers(method: str, answers: list[Any], *, ordered: bool = True) -> list[Any]:
    """Locations de-duplicated; call-hierarchy calls merged by the function at their other
    end (its file and selection range), their `fromRanges` united; hierarchy items by file and
    selection range. Of two spellings of one item the richer is kept (ty names a function's
    module in `detail` only when the file is in its own folder's project). `ordered`: sorted,
    so a fan-out's answer does not depend on which backend answered first; else in the order
    the items first came."""
    end = _CALL_ENDS.get(method)
    if end is not None:
        calls: dict[str, dict[str, Any]] = {}
        for answer in answers:
            for call in answer if isinstance(answer, list) else []:
                if not isinstance(call, dict):
                    continue
                known = calls.setdefault(answer_key(method, call), {**call, "fromRanges": []})
                if known.get(end) is not call.get(end):
                    known[end] = _richer(known.get(end), call.get(end))
                for rng in call.get("fromRanges") or []:
                    if rng not in known["fromRanges"]:
                        known["fromRanges"].append(rng)
        if not ordered:
            return list(calls.values())
        for call in calls.values():
            call["fromRanges"].sort(key=range_key)
        return sorted(calls.values(), key=lambda c: _order(c.get(end)))
    merged: dict[str, Any] = {}
    for answer in answers:
        for item in answer if isinstance(answer, list) else [answer] if answer else []:
            key = answer_key(method, item)
            merged[key] = _richer(merged[key], item) if key in merged else item
    return sorted(merged.values(), key=_order) if ordered else list(merged.values())


def answered_once(method: str, answer: Any) -> Any:
    """A shared backend's answer with each item once, in its order: what the backend serving
    the one environment answers (`REPEATED_PER_FOLDER`; anything but a list is kept)."""
    if not isinstance(answer, list):
        return answer
    return merge_answers(method, [answer], ordered=False)


def _richer(known: Any, other: Any) -> Any:
    """Of two spellings of one item, the one with more fields (the first on a tie)."""
    if isinstance(other, dict) and (not isinstance(known, dict) or len(other) > len(known)):
        return other
    return known


def answer_key(method: str, item: Any) -> str:
    """What makes two answers' items the same: a location's file and range, a hierarchy
    item's file and selection range, a call's other end's file and selection range."""
    end = _CALL_ENDS.get(method)
    if end is not None:
        item = get_path(item, end)
    if end is not None or method in _HIERARCHY:
        rng = get_path(item, "selectionRange") or get_path(item, "range")
        return json.dumps([get_path(item, "uri"), rng], sort_keys=True)
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


def any_list(answers: Mapping[Any, Any]) -> bool:
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
