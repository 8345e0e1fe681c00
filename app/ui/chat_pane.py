"""The open conversation's pane: notices, the messages, the composer, and Send/Stop and Regenerate.

It drives the `ChatSession` (send, stop, regenerate, edit) and follows its
state; the status line belongs to the window and is passed in.
"""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app import APP_NAME
from app.ui.chat_session import ChatSession
from app.ui.composer import Composer
from app.ui.conversation_view import ConversationView
from app.ui.notice_bar import NoticeBar

PLACEHOLDER = (
    f'<h2 align="center">{APP_NAME}</h2>'
    '<p align="center">A private assistant that runs entirely on this computer. Nothing you type leaves it.</p>'
)


class ChatPane(QWidget):
    """The messages above, the composer and its buttons below."""

    def __init__(self, session: ChatSession, status: QLabel) -> None:
        super().__init__()
        self._session = session
        self._status = status
        self.view = ConversationView()
        self.view.setModel(session.model)
        self.view.placeholder_html = PLACEHOLDER
        self.notice = NoticeBar()
        self.composer = Composer()
        self.send_button = QPushButton("Send")
        self.send_button.setMinimumWidth(80)
        self.regenerate_button = QPushButton("Regenerate")
        self.regenerate_button.setEnabled(False)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.regenerate_button)
        buttons.addStretch(1)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(10, 0, 10, 0)
        bottom.addWidget(self.composer, 1)
        bottom.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 8)
        layout.addWidget(self.notice)
        layout.addWidget(self.view, 1)
        layout.addLayout(bottom)

        self.composer.submitted.connect(self.send)
        self.composer.recall_requested.connect(self._recall_last)
        self.send_button.clicked.connect(self._send_or_stop)
        self.regenerate_button.clicked.connect(self.regenerate)
        self.view.edit_requested.connect(self.edit)
        self.view.regenerate_requested.connect(self.regenerate)
        self.view.delegate.copied.connect(lambda _t: status.setText("Code copied"))
        self.view.delegate.version_requested.connect(session.switch_version)
        session.busy_changed.connect(self._set_busy)
        session.status.connect(status.setText)
        session.message_shown.connect(self._scroll_to_row)

    def send(self, text: str) -> bool:
        """Add the user's message and ask for an answer; False (text kept) while one streams."""
        if not self._session.send(text):
            return False
        self.composer.clear()
        self.view.scroll_to_end()
        return True

    def regenerate(self) -> None:
        """A new version of the last answer; the old one stays as a version."""
        self._session.regenerate()
        self.view.scroll_to_end()

    def edit(self, row: int) -> None:
        """Put a user message back in the composer; sending it makes a new version."""
        text = self._session.edit(row)
        if text:
            self.composer.setPlainText(text)
            self.composer.setFocus()

    def _send_or_stop(self) -> None:
        if self._session.busy:
            self._session.stop()
        else:
            self.composer.submit()

    def _set_busy(self, busy: bool) -> None:
        self.send_button.setText("Stop" if busy else "Send")
        model = self._session.model
        last = model.rowCount() - 1
        self.regenerate_button.setEnabled(not busy and last >= 0 and model.item(last).role == "assistant")
        if busy:
            self._status.setText("Generating…")

    def _recall_last(self) -> None:
        model = self._session.model
        for row in range(model.rowCount() - 1, -1, -1):
            if model.item(row).role == "user":
                self.edit(row)
                return

    def _scroll_to_row(self, row: int) -> None:
        if row >= self._session.model.rowCount() - 1:
            self.view.scroll_to_end()
        elif row >= 0:
            self.view.scroll_to_row(row)
