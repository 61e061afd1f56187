"""Fixtures for the real-client tests: the pinned clients, installed on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from real.claude_code import copy_checkout, install_claude


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here `real_client` (`-m "not real_client"` leaves them out)."""
    for item in items:
        if Path(__file__).parent in item.path.parents:
            item.add_marker(pytest.mark.real_client)


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
