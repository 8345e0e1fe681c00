"""The message under the keyboard: real, selectable text laid over the conversation's current row.

The conversation view paints every message itself, which keeps long chats
fast, but painted text cannot be selected, copied in part, or tabbed through.
So the view lays one read-only `QTextBrowser` over its current message. It
shows the very `QTextDocument` the delegate painted there (same layout, no
second rendering), so the text does not move when the reader takes over.
One reader moves from message to message rather than one editor per row: the
keyboard focus stays in one widget as Up and Down walk the conversation.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QPointF, QRect, Qt, Signal
from PySide6.QtGui import (
    QContextMenuEvent,
    QFocusEvent,
    QKeyEvent,
    QKeySequence,
    QTextCursor,
    QTextDocument,
    QTextOption,
    QWheelEvent,
)
from PySide6.QtWidgets import QApplication, QFrame, QTextBrowser, QWidget

WRAP = QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere  # long words and URLs break instead of running off
DESCRIPTION = (
    "Up and Down move between messages. Shift with the arrow keys selects text, Ctrl+C copies the selection "
    "or the whole message. Tab moves through links such as Copy on a code block; Enter follows one. "
    "Alt+Left and Alt+Right show other versions. The menu key or Shift+F10 lists the message's actions."
)


class MessageReader(QTextBrowser):
    """Read-only text of one message: select, copy, follow links, and keys that act on the message."""

    link_activated = Signal(str)  # an internal link (copy:N, version:±1, source:N, show-sources:all)
    move_requested = Signal(int)  # -1: the message above, +1: the one below
    page_requested = Signal(int)  # scroll the conversation a page up (-1) or down (+1)
    version_requested = Signal(int)  # -1: previous version, +1: next version
    copy_message_requested = Signal()  # Ctrl+C with nothing selected
    actions_requested = Signal(QPoint)  # the message's menu, at this global position
    focus_changed = Signal(bool)

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # it is as tall as its message
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)  # long code lines
        self.setWordWrapMode(WRAP)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
            | Qt.TextInteractionFlag.LinksAccessibleByMouse
            | Qt.TextInteractionFlag.LinksAccessibleByKeyboard
        )
        self.setAutoFillBackground(False)
        self.viewport().setAutoFillBackground(False)  # the bubble painted below shows through
        self.setAccessibleName("Message")
        self.setAccessibleDescription(DESCRIPTION)
        self.anchorClicked.connect(lambda url: self.link_activated.emit(url.toString()))
        self._document: QTextDocument | None = None  # held here too: the delegate's cache may drop it
        self._blank = QTextDocument()  # shown while the reader moves; not its child, so Qt never deletes it

    def show_document(self, document: QTextDocument, rect: QRect) -> None:
        """Show `document` (the delegate's, laid out at `rect`'s width) at `rect`; a new one starts unselected."""
        if document is self._document:
            self.setGeometry(rect)
            return
        # A resize lays out the document shown: the previous message's must not be laid out at this width.
        self.setDocument(self._blank)
        self.setGeometry(rect)
        self._document = document
        self.setDocument(document)
        self.setTextCursor(QTextCursor(document))
        self.horizontalScrollBar().setValue(0)

    def selected_text(self) -> str:
        """The selected text as plain text ("" when nothing is selected)."""
        return self.textCursor().selection().toPlainText()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        """Keys for the message as a whole; the rest select and follow links as in any text viewer."""
        key, mods = event.key(), event.modifiers()
        plain = mods in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier)
        if plain and key in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            self.move_requested.emit(-1 if key == Qt.Key.Key_Up else 1)
        elif plain and key in (Qt.Key.Key_PageUp, Qt.Key.Key_PageDown):
            self.page_requested.emit(-1 if key == Qt.Key.Key_PageUp else 1)
        elif mods == Qt.KeyboardModifier.AltModifier and key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            self.version_requested.emit(-1 if key == Qt.Key.Key_Left else 1)
        elif event.matches(QKeySequence.StandardKey.ZoomIn) or event.matches(QKeySequence.StandardKey.ZoomOut):
            event.ignore()  # zooming would change the font of the document the conversation shares
            return
        elif event.matches(QKeySequence.StandardKey.Copy) and not self.textCursor().hasSelection():
            self.copy_message_requested.emit()
        elif (key == Qt.Key.Key_F10 and mods == Qt.KeyboardModifier.ShiftModifier) or (
            plain and key == Qt.Key.Key_Menu
        ):
            self._request_actions(self._menu_position())
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        """Up and down scroll the conversation (the reader is as tall as its message); sideways scrolls the reader."""
        delta = event.angleDelta()
        conversation = self.parentWidget()
        if abs(delta.y()) >= abs(delta.x()) and conversation is not None:
            at = QPointF(self.viewport().mapTo(conversation, event.position().toPoint()))
            QApplication.sendEvent(
                conversation,
                QWheelEvent(
                    at,
                    event.globalPosition(),
                    event.pixelDelta(),
                    delta,
                    event.buttons(),
                    event.modifiers(),
                    event.phase(),
                    event.inverted(),
                ),
            )
            event.accept()
            return
        super().wheelEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802
        """The message's actions, by mouse or by the menu key."""
        keyboard = event.reason() == QContextMenuEvent.Reason.Keyboard
        self._request_actions(self._menu_position() if keyboard else event.globalPos())
        event.accept()

    def _request_actions(self, at: QPoint) -> None:
        # Some platforms send both a menu key press and a context menu event for one key: one menu.
        if QApplication.activePopupWidget() is None:
            self.actions_requested.emit(at)

    def _menu_position(self) -> QPoint:
        """Under the caret when it is on screen, else the reader's top left corner."""
        caret = self.cursorRect().bottomLeft()
        spot = caret if self.viewport().rect().contains(caret) else QPoint(0, 0)
        return self.viewport().mapToGlobal(spot)

    def focusInEvent(self, event: QFocusEvent) -> None:  # noqa: N802
        """The view draws a focus frame around the message."""
        super().focusInEvent(event)
        self.focus_changed.emit(True)

    def focusOutEvent(self, event: QFocusEvent) -> None:  # noqa: N802
        """The focus frame goes."""
        super().focusOutEvent(event)
        self.focus_changed.emit(False)
