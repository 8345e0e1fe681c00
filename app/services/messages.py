"""The message bridge: the one place where failures and notes from services reach the user.

Services never open dialogs. They report a `UserError` here (through their
host's `failure` signal, or directly); the main window shows what arrives in
its notice bar.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal, Slot

from app.core.errors import UserError


class MessageBridge(QObject):
    """Carries messages for the user from services to whichever widget shows them."""

    message = Signal(str, bool)  # text, is a warning

    @Slot(object)
    def report(self, error: UserError) -> None:
        """Show a failure."""
        self.message.emit(str(error), True)

    def tell(self, text: str) -> None:
        """Show a note (not a failure)."""
        self.message.emit(text, False)
