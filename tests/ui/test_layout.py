"""The window fits the screen: first size from the free screen area, usable at 100, 150 and 200 % scaling.

The scaled runs start the real window in a child process (`QT_SCALE_FACTOR`
is read when the application starts) on an offscreen screen of 1366×768, the
size of many laptops, load the starter model, and report where the composer,
Send and the status bar ended up; `python -m tests.ui.test_layout SCALE MODEL`
is that child.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, QRect, QSize
from pytestqt.qtbot import QtBot

from app.core.paths import AppPaths
from app.ui.main_window import LARGEST_FIRST, first_geometry
from tests.ui.windows import Windows, settings_with

ROOT = Path(__file__).resolve().parents[2]
SCREEN = QSize(1366, 768)  # physical pixels
SCALES = ("1", "1.5", "2")


def _screen_config(tmp_path: Path) -> str:
    """An offscreen platform with one 1366×768 screen (its default screen is a square 800 px)."""
    config = tmp_path / "screen.json"
    screen = {"name": "laptop", "x": 0, "y": 0, "width": SCREEN.width(), "height": SCREEN.height()}
    config.write_text(json.dumps({"screens": [{**screen, "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}))
    return f"offscreen:configfile={config}"


def _rect(widget: Any) -> list[int]:
    """A widget's rectangle on the screen, as [x, y, width, height]."""
    top_left = widget.mapToGlobal(QPoint(0, 0))
    return [top_left.x(), top_left.y(), widget.width(), widget.height()]


def _measure(scale: str, model: Path) -> dict[str, Any]:
    """Start the window as the app does, load the model, and report where things are (in the child)."""
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from app import settings as opts
    from app.services import Services
    from app.settings import Settings
    from app.ui.lock_page import LockMode
    from app.ui.main_window import MainWindow

    app = QApplication([sys.argv[0]])
    paths = AppPaths.default()
    paths.create()
    settings = Settings(paths.settings_file)
    settings.set(opts.CONTEXT_SIZE, 2048)
    services = Services.build(paths)
    services.start()
    w = MainWindow(settings, services, paths, show_dialogs=False, open_history=False)
    w.show()
    loop = QEventLoop()
    w.model_ready.connect(lambda _m: loop.quit())
    w.model_failed.connect(lambda _m: loop.quit())
    QTimer.singleShot(120_000, loop.quit)  # a model that never loads fails the test below, not the suite
    w.load_model(model)
    loop.exec()

    def settle() -> None:
        for _ in range(5):
            app.processEvents()

    def snapshot() -> dict[str, Any]:
        settle()
        return {
            "window": list(w.frameGeometry().getRect()),
            "composer": _rect(w.composer),
            "send": _rect(w.send_button),
            "status": _rect(w.statusBar()),
            "status_text": w.models.label.text(),
        }

    report: dict[str, Any] = {
        "scale": float(scale),
        "available": list(app.primaryScreen().availableGeometry().getRect()),
        "model_panel_visible": w.info_panel.isVisible(),
        "first": snapshot(),
    }
    w.documents.panel.show()
    w.info_panel.show()
    report["panels"] = snapshot()
    w.documents.panel.hide()
    w.info_panel.hide()
    manager = w.open_models()
    scroll = manager.scroller
    settle()
    report["models"] = {
        "window": list(manager.frameGeometry().getRect()),
        "scrolls": any(bar.maximum() > 0 for bar in (scroll.horizontalScrollBar(), scroll.verticalScrollBar())),
    }
    manager.close()
    page = w.lock_page
    w.pages.setCurrentWidget(page)
    page.show_mode(LockMode.CREATE)
    settle()
    report["lock"] = {
        "window": list(w.frameGeometry().getRect()),
        "labels": [[label.height(), label.heightForWidth(label.width())] for label in (page.title, page.message)],
        "column": [_rect(x) for x in (page.title, page.message, page.passphrase, page.confirm, page.submit_button)],
    }
    w.close()
    return report


def _within(inner: list[int], outer: list[int]) -> bool:
    return QRect(*outer).contains(QRect(*inner))


