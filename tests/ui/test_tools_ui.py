"""Thinking and tools in the window, on a tiny Gemma 4 with Gemma 4's own vocabulary.

The model has random weights: it never thinks or calls a tool by chance. So the turn's
first step follows a llama.cpp grammar (GBNF) of a short thought, then a call of the
calculator with 6*7, written with Gemma 4's own marker tokens. That is the only
difference from a real answer. The rest runs for real: the Think and Tools buttons,
the permission bar, the calculator on its thread, the answer going on after the
result, the thought and the card in the chat, and both kept in the history.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import llama_cpp
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.engine.llama_engine import find_markers
from app.core.paths import AppPaths
from app.core.turn import TurnRequest
from app.ui.main_window import MainWindow
from tests.ui.windows import Windows, click_anchor, settings_with

LONG = 120_000

pytestmark = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


@pytest.fixture
def window(
    windows: Windows, app_paths: AppPaths, tiny_gemma4_real: Path, monkeypatch: pytest.MonkeyPatch
) -> MainWindow:
    settings = settings_with(
        app_paths,
        {opts.CONTEXT_SIZE: 2048, opts.MAX_TOKENS: 48, opts.TEMPERATURE: 0.0, opts.TOOLS_ASK: "calculate read_file"},
    )
    w = windows.start(settings, load=tiny_gemma4_real)
    vocab = llama_cpp.Llama(str(tiny_gemma4_real), vocab_only=True, verbose=False)
    markers = find_markers(vocab)
    vocab.close()
    assert markers is not None
    grammar = (
        f'root ::= <[{markers.thought_open}]> "thought\\n" [a-z ]{{4,10}} <[{markers.thought_close}]> '
        f'<[{markers.call_open}]> "call:calculate{{expression:" <[{markers.quote}]> "6*7" <[{markers.quote}]> "}}" '
        f"<[{markers.call_close}]>\n"
    )
    turns = w.services.turns
    submit = turns.submit

    def through_the_grammar(request: TurnRequest) -> None:  # as the module docstring explains
        submit(replace(request, sampling=replace(request.sampling, grammar=grammar)))

    monkeypatch.setattr(turns, "submit", through_the_grammar)
    return w


def test_think_and_tools_show_for_gemma4_and_a_call_asks_first(qtbot: QtBot, window: MainWindow) -> None:
    pane = window.chat
    assert pane.think_button.isVisible() and pane.tools_button.isVisible()
    assert not pane.think_button.isChecked() and not pane.tools_button.isChecked()  # off until asked for
    qtbot.mouseClick(pane.think_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(pane.tools_button, Qt.MouseButton.LeftButton)

    assert window.send_message("What is six times seven?")
    qtbot.waitUntil(pane.permission_bar.isVisible, timeout=LONG)
    assert "Calculator" in pane.permission_bar.label.text()
    row = window.model.rowCount() - 1
    assert window.model.item(row).thinking  # the thought streamed in before the call
    assert [c.status for c in window.model.item(row).tools] == ["asking"]
    with qtbot.waitSignal(window.answer_finished, timeout=LONG):
        qtbot.mouseClick(pane.permission_bar.allow_button, Qt.MouseButton.LeftButton)

    item = window.model.item(row)
    (card,) = item.tools
    assert (card.status, card.result) == ("done", "42")
    assert item.thinking_ms > 0
    html = window.view.delegate.rendered(window.model.index(row)).doc.toPlainText()
    assert "Thought for" in html and "Calculator" in html

    click_anchor(qtbot, window, row, "Calculator")  # the card opens: tool, arguments, result
    opened = window.view.delegate.rendered(window.model.index(row)).doc.toPlainText()
    assert "Arguments" in opened and 'expression:"6*7"' in opened

    # Kept in the history apart from the text, and shown again when the chat is reopened.
    conversation = window.history.conversation_id
    window.session.new_conversation()
    with qtbot.waitSignal(window.session.conversation_shown, timeout=LONG):
        window.open_conversation(conversation)
    reopened = window.model.item(window.model.rowCount() - 1)
    assert reopened.thinking == item.thinking and reopened.tools[0].result == card.result
    assert pane.think_button.isChecked() and pane.tools_button.isChecked()  # the chat's own choice


def test_a_refused_call_is_told_to_the_model_and_the_answer_goes_on(qtbot: QtBot, window: MainWindow) -> None:
    pane = window.chat
    pane.tools_button.setChecked(True)
    assert window.send_message("What is six times seven?")
    qtbot.waitUntil(pane.permission_bar.isVisible, timeout=LONG)
    with qtbot.waitSignal(window.answer_finished, timeout=LONG) as finished:
        qtbot.mouseClick(pane.permission_bar.refuse_button, Qt.MouseButton.LeftButton)
    (card,) = window.model.item(window.model.rowCount() - 1).tools
    assert card.status == "refused"
    assert finished.args[0].stats.completion_tokens > 0


def test_a_chats_choice_outlasts_a_restart(
    qtbot: QtBot, windows: Windows, app_paths: AppPaths, tiny_gemma4_real: Path
) -> None:
    settings = {opts.CONTEXT_SIZE: 2048, opts.MAX_TOKENS: 8, opts.TEMPERATURE: 0.0}
    first = windows.start(settings_with(app_paths, settings), load=tiny_gemma4_real)
    qtbot.mouseClick(first.chat.think_button, Qt.MouseButton.LeftButton)  # before the chat exists
    with qtbot.waitSignal(first.answer_finished, timeout=LONG):
        assert first.send_message("Hello")
    conversation = first.history.conversation_id
    assert conversation is not None
    qtbot.mouseClick(first.chat.tools_button, Qt.MouseButton.LeftButton)  # after it exists
    first.close()

    again = windows.start(settings_with(app_paths, settings), load=tiny_gemma4_real)
    with qtbot.waitSignal(again.session.conversation_shown, timeout=LONG):
        again.open_conversation(conversation)
    assert again.chat.think_button.isChecked() and again.chat.tools_button.isChecked()
    again.session.new_conversation()  # a new chat starts from the defaults
    assert not again.chat.think_button.isChecked() and not again.chat.tools_button.isChecked()
