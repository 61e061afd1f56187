"""Load test: every request answered once and right, edits kept exact, memory flat.

Three venvs (the example's alpha and beta, and gamma2, a copy of alpha with its own
`.venv`) behind one proxy. Each round:

1. 10,000 requests pipelined (all in flight at once), hover / documentSymbol /
   definition spread over the three projects' files. Every id must get exactly one
   answer, equal to the answer the same request got when sent alone beforehand, and
   right on its own terms (a definition lands in the file's *own* venv).
2. 10,000 incremental didChange to one document: lines of two module-level variables
   added and removed, letters typed into and deleted from their names (the second
   name after a non-BMP character, so UTF-16 columns matter), some notifications with
   several changes. Then the backend must see the client's text: every name the client
   typed is in its documentSymbol answer, that answer equals the one for a fresh
   document opened with the client's final text, a function named by the last edits is
   where the client put it, and hovers at client-computed positions resolve.

The proxy's RSS is read before the first round and after each; the second round
must not grow it. Exits 1 if any check fails.

    .venv/bin/python bench/load.py [--backend ty] [--requests 10000] [--changes 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import string
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    CountingClient,
    hover_text,
    machine,
    make_workspace,
    position_of,
    rss_kib,
    start_proxy,
    utf16_len,
    wait_hover,
)

from typemux_lsp.backends import KINDS
from typemux_lsp.features import STATUS_REQUEST
from typemux_lsp.tree import get_path

METHODS = ("textDocument/hover", "textDocument/documentSymbol", "textDocument/definition")
#: project -> (file, the symbol asked about, what its hover must mention)
PROJECTS = {
    "alpha": ("app.py", "area(", "radius"),
    "beta": ("app.py", "Circle(", "Circle"),
    "gamma2": ("app.py", "area(", "radius"),
}
#: the document the didChange burst edits (a copy of alpha/app.py)
BURST_FILE = "alpha/burst.py"
#: RSS growth from round 2 to the last round that still counts as flat
FLAT_KIB = 2048
TIMEOUT = 300.0


@dataclass
class Failures:
    """Every failed check, worded for the report; the run goes on to find the rest."""

    items: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.items.append(what)
            print(f"FAILED: {what}", file=sys.stderr)
        return ok


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class Probe:
    """One kind of request in the mix, with its answer when sent alone."""

    project: str
    method: str
    params: dict[str, Any]
    reference: Any


def definition_paths(result: Any) -> list[Path]:
    items = result if isinstance(result, list) else [result] if result else []
    uris = [i.get("targetUri") or i.get("uri") for i in items if isinstance(i, dict)]
    return [Path(u.removeprefix("file://")) for u in uris if isinstance(u, str)]


def symbol_names(result: Any) -> list[str]:
    """Every symbol name in a documentSymbol answer, children included."""
    out: list[str] = []
    stack = list(result) if isinstance(result, list) else []
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            out.append(str(item.get("name")))
            stack.extend(item.get("children") or [])
    return out


def find_symbol(result: Any, name: str) -> dict[str, Any] | None:
    stack = list(result) if isinstance(result, list) else []
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("name") == name:
                return item
            stack.extend(item.get("children") or [])
    return None


def judge(probe: Probe, root: Path, answer: Any, failures: Failures, where: str) -> None:
    """The answer is right on its own terms, not only equal to the reference."""
    _, symbol, mention = PROJECTS[probe.project]
    if probe.method == "textDocument/hover":
        failures.check(mention in hover_text(answer), f"{where}: hover does not mention {mention}")
    elif probe.method == "textDocument/definition":
        own_venv = root / probe.project / ".venv"
        paths = definition_paths(answer)
        failures.check(
            bool(paths) and all(p.is_relative_to(own_venv) for p in paths),
            f"{where}: definition of {symbol} is not in {own_venv}: {paths}",
        )
    else:
        names = symbol_names(answer)
        failures.check(
            "report" in names and "main" in names,
            f"{where}: documentSymbol lacks report/main: {names}",
        )


async def make_probes(client: CountingClient, root: Path, failures: Failures) -> list[Probe]:
    """Open each project's file, wait for its backend, and take the reference answers."""
    probes: list[Probe] = []
    for project, (name, symbol, mention) in PROJECTS.items():
        path = root / project / name
        text = path.read_text("utf-8")
        uri = client.open(path, text)
        params = {"textDocument": {"uri": uri}, "position": position_of(text, symbol)}
        await wait_hover(client, params, mention)
        for method in METHODS:
            p = {"textDocument": {"uri": uri}} if method.endswith("Symbol") else params
            reference = await client.request(method, p, timeout=TIMEOUT)
            probe = Probe(project, method, p, reference)
            judge(probe, root, reference, failures, f"reference {project} {method}")
            probes.append(probe)
    return probes


