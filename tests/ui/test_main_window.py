"""The main window with the real worker and model: send, stream, stop, regenerate, close."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.engine.generation import StopReason
from app.core.paths import AppPaths
from app.core.turn import TurnResult
from app.settings import Settings
from app.ui.chat_model import MessageRole
from app.ui.conversation_view import _MARGIN
from app.ui.main_window import MainWindow
from app.ui.model_manager import ModelManager
from tests.ui.windows import Windows, settings_with

LONG = 60_000


@pytest.fixture
def settings(app_paths: AppPaths) -> Settings:
    return settings_with(app_paths, {opts.CONTEXT_SIZE: 2048, opts.MAX_TOKENS: 40})


@pytest.fixture
def window(windows: Windows, settings: Settings, starter_model: Path) -> Iterator[MainWindow]:
    w = windows.start(settings, ready=False, load=starter_model)
    yield w
    assert w.services.shutdown()


def start_streaming(qtbot: QtBot, w: MainWindow, text: str) -> None:
    """Send `text` and return once the answer's first words are on screen."""
    assert w.send_message(text)
    row = w.model.rowCount() - 1
    qtbot.waitUntil(lambda: bool(w.model.item(row).text), timeout=LONG)


def send(qtbot: QtBot, w: MainWindow, text: str) -> TurnResult:
    with qtbot.waitSignal(w.answer_finished, timeout=LONG) as done:
        w.composer.setPlainText(text)
        qtbot.keyClick(w.composer, Qt.Key.Key_Return)
    return done.args[0]


def test_send_streams_an_answer_into_the_view(qtbot: QtBot, window: MainWindow) -> None:
    assert "Gemma 3 270M" in window.models.label.text()
    assert window.notice.isVisible() and "base model" in window.notice.label.text()
    assert window.info_panel.headline.text() == "268M parameters loaded · no PLE"
    assert window.info_panel.family.text().startswith("Gemma 3 270M")
    changes: list[int] = []
    window.model.dataChanged.connect(
        lambda a, _b, roles: changes.append(a.row()) if MessageRole.TEXT in roles else None
    )
    result = send(qtbot, window, "What is the tallest mountain?")
    assert window.model.rowCount() == 2
    user, answer = window.model.item(0), window.model.item(1)
    assert (user.role, user.text) == ("user", "What is the tallest mountain?")
    assert answer.role == "assistant" and answer.text.strip() and not answer.streaming
    assert answer.stats is result.stats and result.stats.completion_tokens > 0
    assert changes.count(1) >= 2  # text arrived in several updates, not at once
    assert window.composer.toPlainText() == ""
    assert "tok/s" in window.stats_label.text()


