"""One question crosses threads once out and once back: its first token needs nothing from the GUI thread.

The GUI thread sends, then blocks without processing events. Saving the
question, searching the attached document and generating all happen on worker
threads, so the first token still comes; a pipeline that returned to the GUI
between its steps (to save, then to ground) would wait for ever here.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.paths import AppPaths
from app.ui.main_window import MainWindow
from tests.ui.windows import Windows, settings_with

LONG = 120_000

pytestmark = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


@pytest.fixture
def window(windows: Windows, app_paths: AppPaths, starter_model: Path) -> MainWindow:
    settings = settings_with(app_paths, {opts.CONTEXT_SIZE: 2048, opts.MAX_TOKENS: 16})
    return windows.start(settings, load=starter_model)


def test_the_first_token_comes_while_the_gui_thread_is_blocked(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("The keeper of the Skerry Point light was called Edda.\n")
    states: list[str] = []
    window.services.documents.state_changed.connect(lambda _doc, state, _reason: states.append(state))
    window.documents.attach([notes])
    qtbot.waitUntil(lambda: "ready" in states, timeout=LONG)
    qtbot.waitUntil(lambda: window.history.conversation_id is not None, timeout=LONG)

    first_token = threading.Event()
    grounded = threading.Event()
    turns = window.services.turns
    # Direct connections: these run on the thread that emits, so they need no GUI event loop.
    turns.chunk.connect(lambda _turn, _text: first_token.set(), Qt.ConnectionType.DirectConnection)
    turns.sources.connect(lambda _turn, _found, _note, _mode: grounded.set(), Qt.ConnectionType.DirectConnection)
    assert window.send_message("Who kept the Skerry Point light?")
    assert first_token.wait(60), "the first token waited for the GUI thread"  # no event processed meanwhile
    assert grounded.is_set()  # the document was searched on the way, also without the GUI

    with qtbot.waitSignal(window.answer_finished, timeout=LONG):
        pass
    assert [s.name for s in window.model.item(1).sources] == ["notes.txt"]
    assert window.model.item(0).saved_id is not None and window.model.item(1).saved_id is not None