async def pipelined_load(
    client: CountingClient, probes: Sequence[Probe], n: int, seed: int, root: Path, first_id: int
) -> tuple[float, Failures]:
    """`n` requests in flight at once; every one answered exactly once, and right."""
    failures = Failures()
    rng = random.Random(seed)
    chosen = [probes[i % len(probes)] for i in range(n)]
    rng.shuffle(chosen)
    counts_before = dict(client.answer_counts)
    start = time.perf_counter()
    ids = list(range(first_id, first_id + n))  # far above the client's own counter
    futures = [
        client.send_request(p.method, p.params, msg_id=i) for p, i in zip(chosen, ids, strict=True)
    ]
    await asyncio.wait(futures, timeout=TIMEOUT)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(1.0)  # a duplicate or stray answer would arrive by now
    results: list[Any] = []
    for future in futures:
        if not future.done():
            future.cancel()  # counted as missing below
            results.append(TimeoutError("no answer"))
        else:
            results.append(future.exception() or future.result())
    errors = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, TimeoutError)
    ]
    failures.check(not errors, f"{len(errors)} requests failed, first: {errors[:1]!r}")
    new = {
        i: c - counts_before.get(i, 0)
        for i, c in client.answer_counts.items()
        if c != counts_before.get(i, 0)
    }
    missing = [i for i in ids if new.get(i, 0) == 0]
    doubled = [i for i in ids if new.get(i, 0) > 1]
    stray = sorted(set(new) - set(ids), key=str)
    failures.check(not missing, f"{len(missing)} requests got no answer: {missing[:5]}")
    failures.check(not doubled, f"{len(doubled)} requests got several answers: {doubled[:5]}")
    failures.check(not stray, f"{len(stray)} answers to ids never sent: {stray[:5]}")
    wrong = 0
    for probe, result in zip(chosen, results, strict=True):
        if isinstance(result, BaseException):
            continue
        if canonical_json(result) != canonical_json(probe.reference):
            wrong += 1
            if wrong == 1:
                failures.check(
                    False,
                    f"{probe.project} {probe.method}: answer differs from the same request "
                    f"sent alone: {canonical_json(result)[:300]}",
                )
    failures.check(wrong == 0, f"{wrong} answers differ from their reference")
    for probe in probes:  # and the references themselves are right (checked again cheaply)
        judge(probe, root, probe.reference, failures, f"{probe.project} {probe.method}")
    return n / elapsed, failures


