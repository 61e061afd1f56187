"""Fixtures for the real-client tests: the pinned clients, installed on first use."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from real.claude_code import copy_checkout, install_claude

BIN = Path(sys.executable).parent
"""The test venv's bin: typemux-lsp, the backends and nvim are installed there."""


@pytest.fixture(scope="session")
def claude() -> Path:
    """The pinned Claude Code CLI; the test fails (never skips) when it cannot be installed."""
    try:
        return install_claude()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository as a fresh clone has it: the plugin's marketplace directory."""
    return copy_checkout(tmp_path_factory.mktemp("plugin") / "typemux-lsp")
