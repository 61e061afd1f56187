"""The README's own configuration snippets, so the editor tests run what users copy."""

from __future__ import annotations

import re
import textwrap

from real.claude_code import REPO_ROOT


def snippet(editor: str, language: str) -> str:
    """The ``language`` code block of the README's ``- **{editor}**`` bullet, dedented."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    bullet = re.search(
        rf"^- \*\*{re.escape(editor)}\*\*.*?\n( *)```{language}\n(.*?)\n\1```",
        readme,
        re.MULTILINE | re.DOTALL,
    )
    assert bullet, f"README.md has no ```{language} block under '- **{editor}**'"
    return textwrap.dedent(bullet.group(2)) + "\n"
