"""Assistive technology can name every control, and Tab moves through the window as the eye reads it.

The walks cover every widget that can take focus, shown or not (the lock page,
the side panels, bars that appear later), so a control added without a name
fails here with its place in the window.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextDocumentFragment
from PySide6.QtWidgets import (
    QAbstractButton,
    QApplication,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QTabBar,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.core.paths import AppPaths
from app.services.about import AboutDetails, about_details
from app.ui.about_dialog import AboutDialog
from app.ui.main_window import MainWindow
from app.ui.privacy_dialog import PassphraseDialog, PrivacyDialog
from app.ui.settings_dialog import SettingsDialog
from tests.ui.windows import Windows, settings_with


@pytest.fixture
def window(windows: Windows, app_paths: AppPaths) -> MainWindow:
    """The window as it starts, before the history opens: every page and panel is built."""
    return windows.start(settings_with(app_paths, {}), open_history=False, ready=False)


def focusable(root: QWidget) -> list[QWidget]:
    """Widgets in `root`'s own window that can take focus, shown or not (popups are windows of their own)."""
    return [w for w in root.findChildren(QWidget) if w.focusPolicy() != Qt.FocusPolicy.NoFocus and w.window() is root]


def compound_owner(widget: QWidget) -> QWidget | None:
    """The control `widget` is the inside of (a spin box's text field, a tab widget's bar), if any."""
    parent = widget.parentWidget()
    if parent is not None and (parent.focusProxy() is widget or widget.focusProxy() is parent):
        return parent
    return None


def standard_part(widget: QWidget) -> bool:
    """A part whose meaning every user knows from other apps: OK, Cancel, Close; a tab bar's scroll arrows."""
    parent = widget.parentWidget()
    if isinstance(parent, QDialogButtonBox) and isinstance(widget, QPushButton):
        return parent.standardButton(widget) != QDialogButtonBox.StandardButton.NoButton
    return isinstance(parent, QTabBar)


def accessible_name(widget: QWidget) -> str:
    """The name a screen reader announces: the one set, or a button's or a selectable label's own text."""
    if widget.accessibleName():
        return widget.accessibleName()
    if isinstance(widget, QLabel):  # text that can be selected: Qt reads the text itself
        return QTextDocumentFragment.fromHtml(widget.text()).toPlainText().strip()
    owner = compound_owner(widget)
    if owner is not None:
        return accessible_name(owner)
    if isinstance(widget, QAbstractButton):
        return widget.text().replace("&", "").strip()
    return ""


def accessible_description(widget: QWidget) -> str:
    """What a screen reader reads after the name: the description set, or the tooltip."""
    owner = compound_owner(widget)
    if owner is not None and not (widget.accessibleDescription() or widget.toolTip()):
        return accessible_description(owner)
    if standard_part(widget):
        return "(standard)"
    if isinstance(widget, QLabel) and not widget.openExternalLinks() and "<a " not in widget.text():
        return "(text)"  # a label is its own description; one with links is a control and needs one
    return widget.accessibleDescription() or widget.toolTip()


def where(widget: QWidget) -> str:
    """A widget and its ancestors by class, e.g. "MainWindow > ChatPane > QPushButton('Stop')"."""
    chain = []
    node: QWidget | None = widget
    while node is not None:
        label = type(node).__name__ + (f"#{node.objectName()}" if node.objectName() else "")
        chain.append(label)
        node = node.parentWidget()
    text = f" ({widget.text()!r})" if isinstance(widget, QAbstractButton) else ""
    return " > ".join(reversed(chain)) + text


def missing(root: QWidget, attribute: Callable[[QWidget], str]) -> list[str]:
    """The focusable widgets in `root` for which `attribute` is empty."""
    return [where(w) for w in focusable(root) if not attribute(w)]


def test_every_focusable_widget_in_the_window_has_a_name(window: MainWindow) -> None:
    assert len(focusable(window)) > 20  # the walk reaches the panels and pages, not only what is shown
    unnamed = missing(window, accessible_name)
    assert not unnamed, "focusable widgets without an accessible name:\n" + "\n".join(unnamed)


def test_every_focusable_widget_in_the_window_has_a_description(window: MainWindow) -> None:
    undescribed = missing(window, accessible_description)
    assert not undescribed, "focusable widgets without an accessible description:\n" + "\n".join(undescribed)


def test_the_dialogs_name_and_describe_their_controls(qtbot: QtBot, window: MainWindow) -> None:
    details: list[AboutDetails] = []
    window.services.models.run(about_details, details.append)  # read off the GUI thread, as Help → About does
    qtbot.waitUntil(lambda: bool(details), timeout=30_000)
    dialogs = [
        SettingsDialog(window.settings, 32768, window),
        PrivacyDialog(window.history, window.settings, window),
        PassphraseDialog("History passphrase", "Choose one.", True, window),
        AboutDialog(window.paths, None, details[0], window),
    ]
    problems = []
    for dialog in dialogs:
        qtbot.addWidget(dialog)
        problems += [f"no name: {w}" for w in missing(dialog, accessible_name)]
        problems += [f"no description: {w}" for w in missing(dialog, accessible_description)]
    assert not problems, "\n".join(problems)


def tab_walk(qtbot: QtBot, start: QWidget, steps: int = 60) -> list[QWidget]:
    """The widgets Tab visits from `start`, until it comes back round."""
    start.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is start, timeout=5000)
    visited = [start]
    for _ in range(steps):
        current = QApplication.focusWidget()
        assert current is not None
        qtbot.keyClick(current, Qt.Key.Key_Tab)
        after = QApplication.focusWidget()
        if after is start or after is None:
            break
        visited.append(after)
    return visited


def test_tab_goes_from_the_sidebar_through_the_chat_then_the_panels(qtbot: QtBot, window: MainWindow) -> None:
    window.info_panel.show()  # even when shown, the model panel waits until after the chat
    window.documents.panel.show()
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)
    visited = tab_walk(qtbot, window.sidebar.new_button)

    def first(widget: QWidget) -> int:
        assert widget in visited, f"Tab never reaches {where(widget)}; it visits:\n" + "\n".join(map(where, visited))
        return visited.index(widget)

    order = [window.sidebar.search, window.sidebar.list, window.composer, window.send_button]
    if window.view.focusPolicy() & Qt.FocusPolicy.TabFocus:  # the messages, between the list and the composer
        order.insert(2, window.view)
    assert [first(w) for w in order] == sorted(first(w) for w in order)
    part = {
        "sidebar": window.sidebar,
        "chat": window.chat,
        "documents": window.documents.panel,
        "model": window.info_panel,
    }
    seen = [next((name for name, p in part.items() if p.isAncestorOf(w)), "elsewhere") for w in visited]
    blocks = [name for i, name in enumerate(seen) if i == 0 or seen[i - 1] != name]
    assert blocks == ["sidebar", "chat", "documents", "model"], "\n".join(map(where, visited))
