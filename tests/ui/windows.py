"""The real main window for UI tests: started as the app starts it, and driven as a user drives it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, Qt
from pytestqt.qtbot import QtBot

from app.core.paths import AppPaths
from app.services import Services
from app.settings import Option, Settings
from app.ui.main_window import MainWindow

LONG = 120_000


def settings_with(app_paths: AppPaths, values: Mapping[Option[Any], Any]) -> Settings:
    """The settings file with `values` set in order, as a user would have left it."""
    settings = Settings(app_paths.settings_file)
    for option, value in values.items():
        settings.set(option, value)
    return settings


class Windows:
    """Main windows on freshly started services, as many as a test starts; the `windows` fixture closes them."""

    def __init__(self, qtbot: QtBot, app_paths: AppPaths) -> None:
        self.qtbot = qtbot
        self.app_paths = app_paths
        self.opened: list[MainWindow] = []

    def start(
        self, settings: Settings, *, open_history: bool = True, ready: bool = True, load: Path | None = None
    ) -> MainWindow:
        """Build and start the services and show a window on them.

        `ready` waits until the history is open (so it needs `open_history`); `load` then loads that model.
        """
        services = Services.build(self.app_paths)
        services.start()
        w = MainWindow(settings, services, self.app_paths, show_dialogs=False, open_history=open_history)
        self.qtbot.addWidget(w)
        self.opened.append(w)
        w.show()
        if ready:
            self.qtbot.waitSignal(w.history.ready, timeout=LONG).wait()
        if load is not None:
            with self.qtbot.waitSignal(w.model_ready, timeout=LONG):
                w.load_model(load)
        return w

    def close_all(self) -> None:
        """Close every window started (closing one the test already closed is harmless)."""
        for w in self.opened:
            w.close()


def settle(qtbot: QtBot, w: MainWindow) -> None:
    """Wait until every queued store request has run and its answer has arrived."""
    with qtbot.waitSignal(w.history.conversations, timeout=LONG):
        w.history.refresh()


def click_anchor(qtbot: QtBot, w: MainWindow, row: int, text: str) -> None:
    """Click the link `text` in message `row`, where it is drawn."""
    w.view.doItemsLayout()
    index = w.model.index(row)
    w.view.scrollTo(index)
    rendered = w.view.delegate.rendered(index)
    cursor = rendered.doc.find(text)
    while not cursor.isNull() and not cursor.charFormat().isAnchor():  # the link, not the same words in the text
        cursor = rendered.doc.find(text, cursor)
    assert not cursor.isNull(), f"no link {text!r} in message {row}"
    block = rendered.doc.documentLayout().blockBoundingRect(cursor.block())
    line = cursor.block().layout().lineForTextPosition(cursor.positionInBlock() - 1)
    x = block.x() + line.cursorToX(cursor.positionInBlock() - 1)[0] + 2
    y = block.y() + line.y() + line.height() / 2
    origin = w.view.delegate._doc_origin(0, 0, index, rendered)
    rect = w.view.visualRect(index)
    qtbot.mouseClick(
        w.view.viewport(),
        Qt.MouseButton.LeftButton,
        pos=QPoint(int(rect.left() + origin.x() + x), int(rect.top() + origin.y() + y)),
    )
