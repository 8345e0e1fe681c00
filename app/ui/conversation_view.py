"""The conversation view: a QListView whose delegate paints each message as rich text.

One QTextDocument per message is cached by (text, width, state), so scrolling a
long chat only paints; while an answer streams only its own document is
rebuilt. Links `copy:N` inside a message copy its N-th code block.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from PySide6.QtCore import (
    QAbstractItemModel,
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QAction,
    QColor,
    QGuiApplication,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QMenu,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolTip,
    QWidget,
)

from app.core.engine.generation import GenerationStats, StopReason
from app.ui.chat_model import MessageListModel, MessageRole
from app.ui.markdown_html import COPY_SCHEME, render_markdown

Index = QModelIndex | QPersistentModelIndex
_MARGIN = 10  # around each message
_PAD = 10  # inside a bubble
_USER_BUBBLE = {False: QColor("#dbeafe"), True: QColor("#1e3a5f")}  # by dark palette
_USER_MAX_FRACTION = 0.8


def stats_line(stats: GenerationStats) -> str:
    """The footer under an answer: speed and latency."""
    parts = [f"{stats.completion_tokens} tokens"]
    if stats.decode_tok_s:
        parts.append(f"{stats.decode_tok_s:.1f} tok/s")
    parts.append(f"first token {stats.ttft_ms:.0f} ms")
    if stats.stop_reason == StopReason.CANCELLED:
        parts.append("stopped")
    elif stats.stop_reason in (StopReason.MAX_TOKENS, StopReason.CONTEXT_FULL):
        parts.append("cut at the token limit" if stats.stop_reason == StopReason.MAX_TOKENS else "context full")
    return " · ".join(parts)


VERSION_SCHEME = "version"
SOURCE_SCHEME = "source"
_CITATION = re.compile(r"(?<![\[\w])\[(\d{1,3})\](?!\()")


def version_switcher(position: int, count: int) -> str:
    """ "‹ 2/3 ›" with links to the neighbouring versions (HTML)."""
    style = "text-decoration:none; font-weight:bold;"
    prev = f'<a style="{style}" href="{VERSION_SCHEME}:-1">&nbsp;‹&nbsp;</a>' if position > 1 else "&nbsp;‹&nbsp;"
    nxt = f'<a style="{style}" href="{VERSION_SCHEME}:1">&nbsp;›&nbsp;</a>' if position < count else "&nbsp;›&nbsp;"
    return f"{prev}{position}/{count}{nxt}"


@dataclass
class _Rendered:
    key: tuple[int, int, bool]  # (item version, width, dark palette)
    doc: QTextDocument
    code_blocks: list[str]
    bubble_width: float


class MessageDelegate(QStyledItemDelegate):
    """Paints messages; handles clicks on code-block copy links."""

    copied = Signal(str)  # what was copied, for a status message
    version_requested = Signal(int, int)  # row, step (-1: previous version, +1: next)
    source_requested = Signal(int, int)  # row, source number

    def __init__(self, view: QListView) -> None:
        super().__init__(view)
        self._view = view
        self._cache: dict[int, _Rendered] = {}
        self._estimated: set[int] = set()  # message ids whose row height is a guess
        self._pending_rows: set[int] = set()

    def _dark(self) -> bool:
        palette = self._view.palette()
        return palette.color(QPalette.ColorRole.Base).lightness() < palette.color(QPalette.ColorRole.Text).lightness()

    def _available_width(self) -> int:
        return max(200, self._view.viewport().width() - 2 * _MARGIN)

    def rendered(self, index: Index) -> _Rendered:
        """The laid-out document for a message, cached by (id, version, width).

        It reads the model's items directly: the view asks every row for its
        size on each relayout, so this path must stay a few attribute reads.
        """
        item = self._view.model().item(index.row())  # type: ignore[attr-defined]
        key = (item.version, self._available_width(), self._dark())
        cached = self._cache.get(item.id)
        if cached is not None and cached.key == key:
            return cached
        role, text, streaming, stats, notice = item.role, item.text, item.streaming, item.stats, item.notice
        position, count = item.version_position, len(item.versions)
        width = key[1]

        shown = text
        if streaming:
            shown = (text + " ▍") if text else "_Thinking…_"
        dark = key[2]
        sources = item.sources
        if sources:  # inline [n] markers become links to their source
            shown = _CITATION.sub(
                lambda m: f"[[{m[1]}]]({SOURCE_SCHEME}:{m[1]})" if 1 <= int(m[1]) <= len(sources) else m[0], shown
            )
        md = render_markdown(shown, dark)
        footer = []
        if sources:
            rows = "<br>".join(
                f'[{s.number}] <a href="{SOURCE_SCHEME}:{s.number}">{html.escape(s.citation())}</a>' for s in sources
            )
            footer.append(f'<p style="font-size:small;"><b>Sources</b><br>{rows}</p>')
        if notice:
            colour = "#f0b35a" if dark else "#92400e"
            footer.append(f'<p style="color:{colour}; font-size:small;">{html.escape(notice)}</p>')
        muted = "#9aa3b2" if dark else "#6b7280"
        line = []
        if count > 1 and position and not streaming:
            line.append(version_switcher(position, count))
        facts = [item.model] if item.model and role == "assistant" and not streaming else []
        if stats is not None and role == "assistant":
            facts.append(stats_line(stats))
        if facts:
            line.append(f'<span style="font-size:small;">{html.escape(" · ".join(facts))}</span>')
        if line:
            footer.append(f'<p style="color:{muted};">{"&nbsp;&nbsp;".join(line)}</p>')
        doc = QTextDocument()
        doc.setDocumentMargin(_PAD)
        doc.setDefaultFont(self._view.font())
        doc.setHtml(md.html + "".join(footer))
        if role == "user":
            limit = width * _USER_MAX_FRACTION
            doc.setTextWidth(limit)
            bubble = min(limit, doc.idealWidth() + 2 * _PAD + 2)
            doc.setTextWidth(bubble)
        else:
            bubble = width
            doc.setTextWidth(width)
        rendered = _Rendered(key, doc, md.code_blocks, bubble)
        self._cache[item.id] = rendered
        return rendered

    def forget_missing(self, live_ids: set[int]) -> None:
        """Drop cached documents of removed messages."""
        for msg_id in list(self._cache):
            if msg_id not in live_ids:
                del self._cache[msg_id]

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:  # noqa: N802
        """Document height plus margins; an estimate for rows not laid out at this width yet.

        Laying out Markdown costs about a millisecond a message, so a long chat
        opened (or resized) at once would freeze. Rows are measured for real when
        first painted, and the view re-measures them then.
        """
        item = self._view.model().item(index.row())  # type: ignore[attr-defined]
        width = self._available_width()
        cached = self._cache.get(item.id)
        if item.streaming or (cached is not None and cached.key[1] == width):
            self._estimated.discard(item.id)
            return QSize(width, int(self.rendered(index).doc.size().height()) + _MARGIN)
        self._estimated.add(item.id)
        return QSize(width, self._estimate(item.text, width))

    def _estimate(self, text: str, width: int) -> int:
        metrics = self._view.fontMetrics()
        per_line = max(20, int(width / max(1, metrics.averageCharWidth())))
        lines = sum(1 + len(line) // per_line for line in text.split("\n")) + 2  # + paragraph gaps, footer
        return lines * metrics.lineSpacing() + 2 * _PAD + _MARGIN

    def _measure_later(self, index: Index) -> None:
        self._pending_rows.add(index.row())
        if len(self._pending_rows) == 1:
            QTimer.singleShot(0, self._remeasure_pending)

    def _remeasure_pending(self) -> None:
        model = self._view.model()
        rows, self._pending_rows = self._pending_rows, set()
        for row in sorted(rows):
            if model is not None and row < model.rowCount():
                self.sizeHintChanged.emit(model.index(row, 0))

    def _doc_origin(self, rect_left: int, rect_top: int, index: Index, r: _Rendered) -> QPointF:
        x: float = rect_left + _MARGIN
        if index.data(MessageRole.ROLE) == "user":
            x = rect_left + _MARGIN + self._available_width() - r.bubble_width
        return QPointF(x, rect_top + _MARGIN / 2)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        """Bubble for the user's messages; plain page for answers."""
        r = self.rendered(index)
        item_id = index.data(MessageRole.MESSAGE_ID)
        if item_id in self._estimated:  # laid out with a guess: measure it for real
            self._estimated.discard(item_id)
            self._measure_later(index)
        origin = self._doc_origin(option.rect.left(), option.rect.top(), index, r)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if index.data(MessageRole.ROLE) == "user":
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(_USER_BUBBLE[r.key[2]])
            painter.drawRoundedRect(QRectF(origin.x(), origin.y(), r.bubble_width, r.doc.size().height()), 12, 12)
        painter.translate(origin)
        context = QAbstractTextDocumentLayout.PaintContext()
        context.palette = self._view.palette()  # text follows the theme
        r.doc.documentLayout().draw(painter, context)
        painter.restore()

    def editorEvent(self, event: QEvent, model: QAbstractItemModel, option: QStyleOptionViewItem, index: Index) -> bool:  # noqa: N802
        """A click on a `copy:N` link copies that code block."""
        if event.type() != QEvent.Type.MouseButtonRelease or not isinstance(event, QMouseEvent):
            return False
        r = self.rendered(index)
        origin = self._doc_origin(option.rect.left(), option.rect.top(), index, r)
        anchor = r.doc.documentLayout().anchorAt(event.position() - origin)
        if anchor.startswith(SOURCE_SCHEME + ":"):
            self.source_requested.emit(index.row(), int(anchor.split(":", 1)[1]))
            return True
        if anchor.startswith(VERSION_SCHEME + ":"):
            self.version_requested.emit(index.row(), int(anchor.split(":", 1)[1]))
            return True
        if anchor.startswith(COPY_SCHEME + ":"):
            n = int(anchor.split(":", 1)[1])
            if 0 <= n < len(r.code_blocks):
                QGuiApplication.clipboard().setText(r.code_blocks[n])
                QToolTip.showText(event.globalPosition().toPoint(), "Copied", self._view)
                self.copied.emit(r.code_blocks[n])
            return True
        return False


