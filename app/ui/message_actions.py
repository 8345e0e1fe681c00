"""The actions of one message, as a menu: copy, copy code, edit, regenerate, versions, sources, code wrapping.

The same menu opens on a right click, the menu key and Shift+F10; each entry
names its shortcut where it has one, so the keys can be learnt from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import QMenu

from app.ui.chat_model import MessageListModel, MessageRole
from app.ui.message_footer import cited_first

if TYPE_CHECKING:
    from app.ui.conversation_view import ConversationView


def _bind(slot: Callable[[int, int], object], row: int, n: int) -> Callable[[], None]:
    """A slot without arguments (Qt passes `checked` to those that take one)."""

    def call() -> None:
        slot(row, n)

    return call


def actions_menu(view: ConversationView, row: int) -> QMenu:
    """A menu of what can be done with the message at `row` of `view` (deleted when closed)."""
    model = view.model()
    assert isinstance(model, MessageListModel)
    index = model.index(row, 0)
    item = model.item(row)
    menu = QMenu(view)
    menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    menu.setAccessibleName("Message actions")

    def add(text: str, slot: Callable[[], object], enabled: bool = True, shortcut: str = "") -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(slot)
        action.setEnabled(enabled)
        if shortcut:
            action.setShortcut(shortcut)
            action.setShortcutVisibleInContextMenu(True)
        return action

    selected = view.reader.selected_text() if row == view.currentIndex().row() else ""
    if selected:
        add("Copy", lambda: QGuiApplication.clipboard().setText(selected), shortcut="Ctrl+C")
    add("Copy message", lambda: view.copy_message(row), shortcut="" if selected else "Ctrl+C")
    blocks = view.delegate.rendered(index).code_blocks
    for n in range(len(blocks)):
        label = "Copy code" if len(blocks) == 1 else f"Copy code block {n + 1}"
        add(label, _bind(view.copy_code, row, n))
    if item.role == "user":
        add("Edit and resend…", lambda: view.edit_requested.emit(row))
    elif item.role == "assistant" and row == model.rowCount() - 1:
        add("Regenerate", view.regenerate_requested.emit, enabled=not item.streaming)
    position, count = index.data(MessageRole.VERSIONS)
    if count > 1 and position:
        menu.addSeparator()
        add("Previous version", lambda: view.switch_version(row, -1), position > 1, "Alt+Left")
        add("Next version", lambda: view.switch_version(row, 1), position < count, "Alt+Right")
    if item.sources:
        sources = menu.addMenu("Sources")
        first, rest = cited_first(item.sources, item.cited)
        for s in first + rest:
            action = sources.addAction(f"[{s.number}] {s.citation()}")
            action.triggered.connect(_bind(view.delegate.source_requested.emit, row, s.number))
        if rest:
            sources.addSeparator()
            shown = item.all_sources_shown
            label = "List cited sources only" if shown else f"List all {len(item.sources)} under the answer"
            toggle = sources.addAction(label)
            toggle.triggered.connect(lambda: model.show_all_sources(row, not shown))
    menu.addSeparator()
    menu.addAction(view.wrap_code_action)
    return menu
