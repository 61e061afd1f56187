"""The plugin manifests, checked by the real Claude Code CLI.

One manifest: `.claude-plugin/plugin.json` is the file; the top-level `plugin.json` the design
names is a link to it. Measured with Claude Code 2.1.332 (why not the other way round):
- with `.claude-plugin/marketplace.json` present, a directory without
  `.claude-plugin/plugin.json` is "a folder of plugins", not a plugin: a root `plugin.json`
  alone loads no LSP server, from `--plugin-dir` or from `claude plugin install`;
- `claude plugin validate --strict` rejects a `.claude-plugin/plugin.json` that is a link
  (checked below), while it accepts a top-level link.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import typemux_lsp
from real.claude_code import ClaudeCode


@pytest.fixture
def code(claude: Path, tmp_path: Path) -> ClaudeCode:
    return ClaudeCode(claude, tmp_path / "home", path="/usr/bin:/bin")


@pytest.mark.parametrize(
    "target",
    [".", ".claude-plugin/plugin.json", "plugin.json", ".claude-plugin/marketplace.json"],
)
def test_validate_strict(code: ClaudeCode, checkout: Path, target: str) -> None:
    out = code.cli("plugin", "validate", "--strict", str(checkout / target))
    assert "Validation passed" in out, out


def test_the_manifests_are_one(checkout: Path) -> None:
    top, inner = checkout / "plugin.json", checkout / ".claude-plugin" / "plugin.json"
    assert top.is_symlink() and top.resolve() == inner.resolve(), "a copy would drift"
    manifest = json.loads(inner.read_text())
    assert manifest["version"] == typemux_lsp.__version__  # (pyproject.toml reads it too)


def test_validate_strict_rejects_a_linked_claude_plugin_manifest(
    code: ClaudeCode, checkout: Path, tmp_path: Path
) -> None:
    """Why the real file is in .claude-plugin/ (and why the check above can fail)."""
    other = shutil.copytree(checkout, tmp_path / "other", symlinks=True)
    (other / "plugin.json").unlink()
    (other / ".claude-plugin" / "plugin.json").rename(other / "plugin.json")
    (other / ".claude-plugin" / "plugin.json").symlink_to("../plugin.json")
    with pytest.raises(AssertionError, match="Validation failed"):
        code.cli("plugin", "validate", "--strict", str(other))


def test_readme_install(code: ClaudeCode, checkout: Path) -> None:
    """README "Use it from Claude Code": marketplace add, then install, non-interactively."""
    code.install_plugin(checkout)
    listed = code.cli("plugin", "list")
    assert "typemux-lsp@typemux-lsp" in listed, listed
    version = json.loads((checkout / "plugin.json").read_text())["version"]
    assert f"Version: {version}" in listed and "enabled" in listed, listed
    assert f"Read from: {checkout}" in listed, listed
