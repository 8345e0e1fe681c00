"""The conversation sidebar: new chat, search, and conversations grouped by when they were last used.

One list shows either the conversations (under Pinned / Today / This week /
Older headers) or, while the search box has text, the search hits with their
highlighted snippets. Deleting shows an Undo bar for a few seconds before the
deletion becomes final.
"""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QFont, QKeyEvent, QPainter, QPalette, QTextDocument
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app.core.store.conversation_store import HIGHLIGHT_END, HIGHLIGHT_START, ConversationSummary, SearchHit

Index = QModelIndex | QPersistentModelIndex
UNDO_SECONDS = 8
MIN_WIDTH = 160  # px: titles are elided; leaves the chat room on a small or highly scaled screen
DAY = 86_400


def group_of(summary: ConversationSummary, now: float) -> str:
    """The sidebar heading a conversation goes under."""
    if summary.pinned:
        return "Pinned"
    midnight = time.mktime((*time.localtime(now)[:3], 0, 0, 0, 0, 0, -1))
    if summary.updated_at >= midnight:
        return "Today"
    if summary.updated_at >= midnight - 6 * DAY:
        return "This week"
    return "Older"


MATCH_STYLE = "background-color:#fde68a; color:#111827;"  # matched words, as a highlighter pen would mark them


def snippet_html(snippet: str) -> str:
    """A search snippet with its matched words highlighted."""
    plain = re.sub(r"\*\*|__|`|^#+ ", "", snippet.replace("\n", " "))  # Markdown marks are noise here
    escaped = html.escape(plain)
    return escaped.replace(HIGHLIGHT_START, f'<span style="{MATCH_STYLE}">').replace(HIGHLIGHT_END, "</span>")


class Kind(IntEnum):
    """What a sidebar row is."""

    HEADER = 0
    CONVERSATION = 1
    HIT = 2


@dataclass(frozen=True)
class Row:
    """One line of the sidebar."""

    kind: Kind
    title: str
    conversation_id: int = 0
    message_id: int | None = None
    snippet: str = ""  # HTML, for hits: the matching passage, or the highlighted title for a title match
    pinned: bool = False


class SidebarRole(IntEnum):
    """Item data roles."""

    KIND = Qt.ItemDataRole.UserRole + 1
    CONVERSATION_ID = Qt.ItemDataRole.UserRole + 2
    MESSAGE_ID = Qt.ItemDataRole.UserRole + 3
    SNIPPET = Qt.ItemDataRole.UserRole + 4
    PINNED = Qt.ItemDataRole.UserRole + 5


