"""What a backend costs in memory: the resident set of its whole process group.

A backend runs in its own process group (basedpyright's Python wrapper starts node as a
child; pyright's PyPI wrapper likewise), so its cost is the sum over the group, read from
/proc. Elsewhere it is unknown (None): the memory budget is then not enforced.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def groups_rss(pgids: Collection[int]) -> dict[int, int]:
    """Bytes resident in the processes of each group of `pgids` that has any (one pass over
    /proc, however many groups)."""
    if not pgids or not sys.platform.startswith("linux"):
        return {}
    wanted = set(pgids)
    sizes: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: rss is the 24th field, the 22nd after the comm
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 21 and (group := int(fields[2])) in wanted:
            sizes[group] = sizes.get(group, 0) + int(fields[21]) * _PAGE
    return sizes
