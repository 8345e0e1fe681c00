"""The line above the composer while a sent message is being edited: "Editing — Esc to cancel"."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget


class EditingBar(QFrame):
    """Says that the composer holds an edit of an earlier message, and offers Cancel."""

    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("editingBar")
        # The theme's own colours, so the bar reads as part of the composer in light and dark themes.
        self.setStyleSheet(
            "#editingBar { background: palette(alternate-base); border: 1px solid palette(highlight);"
            " border-radius: 4px; }"
        )
        self.label = QLabel("<b>Editing</b> — Esc to cancel")
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.hint = QLabel("Sending makes a new version; the one you sent stays (‹ ›)")
        self.hint.setEnabled(False)  # muted
        self.hint.setWordWrap(True)  # a narrow window wraps it rather than growing
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel editing")
        self.cancel_button.setAccessibleDescription("Stop editing; the box gets back what it held before")
        self.cancel_button.setToolTip("Stop editing (Esc)")
        self.cancel_button.clicked.connect(self.cancel_requested)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 2, 4, 2)
        layout.addWidget(self.label)
        layout.addSpacing(12)
        layout.addWidget(self.hint, 1)
        layout.addWidget(self.cancel_button)
        self.setAccessibleName("Editing a message")
        self.setAccessibleDescription("Sending makes a new version of the message; the earlier one is kept")
        self.hide()
