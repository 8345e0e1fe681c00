"""The conversation as a Qt item model, and the buffer that feeds it streamed text.

Only the GUI thread touches the model. Streamed pieces arrive as queued
signals; `StreamBuffer` collects them and applies them every ~30 ms with one
`dataChanged` for the text role, so a fast model never floods the view.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from PySide6.QtCore import QAbstractListModel, QByteArray, QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer

from app.core.chat.image import StoredImage
from app.core.chat.message import ChatMessage, Given, Role
from app.core.docs.grounding import Source
from app.core.engine.generation import GenerationStats
from app.core.store.ref import Ref
from app.core.tools.base import ToolCard

_ids = itertools.count(1)
Index = QModelIndex | QPersistentModelIndex


class MessageRole(IntEnum):
    """Item data roles of `MessageListModel`."""

    ROLE = Qt.ItemDataRole.UserRole + 1  # "user" / "assistant"
    TEXT = Qt.ItemDataRole.UserRole + 2
    STREAMING = Qt.ItemDataRole.UserRole + 3
    STATS = Qt.ItemDataRole.UserRole + 4  # GenerationStats | None
    NOTICE = Qt.ItemDataRole.UserRole + 5  # a note under the message (trimmed history, stopped, error)
    MESSAGE_ID = Qt.ItemDataRole.UserRole + 6
    VERSIONS = Qt.ItemDataRole.UserRole + 7  # (position, count) among the message's versions
    SOURCES = Qt.ItemDataRole.UserRole + 8  # tuple[Source, ...]
    CITED = Qt.ItemDataRole.UserRole + 9  # tuple[int, ...]: the source numbers the answer cites


@dataclass
class ChatItem:
    """One row."""

    role: Role
    text: str = ""
    streaming: bool = False
    stats: GenerationStats | None = None
    notice: str = ""
    model: str = ""  # the model that wrote an answer
    sources: tuple[Source, ...] = ()  # numbered passages from attached documents the answer was given
    sources_mode: str = ""  # how: "whole" (every document) or "retrieval" (passages); "" for none
    progress: str = ""  # while a long prompt is read, before the first word: how far it is
    cited: tuple[int, ...] = ()  # the numbers of the sources the answer cites, listed first
    all_sources_shown: bool = False  # the sources it did not cite are listed too
    id: int = field(default_factory=lambda: next(_ids))
    version: int = 0  # bumped on every change, so views can cache by (id, version)
    store: Ref = field(default_factory=Ref)  # filled in by the history's thread when saved; compared by identity
    saved_id: int | None = None  # the message's id in the history, as the GUI thread has heard it
    versions: tuple[int, ...] = ()  # ids of this message's other versions (edits, regenerations), itself included
    thinking: str = ""  # the model's thought before (or between) its answer, kept apart from the text
    thinking_ms: float = 0.0  # how long it thought
    thinking_shown: bool = False  # the thought is expanded
    tools: tuple[ToolCard, ...] = ()  # the tool calls the answer made, in order
    tools_shown: frozenset[str] = frozenset()  # ids of the expanded tool cards
    # A question's images: their thumbnails always; their data only for images sent in this session
    # (those of a stored chat are read from the history when needed).
    images: tuple[StoredImage, ...] = ()

    @property
    def version_position(self) -> int:
        """1-based position of this version among `versions` (0 when unknown)."""
        return self.versions.index(self.saved_id) + 1 if self.saved_id in self.versions else 0


class MessageListModel(QAbstractListModel):
    """Messages of the open conversation, oldest first."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._items: list[ChatItem] = []

    # Qt interface
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008, N802
        """Number of messages (0 under any valid parent: this is a flat list)."""
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        """Role data of one message."""
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, MessageRole.TEXT):
            return item.text
        if role == Qt.ItemDataRole.ToolTipRole:
            return None
        return {
            MessageRole.ROLE: item.role,
            MessageRole.STREAMING: item.streaming,
            MessageRole.STATS: item.stats,
            MessageRole.NOTICE: item.notice,
            MessageRole.MESSAGE_ID: item.id,
            MessageRole.VERSIONS: (item.version_position, len(item.versions)),
            MessageRole.SOURCES: item.sources,
            MessageRole.CITED: item.cited,
        }.get(role)  # type: ignore[call-overload]

    def roleNames(self) -> dict[int, QByteArray]:  # noqa: N802
        """Role names, for QML and debugging."""
        names = dict(super().roleNames())
        names.update({r.value: QByteArray(r.name.lower().encode()) for r in MessageRole})
        return names

    # Edits (GUI thread only)
    def item(self, row: int) -> ChatItem:
        """The message at `row`."""
        return self._items[row]

    def append(self, role: Role, text: str = "", streaming: bool = False) -> int:
        """Add a message at the end; returns its row."""
        return self.extend([ChatItem(role, text, streaming)])

    def extend(self, items: list[ChatItem]) -> int:
        """Add messages at the end; returns the row of the last."""
        row = len(self._items)
        if items:
            self.beginInsertRows(QModelIndex(), row, row + len(items) - 1)
            self._items.extend(items)
            self.endInsertRows()
        return len(self._items) - 1

    def refs(self, upto: int) -> list[Ref]:
        """The store ids of the messages before row `upto`."""
        return [item.store for item in self._items[:upto]]

    def row_of(self, ref: Ref) -> int:
        """The row of the message saved as `ref`, or -1."""
        return next((row for row, item in enumerate(self._items) if item.store is ref), -1)

    def set_sources(self, row: int, sources: tuple[Source, ...], notice: str, mode: str = "retrieval") -> None:
        """Attach the sources an answer is being given (and a note, e.g. files not read yet), and how."""
        self._items[row].sources, self._items[row].notice = sources, notice
        self._items[row].sources_mode = mode
        self._changed(row, MessageRole.SOURCES, MessageRole.NOTICE)

    def set_progress(self, row: int, progress: str) -> None:
        """Say how far the reading of a long prompt is, in place of the answer until its first word."""
        self._items[row].progress = progress
        self._changed(row, Qt.ItemDataRole.DisplayRole)

    def set_cited(self, row: int, cited: tuple[int, ...]) -> None:
        """Record which sources the finished answer cites (they are listed first)."""
        self._items[row].cited = tuple(cited)
        self._changed(row, MessageRole.CITED)

    def show_all_sources(self, row: int, shown: bool) -> None:
        """List every source of the answer at `row`, or only those it cites."""
        self._items[row].all_sources_shown = shown
        self._changed(row, MessageRole.SOURCES)

    def set_saved(self, row: int, message_id: int, versions: tuple[int, ...]) -> None:
        """The message at `row` was saved as `message_id`, one of `versions`."""
        self._items[row].saved_id = message_id
        self.set_versions(row, versions)

    def set_versions(self, row: int, versions: tuple[int, ...]) -> None:
        """Record a message's versions (its switcher shows "2/3")."""
        self._items[row].versions = versions
        self._changed(row, MessageRole.VERSIONS)

    def _changed(self, row: int, *roles: int) -> None:
        self._items[row].version += 1
        index = self.index(row)
        self.dataChanged.emit(index, index, list(roles))

    def append_thought(self, row: int, text: str) -> None:
        """Extend an answer's thought (streaming)."""
        self._items[row].thinking += text
        self._changed(row, Qt.ItemDataRole.DisplayRole)

    def set_thinking_time(self, row: int, ms: float) -> None:
        """How long the answer thought."""
        self._items[row].thinking_ms = ms
        self._changed(row, Qt.ItemDataRole.DisplayRole)

    def set_tool(self, row: int, card: ToolCard) -> None:
        """Add a tool call's card to an answer, or update it."""
        item = self._items[row]
        cards = list(item.tools)
        at = next((i for i, c in enumerate(cards) if c.id == card.id), None)
        if at is None:
            cards.append(card)
        else:
            cards[at] = card
        item.tools = tuple(cards)
        self._changed(row, Qt.ItemDataRole.DisplayRole)

    def toggle_thinking(self, row: int) -> None:
        """Expand or collapse an answer's thought."""
        self._items[row].thinking_shown = not self._items[row].thinking_shown
        self._changed(row, Qt.ItemDataRole.DisplayRole)

    def toggle_tool(self, row: int, card_id: str) -> None:
        """Expand or collapse one tool card."""
        item = self._items[row]
        item.tools_shown = item.tools_shown ^ {card_id}
        self._changed(row, Qt.ItemDataRole.DisplayRole)

    def append_text(self, row: int, text: str) -> None:
        """Extend a message's text (streaming)."""
        self._items[row].text += text
        self._changed(row, MessageRole.TEXT, Qt.ItemDataRole.DisplayRole)

    def finish(self, row: int, stats: GenerationStats | None = None, notice: str = "") -> None:
        """Mark a streamed message complete."""
        item = self._items[row]
        item.streaming = False
        item.stats = stats
        item.notice = notice
        self._changed(row, MessageRole.STREAMING, MessageRole.STATS, MessageRole.NOTICE)

    def reset_message(self, row: int, store: Ref, model: str) -> None:
        """Clear an answer so a new version can be generated (by `model`, saved as `store`)."""
        item = self._items[row]
        item.text, item.streaming, item.stats, item.notice, item.store, item.model = "", True, None, "", store, model
        item.progress = ""
        item.thinking, item.thinking_ms, item.thinking_shown = "", 0.0, False
        item.tools, item.tools_shown = (), frozenset()
        item.sources, item.cited, item.all_sources_shown, item.saved_id = (), (), False, None
        item.sources_mode = ""
        self._changed(
            row,
            MessageRole.TEXT,
            Qt.ItemDataRole.DisplayRole,
            MessageRole.STREAMING,
            MessageRole.STATS,
            MessageRole.NOTICE,
            MessageRole.VERSIONS,
            MessageRole.SOURCES,
            MessageRole.CITED,
        )

    def truncate(self, row: int) -> None:
        """Remove `row` and everything after it."""
        if row >= len(self._items):
            return
        self.beginRemoveRows(QModelIndex(), row, len(self._items) - 1)
        del self._items[row:]
        self.endRemoveRows()

    def clear(self) -> None:
        """Remove every message."""
        self.beginResetModel()
        self._items.clear()
        self.endResetModel()

    def history(self, upto: int | None = None) -> tuple[ChatMessage, ...]:
        """The conversation before row `upto` (default: all), as the prompt builder wants it."""
        items = self._items if upto is None else self._items[:upto]
        return tuple(
            ChatMessage(i.role, i.text, given=_given(i), images=tuple(image.key for image in i.images)) for i in items
        )

    def images_at_hand(self, upto: int | None = None) -> tuple[StoredImage, ...]:
        """The images before row `upto` whose data is in memory (sent in this session)."""
        items = self._items if upto is None else self._items[:upto]
        return tuple(image for i in items for image in i.images if image.data)


