"""Asking the user about a tool call: a bar above the composer to allow or refuse it, and the file dialog.

The answer waits on the inference thread while the bar is shown; Stop ends the wait
too (the call is then refused). The bar never takes the keyboard from the composer
on its own, so a user typing is not interrupted; its buttons are reachable with Tab.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from app.core.tools.base import ToolCard

_SHOWN_ARGUMENTS = 200


class PermissionBar(QFrame):
    """ "Allow Read a file to run? …  [Allow] [Don't allow]"."""

    answered = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.allow_button = QPushButton("Allow")
        self.refuse_button = QPushButton("Don't allow")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.refuse_button)
        layout.addWidget(self.allow_button)
        for button, description in (
            (self.allow_button, "Let the model use this tool this time"),
            (self.refuse_button, "Refuse; the model is told, and the answer goes on"),
        ):
            button.setAccessibleName(button.text())
            button.setAccessibleDescription(description)
            button.setToolTip(description)
        self.allow_button.clicked.connect(lambda: self._answer(True))
        self.refuse_button.clicked.connect(lambda: self._answer(False))
        self.setAccessibleName("Tool permission")
        self.hide()

    def ask(self, card: ToolCard) -> None:
        """Show the question for `card`."""
        arguments = card.arguments.replace('<|"|>', '"')
        if len(arguments) > _SHOWN_ARGUMENTS:
            arguments = arguments[: _SHOWN_ARGUMENTS - 1] + "…"
        detail = f" with <tt>{html.escape(arguments)}</tt>" if arguments else ""
        self.label.setText(f"The model wants to use <b>{html.escape(card.label)}</b>{detail}. Allow it?")
        self.allow_button.setAccessibleDescription(f"Let the model use {card.label} this time")
        self.refuse_button.setAccessibleDescription(f"Refuse {card.label}; the model is told, and the answer goes on")
        self.show()

    def cancel(self) -> None:
        """The turn ended while asking: the question goes away unanswered."""
        self.hide()

    def _answer(self, allowed: bool) -> None:
        self.hide()
        self.answered.emit(allowed)


def ask_for_file(parent: QWidget, purpose: str) -> Path | None:
    """The file the user picks for the model to read (None: cancelled)."""
    title = "Choose a file for the model to read" + (f": {purpose}" if purpose else "")
    chosen, _ = QFileDialog.getOpenFileName(parent, title[:200])
    return Path(chosen) if chosen else None
