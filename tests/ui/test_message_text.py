"""Messages as text in the real window: select and copy part or all, act on a message by keyboard, wrap code.

Rows are added to the window's own message model, as the session adds them,
so no model needs to answer; the mouse and keys go through Qt as a user's do.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QGuiApplication, QWheelEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app.core.docs.grounding import Source
from app.core.paths import AppPaths
from app.settings import WRAP_CODE
from app.ui.chat_model import ChatItem
from app.ui.main_window import MainWindow
from tests.ui.windows import Windows, click_anchor, settings_with

LONG_LINE = "total = " + " + ".join(f"price_{i} * quantity_{i}" for i in range(30))
ANSWER = (
    "The lighthouse keeper wrote the log every evening.\n\n"
    f"```python\n{LONG_LINE}\nprint(total)\n```\n\n"
    "The keeper's name was Edda."
)


@pytest.fixture
def window(windows: Windows, app_paths: AppPaths) -> Iterator[MainWindow]:
    w = windows.start(settings_with(app_paths, {}), ready=False)
    w.resize(1000, 700)
    w.model.extend([ChatItem("user", "Who kept the lighthouse log?"), ChatItem("assistant", ANSWER)])
    w.view.doItemsLayout()
    yield w


def point_at(w: MainWindow, row: int, text: str, offset: int = 0) -> QPoint:
    """Where the character `offset` places into `text` is drawn in message `row`, in the view's viewport."""
    index = w.model.index(row)
    rendered = w.view.delegate.rendered(index)
    cursor = rendered.doc.find(text)
    assert not cursor.isNull(), f"{text!r} not in message {row}"
    at = cursor.selectionStart() - cursor.block().position() + offset
    block = rendered.doc.documentLayout().blockBoundingRect(cursor.block())
    line = cursor.block().layout().lineForTextPosition(at)
    x = block.x() + line.cursorToX(at)[0]
    y = block.y() + line.y() + line.height() / 2
    rect = w.view.visualRect(index)
    origin = w.view.delegate._doc_origin(0, 0, index, rendered)
    return QPoint(int(rect.left() + origin.x() + x), int(rect.top() + origin.y() + y))


