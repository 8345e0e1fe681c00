"""The lock page reads properly at any size, and Lock (Ctrl+L) explains itself when it cannot lock."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.paths import AppPaths
from app.ui.lock_controller import NEEDS_PASSPHRASE, NOTHING_TO_LOCK
from app.ui.lock_page import BOX_WIDTH, LockMode, LockPage
from app.ui.main_window import MainWindow
from app.ui.privacy_dialog import PrivacyDialog
from tests.ui.windows import LONG, Windows, settings_with

needs_keyring = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


def column(page: LockPage) -> list[QWidget]:
    """The page's widgets from top to bottom, as far as they are shown."""
    widgets = [page.title, page.message, page.passphrase, page.confirm, page.error, page.submit_button]
    return [w for w in widgets if w.isVisible()]


@pytest.mark.parametrize("size", [QSize(1100, 700), QSize(600, 330), QSize(360, 300)])
@pytest.mark.parametrize("mode", [LockMode.UNLOCK, LockMode.CREATE, LockMode.PROBLEM])
def test_text_wraps_without_clipping_or_overlap(qtbot: QtBot, size: QSize, mode: LockMode) -> None:
    page = LockPage()
    qtbot.addWidget(page)
    page.resize(size)
    page.show()
    qtbot.waitExposed(page)
    page.show_mode(mode, "Your history file is damaged. " * 6 if mode == LockMode.PROBLEM else "")
    page.show_error("That passphrase does not open this history. Check Caps Lock and try again.")
    labels: list[QLabel] = [page.title, page.message, page.error]
    assert all(label.wordWrap() for label in labels)

    def laid_out() -> None:  # once the layout has run (it runs from the event loop)
        for label in labels:
            assert label.height() >= label.heightForWidth(label.width()), f"{label.text()!r} is cut off"
        assert page.message.parentWidget().width() <= page.width()  # no sideways scrolling

    qtbot.waitUntil(laid_out, timeout=5000)
    shown = column(page)
    for above, below in itertools.pairwise(shown):
        assert above.geometry().bottom() < below.geometry().top(), f"{above} overlaps {below}"
    assert page.message.width() <= BOX_WIDTH
    box = page.message.parentWidget()
    assert box is not None
    middle = box.mapTo(page, box.rect().center()).x()
    if size.width() > BOX_WIDTH + 40:  # centred, with room on both sides
        assert abs(middle - page.width() / 2) <= 20


def test_fields_and_buttons_are_named_for_the_mode(qtbot: QtBot) -> None:
    page = LockPage()
    qtbot.addWidget(page)
    page.show_mode(LockMode.CREATE)
    assert page.submit_button.accessibleName() == "Create passphrase"
    assert page.confirm.accessibleName() == "Passphrase again"
    page.show_mode(LockMode.UNLOCK)
    assert page.submit_button.accessibleName() == "Unlock"
    assert page.passphrase.accessibleName() == "Passphrase" and page.passphrase.accessibleDescription()


@pytest.fixture
def window(windows: Windows, app_paths: AppPaths) -> Iterator[MainWindow]:
    w = windows.start(settings_with(app_paths, {opts.CONTEXT_SIZE: 2048}))
    w.activateWindow()
    yield w


def press_ctrl_l(qtbot: QtBot, w: MainWindow) -> None:
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    qtbot.keyClick(w.composer, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)


@needs_keyring
def test_ctrl_l_without_a_passphrase_says_what_it_needs(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    assert not w.history.uses_passphrase and w.lock_action.isEnabled()
    press_ctrl_l(qtbot, w)
    box = w.locking.explanation
    assert box is not None
    qtbot.waitUntil(box.isVisible, timeout=5000)
    assert box.text() == NEEDS_PASSPHRASE and "keychain" in box.informativeText()
    assert w.history.is_open and w.pages.currentWidget() is w.splitter  # nothing was locked

    # "Set a passphrase…" opens Privacy and history, where the passphrase is set.
    privacy_shown: list[str] = []

    def close_privacy() -> None:
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, PrivacyDialog):
            privacy_shown.append(dialog.passphrase_button.text())
            dialog.reject()

    watcher = QTimer()
    watcher.timeout.connect(close_privacy)
    watcher.start(20)
    set_up = next(b for b in box.buttons() if b.text() == "Set a passphrase…")
    qtbot.mouseClick(set_up, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(privacy_shown), timeout=5000)
    watcher.stop()
    assert privacy_shown == ["Require a passphrase…"]
    assert not box.isVisible()


@needs_keyring
def test_ctrl_l_with_a_passphrase_locks(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    with qtbot.waitSignal(w.history.finished, timeout=LONG):
        w.history.change_passphrase("a long passphrase")
    with qtbot.waitSignal(w.history.locked, timeout=LONG):
        press_ctrl_l(qtbot, w)
    assert w.pages.currentWidget() is w.lock_page and w.lock_page.mode == LockMode.UNLOCK
    assert w.locking.explanation is None
    w.lock()  # again, while locked: nothing to explain
    assert w.locking.explanation is None


def test_ctrl_l_without_a_history_says_there_is_nothing_to_lock(
    qtbot: QtBot, windows: Windows, app_paths: AppPaths, no_keyring: None
) -> None:
    w = windows.start(settings_with(app_paths, {}), ready=False)
    qtbot.waitUntil(lambda: w.pages.currentWidget() is w.lock_page, timeout=LONG)
    w.lock()  # the lock page is showing: nothing to explain
    assert w.locking.explanation is None
    qtbot.mouseClick(w.lock_page.continue_button, Qt.MouseButton.LeftButton)  # chat without history
    w.activateWindow()
    press_ctrl_l(qtbot, w)
    box = w.locking.explanation
    assert box is not None and box.text() == NOTHING_TO_LOCK
    assert len(box.buttons()) == 1  # Close: no passphrase to set without a history
    box.done(QMessageBox.StandardButton.Close)
