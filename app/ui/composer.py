"""The message composer: Enter sends, Shift+Enter adds a line, it grows with its text."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QEvent, QIODevice, QMimeData, Qt, Signal
from PySide6.QtGui import QImage, QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit, QWidget

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})

_MAX_LINES = 8


class Composer(QPlainTextEdit):
    """Stays editable while an answer streams, so the next message can be written."""

    submitted = Signal(str)
    recall_requested = Signal()  # Up in an empty composer: edit the last message
    cancel_requested = Signal()  # Esc while a message is being edited
    images_given = Signal(list)  # pasted images: Paths of image files, or (encoded bytes, name)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Message Tern — Enter to send, Shift+Enter for a new line")
        self.setTabChangesFocus(True)
        self.setAccessibleName("Message")
        self.setAccessibleDescription(
            "Write to the assistant. Enter sends, Shift+Enter starts a new line, "
            "and Up in an empty box edits your last message."
        )
        self.editing = False  # while True, Esc cancels the edit instead of stopping an answer
        self.sends_empty = False  # Enter sends without text (images are waiting)
        self.document().contentsChanged.connect(self._fit_height)
        self._fit_height()

    def _fit_height(self) -> None:
        line = self.fontMetrics().lineSpacing()
        lines = max(1, min(_MAX_LINES, int(self.document().size().height())))
        margins = self.contentsMargins().top() + self.contentsMargins().bottom()
        self.setFixedHeight(int(lines * line + 2 * self.document().documentMargin() + margins + 4))

    def event(self, event: QEvent) -> bool:
        """While editing, Esc belongs to the composer rather than to the window's Stop shortcut."""
        if (
            self.editing
            and event.type() == QEvent.Type.ShortcutOverride
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Escape
        ):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        """Enter submits; Shift+Enter inserts a newline; Esc cancels an edit."""
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            event.modifiers() & Qt.KeyboardModifier.ShiftModifier
        ):
            self.submit()
            return
        if event.key() == Qt.Key.Key_Up and not self.toPlainText():
            self.recall_requested.emit()
            return
        if event.key() == Qt.Key.Key_Escape and self.editing:
            self.cancel_requested.emit()
            return
        super().keyPressEvent(event)

    def submit(self) -> None:
        """Offer the text; the window clears the composer when it accepts it."""
        text = self.toPlainText().strip()
        if text or self.sends_empty:
            self.submitted.emit(text)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:  # noqa: N802
        """Images can be pasted too."""
        return source.hasImage() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:  # noqa: N802
        """A pasted image (or image file) waits above the composer; anything else is pasted as text."""
        files = [Path(u.toLocalFile()) for u in source.urls() if u.isLocalFile()]
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        if images and len(images) == len(files):
            self.images_given.emit(images)
            return
        if source.hasImage() and not source.hasText():
            picture = source.imageData()
            if isinstance(picture, QImage) and not picture.isNull():
                # In memory: a pasted picture never touches the disk. BMP costs no compression here; the
                # image reader turns it into what Tern keeps.
                buffer = QBuffer()
                buffer.open(QIODevice.OpenModeFlag.WriteOnly)
                picture.save(buffer, "BMP")  # type: ignore[call-overload]  # the str form is the one that works
                self.images_given.emit([(bytes(buffer.data().data()), "Pasted image")])
                return
        super().insertFromMimeData(source)