def _given(item: ChatItem) -> Given | None:
    """What an answer was given, for the next turn to put back where it was."""
    if item.role != "assistant" or item.sources_mode not in ("whole", "retrieval"):
        return None
    return Given("whole" if item.sources_mode == "whole" else "retrieval", item.sources)


class StreamBuffer(QObject):
    """Collects streamed text and applies it to the model on a timer."""

    INTERVAL_MS = 30

    def __init__(
        self,
        model: MessageListModel,
        parent: QObject | None = None,
        apply: Callable[[int, str], None] | None = None,
    ) -> None:
        super().__init__(parent)
        self._model = model
        self._apply = apply or model.append_text  # the answer's text, or (given) its thought
        self._pending: dict[int, list[str]] = {}
        self._timer = QTimer(self)
        self._timer.setInterval(self.INTERVAL_MS)
        self._timer.timeout.connect(self.flush)

    def add(self, row: int, text: str) -> None:
        """Queue `text` for `row`."""
        self._pending.setdefault(row, []).append(text)
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Apply everything queued now."""
        self._timer.stop()
        pending, self._pending = self._pending, {}
        for row, pieces in pending.items():
            if row < self._model.rowCount():
                self._apply(row, "".join(pieces))

    def discard(self) -> None:
        """Drop queued text (the rows it was for are gone)."""
        self._timer.stop()
        self._pending.clear()