@pytest.fixture(scope="module")
def scaled_runs(tmp_path_factory: pytest.TempPathFactory, starter_model: Path) -> dict[str, dict[str, Any]]:
    """One child run per scale, in the order 100 %, 150 %, 200 %, sharing one profile.

    Each run finds the window size the one before saved at another scale: it is used only if it fits.
    """
    from tests.conftest import user_env

    home = tmp_path_factory.mktemp("layout")
    env = {**os.environ, **user_env(home), "QT_QPA_PLATFORM": _screen_config(home)}
    runs = {}
    for scale in SCALES:
        child = subprocess.run(
            [sys.executable, "-m", "tests.ui.test_layout", scale, str(starter_model)],
            cwd=ROOT,
            env={**env, "QT_SCALE_FACTOR": scale},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert child.returncode == 0, child.stderr[-3000:]
        runs[scale] = json.loads(child.stdout.strip().splitlines()[-1])
    return runs


@pytest.mark.parametrize("scale", SCALES)
def test_composer_send_and_status_bar_are_on_screen(scaled_runs: dict[str, dict[str, Any]], scale: str) -> None:
    run = scaled_runs[scale]
    available = run["available"]
    assert available[2:] == [round(SCREEN.width() / float(scale)), round(SCREEN.height() / float(scale))]
    assert "Gemma 3 270M" in run["first"]["status_text"]  # a loaded model's long status did not widen the window
    for state in ("first", "panels"):
        shown = run[state]
        for part in ("window", "composer", "send", "status"):
            assert _within(shown[part], available), f"{part} leaves the screen at {scale}× ({state}): {shown}"
    assert _within(run["lock"]["window"], available)


@pytest.mark.parametrize("scale", SCALES)
def test_the_models_window_fits_and_scrolls_what_does_not(scaled_runs: dict[str, dict[str, Any]], scale: str) -> None:
    run = scaled_runs[scale]
    assert _within(run["models"]["window"], run["available"]), f"the Models window leaves the screen: {run['models']}"
    if scale == "1":
        assert not run["models"]["scrolls"]  # at 100 % everything shows at once
    if scale == "2":
        assert run["models"]["scrolls"]  # 683×384 logical pixels: the tabs scroll inside the window


@pytest.mark.parametrize("scale", SCALES)
def test_the_model_panel_starts_hidden(scaled_runs: dict[str, dict[str, Any]], scale: str) -> None:
    assert not scaled_runs[scale]["model_panel_visible"]


@pytest.mark.parametrize("scale", SCALES)
def test_the_lock_page_text_is_neither_clipped_nor_overlapping(
    scaled_runs: dict[str, dict[str, Any]], scale: str
) -> None:
    lock = scaled_runs[scale]["lock"]
    for height, needed in lock["labels"]:
        assert height >= needed > 0, f"a wrapped label is cut: {height} px shown of {needed} at {scale}×"
    column = lock["column"]
    for above, below in itertools.pairwise(column):
        assert above[1] + above[3] <= below[1], f"overlap at {scale}×: {column}"


def test_first_size_comes_from_the_free_screen_area() -> None:
    laptop = first_geometry(QRect(0, 0, 1366, 740))  # a panel takes the bottom 28 px
    assert QRect(0, 0, 1366, 740).contains(laptop)
    assert laptop.width() == int(1366 * 0.85)
    assert 0.85 * 740 <= laptop.height() <= 0.92 * 740  # a comfortable height, still short of the whole screen
    assert abs(laptop.center().x() - 683) <= 1 and abs(laptop.center().y() - 370) <= 1
    small = QRect(0, 0, 683, 384)  # 1366×768 at 200 %
    assert small.contains(first_geometry(small)) and first_geometry(small).width() > 0.85 * 683
    huge = QRect(0, 0, 3840, 2160)
    assert first_geometry(huge).size() == LARGEST_FIRST
    second_screen = QRect(1920, 0, 1280, 1024)
    assert second_screen.contains(first_geometry(second_screen))


def test_model_details_toggle_and_are_remembered(qtbot: QtBot, windows: Windows, app_paths: AppPaths) -> None:
    settings = settings_with(app_paths, {})
    w = windows.start(settings, open_history=False, ready=False)
    toggle = w.info_panel.toggleViewAction()
    assert not w.info_panel.isVisible() and not toggle.isChecked()
    assert toggle.text() == "&Model details"
    toggle.trigger()
    assert w.info_panel.isVisible()
    w.close()
    again = windows.start(settings, open_history=False, ready=False)
    assert again.info_panel.isVisible()  # as the user left it
    again.info_panel.toggleViewAction().trigger()
    again.close()
    third = windows.start(settings, open_history=False, ready=False)
    assert not third.info_panel.isVisible()


def test_a_saved_size_that_no_longer_fits_is_replaced(qtbot: QtBot, windows: Windows, app_paths: AppPaths) -> None:
    settings = settings_with(app_paths, {})
    w = windows.start(settings, open_history=False, ready=False)
    available = w.screen().availableGeometry()
    w.setGeometry(available.adjusted(-200, -200, 400, 400))  # as saved on a bigger screen, or at a smaller scale
    w.close()
    again = windows.start(settings, open_history=False, ready=False)
    assert available.contains(again.geometry())
    assert again.size() == first_geometry(available).size()
    fitting = QRect(available.topLeft() + QPoint(10, 10), QSize(500, 400))
    again.setGeometry(fitting)
    again.close()
    third = windows.start(settings, open_history=False, ready=False)
    assert third.geometry().size() == fitting.size()  # a size that fits is kept


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1], Path(sys.argv[2]))), flush=True)