def test_shift_enter_adds_a_line_instead_of_sending(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.keyClicks(window.composer, "first")
    qtbot.keyClick(window.composer, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(window.composer, "second")
    assert window.composer.toPlainText() == "first\nsecond"
    assert window.model.rowCount() == 0


def test_composer_stays_usable_while_streaming(qtbot: QtBot, window: MainWindow, settings: Settings) -> None:
    settings.set(opts.MAX_TOKENS, 400)
    start_streaming(qtbot, window, "Write a long story about a cat.")
    assert window.busy and window.send_button.text() == "Stop"
    assert window.composer.isEnabled()
    qtbot.keyClicks(window.composer, "next question")
    assert window.composer.toPlainText() == "next question"
    qtbot.keyClick(window.composer, Qt.Key.Key_Return)  # refused while busy; the text is kept
    assert window.composer.toPlainText() == "next question"
    with qtbot.waitSignal(window.answer_finished, timeout=LONG):
        window.stop()


def test_stop_keeps_the_partial_answer(qtbot: QtBot, window: MainWindow, settings: Settings) -> None:
    settings.set(opts.MAX_TOKENS, 2000)
    start_streaming(qtbot, window, "Tell me everything about the ocean.")
    with qtbot.waitSignal(window.answer_finished, timeout=LONG) as done:
        qtbot.mouseClick(window.send_button, Qt.MouseButton.LeftButton)  # it reads "Stop" now
    result: TurnResult = done.args[0]
    assert result.stats.stop_reason == StopReason.CANCELLED
    assert result.stats.completion_tokens < 2000
    assert window.model.item(1).text.strip()
    assert not window.busy and window.send_button.text() == "Send"


def test_regenerate_replaces_the_last_answer(qtbot: QtBot, window: MainWindow, settings: Settings) -> None:
    first = send(qtbot, window, "Say something about rivers.")
    assert window.regenerate_button.isEnabled()
    with qtbot.waitSignal(window.answer_finished, timeout=LONG) as done:
        qtbot.mouseClick(window.regenerate_button, Qt.MouseButton.LeftButton)
    second: TurnResult = done.args[0]
    assert second.turn_id != first.turn_id
    assert window.model.rowCount() == 2
    assert window.model.item(1).stats is second.stats
    # The cached prompt was reused: only the answer's start is evaluated again.
    assert second.stats.prompt_evaluated <= 2


def test_edit_puts_the_message_back_and_keeps_the_conversation_in_view(qtbot: QtBot, window: MainWindow) -> None:
    send(qtbot, window, "Original question")
    window.edit_message(0)
    assert window.model.rowCount() == 2  # nothing leaves the view until the edit is sent
    assert window.composer.toPlainText() == "Original question"


def test_long_history_is_trimmed_and_the_user_is_told(qtbot: QtBot, window: MainWindow, settings: Settings) -> None:
    settings.set(opts.CONTEXT_SIZE, 512)
    with qtbot.waitSignal(window.model_ready, timeout=LONG):
        window.load_model(window.models.loaded.info.path if window.models.loaded else None)
    settings.set(opts.MAX_TOKENS, 24)
    filler = "The river flows past old mills and quiet farms. " * 12
    notices = []
    for i in range(4):
        send(qtbot, window, f"Part {i}. {filler}")
        notices.append(window.model.item(window.model.rowCount() - 1).notice)
    assert "512-token context window" in notices[-1]
    assert "left out" in notices[-1]
    assert notices[0] == ""


def test_a_bad_model_file_shows_a_message_and_chat_goes_on(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    junk = tmp_path / "broken.gguf"
    junk.write_bytes(b"GGUF" + os.urandom(5000))
    with qtbot.waitSignal(window.model_failed, timeout=LONG):
        window.load_model(junk)
    assert window.notice.isVisible()
    assert "could not be loaded" in window.notice.label.text()
    assert "Gemma 3 270M" in window.models.label.text()  # the previous model is still in use
    assert send(qtbot, window, "Still there?").stats.completion_tokens > 0


def test_copy_link_copies_the_code_block(qtbot: QtBot, window: MainWindow) -> None:
    row = window.model.append("assistant", "Run this:\n\n```bash\necho hello\n```\n")
    window.view.doItemsLayout()
    index = window.model.index(row)
    rendered = window.view.delegate.rendered(index)
    cursor = rendered.doc.find("Copy")
    block_rect = rendered.doc.documentLayout().blockBoundingRect(cursor.block())
    line = cursor.block().layout().lineForTextPosition(cursor.positionInBlock() - 2)
    x = block_rect.x() + line.cursorToX(cursor.positionInBlock() - 2)[0]
    y = block_rect.y() + line.y() + line.height() / 2
    assert rendered.doc.documentLayout().anchorAt(QPointF(x, y)) == "copy:0"
    rect = window.view.visualRect(index)
    target = QPoint(int(rect.left() + _MARGIN + x), int(rect.top() + _MARGIN / 2 + y))
    QGuiApplication.clipboard().clear()
    qtbot.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton, pos=target)
    assert QGuiApplication.clipboard().text() == "echo hello"


def test_closing_mid_answer_stops_the_worker(qtbot: QtBot, window: MainWindow, settings: Settings) -> None:
    settings.set(opts.MAX_TOKENS, 5000)
    start_streaming(qtbot, window, "Write a very long essay about everything.")
    window.close()
    assert not window.services.turns.host.running
    assert window.model.item(1).text  # what streamed so far is still there


def test_the_starter_notice_offers_a_real_model(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(window.notice.isVisible, timeout=LONG)
    button = window.notice.action_button
    assert button.isVisible() and button.text() == "Get a model…"
    assert not [w for w in window.findChildren(ModelManager) if w.isVisible()]
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    shown = [w for w in window.findChildren(ModelManager) if w.isVisible()]
    assert len(shown) == 1
    shown[0].close()