class EditedText:
    """The client's copy of a document, edited the way LSP positions say (UTF-16)."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def index(self, line: int, character: int) -> int:
        """The string index in `lines[line]` of a UTF-16 column."""
        units = 0
        for i, ch in enumerate(self.lines[line]):
            if units >= character:
                return i
            units += 2 if ord(ch) > 0xFFFF else 1
        return len(self.lines[line])

    def apply(self, start: tuple[int, int], end: tuple[int, int], new: str) -> dict[str, Any]:
        """Apply one change here and return it as an LSP content change."""
        (sl, sc), (el, ec) = start, end
        head = self.lines[sl][: self.index(sl, sc)]
        tail = self.lines[el][self.index(el, ec) :]
        self.lines[sl : el + 1] = (head + new + tail).split("\n")
        return {
            "range": {
                "start": {"line": sl, "character": sc},
                "end": {"line": el, "character": ec},
            },
            "text": new,
        }


#: A line the burst adds: two module-level variables, the second after a non-BMP
#: character, so every letter typed shows in a symbol name and the second symbol's
#: column is right only if UTF-16 columns are applied right all the way.
NEW_LINE = 'v_ = "\U0001f680"; w_ = 0'
_OURS = re.compile(r'^v_([a-z]*) = "\U0001f680"; w_([a-z]*) = 0$')
#: statements before which a new module-level line keeps the file valid
_ANCHORS = ("def ", "class ", "from ", "import ", "if __name__", "v_")


def our_names(lines: Sequence[str]) -> list[str]:
    """The variable names of the burst's own lines, as the client's text has them."""
    names: list[str] = []
    for line in lines:
        if match := _OURS.match(line):
            names += [f"v_{match[1]}", f"w_{match[2]}"]
    return sorted(names)


def random_change(doc: EditedText, rng: random.Random) -> dict[str, Any]:
    """One small edit that keeps the text valid Python: add or remove one of our lines
    (only before a top-level statement), or type or delete a letter of a name on one."""
    ours = [(i, m) for i, line in enumerate(doc.lines) if (m := _OURS.match(line))]
    roll = rng.random()
    if not ours or (roll < 0.15 and len(ours) < 100):
        anchors = [
            i
            for i, line in enumerate(doc.lines)
            if line.startswith(_ANCHORS) or (i == len(doc.lines) - 1 and not line)
        ]
        line = rng.choice(anchors)
        return doc.apply((line, 0), (line, 0), NEW_LINE + "\n")
    line, match = rng.choice(ours)
    if roll < 0.25:
        return doc.apply((line, 0), (line + 1, 0), "")
    # which name, and the UTF-16 column where its letters start
    group = 1 if rng.random() < 0.5 else 2
    first = utf16_len(doc.lines[line][: match.start(group)])
    count = len(match[group])
    if roll < 0.70 or count == 0:
        col = first + rng.randint(0, count)
        return doc.apply((line, col), (line, col), rng.choice(string.ascii_lowercase))
    col = first + rng.randrange(count)
    return doc.apply((line, col), (line, col + 1), "")


async def edit_burst(
    client: CountingClient, root: Path, n: int, seed: int
) -> tuple[float, int, int, Failures]:
    """`n` didChange to a fresh copy of alpha's file, then check the backend's view of it."""
    failures = Failures()
    rng = random.Random(seed)
    path = root / BURST_FILE
    original = (root / "alpha" / "app.py").read_text("utf-8")
    path.write_text(original, "utf-8")
    uri = client.open(path, original)
    first = {"textDocument": {"uri": uri}, "position": position_of(original, "area(")}
    await wait_hover(client, first, "radius")
    doc = EditedText(original)
    letters = "".join(rng.choice(string.ascii_lowercase) for _ in range(24))
    probe_name = "probe_" + letters
    probe_line = -1
    version = 1
    start = time.perf_counter()
    for i in range(n):
        k = i - (n - len(letters) - 1)
        if k == 0:  # the last edits write a function, then type its name letter by letter
            probe_line = len(doc.lines) - 1
            changes = [doc.apply((probe_line, 0), (probe_line, 0), "def probe_():\n    pass\n")]
        elif k > 0:
            col = len("def probe_") + k - 1
            changes = [doc.apply((probe_line, col), (probe_line, col), letters[k - 1])]
        else:
            changes = [random_change(doc, rng) for _ in range(2 if rng.random() < 0.1 else 1)]
        version += 1
        client.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": changes},
        )
    symbols = await client.request("textDocument/documentSymbol", {"textDocument": {"uri": uri}})
    elapsed = time.perf_counter() - start
    final = doc.text
    # the backend's view of the edited document against a fresh one with the client's text
    twin = (root / "alpha" / "burst_twin.py").as_uri()
    client.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": twin, "languageId": "python", "version": 1, "text": final}},
    )
    twin_symbols = await client.request(
        "textDocument/documentSymbol", {"textDocument": {"uri": twin}}, timeout=TIMEOUT
    )
    failures.check(
        canonical_json(symbols) == canonical_json(twin_symbols),
        "the edited document's symbols differ from those of its text opened afresh: "
        f"{canonical_json(symbols)[:300]} vs {canonical_json(twin_symbols)[:300]}",
    )
    seen = sorted(n for n in symbol_names(symbols) if n.startswith(("v_", "w_")))
    failures.check(
        seen == our_names(doc.lines),
        f"the backend's names differ from the client's text: {len(seen)} names vs "
        f"{len(our_names(doc.lines))}, first differences "
        f"{sorted(set(seen) ^ set(our_names(doc.lines)))[:5]}",
    )
    probe = find_symbol(symbols, probe_name)
    failures.check(
        doc.lines[probe_line] == f"def {probe_name}():"
        and get_path(probe, "selectionRange", "start", "line") == probe_line,
        f"{probe_name} not found at line {probe_line}: {probe!r}",
    )
    for occurrence in (0, 1):  # in report(), and after the non-BMP character in main()
        try:
            position = position_of(final, "area(", occurrence)
        except ValueError:
            continue
        answer = await client.request(
            "textDocument/hover", {"textDocument": {"uri": uri}, "position": position}
        )
        failures.check(
            "radius" in hover_text(answer),
            f"hover at {position} (area, occurrence {occurrence}) after the burst: "
            f"{hover_text(answer)[:200]!r}",
        )
    for closing in (uri, twin):
        client.notify("textDocument/didClose", {"textDocument": {"uri": closing}})
    return n / elapsed, len(doc.lines), len(our_names(doc.lines)), failures


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    failures = Failures()
    report: dict[str, Any] = {"backend": args.backend, "machine": machine(), "rounds": []}
    with tempfile.TemporaryDirectory(prefix="typemux-load-") as tmp:
        root = make_workspace(Path(tmp), {"gamma2": "alpha"})
        client = await start_proxy(root, args.backend)
        try:
            probes = await make_probes(client, root, failures)
            status = await client.request(STATUS_REQUEST, None)
            venvs = sorted(str(Path(b["venv"]).relative_to(root)) for b in status["backends"])
            failures.check(
                venvs == [f"{p}/.venv" for p in sorted(PROJECTS)],
                f"expected one backend per project, got {venvs}",
            )
            report["venvs"] = venvs
            report["rss_kib"] = [rss_kib(client.pid)]
            for round_no in range(args.rounds):
                print(f"round {round_no + 1}/{args.rounds}: requests", file=sys.stderr)
                client.forget_history()
                rps, found = await pipelined_load(
                    client, probes, args.requests, args.seed, root, 1_000_000 * (round_no + 1)
                )
                failures.items += found.items
                print(f"round {round_no + 1}/{args.rounds}: didChange burst", file=sys.stderr)
                cps, lines, names, found = await edit_burst(client, root, args.changes, args.seed)
                failures.items += found.items
                client.forget_history()
                await asyncio.sleep(0.5)  # let the last diagnostics settle
                report["rss_kib"].append(rss_kib(client.pid))
                report["rounds"].append(
                    {
                        "requests_per_s": rps,
                        "changes_per_s": cps,
                        "final_lines": lines,
                        "final_names": names,
                    }
                )
            status = await client.request(STATUS_REQUEST, None)
            report["backend_rss_kib"] = {
                str(Path(b["venv"]).relative_to(root)): (b.get("memory") or 0) // 1024
                for b in status["backends"]
            }
        finally:
            report["exit_code"] = await client.stop()
    rss = report["rss_kib"]
    report["rss_growth_kib"] = rss[-1] - rss[1] if len(rss) > 2 else None
    if report["rss_growth_kib"] is not None:
        failures.check(
            report["rss_growth_kib"] <= FLAT_KIB,
            f"the proxy grew {report['rss_growth_kib']} KiB after round 1 (limit {FLAT_KIB})",
        )
    failures.check(report["exit_code"] == 0, f"the proxy exited with {report['exit_code']}")
    report["config"] = {
        "requests": args.requests,
        "changes": args.changes,
        "rounds": args.rounds,
        "seed": args.seed,
        "flat_kib": FLAT_KIB,
    }
    report["failures"] = failures.items
    return report


def summary(report: dict[str, Any]) -> str:
    cfg, m = report["config"], report["machine"]
    rss = report["rss_kib"]
    lines = [
        f"typemux-lsp load test: backend {report['backend']}, venvs {', '.join(report['venvs'])}",
        f"machine: {m['cores']} cores, {m['platform']}, {m['python']}",
        "",
        "| round | requests/s ({:,} pipelined) | didChange/s ({:,}) | proxy RSS after |".format(
            cfg["requests"], cfg["changes"]
        ),
        "|---|---:|---:|---:|",
        f"| before | | | {rss[0] / 1024:.1f} MiB |",
    ]
    for i, rnd in enumerate(report["rounds"]):
        lines.append(
            f"| {i + 1} | {rnd['requests_per_s']:,.0f} | {rnd['changes_per_s']:,.0f} "
            f"| {rss[i + 1] / 1024:.1f} MiB |"
        )
    last = report["rounds"][-1]
    lines.append(
        f"\nafter each burst the edited file had {last['final_lines']} lines and "
        f"{last['final_names']} typed names, all checked at the backend"
    )
    growth = report["rss_growth_kib"]
    if growth is not None:
        lines.append(
            f"\nproxy RSS from round 1 to round {len(report['rounds'])}: {growth:+d} KiB "
            f"(flat if <= {cfg['flat_kib']} KiB)"
        )
    backends = ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in report["backend_rss_kib"].items())
    lines.append(f"backend RSS at the end: {backends}")
    if report["failures"]:
        lines.append(f"\nFAILED ({len(report['failures'])}):")
        lines += [f"- {f}" for f in report["failures"]]
    else:
        lines.append(
            "\nall checks passed: every request answered exactly once and as when sent alone, "
            "definitions in each file's own venv, the edited text identical at the backend"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load test of typemux-lsp: correctness under load, and memory."
    )
    parser.add_argument("--backend", choices=sorted(KINDS), default="ty")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="identical rounds (2+ for memory)")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the summary")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.changes < 100 or args.rounds < 1:
        parser.error("need --requests >= 1, --changes >= 100, --rounds >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=2) if args.json else summary(report))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
