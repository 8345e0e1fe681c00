"""A dismissible line of information above the conversation."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget


class NoticeBar(QWidget):
    """A dismissible line of information above the conversation."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        close = QPushButton("Dismiss")
        close.setFlat(True)
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 8, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.setAutoFillBackground(True)
        self.hide()

    def show_text(self, text: str, warning: bool = False) -> None:
        """Show `text` (plain), in amber when it is a warning."""
        colour = "#fef3c7" if warning else "#e0f2fe"
        self.setStyleSheet(f"NoticeBar {{ background: {colour}; }}")
        self.label.setText(html.escape(text))
        self.show()

    def show_warning(self, text: str) -> None:
        """Show `text` (plain) as a warning."""
        self.show_text(text, warning=True)
