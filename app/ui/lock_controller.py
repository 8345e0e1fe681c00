"""The history's lock flow: what the window shows while it opens, when it is locked, and when it cannot open.

It switches between the chat and the lock page (unlock, choose a first
passphrase, or decide about a problem: start a new history or chat without
one), and locks after the idle time the user chose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from app import settings as opts
from app.core.errors import UserError
from app.core.store.errors import KeyringUnavailableError, WrongKeyError
from app.services.history import PassphraseNeededError
from app.ui.lock_page import IdleWatcher, LockMode

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

DAMAGED = (
    "Your history file cannot be decrypted with its key from the system keychain: it is damaged, or was "
    "replaced by another file. Nothing was changed. Start a new history (the old one is kept), or chat on."
)
NEEDS_PASSPHRASE = "Locking needs a passphrase: set one in Tools → Privacy and history."
WHY_PASSPHRASE = (
    "Your history is encrypted with a key kept in this computer's keychain, which would open it again at once. "
    "With a passphrase, Lock (Ctrl+L) closes your conversations until you type it."
)
NOTHING_TO_LOCK = "Your history is not open, so there is nothing to lock."


class LockController(QObject):
    """Opening, locking and unlocking the history, as the window shows it."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window
        self._history = history = window.history
        self._settings = window.settings
        self.idle = IdleWatcher(window)
        self.explanation: QMessageBox | None = None  # shown when Lock cannot lock
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self.idle)
        history.ready.connect(self._ready)
        history.unavailable.connect(self._unavailable)
        history.closing.connect(self._closing)
        history.locked.connect(lambda: self._unavailable(None))
        history.finished.connect(self._reported)
        page = window.lock_page
        page.passphrase_entered.connect(history.unlock)
        page.new_history_requested.connect(history.start_new_history)
        page.continue_requested.connect(self._continue_without_history)
        self.idle.idle.connect(self._auto_lock)

    def lock(self) -> None:
        """Close the history until the passphrase is entered again, or say what locking needs."""
        history = self._history
        if history.uses_passphrase and history.is_open:
            history.lock()  # an answer in progress is saved first, as it stands
        elif self._window.pages.currentWidget() is not self._window.lock_page:  # else it is locked already
            self._explain(history.is_open)

    def _explain(self, history_open: bool) -> None:
        """Say why Lock did nothing, with a way to set a passphrase (window-modal: nothing waits on it)."""
        if self.explanation is not None:
            self.explanation.deleteLater()  # one at a time
        box = QMessageBox(QMessageBox.Icon.Information, "Lock history", NOTHING_TO_LOCK, parent=self._window)
        box.setObjectName("lock-explanation")
        if history_open:
            box.setText(NEEDS_PASSPHRASE)
            box.setInformativeText(WHY_PASSPHRASE)
            set_up = box.addButton("Set a passphrase…", QMessageBox.ButtonRole.AcceptRole)
            box.setDefaultButton(set_up)
            # After the message has closed, so the two dialogs never stack.
            box.finished.connect(
                lambda _r: QTimer.singleShot(0, self._window.open_privacy) if box.clickedButton() is set_up else None
            )
        box.addButton(QMessageBox.StandardButton.Close)
        self.explanation = box
        box.open()

    def update(self) -> None:
        """Run the idle timer when a passphrase protects the history."""
        passphrase = self._history.uses_passphrase
        self.idle.set_minutes(self._settings.get(opts.AUTO_LOCK_MINUTES) if passphrase else 0)

    def stop(self) -> None:
        """Stop watching for idleness (the window is closing)."""
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self.idle)

    def _ready(self) -> None:
        w = self._window
        w.pages.setCurrentWidget(w.splitter)
        w.sidebar.setEnabled(True)
        self._history.refresh()
        wanted = self._history.conversation
        if not w.drops.attach_pending():  # documents given at launch start a chat of their own
            self._history.open_latest(
                self._settings.get(opts.LAST_CONVERSATION) or None,
                lambda: self._history.conversation is wanted and w.model.rowCount() == 0,  # nothing started since
            )
        self.update()
        w.composer.setFocus()

    def _closing(self) -> None:
        w = self._window
        w.session.close()  # the answer so far is saved before the database closes
        w.session.new_conversation()
        w.sidebar.set_conversations([])

    def _reported(self, what: str, message: str) -> None:
        self._window.notice.show_text(message)
        if what == "passphrase":
            self.update()

    def _unavailable(self, error: UserError | None) -> None:
        """Show the lock page: unlock, choose a passphrase, or decide about a problem."""
        w, history = self._window, self._history
        if not w.session.waiting:  # a message sent while the history was opening stays, to be saved or sent
            w.session.new_conversation()
        w.sidebar.set_conversations([])
        self.idle.set_minutes(0)
        first_passphrase = isinstance(error, KeyringUnavailableError) and not history.exists
        page = w.lock_page
        if isinstance(error, WrongKeyError) and history.uses_passphrase:
            page.show_error(str(error))
        elif isinstance(error, WrongKeyError):  # the keychain's own key fails: the file is damaged or replaced
            page.show_mode(LockMode.PROBLEM, DAMAGED)
        elif first_passphrase or isinstance(error, PassphraseNeededError | None):
            page.show_mode(LockMode.UNLOCK if history.uses_passphrase else LockMode.CREATE)
        else:
            page.show_mode(
                LockMode.PROBLEM, f"{error} You can start a new history (the old file is kept), or chat without saving."
            )
        w.pages.setCurrentWidget(page)

    def _continue_without_history(self) -> None:
        w = self._window
        w.pages.setCurrentWidget(w.splitter)
        w.sidebar.setEnabled(False)
        unsaved = " Your message was sent without being saved." if w.session.waiting else ""
        w.session.send_unsaved()
        w.notice.show_text(f"History is off: this conversation will not be saved.{unsaved}", warning=True)
        w.composer.setFocus()

    def _auto_lock(self) -> None:
        if self._window.busy:
            self.idle.set_minutes(self._settings.get(opts.AUTO_LOCK_MINUTES))  # try again later
        else:
            self.lock()
