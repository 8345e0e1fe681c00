"""The GUI-thread I/O guard itself: it must catch GUI-side app code, and only that (see tests/gui_io.py)."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.core.store.database import open_database
from app.services.about import versions
from tests.gui_io import GUARD


def test_the_guard_catches_gui_side_code_touching_a_database_on_the_gui_thread(qtbot: QtBot) -> None:
    assert GUARD.active  # this is a UI test: the guard is on
    versions()  # asks SQLCipher its version through a connection: meant for a worker thread
    caught, GUARD.events[:] = list(GUARD.events), []  # taken out, so this test itself passes
    assert any(e.event == "sqlite3.connect" and "app/core/store/database.py" in e.where for e in caught), caught


def test_core_work_done_by_the_test_itself_and_work_on_other_threads_pass(qtbot: QtBot, tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    open_database(tmp_path / "h.db", key).close()  # a fixture, written by the test through core
    worker = threading.Thread(target=lambda: versions())
    worker.start()
    worker.join()
    (tmp_path / "fixture.txt").write_text("written by the test, not the app")
    assert GUARD.events == []