class ConversationView(QListView):
    """Scrolls smoothly, follows a streaming answer while the user is at the bottom."""

    edit_requested = Signal(int)  # row of a user message
    regenerate_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.delegate = MessageDelegate(self)
        self.setItemDelegate(self.delegate)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setMouseTracking(True)
        self.setFrameShape(QListView.Shape.NoFrame)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._show_menu)
        self.placeholder_html = ""
        self._follow = True
        self.verticalScrollBar().valueChanged.connect(self._track_bottom)
        self.verticalScrollBar().rangeChanged.connect(self._keep_bottom)

    def setModel(self, model: QAbstractItemModel | None) -> None:  # noqa: N802
        """Attach the message model and re-measure rows whose text changes."""
        super().setModel(model)
        if model is not None:
            model.dataChanged.connect(self._remeasure)
            model.rowsRemoved.connect(self._prune)
            model.modelReset.connect(self._prune)

    def _remeasure(self, top_left: QModelIndex, bottom_right: QModelIndex, _roles: list[int]) -> None:
        for row in range(top_left.row(), bottom_right.row() + 1):
            self.delegate.sizeHintChanged.emit(self.model().index(row, 0))

    def _prune(self, *_: object) -> None:
        model = self.model()
        if isinstance(model, MessageListModel):
            self.delegate.forget_missing({model.item(r).id for r in range(model.rowCount())})

    def _track_bottom(self, value: int) -> None:
        self._follow = value >= self.verticalScrollBar().maximum() - 4

    def _keep_bottom(self, _min: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)

    def scroll_to_end(self) -> None:
        """Jump to the newest message and follow it."""
        self._follow = True
        self.scrollToBottom()

    def scroll_to_row(self, row: int) -> None:
        """Show message `row` near the top (a search hit), and stop following the end."""
        self._follow = False
        self.scrollTo(self.model().index(row, 0), QAbstractItemView.ScrollHint.PositionAtTop)

    def _show_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if not index.isValid():
            return
        menu = QMenu(self)
        text = index.data(MessageRole.TEXT) or ""
        copy = QAction("Copy message", menu)
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText(text))
        menu.addAction(copy)
        role = index.data(MessageRole.ROLE)
        if role == "user":
            edit = QAction("Edit and resend", menu)
            edit.triggered.connect(lambda: self.edit_requested.emit(index.row()))
            menu.addAction(edit)
        elif role == "assistant" and index.row() == self.model().rowCount() - 1:
            regen = QAction("Regenerate", menu)
            regen.triggered.connect(self.regenerate_requested.emit)
            menu.addAction(regen)
        menu.exec(self.viewport().mapToGlobal(pos))

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        """Messages, or a welcome text when the conversation is empty."""
        super().paintEvent(event)
        model = self.model()
        if (model is None or model.rowCount() == 0) and self.placeholder_html:
            doc = QTextDocument()
            doc.setDefaultFont(self.font())
            doc.setHtml(self.placeholder_html)
            width = min(560, self.viewport().width() - 40)
            doc.setTextWidth(width)
            painter = QPainter(self.viewport())
            x = (self.viewport().width() - width) / 2
            y = max(20, (self.viewport().height() - doc.size().height()) / 3)
            painter.translate(x, y)
            painter.setPen(self.palette().color(QPalette.ColorRole.Text))
            doc.drawContents(painter)
            painter.end()
