"""The conversation view: a QListView whose delegate paints each message as rich text.

One QTextDocument per message is cached by (text, width, state), so scrolling a
long chat only paints; while an answer streams only its own document is
rebuilt. The current message is shown by a `MessageReader` laid over its row
with the same document, so its text can be selected, copied and tabbed
through; the keyboard moves it from message to message. Links inside a
message are actions: `copy:N` copies its N-th code block, the others are in
`app.ui.message_footer`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from PySide6.QtCore import (
    QAbstractItemModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRect,
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
    QFocusEvent,
    QGuiApplication,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QListView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionSlider,
    QStyleOptionViewItem,
    QToolTip,
    QWidget,
)

from app.ui.chat_model import MessageListModel, MessageRole
from app.ui.markdown_html import COPY_SCHEME, render_markdown
from app.ui.message_actions import actions_menu
from app.ui.message_footer import SHOW_SOURCES_SCHEME, SOURCE_SCHEME, VERSION_SCHEME, footer_html
from app.ui.message_header import IMAGE_SCHEME, THINKING_SCHEME, TOOL_SCHEME, add_thumbnails, header_html
from app.ui.message_reader import WRAP, MessageReader

Index = QModelIndex | QPersistentModelIndex
_MARGIN = 10  # around each message
_PAD = 10  # inside a bubble
_USER_BUBBLE = {False: QColor("#dbeafe"), True: QColor("#1e3a5f")}  # by dark palette
_USER_MAX_FRACTION = 0.8
_CITATION = re.compile(r"(?<![\[\w])\[(\d{1,3})\](?!\()")
VIEW_DESCRIPTION = (
    "The messages of this chat. Tab or a click enters a message: Up and Down move between messages, "
    "Shift with the arrow keys selects text, Ctrl+C copies, and the menu key lists a message's actions."
)


@dataclass
class _Rendered:
    key: tuple[int, int, bool, bool]  # (item version, width, dark palette, wrap code)
    doc: QTextDocument
    code_blocks: list[str]
    bubble_width: int
    wide: bool  # lines longer than the bubble is wide: the row keeps room for a horizontal scroll bar


class MessageDelegate(QStyledItemDelegate):
    """Paints messages; the view's reader shows the current one."""

    copied = Signal(str)  # a code block that was copied, for a status message
    version_requested = Signal(int, int)  # row, step (-1: previous version, +1: next)
    source_requested = Signal(int, int)  # row, source number
    image_requested = Signal(int, str)  # row, image key: show it larger

    def __init__(self, view: ConversationView) -> None:
        super().__init__(view)
        self._view = view
        self._cache: dict[int, _Rendered] = {}
        self._estimated: set[int] = set()  # message ids whose row height is a guess
        self._pending_rows: set[int] = set()
        self.wrap_code = False

    def _dark(self) -> bool:
        palette = self._view.palette()
        return palette.color(QPalette.ColorRole.Base).lightness() < palette.color(QPalette.ColorRole.Text).lightness()

    def _available_width(self) -> int:
        return max(200, self._view.viewport().width() - 2 * _MARGIN)

    def scroll_strip(self) -> int:
        """Height of the horizontal scroll bar kept under a message with long lines."""
        return self._view.reader.horizontalScrollBar().sizeHint().height()

    def rendered(self, index: Index) -> _Rendered:
        """The laid-out document for a message, cached by (id, version, width).

        It reads the model's items directly: the view asks every row for its
        size on each relayout, so this path must stay a few attribute reads.
        """
        item = self._view.model().item(index.row())  # type: ignore[attr-defined]
        key = (item.version, self._available_width(), self._dark(), self.wrap_code)
        cached = self._cache.get(item.id)
        if cached is not None and cached.key == key:
            return cached
        width, dark = key[1], key[2]
        shown = item.text
        if item.streaming:
            waiting = "" if item.thinking or item.tools else f"_{item.progress or 'Thinking…'}_"
            shown = (shown + " ▍") if shown else waiting
        numbers = {s.number for s in item.sources}
        if numbers:  # inline [n] markers become links to their source
            shown = _CITATION.sub(
                lambda m: f"[[{m[1]}]]({SOURCE_SCHEME}:{m[1]})" if int(m[1]) in numbers else m[0], shown
            )
        md = render_markdown(shown, dark, self.wrap_code)
        doc = QTextDocument()
        doc.setDocumentMargin(_PAD)
        doc.setDefaultFont(self._view.font())
        option = doc.defaultTextOption()
        option.setWrapMode(WRAP)  # as the reader lays it out, so the text does not move when it takes over
        doc.setDefaultTextOption(option)
        add_thumbnails(doc, item)
        doc.setHtml(header_html(item, dark) + md.html + footer_html(item, dark))
        bubble = width
        if item.role == "user":
            limit = int(width * _USER_MAX_FRACTION)
            doc.setTextWidth(limit)
            bubble = min(limit, math.ceil(doc.idealWidth()) + 2 * _PAD + 2)
        doc.setTextWidth(bubble)
        rendered = _Rendered(key, doc, md.code_blocks, bubble, doc.size().width() > bubble + 1)
        self._cache[item.id] = rendered
        return rendered

    def text_height(self, r: _Rendered) -> int:
        """The height of a message's text, with room for a scroll bar under long lines."""
        return math.ceil(r.doc.size().height()) + (self.scroll_strip() if r.wide else 0)

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
        if item.streaming or (cached is not None and cached.key[1] == width and cached.key[3] == self.wrap_code):
            self._estimated.discard(item.id)
            return QSize(width, self.text_height(self.rendered(index)) + _MARGIN)
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
        """Bubble for the user's messages; plain page for answers; the reader draws the current one's text."""
        r = self.rendered(index)
        item_id = index.data(MessageRole.MESSAGE_ID)
        if item_id in self._estimated:  # laid out with a guess: measure it for real
            self._estimated.discard(item_id)
            self._measure_later(index)
        origin = self._doc_origin(option.rect.left(), option.rect.top(), index, r)
        box = QRectF(origin.x(), origin.y(), r.bubble_width, self.text_height(r))
        palette = self._view.palette()
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        if index.data(MessageRole.ROLE) == "user":
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(_USER_BUBBLE[r.key[2]])
            painter.drawRoundedRect(box, 12, 12)
        current = index.row() == self._view.currentIndex().row() and not self._view.reader.isHidden()
        if index.row() == self._view.editing_row:  # the message being edited: a dashed outline
            pen = QPen(palette.color(QPalette.ColorRole.Highlight), 2, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(box.adjusted(-3, -3, 3, 3), 14, 14)
        elif current and self._view.reader.hasFocus():  # where the keyboard is (outside the text: never painted over)
            painter.setPen(QPen(palette.color(QPalette.ColorRole.Highlight), 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(box.adjusted(-3, -3, 3, 3), 10, 10)
        if not current:
            if r.wide:  # the bar the reader will show, so the text does not jump when the message is chosen
                strip = self.scroll_strip()
                self._paint_scroll_bar(
                    painter, r, QRect(int(box.x()), int(box.bottom()) - strip, r.bubble_width, strip)
                )
            painter.setClipRect(box)
            painter.translate(origin)
            context = QAbstractTextDocumentLayout.PaintContext()
            context.palette = palette  # text follows the theme
            r.doc.documentLayout().draw(painter, context)
        painter.restore()

    def _paint_scroll_bar(self, painter: QPainter, r: _Rendered, rect: QRect) -> None:
        scroll_bar = self._view.reader.horizontalScrollBar()
        bar = QStyleOptionSlider()
        bar.initFrom(scroll_bar)
        bar.rect = QRect(0, 0, rect.width(), rect.height())  # styles place the arrows and handle from (0, 0)
        bar.state |= QStyle.StateFlag.State_Horizontal | QStyle.StateFlag.State_Enabled
        bar.orientation = Qt.Orientation.Horizontal
        bar.minimum, bar.maximum = 0, math.ceil(r.doc.size().width()) - r.bubble_width
        bar.pageStep, bar.singleStep = r.bubble_width, 20
        bar.sliderPosition = bar.sliderValue = 0
        bar.subControls = QStyle.SubControl.SC_All
        painter.save()
        painter.translate(rect.topLeft())
        scroll_bar.style().drawComplexControl(QStyle.ComplexControl.CC_ScrollBar, bar, painter, scroll_bar)
        painter.restore()


class ConversationView(QListView):
    """Scrolls smoothly, follows a streaming answer while the user is at the bottom, and reads by keyboard."""

    edit_requested = Signal(int)  # row of a user message
    regenerate_requested = Signal()
    status_message = Signal(str)  # e.g. "Message copied"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.reader = MessageReader(self.viewport())
        self.reader.hide()
        self.delegate = MessageDelegate(self)
        self.setItemDelegate(self.delegate)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAutoScroll(False)  # choosing a half-shown message must not move the text under the mouse
        self.setMouseTracking(True)
        self.setFrameShape(QListView.Shape.NoFrame)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.setAccessibleName("Conversation")
        self.setAccessibleDescription(VIEW_DESCRIPTION)
        self.customContextMenuRequested.connect(self._menu_at)
        self.placeholder_html = ""
        self.editing_row = -1  # a user message being edited in the composer
        self.menu: QMenu | None = None  # the actions menu last shown
        self.wrap_code_action = QAction("Wrap long code lines", self)
        self.wrap_code_action.setCheckable(True)
        self.wrap_code_action.setStatusTip("Wrap code blocks at the window's edge instead of scrolling sideways")
        self.wrap_code_action.toggled.connect(self._set_wrap_code)
        self._follow = True
        self._pressed_in_reader = False  # a press that chose a message goes on to the reader until released
        self._restore_row = -1  # the row to come back to once a version switch has replaced the rows
        self.verticalScrollBar().valueChanged.connect(self._track_bottom)
        self.verticalScrollBar().rangeChanged.connect(self._keep_bottom)
        reader = self.reader
        # Bound methods, not lambdas: Qt disconnects them when the view goes, before the reader's last focus-out.
        reader.link_activated.connect(self._current_link)
        reader.move_requested.connect(self.move_current)
        reader.page_requested.connect(self._page)
        reader.version_requested.connect(self._current_version)
        reader.copy_message_requested.connect(self._copy_current)
        reader.actions_requested.connect(self._current_actions)
        reader.focus_changed.connect(self._reader_focus_changed)
        reader.cursorPositionChanged.connect(self._reveal_caret)

    def setModel(self, model: QAbstractItemModel | None) -> None:  # noqa: N802
        """Attach the message model and re-measure rows whose text changes."""
        super().setModel(model)
        if model is not None:
            model.dataChanged.connect(self._remeasure)
            model.rowsRemoved.connect(self._prune)
            model.modelReset.connect(self._reset)
            model.rowsInserted.connect(self._restore_current)

    def _remeasure(self, top_left: QModelIndex, bottom_right: QModelIndex, _roles: list[int]) -> None:
        for row in range(top_left.row(), bottom_right.row() + 1):
            self.delegate.sizeHintChanged.emit(self.model().index(row, 0))
        if top_left.row() <= self.currentIndex().row() <= bottom_right.row():
            self._place_reader()  # its text changed: show the new document at once

    def _reset(self) -> None:
        self._restore_row = -1  # another conversation: nothing to come back to
        self._prune()

    def _prune(self, *_: object) -> None:
        model = self.model()
        if isinstance(model, MessageListModel):
            self.delegate.forget_missing({model.item(r).id for r in range(model.rowCount())})
        self._place_reader()

    def _restore_current(self, _parent: QModelIndex, first: int, last: int) -> None:
        """After a version switch replaced the rows, the keyboard stays on the switched message."""
        if first <= self._restore_row <= last:  # rows appended by a new turn are not that
            row, self._restore_row = self._restore_row, -1
            self.setCurrentIndex(self.model().index(row, 0))

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

    def set_editing_row(self, row: int) -> None:
        """Mark the user message being edited (-1: none)."""
        self.editing_row = row
        self.viewport().update()

    # The reader over the current message
    def currentChanged(self, current: Index, previous: Index) -> None:  # noqa: N802
        """The reader moves to the new current message."""
        super().currentChanged(current, previous)
        self._place_reader()
        self.viewport().update()

    def updateGeometries(self) -> None:  # noqa: N802
        """Rows moved or changed size: the reader follows its message."""
        super().updateGeometries()
        self._place_reader()

    def scrollContentsBy(self, dx: int, dy: int) -> None:  # noqa: N802
        """Scrolling moves the reader with its message."""
        super().scrollContentsBy(dx, dy)
        self._place_reader()

    def _place_reader(self) -> None:
        index, model, reader = self.currentIndex(), self.model(), self.reader
        if not index.isValid() or model is None or index.row() >= model.rowCount():
            if not reader.isHidden():
                had_focus = reader.hasFocus()
                self.setFocusProxy(None)  # type: ignore[arg-type]  # None removes the proxy
                reader.hide()
                if had_focus:  # keep the keyboard in the conversation
                    self.setFocus(Qt.FocusReason.OtherFocusReason)
            return
        r = self.delegate.rendered(index)
        rect = self.visualRect(index)
        origin = self.delegate._doc_origin(rect.left(), rect.top(), index, r)
        reader.show_document(
            r.doc, QRect(round(origin.x()), round(origin.y()), r.bubble_width, self.delegate.text_height(r))
        )
        describe = {"user": "Your message", "assistant": "Answer"}.get(str(index.data(MessageRole.ROLE)), "Message")
        reader.setAccessibleName(f"{describe} {index.row() + 1} of {model.rowCount()}")
        if reader.isHidden():
            reader.show()
            self.setFocusProxy(reader)  # Tab and clicks into the conversation land in the message

    def focusInEvent(self, event: QFocusEvent) -> None:  # noqa: N802
        """Entering the conversation by keyboard starts at its newest message."""
        model = self.model()
        if model is not None and model.rowCount() and not self.currentIndex().isValid():
            self.setCurrentIndex(model.index(model.rowCount() - 1, 0))  # before Qt picks the first row
            self.scrollTo(self.currentIndex())
            self.reader.setFocus(Qt.FocusReason.TabFocusReason)
        super().focusInEvent(event)

    def setCurrentIndex(self, index: QModelIndex | QPersistentModelIndex) -> None:  # noqa: N802
        """Make `index` the current message (there is no selection of rows, only of text)."""
        self.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.NoUpdate)

    def move_current(self, step: int) -> None:
        """Move the keyboard to the message `step` rows away, and show it."""
        model = self.model()
        if model is None or not model.rowCount():
            return
        row = max(0, min(model.rowCount() - 1, self.currentIndex().row() + step))
        self.setCurrentIndex(model.index(row, 0))
        self._follow = row == model.rowCount() - 1
        self.scrollTo(self.currentIndex())

    def _current_link(self, href: str) -> None:
        self.activate_link(self.currentIndex(), href)

    def _current_version(self, step: int) -> None:
        self.switch_version(self.currentIndex().row(), step)

    def _copy_current(self) -> None:
        self.copy_message(self.currentIndex().row())

    def _current_actions(self, pos: QPoint) -> None:
        self.show_actions(self.currentIndex().row(), pos)

    def _reader_focus_changed(self, _focused: bool) -> None:
        self.viewport().update()  # the focus frame

    def _page(self, step: int) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.value() + step * bar.pageStep())

    def _reveal_caret(self) -> None:
        """Keep the caret on screen while the keyboard selects through a long message."""
        if not self.reader.hasFocus():
            return
        caret = self.reader.cursorRect()
        top = self.reader.viewport().mapTo(self.viewport(), caret.topLeft()).y()
        bar = self.verticalScrollBar()
        if top < 0:
            bar.setValue(bar.value() + top)
        elif top + caret.height() > self.viewport().height():
            bar.setValue(bar.value() + top + caret.height() - self.viewport().height())

    # Mouse: a press on a message makes it current and goes on to its reader, so one drag selects
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        """Choose the message under the mouse; a left press starts a selection in it."""
        pos = event.position().toPoint()
        index = self.indexAt(pos)
        if not index.isValid():
            super().mousePressEvent(event)
            return
        if index.row() != self.currentIndex().row():
            self.setCurrentIndex(index)
        self._place_reader()  # the message may have grown since (its sources and stats come last)
        self.reader.setFocus(Qt.FocusReason.MouseFocusReason)
        if event.button() == Qt.MouseButton.LeftButton and self.reader.geometry().contains(pos):
            self._pressed_in_reader = True
            self._forward(event)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        """Drag on into the reader (scrolling at the edges); otherwise show what a click would do."""
        pos = event.position().toPoint()
        if self._pressed_in_reader:
            bar, height = self.verticalScrollBar(), self.viewport().height()
            if pos.y() < 0 or pos.y() > height:
                bar.setValue(bar.value() + (pos.y() if pos.y() < 0 else pos.y() - height))
            self._forward(event)
            return
        index = self.indexAt(pos)
        shape = Qt.CursorShape.ArrowCursor
        if index.isValid():
            r = self.delegate.rendered(index)
            rect = self.visualRect(index)
            at = QPointF(pos) - self.delegate._doc_origin(rect.left(), rect.top(), index, r)
            if r.doc.documentLayout().anchorAt(at):
                shape = Qt.CursorShape.PointingHandCursor
            elif 0 <= at.x() <= r.bubble_width and 0 <= at.y() <= r.doc.size().height():
                shape = Qt.CursorShape.IBeamCursor
        self.viewport().setCursor(shape)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        """End a selection (or follow a link) started by the press."""
        if self._pressed_in_reader:
            self._pressed_in_reader = False
            self._forward(event)
            return
        super().mouseReleaseEvent(event)

    def _forward(self, event: QMouseEvent) -> None:
        reader_pos = self.reader.mapFrom(self.viewport(), event.position().toPoint())
        target = self.reader.childAt(reader_pos) or self.reader.viewport()  # the text, or its scroll bar
        local = QPointF(target.mapFrom(self.viewport(), event.position().toPoint()))
        forwarded = QMouseEvent(
            event.type(), local, event.globalPosition(), event.button(), event.buttons(), event.modifiers()
        )
        QApplication.sendEvent(target, forwarded)

    # What a message offers
    def activate_link(self, index: QModelIndex | QPersistentModelIndex, href: str) -> None:
        """Carry out a link in the message at `index`: copy code, switch version, open or list sources,
        expand or collapse the thought or a tool card."""
        if not index.isValid():
            return
        scheme, _, value = href.partition(":")
        row = index.row()
        if scheme == SOURCE_SCHEME and value.isdigit():
            self.delegate.source_requested.emit(row, int(value))
        elif scheme == VERSION_SCHEME:
            self.switch_version(row, int(value))
        elif scheme == COPY_SCHEME and value.isdigit():
            self.copy_code(row, int(value))
        elif scheme == SHOW_SOURCES_SCHEME and isinstance(self.model(), MessageListModel):
            self.model().show_all_sources(row, value == "all")  # type: ignore[attr-defined]
        elif scheme == THINKING_SCHEME and isinstance(self.model(), MessageListModel):
            self.model().toggle_thinking(row)  # type: ignore[attr-defined]
        elif scheme == TOOL_SCHEME and isinstance(self.model(), MessageListModel):
            self.model().toggle_tool(row, value)  # type: ignore[attr-defined]
        elif scheme == IMAGE_SCHEME:
            self.delegate.image_requested.emit(row, value)

    def copy_code(self, row: int, block: int) -> None:
        """Copy code block `block` of the message at `row`."""
        blocks = self.delegate.rendered(self.model().index(row, 0)).code_blocks
        if 0 <= block < len(blocks):
            QGuiApplication.clipboard().setText(blocks[block])
            caret = self.reader.viewport().mapToGlobal(self.reader.cursorRect().bottomLeft())
            QToolTip.showText(caret, "Copied", self.reader)
            self.delegate.copied.emit(blocks[block])
            self.status_message.emit("Code copied")

    def copy_message(self, row: int) -> None:
        """Copy the whole text of the message at `row`, as written (Markdown)."""
        model = self.model()
        if model is not None and 0 <= row < model.rowCount():
            QGuiApplication.clipboard().setText(model.index(row, 0).data(MessageRole.TEXT) or "")
            self.status_message.emit("Message copied")

    def switch_version(self, row: int, step: int) -> None:
        """Ask for the previous (-1) or next (+1) version of the message at `row`."""
        model = self.model()
        if model is None or not 0 <= row < model.rowCount():
            return
        position, count = model.index(row, 0).data(MessageRole.VERSIONS)
        if not position or not 0 < position + step <= count:
            self.status_message.emit("No other version that way" if count > 1 else "This message has one version")
            return
        self._restore_row = row
        self.delegate.version_requested.emit(row, step)

    def _menu_at(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if index.isValid():
            self.show_actions(index.row(), self.viewport().mapToGlobal(pos))

    def show_actions(self, row: int, global_pos: QPoint) -> QMenu | None:
        """The actions of the message at `row`, as a menu at `global_pos`."""
        model = self.model()
        if model is None or not 0 <= row < model.rowCount():
            return None
        menu = self.menu = actions_menu(self, row)
        menu.popup(global_pos)
        return menu

    def _set_wrap_code(self, wrap: bool) -> None:
        self.delegate.wrap_code = wrap
        self.doItemsLayout()  # every row is measured again at the new setting
        self.viewport().update()

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
