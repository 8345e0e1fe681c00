"""Editing a sent message in the real window: the conversation stays in view until the edit is sent.

The starter model answers for real (a few tokens each) and the history is the
encrypted store under the Secret Service that ./test.sh starts, so versions
are the ones a user gets.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.paths import AppPaths
from app.ui.main_window import MainWindow
from tests.ui.windows import Windows, settings_with, settle

LONG = 60_000
pytestmark = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


@pytest.fixture
def window(windows: Windows, app_paths: AppPaths, starter_model: Path) -> MainWindow:
    settings = settings_with(app_paths, {opts.CONTEXT_SIZE: 2048, opts.MAX_TOKENS: 16, opts.TEMPERATURE: 0.0})
    return windows.start(settings, load=starter_model)


def ask(qtbot: QtBot, w: MainWindow, text: str) -> None:
    """Type `text` in the composer and press Enter; return once the answer is in and saved."""
    with qtbot.waitSignal(w.answer_finished, timeout=LONG):
        w.composer.setPlainText(text)
        qtbot.keyClick(w.composer, Qt.Key.Key_Return)
    settle(qtbot, w)


def texts(w: MainWindow) -> list[str]:
    return [w.model.item(r).text for r in range(w.model.rowCount())]


def test_editing_keeps_every_message_in_view_and_esc_gives_the_draft_back(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    ask(qtbot, w, "What is a comet?")
    ask(qtbot, w, "And what is a star?")
    shown = texts(w)
    w.composer.setPlainText("a half-written note")

    menu = w.view.show_actions(0, w.view.mapToGlobal(w.view.rect().center()))  # the message's own menu
    assert menu is not None
    edit = next(a for a in menu.actions() if a.text().startswith("Edit and resend"))
    edit.trigger()
    menu.close()
    assert texts(w) == shown  # nothing left the view
    assert w.chat.editing_bar.isVisible() and "Esc to cancel" in w.chat.editing_bar.label.text()
    assert w.composer.toPlainText() == "What is a comet?" and w.composer.hasFocus()
    assert w.view.editing_row == 0

    w.composer.clear()  # clearing the box loses nothing either
    assert texts(w) == shown and w.chat.editing_bar.isVisible()

    qtbot.keyClick(w.composer, Qt.Key.Key_Escape)
    assert not w.chat.editing_bar.isVisible() and w.view.editing_row == -1
    assert w.composer.toPlainText() == "a half-written note"  # what the box held before
    assert texts(w) == shown

    w.composer.clear()
    qtbot.keyClick(w.composer, Qt.Key.Key_Up)  # Up in an empty box: edit the last question
    assert w.composer.toPlainText() == "And what is a star?" and w.chat.editing_bar.isVisible()
    assert texts(w) == shown
    qtbot.mouseClick(w.chat.editing_bar.cancel_button, Qt.MouseButton.LeftButton)
    assert w.composer.toPlainText() == "" and not w.chat.editing_bar.isVisible()
    assert texts(w) == shown


def test_editing_the_first_question_keeps_the_chat_and_makes_a_version(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    ask(qtbot, w, "What is a comet?")
    first_answer = w.model.item(1).text
    w.edit_message(0)
    assert texts(w) == ["What is a comet?", first_answer]  # the chat does not empty

    w.composer.setPlainText("What is an asteroid?")
    with qtbot.waitSignal(w.answer_finished, timeout=LONG):
        qtbot.keyClick(w.composer, Qt.Key.Key_Return)
    settle(qtbot, w)
    assert w.model.rowCount() == 2 and w.model.item(0).text == "What is an asteroid?"
    assert w.model.item(0).version_position == 2 and len(w.model.item(0).versions) == 2
    assert not w.chat.editing_bar.isVisible() and w.composer.toPlainText() == ""

    # Back to the first version from the keyboard: the message takes focus, Alt+Left switches.
    w.view.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.keyClick(w.view.reader, Qt.Key.Key_Up)
    assert w.view.currentIndex().row() == 0 and w.view.reader.hasFocus()
    with qtbot.waitSignal(w.history.branch_switched, timeout=LONG):
        qtbot.keyClick(w.view.reader, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    assert texts(w) == ["What is a comet?", first_answer]
    assert w.view.currentIndex().row() == 0 and w.view.reader.hasFocus()  # the keyboard stays on it
    assert "1/2" in w.view.reader.toPlainText()
