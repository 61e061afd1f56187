"""Answers follow the disk, end to end: seconds from a settled disk to the right answer,
through typemux-lsp, on the four real backends.

bench/freshness.py measures each mechanism on a backend started straight (what decided the
policy); this measures what a user of the proxy gets. The scenarios are the end-to-end tests
of tests/e2e/test_freshness.py (a Claude Code-like client that sends nothing; changes made
behind its back, as its Bash tool makes them), which record their delays when
TYPEMUX_FRESHNESS_FIGURES names a file: this runs them and prints the table. Delays include
the proxy's debounce (300 ms) and the polling of the witness (hover every 100 ms).

    .venv/bin/python bench/freshness_proxy.py [--json] [-- PYTEST-ARGS]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("pyright", "basedpyright", "ty", "pyrefly")
#: seconds after the disk settles (issue 7's targets)
TARGETS = {
    "package_upgraded_in_place_shows_the_new_api": 3.0,
    "package_added_resolves": 3.0,
    "package_removed_is_reported_unresolved": 3.0,
    "open_document_rewritten_on_disk_then_the_client_edit_wins": 2.0,
    "unopened_module_change_shows_in_the_open_file": 3.0,
    "real_release_swapped_by_uv[down]": 2.0,
    "real_release_swapped_by_uv[up]": 2.0,
}
LABELS = {
    "package_upgraded_in_place_shows_the_new_api": "package upgraded in place: new API in hover",
    "package_added_resolves": "package added: the import resolves",
    "package_removed_is_reported_unresolved": "package removed: reported unresolved",
    "open_document_rewritten_on_disk_then_the_client_edit_wins": "open document rewritten on disk",
    "unopened_module_change_shows_in_the_open_file": "unopened module changed: open file's error",
    "new_module_resolves": "new module created: the import resolves",
    "checker_config_change_takes_effect[pyproject-section]": "checker config in pyproject changed",
    "checker_config_change_takes_effect[new-config-file]": "checker config file created",
    "sync_burst_restarts_at_most_once_and_other_venvs_keep_answering": (
        "320-file burst in site-packages: new API in hover"
    ),
    "real_release_swapped_by_uv[down]": "real release down (redis 7.4.1 -> 6.4.0, uv): hover",
    "real_release_swapped_by_uv[up]": "real release up (redis 6.4.0 -> 7.4.1, uv): hover",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        env = dict(os.environ, TYPEMUX_FRESHNESS_FIGURES=str(out))
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                str(REPO / "tests" / "e2e" / "test_freshness.py"),
                *args.pytest_args,
            ],
            cwd=REPO,
            env=env,
            stdout=sys.stderr,
        )
        figures: list[dict[str, Any]] = json.loads(out.read_text()) if out.exists() else []
    if args.json:
        print(json.dumps(figures, indent=2))
        return run.returncode
    table: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in figures:
        table[row["scenario"]][row["backend"]] = row
    print(
        f"seconds from the settled disk to the right answer, through typemux-lsp; load "
        f"{os.getloadavg()[0]:.2f}"
    )
    print("| change | " + " | ".join(BACKENDS) + " | target |")
    print("|---|" + "---:|" * len(BACKENDS) + "---|")
    for scenario, label in LABELS.items():
        if scenario not in table:
            continue
        cells = []
        for backend in BACKENDS:
            found = table[scenario].get(backend)
            if found is None:
                cells.append("-")
                continue
            row = found
            cell = f"{row['seconds']:.2f}"
            if "backend_starts" in row:
                cell += (
                    f" ({row['backend_starts']} start, other venv's slowest hover "
                    f"{row['other_venv_slowest_hover_s'] * 1e3:.0f} ms)"
                )
            cells.append(cell)
        target = TARGETS.get(scenario)
        verdict = ""
        if target is not None:
            worst = max(table[scenario][b]["seconds"] for b in table[scenario])
            verdict = f"<= {target:g} s: {'met' if worst <= target else 'MISSED'}"
        print(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