class SidebarModel(QAbstractListModel):
    """Rows of the sidebar; conversation titles are editable (rename)."""

    renamed = Signal(int, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[Row] = []

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802
        """Number of rows."""
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Role data of a row."""
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        row = self.rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
            return row.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.title if row.kind == Kind.CONVERSATION else None
        return {
            SidebarRole.KIND: row.kind,
            SidebarRole.CONVERSATION_ID: row.conversation_id,
            SidebarRole.MESSAGE_ID: row.message_id,
            SidebarRole.SNIPPET: row.snippet,
            SidebarRole.PINNED: row.pinned,
        }.get(role)  # type: ignore[call-overload]

    def flags(self, index: Index) -> Qt.ItemFlag:
        """Headers are inert; conversations can be renamed in place."""
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        kind = self.rows[index.row()].kind
        if kind == Kind.HEADER:
            return Qt.ItemFlag.ItemIsEnabled
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        return flags | Qt.ItemFlag.ItemIsEditable if kind == Kind.CONVERSATION else flags

    def setData(self, index: Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        """A rename typed in place."""
        title = str(value).strip()
        if role != Qt.ItemDataRole.EditRole or not index.isValid() or not title:
            return False
        row = self.rows[index.row()]
        self.rows[index.row()] = Row(row.kind, title, row.conversation_id, pinned=row.pinned)
        self.dataChanged.emit(index, index)
        self.renamed.emit(row.conversation_id, title)
        return True

    def set_rows(self, rows: list[Row]) -> None:
        """Replace every row."""
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def row_of(self, conversation_id: int) -> int:
        """The row of a conversation, or -1."""
        return next(
            (
                i
                for i, r in enumerate(self.rows)
                if r.kind == Kind.CONVERSATION and r.conversation_id == conversation_id
            ),
            -1,
        )


class SidebarDelegate(QStyledItemDelegate):
    """Headers in small grey capitals, conversations on one line, hits with a two-line snippet."""

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:  # noqa: N802
        """Fixed heights per kind, so ten thousand rows lay out at once."""
        line = option.fontMetrics.height()
        kind = index.data(SidebarRole.KIND)
        height = {
            Kind.HEADER: line + 14,
            Kind.CONVERSATION: line + 16,
            Kind.HIT: 3 * option.fontMetrics.lineSpacing() + 14,
        }[kind]
        return QSize(1, height)  # as wide as the list: titles are elided, never scrolled sideways

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        """Paint one row."""
        kind = index.data(SidebarRole.KIND)
        rect = option.rect.adjusted(10, 0, -8, 0)
        palette = option.palette
        painter.save()
        if kind == Kind.HEADER:
            font = QFont(option.font)
            font.setPointSizeF(font.pointSizeF() * 0.85)
            font.setBold(True)
            painter.setFont(font)
            painter.setPen(palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
            painter.drawText(rect.adjusted(0, 6, 0, 0), Qt.AlignmentFlag.AlignVCenter, index.data().upper())
            painter.restore()
            return
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        if selected or hovered:
            colour = palette.color(QPalette.ColorRole.Highlight)
            colour.setAlpha(70 if selected else 28)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colour)
            painter.drawRoundedRect(option.rect.adjusted(4, 1, -4, -1), 6, 6)
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        title = index.data() or "New chat"
        if kind == Kind.CONVERSATION:
            elided = option.fontMetrics.elidedText(title, Qt.TextElideMode.ElideRight, rect.width())
            painter.drawText(rect, Qt.AlignmentFlag.AlignVCenter, elided)
        else:
            dark = palette.color(QPalette.ColorRole.Base).lightness() < 128
            muted = "#9aa3b2" if dark else "#6b7280"
            doc = QTextDocument()
            doc.setDocumentMargin(0)
            doc.setDefaultFont(option.font)
            doc.setHtml(
                f"<div><b>{html.escape(title)}</b></div>"
                f'<div style="color:{muted};">{index.data(SidebarRole.SNIPPET)}</div>'
            )
            doc.setTextWidth(rect.width())
            line = option.fontMetrics.lineSpacing()
            painter.translate(rect.left(), rect.top() + 6)
            painter.setClipRect(0, 0, rect.width(), 3 * line)  # the title and two lines of the passage
            doc.drawContents(painter)
        painter.restore()


class Sidebar(QWidget):
    """New chat button, search box, the list, and an Undo bar after a delete."""

    new_chat_requested = Signal()
    conversation_selected = Signal(int, object)  # conversation id, message id to show (or None)
    rename_requested = Signal(int, str)
    pin_requested = Signal(int, bool)
    delete_requested = Signal(int)
    undo_requested = Signal(list)  # ids to restore
    purge_requested = Signal()
    export_requested = Signal(int, str)  # conversation id, "markdown" | "json"
    search_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.new_button = QPushButton("New chat")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setAccessibleDescription("Start an empty conversation (Ctrl+N).")
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search conversations")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search conversations")
        self.search.setAccessibleDescription(
            "Type words to find them in every conversation; the list below shows the matches. Esc clears it."
        )
        self.search.installEventFilter(self)
        self.model = SidebarModel(self)
        self.list = QListView()
        self.list.setModel(self.model)
        self.list.setItemDelegate(SidebarDelegate(self.list))
        self.list.setMouseTracking(True)
        self.list.setFrameShape(QListView.Shape.NoFrame)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.setAccessibleName("Conversations")
        self.list.setAccessibleDescription(
            "Your conversations, most recent first. Enter opens one, F2 renames it, Delete deletes it."
        )
        self.list.installEventFilter(self)
        self.empty_label = QLabel()
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setEnabled(False)
        self.undo_label = QLabel()
        self.undo_button = QPushButton("Undo")
        self.undo_button.setAccessibleName("Undo delete")
        self.undo_button.setAccessibleDescription("Bring back the conversations just deleted.")
        undo_bar = QWidget()
        undo_layout = QHBoxLayout(undo_bar)
        undo_layout.setContentsMargins(8, 4, 8, 4)
        undo_layout.addWidget(self.undo_label, 1)
        undo_layout.addWidget(self.undo_button)
        self.undo_bar = undo_bar
        undo_bar.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 8, 0, 6)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.empty_label)
        layout.addWidget(undo_bar)
        self.setMinimumWidth(MIN_WIDTH)

        self._conversations: list[ConversationSummary] = []
        self._current: int | None = None
        self._deleted: list[int] = []
        self._searching_for: str | None = None  # the query in flight; one at a time, the latest text wins
        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.setInterval(UNDO_SECONDS * 1000)
        self._undo_timer.timeout.connect(self.finish_deletions)

        self.new_button.clicked.connect(self.new_chat_requested)
        self.search.textChanged.connect(self._search_edited)
        self.list.clicked.connect(self._activated)
        self.list.activated.connect(self._activated)
        self.list.customContextMenuRequested.connect(self._menu)
        self.model.renamed.connect(self.rename_requested)
        self.undo_button.clicked.connect(self._undo)

    # Keyboard
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        """Esc clears the search; Delete and F2 delete and rename the selected conversation."""
        if event.type() not in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) or not isinstance(event, QKeyEvent):
            return False
        key = event.key()
        if watched is self.search and key == Qt.Key.Key_Escape and self.search.text():
            # Claimed before the window's Esc (Stop an answer) sees it: here Esc means "clear what I typed".
            if event.type() == QEvent.Type.KeyPress:
                self.search.clear()
            event.accept()
            return True
        if watched is self.list and event.type() == QEvent.Type.KeyPress and not event.modifiers():
            if key == Qt.Key.Key_Delete:
                return self._delete_current()
            if key == Qt.Key.Key_F2:
                return self._rename_current()
        return False

    def _current_conversation(self) -> QModelIndex | None:
        index = self.list.currentIndex()
        return index if index.isValid() and index.data(SidebarRole.KIND) == Kind.CONVERSATION else None

    def _delete_current(self) -> bool:
        index = self._current_conversation()
        if index is None:
            return False
        self.delete(index.data(SidebarRole.CONVERSATION_ID))
        return True

    def _rename_current(self) -> bool:
        index = self._current_conversation()
        if index is None:
            return False
        self.list.edit(index)
        return True

    # Contents
    @property
    def searching(self) -> bool:
        """True while the list shows search hits."""
        return bool(self.search.text().strip())

    def set_conversations(self, conversations: list[ConversationSummary], now: float | None = None) -> None:
        """Show the conversation list (unless a search is showing)."""
        self._conversations = conversations
        if self.searching:
            return
        now = time.time() if now is None else now
        rows: list[Row] = []
        heading = ""
        for c in conversations:
            group = group_of(c, now)
            if group != heading:
                rows.append(Row(Kind.HEADER, group))
                heading = group
            rows.append(Row(Kind.CONVERSATION, c.title or "New chat", c.id, pinned=c.pinned))
        self.model.set_rows(rows)
        self.empty_label.setText("Your conversations will appear here." if not rows else "")
        self.empty_label.setVisible(not rows)
        self.set_current(self._current)

    def set_search_results(self, text: str, hits: list[SearchHit]) -> None:
        """Show hits for `text`, if it is still what the search box says (else search for that)."""
        self._searching_for = None
        if text != self.search.text().strip():
            self._emit_search()
            return
        rows = [
            Row(
                Kind.HIT,
                h.title or "New chat",
                h.conversation_id,
                h.message_id,
                snippet_html(h.snippet) if h.message_id is not None else "Title: " + snippet_html(h.snippet),
            )
            for h in hits
        ]
        self.model.set_rows(rows)
        self.empty_label.setText(f"Nothing matches “{text}”." if not rows else "")
        self.empty_label.setVisible(not rows)

    def set_current(self, conversation_id: int | None) -> None:
        """Highlight the open conversation."""
        self._current = conversation_id
        row = self.model.row_of(conversation_id) if conversation_id is not None else -1
        if self.searching:
            return
        if row < 0:
            self.list.clearSelection()
        else:
            self.list.setCurrentIndex(self.model.index(row))

    # Search
    def _search_edited(self, text: str) -> None:
        if text.strip():
            if self._searching_for is None:  # else the answer to the query in flight asks again
                self._emit_search()
        else:
            self.set_conversations(self._conversations)

    def _emit_search(self) -> None:
        if self.searching:
            self._searching_for = self.search.text().strip()
            self.search_requested.emit(self._searching_for)

    # Actions
    def _activated(self, index: QModelIndex) -> None:
        kind = index.data(SidebarRole.KIND)
        if kind in (Kind.CONVERSATION, Kind.HIT):
            self.conversation_selected.emit(index.data(SidebarRole.CONVERSATION_ID), index.data(SidebarRole.MESSAGE_ID))

    def _menu(self, pos: QPoint) -> None:
        index = self.list.indexAt(pos)
        if index.data(SidebarRole.KIND) != Kind.CONVERSATION:
            return
        cid = index.data(SidebarRole.CONVERSATION_ID)
        pinned = bool(index.data(SidebarRole.PINNED))
        menu = QMenu(self)
        entries: list[tuple[str, Any]] = [
            ("Rename\tF2", lambda: self.list.edit(index)),
            ("Unpin" if pinned else "Pin", lambda: self.pin_requested.emit(cid, not pinned)),
            ("Export as Markdown…", lambda: self.export_requested.emit(cid, "markdown")),
            ("Export as JSON…", lambda: self.export_requested.emit(cid, "json")),
            ("Delete\tDel", lambda: self.delete(cid)),
        ]
        for text, slot in entries:
            action = QAction(text, menu)
            action.triggered.connect(slot)
            menu.addAction(action)
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def delete(self, conversation_id: int) -> None:
        """Delete with an Undo bar; it becomes final when the bar goes."""
        title = next((c.title for c in self._conversations if c.id == conversation_id), "")
        self._deleted.append(conversation_id)
        self.delete_requested.emit(conversation_id)
        count = len(self._deleted)
        self.undo_label.setText(f"Deleted “{title or 'New chat'}”" if count == 1 else f"Deleted {count} conversations")
        self.undo_bar.show()
        self._undo_timer.start()

    def _undo(self) -> None:
        ids, self._deleted = self._deleted, []
        self._undo_timer.stop()
        self.undo_bar.hide()
        self.undo_requested.emit(ids)

    def finish_deletions(self) -> None:
        """Make pending deletions final now."""
        self._undo_timer.stop()
        self.undo_bar.hide()
        if self._deleted:
            self._deleted = []
            self.purge_requested.emit()
