"""Dismissible lines of information above the conversation: for the whole app, or for one chat.

`NoticeBar` holds what concerns the app (the model, the history). A
`ChatNoticeBar` holds what concerns one conversation, such as files that could
not be attached to it: it shows only while that conversation is open, and
comes back when the user returns to it, until dismissed.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget


class NoticeBar(QWidget):
    """A dismissible line of information above the conversation."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.dismiss_button = QPushButton("Dismiss")
        self.dismiss_button.setFlat(True)
        self.dismiss_button.setAccessibleName("Dismiss notice")
        self.dismiss_button.setAccessibleDescription("Hide the notice above the conversation")
        self.dismiss_button.clicked.connect(self.dismiss)
        self.action_button = QPushButton()  # what the notice suggests doing, when it suggests something
        self.action_button.setAccessibleName("Notice action")
        self.action_button.setAccessibleDescription("Do what the notice above the conversation suggests")
        self.action_button.clicked.connect(self._act)
        self.action_button.hide()
        self._action: Callable[[], object] | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 8, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.dismiss_button, 0, Qt.AlignmentFlag.AlignTop)
        self.setAutoFillBackground(True)
        self.setAccessibleName("Notice")
        self.hide()

    def show_text(
        self, text: str, warning: bool = False, action: tuple[str, Callable[[], object]] | None = None
    ) -> None:
        """Show `text` (plain), in amber when it is a warning, with a button for `action` (label, what it does)."""
        self._action = action[1] if action else None
        self.action_button.setText(action[0] if action else "")
        self.action_button.setAccessibleName(action[0].rstrip("…") if action else "Notice action")
        self.action_button.setVisible(action is not None)
        colour = "#fef3c7" if warning else "#e0f2fe"
        # The label's text colour too: the pale backgrounds stay pale under a dark theme.
        self.setStyleSheet(f"{type(self).__name__} {{ background: {colour}; }} QLabel {{ color: #1f2937; }}")
        self.label.setText(html.escape(text))
        self.label.setAccessibleName(text)
        self.show()

    def show_warning(self, text: str) -> None:
        """Show `text` (plain) as a warning."""
        self.show_text(text, warning=True)

    def dismiss(self) -> None:
        """The user closed the notice."""
        self.hide()

    def _act(self) -> None:
        if self._action is not None:
            self._action()


class ChatNoticeBar(NoticeBar):
    """Notices that belong to one conversation: shown while it is open, kept for when it is opened again."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Notice about this chat")
        self._notices: dict[int, tuple[str, bool]] = {}  # conversation id → (text, warning)
        self._shown: int | None = None  # the open conversation

    def show_for(self, conversation_id: int, text: str, warning: bool = False) -> None:
        """Keep `text` for that conversation, and show it if it is the one open."""
        self._notices[conversation_id] = (text, warning)
        if conversation_id == self._shown:
            self.show_text(text, warning)

    def follow(self, conversation_id: int | None) -> None:
        """Another conversation is open (None: a new chat): show its notice, or none."""
        self._shown = conversation_id
        notice = self._notices.get(conversation_id) if conversation_id is not None else None
        if notice is None:
            self.hide()
        else:
            self.show_text(*notice)

    def notice_for(self, conversation_id: int) -> str:
        """The notice kept for a conversation ("" when none)."""
        return self._notices.get(conversation_id, ("", False))[0]

    def dismiss(self) -> None:
        """The user has read it: it does not come back."""
        if self._shown is not None:
            self._notices.pop(self._shown, None)
        self.hide()
