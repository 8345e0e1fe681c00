"""The page shown instead of the chat while the history is locked or cannot be opened.

Three cases: unlock with the passphrase, choose a passphrase (no system
keychain), or a problem the user must decide about (the key is gone, the file
is damaged). Every case offers to chat without history, so the app stays usable.
"""

from __future__ import annotations

from enum import Enum

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

MIN_PASSPHRASE = 8
BOX_WIDTH = 520  # px: a comfortable line length for the explanation


class LockMode(Enum):
    """What the page asks for."""

    UNLOCK = "unlock"
    CREATE = "create"
    PROBLEM = "problem"


class LockPage(QWidget):
    """Passphrase entry, or an explanation with a way forward."""

    passphrase_entered = Signal(str)
    new_history_requested = Signal()
    continue_requested = Signal()  # chat without saving history

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = LockMode.UNLOCK
        self.title = QLabel()
        self.title.setStyleSheet("font-size: 18pt; font-weight: 600;")
        self.title.setWordWrap(True)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setPlaceholderText("Passphrase")
        self.passphrase.setAccessibleName("Passphrase")
        self.passphrase.setAccessibleDescription("The passphrase that opens your history. Enter submits it.")
        self.confirm = QLineEdit()
        self.confirm.setEchoMode(QLineEdit.EchoMode.Password)
        self.confirm.setPlaceholderText("The same passphrase again")
        self.confirm.setAccessibleName("Passphrase again")
        self.confirm.setAccessibleDescription("Type the new passphrase a second time, to be sure it has no typo.")
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b91c1c;")
        self.error.hide()  # shown with something to say, so an empty line never opens a gap
        self.submit_button = QPushButton("Unlock")
        self.submit_button.setDefault(True)
        self.submit_button.setAccessibleName("Unlock")
        self.submit_button.setAccessibleDescription("Opens your history with the passphrase typed above.")
        self.new_button = QPushButton("Start a new history")
        self.new_button.setAccessibleName("Start a new history")
        self.new_button.setAccessibleDescription("Sets the old history file aside, unchanged, and starts an empty one.")
        self.continue_button = QPushButton("Chat without history")
        self.continue_button.setFlat(True)
        self.continue_button.setAccessibleName("Chat without history")
        self.continue_button.setAccessibleDescription("Chat now; nothing you write is saved until the history opens.")

        # A column of readable width, centred; stretches on both sides (not an alignment flag), so the
        # wrapped labels get the height their width needs and nothing is clipped or overlaps.
        box = QWidget()
        box.setMaximumWidth(BOX_WIDTH)
        inner = QVBoxLayout(box)
        inner.setSpacing(10)
        for widget in (self.title, self.message, self.passphrase, self.confirm, self.error):
            inner.addWidget(widget)
        buttons = QHBoxLayout()
        buttons.addWidget(self.continue_button)
        buttons.addStretch(1)
        buttons.addWidget(self.new_button)
        buttons.addWidget(self.submit_button)
        inner.addLayout(buttons)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(box, 100)
        row.addStretch(1)
        column = QWidget()
        outer = QVBoxLayout(column)
        outer.setContentsMargins(16, 16, 16, 16)
        outer.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)
        # On a small or highly scaled screen the page scrolls rather than squeezing its text.
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the fields take focus, not the page
        scroll.setWidget(column)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

        self.submit_button.clicked.connect(self._submit)
        self.passphrase.returnPressed.connect(self._submit)
        self.confirm.returnPressed.connect(self._submit)
        self.new_button.clicked.connect(self.new_history_requested)
        self.continue_button.clicked.connect(self.continue_requested)

    def show_mode(self, mode: LockMode, message: str = "") -> None:
        """Set up the page for `mode`; `message` explains a problem."""
        self.mode = mode
        self.passphrase.clear()
        self.confirm.clear()
        self.error.clear()
        self.error.hide()
        self.submit_button.setEnabled(True)
        asks = mode != LockMode.PROBLEM
        self.passphrase.setVisible(asks)
        self.confirm.setVisible(mode == LockMode.CREATE)
        self.submit_button.setVisible(asks)
        self.new_button.setVisible(mode == LockMode.PROBLEM)
        if mode == LockMode.UNLOCK:
            self.title.setText("Your history is locked")
            self.message.setText(message or "Enter your passphrase to open your conversations.")
            self.submit_button.setText("Unlock")
            self.submit_button.setAccessibleName("Unlock")
            self.submit_button.setAccessibleDescription("Opens your history with the passphrase typed above.")
        elif mode == LockMode.CREATE:
            self.title.setText("Protect your history")
            self.message.setText(
                message
                or "This computer has no system keychain to hold your history's key. Choose a passphrase: "
                "your conversations are encrypted with it, and you will need it each time Tern starts. "
                "It cannot be recovered if you forget it."
            )
            self.submit_button.setText("Create")
            self.submit_button.setAccessibleName("Create passphrase")
            self.submit_button.setAccessibleDescription("Encrypts your new history with the passphrase typed above.")
        else:
            self.title.setText("Your history could not be opened")
            self.message.setText(message)
        if asks:
            self.passphrase.setFocus()

    def show_error(self, text: str) -> None:
        """A wrong passphrase or similar; the fields stay for another try."""
        self.submit_button.setEnabled(True)
        self.error.setText(text)
        self.error.show()
        self.passphrase.selectAll()
        self.passphrase.setFocus()

    def _submit(self) -> None:
        text = self.passphrase.text()
        if self.mode == LockMode.CREATE:
            if len(text) < MIN_PASSPHRASE:
                self.show_error(f"Use at least {MIN_PASSPHRASE} characters.")
                return
            if text != self.confirm.text():
                self.show_error("The two passphrases differ.")
                return
        elif not text:
            return
        self.error.setText("Opening…")
        self.error.show()
        self.submit_button.setEnabled(False)
        self.passphrase_entered.emit(text)


_INPUT = frozenset({QEvent.Type.KeyPress, QEvent.Type.MouseButtonPress, QEvent.Type.MouseMove, QEvent.Type.Wheel})


class IdleWatcher(QObject):
    """Emits `idle` after `minutes` without keyboard or mouse input anywhere in the app."""

    idle = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.idle)

    def set_minutes(self, minutes: float) -> None:
        """Start watching (0: off)."""
        if minutes > 0:
            self._timer.setInterval(int(minutes * 60_000))
            self._timer.start()
        else:
            self._timer.stop()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        """Any input restarts the countdown."""
        if event.type() in _INPUT and self._timer.interval() and self._timer.isActive():
            self._timer.start()
        return False