def test_part_of_a_message_selected_with_the_mouse_is_what_is_copied(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    start, end = point_at(w, 1, "keeper wrote"), point_at(w, 1, "keeper wrote", len("keeper wrote"))
    qtbot.mousePress(w.view.viewport(), Qt.MouseButton.LeftButton, pos=start)  # one drag, on a message not chosen yet
    qtbot.mouseMove(w.view.viewport(), pos=end)
    qtbot.mouseRelease(w.view.viewport(), Qt.MouseButton.LeftButton, pos=end)
    assert w.view.currentIndex().row() == 1 and w.view.reader.hasFocus()
    assert w.view.reader.selected_text() == "keeper wrote"
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(w.view.reader, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QGuiApplication.clipboard().text() == "keeper wrote"


def test_keys_select_copy_and_walk_the_messages(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    w.view.setFocus(Qt.FocusReason.TabFocusReason)  # Tab into the conversation: its newest message
    reader = w.view.reader
    assert reader.hasFocus() and w.view.currentIndex().row() == 1
    assert reader.accessibleName() == "Answer 2 of 2" and reader.accessibleDescription()

    QGuiApplication.clipboard().clear()
    qtbot.keyClick(reader, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)  # nothing selected: the whole message
    assert QGuiApplication.clipboard().text() == ANSWER

    for _ in range(4):  # "The " ...
        qtbot.keyClick(reader, Qt.Key.Key_Right)
    for _ in range(len("lighthouse")):
        qtbot.keyClick(reader, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClick(reader, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QGuiApplication.clipboard().text() == "lighthouse"

    qtbot.keyClick(reader, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    assert "The keeper's name was Edda." in reader.selected_text()

    qtbot.keyClick(reader, Qt.Key.Key_Up)  # the question above
    assert w.view.currentIndex().row() == 0 and reader.hasFocus() and reader.selected_text() == ""
    qtbot.keyClick(reader, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QGuiApplication.clipboard().text() == "Who kept the lighthouse log?"
    qtbot.keyClick(reader, Qt.Key.Key_Down)
    assert w.view.currentIndex().row() == 1

    # The code block's Copy link is a Tab stop inside the message; Enter follows it.
    QGuiApplication.clipboard().clear()
    qtbot.keyClick(reader, Qt.Key.Key_Tab)
    assert reader.selected_text() == "Copy"
    qtbot.keyClick(reader, Qt.Key.Key_Return)
    assert QGuiApplication.clipboard().text() == f"{LONG_LINE}\nprint(total)"


def test_the_actions_menu_opens_from_the_keyboard(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    w.view.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.keyClick(w.view.reader, Qt.Key.Key_Up)
    qtbot.keyClick(w.view.reader, Qt.Key.Key_F10, Qt.KeyboardModifier.ShiftModifier)
    menu = w.view.menu
    assert menu is not None and menu.isVisible()
    names = [a.text() for a in menu.actions() if a.text()]
    assert names[:2] == ["Copy message", "Edit and resend…"] and "Wrap long code lines" in names
    edit = next(a for a in menu.actions() if a.text() == "Edit and resend…")
    edit.trigger()
    menu.close()
    assert w.composer.toPlainText() == "Who kept the lighthouse log?" and w.chat.editing_bar.isVisible()
    assert w.model.rowCount() == 2

    qtbot.keyClick(w.composer, Qt.Key.Key_Escape)
    w.view.setFocus(Qt.FocusReason.TabFocusReason)
    assert w.view.currentIndex().row() == 0  # the keyboard comes back to the message it left
    qtbot.keyClick(w.view.reader, Qt.Key.Key_Down)
    qtbot.keyClick(w.view.reader, Qt.Key.Key_Menu)  # the menu key, on the answer: code to copy, no edit
    menu = w.view.menu
    assert menu is not None and menu.isVisible()
    names = [a.text() for a in menu.actions() if a.text()]
    assert "Copy code" in names and "Edit and resend…" not in names
    menu.close()


def test_long_code_lines_scroll_sideways_or_wrap_as_chosen(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    assert not w.view.wrap_code_action.isChecked()  # the default: code keeps its lines
    w.view.setCurrentIndex(w.model.index(1))
    rendered = w.view.delegate.rendered(w.model.index(1))
    assert rendered.doc.idealWidth() > rendered.bubble_width  # wider than the window...
    bar = w.view.reader.horizontalScrollBar()
    assert bar.isVisible() and bar.maximum() > 0  # ...so the message scrolls sideways
    bar.setValue(bar.maximum())
    assert w.view.reader.viewport().rect().height() >= rendered.doc.size().height()  # no text hidden by the bar

    w.view.wrap_code_action.setChecked(True)
    w.view.doItemsLayout()
    wrapped = w.view.delegate.rendered(w.model.index(1))
    assert (
        wrapped.doc.idealWidth() <= wrapped.bubble_width and wrapped.doc.size().height() > rendered.doc.size().height()
    )
    assert bar.maximum() == 0 and not bar.isVisible()
    assert w.view.reader.document() is wrapped.doc
    assert w.settings.get(WRAP_CODE) is True  # remembered


def test_sources_list_the_cited_ones_first_and_the_rest_on_request(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    sources = tuple(Source(n, n, 100 + n, f"report-{n}.pdf", n, None, None, None, f"Passage {n}.") for n in range(1, 6))
    row = w.model.extend([ChatItem("user", "Who kept it?"), ChatItem("assistant", "Edda kept it [3].")])
    w.model.set_sources(row, sources, "")
    w.model.set_cited(row, (3,))
    w.view.doItemsLayout()
    shown = w.view.delegate.rendered(w.model.index(row)).doc.toPlainText()
    assert "[3] report-3.pdf, page 3" in shown and "+4 more used" in shown
    assert "report-1.pdf" not in shown
    click_anchor(qtbot, w, row, "+4 more used")
    shown = w.view.delegate.rendered(w.model.index(row)).doc.toPlainText()
    assert all(f"report-{n}.pdf, page {n}" in shown for n in range(1, 6))
    assert shown.index("report-3.pdf") < shown.index("report-1.pdf")  # cited first

    w.model.set_cited(row, ())  # an answer that cites nothing: every source, as given
    shown = w.view.delegate.rendered(w.model.index(row)).doc.toPlainText()
    assert "more used" not in shown and shown.index("report-1.pdf") < shown.index("report-3.pdf")


def test_the_wheel_over_the_chosen_message_scrolls_the_conversation(qtbot: QtBot, window: MainWindow) -> None:
    w = window
    w.model.extend([ChatItem("user", f"Question {i}. " + "More words. " * 40) for i in range(12)])
    w.view.doItemsLayout()
    w.view.scroll_to_row(4)
    w.view.setCurrentIndex(w.model.index(4))
    bar, reader = w.view.verticalScrollBar(), w.view.reader
    before = bar.value()
    centre = QPointF(reader.viewport().rect().center())
    wheel = QWheelEvent(
        centre,
        QPointF(reader.viewport().mapToGlobal(centre.toPoint())),
        QPoint(0, 0),
        QPoint(0, -120),  # one notch down
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(reader.viewport(), wheel)
    assert bar.value() > before
