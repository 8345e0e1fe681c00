"""The chat pane in the real window: the Attach button, notices that stay with their chat, and accessible names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QWidget
from pytestqt.qtbot import QtBot

from app.core.paths import AppPaths
from tests.ui.windows import LONG, Windows, settings_with

needs_keyring = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


@needs_keyring
def test_attach_button_attaches_and_the_skipped_files_notice_stays_with_its_chat(
    qtbot: QtBot, windows: Windows, app_paths: AppPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Ferry\n\nThe ferry leaves at nine from the north pier.\n")
    scan = tmp_path / "scan.tif"  # a format neither the document nor the image reader takes
    scan.write_bytes(b"II*\x00" + b"\0" * 64)
    w = windows.start(settings_with(app_paths, {}))
    chosen: list[str] = []

    def choose(*_args: object, **_kwargs: object) -> tuple[list[str], str]:
        """The platform's file dialog cannot be driven headless; it only supplies the paths."""
        chosen.append("asked")
        return [str(notes), str(scan)], ""

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", choose)
    qtbot.mouseClick(w.chat.attach_button, Qt.MouseButton.LeftButton)
    assert chosen == ["asked"]
    panel = w.documents.panel
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1 and panel.table.item(0, 1).text() == "Ready", timeout=LONG)
    notice = w.chat.chat_notice
    qtbot.waitUntil(notice.isVisible, timeout=LONG)
    assert "Not attached: scan.tif" in notice.label.text() and "notes.md" not in notice.label.text()
    first = w.history.conversation_id
    assert first is not None

    w.new_chat()  # another chat: the notice is not about it
    assert not notice.isVisible()

    with qtbot.waitSignal(w.session.conversation_shown, timeout=LONG):
        w.open_conversation(first)
    assert notice.isVisible() and "scan.tif" in notice.label.text()  # back with its chat

    qtbot.mouseClick(notice.dismiss_button, Qt.MouseButton.LeftButton)
    assert not notice.isVisible()
    w.new_chat()
    with qtbot.waitSignal(w.session.conversation_shown, timeout=LONG):
        w.open_conversation(first)
    assert not notice.isVisible()  # dismissed for good


def test_every_control_of_the_chat_pane_has_an_accessible_name_and_description(
    windows: Windows, app_paths: AppPaths
) -> None:
    w = windows.start(settings_with(app_paths, {}), ready=False)
    pane = w.chat
    focusable = [
        widget
        for widget in pane.findChildren(QWidget)
        if widget.focusPolicy() & Qt.FocusPolicy.TabFocus and not widget.isWindow()
    ]
    assert pane.composer in focusable and pane.view.reader in focusable and pane.attach_button in focusable
    unnamed = [type(widget).__name__ for widget in focusable if not widget.accessibleName()]
    undescribed = [widget.accessibleName() for widget in focusable if not widget.accessibleDescription()]
    assert unnamed == [] and undescribed == []
    assert pane.composer.accessibleName() == "Message" and pane.view.accessibleName() == "Conversation"
    assert pane.send_button.accessibleName() == "Send"
