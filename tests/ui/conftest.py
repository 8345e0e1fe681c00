"""Fixtures for the UI tests: real main windows, closed when the test ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytestqt.qtbot import QtBot

from app.core.paths import AppPaths
from tests.ui.windows import Windows


@pytest.fixture
def windows(qtbot: QtBot, app_paths: AppPaths) -> Iterator[Windows]:
    """Starts main windows for a test; each is closed after it, before qtbot's own clean-up."""
    started = Windows(qtbot, app_paths)
    yield started
    started.close_all()
