"""The model manager in the real window: look up, fit guidance, download, install, load; import by drop."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.models import registry
from app.core.paths import AppPaths
from app.ui import units
from app.ui.main_window import MainWindow
from app.ui.model_lists import InstalledTab
from tests.fixtures.hub import PROJECTOR_NAME, PROJECTOR_Q8_NAME, PUBLIC_REPO, STARTER_NAME, VISION_REPO
from tests.fixtures.hub_server import Fault, HubServer
from tests.ui.windows import Windows, settings_with

LONG = 60_000


@pytest.fixture
def window(windows: Windows, app_paths: AppPaths, hub_server: HubServer) -> MainWindow:
    settings = settings_with(app_paths, {opts.HUB_ENDPOINT: hub_server.endpoint, opts.CONTEXT_SIZE: 2048})
    return windows.start(settings, open_history=False, ready=False)


def test_look_up_download_and_load_a_model(qtbot: QtBot, window: MainWindow, hub_server: HubServer) -> None:
    manager = window.open_models()
    discover = manager.discover
    assert discover.entries.count() >= 7 and "Gemma 4 E2B" in discover.entries.item(0).text()
    discover.repo.setText(f"{hub_server.endpoint}/{PUBLIC_REPO}")  # a pasted URL works too
    discover.repo.setText(PUBLIC_REPO)
    with qtbot.waitSignal(window.downloads.fetched, timeout=LONG):
        qtbot.mouseClick(discover.look_up, Qt.MouseButton.LeftButton)
    assert discover.options.rowCount() == 1
    assert discover.options.item(0, 0).text() == "Q4_K_M"
    fit = discover.options.item(0, 2)
    assert fit.data(Qt.ItemDataRole.UserRole) in ("Fits", "Tight", "Won't fit") and "GB" in fit.text()
    assert "Conversation memory (KV cache)" in fit.toolTip()  # where the memory goes

    hub_server.faults[STARTER_NAME] = Fault(rate=80_000_000)  # slow enough to watch the progress
    button = discover.options.cellWidget(0, 3)
    with qtbot.waitSignal(window.downloads.installed, timeout=LONG):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        manager.tabs.setCurrentWidget(manager.downloads)
        qtbot.waitUntil(lambda: manager.downloads.table.rowCount() == 1, timeout=LONG)
    installed = manager.installed
    qtbot.waitUntil(lambda: installed.table.rowCount() == 1, timeout=5000)
    assert installed.table.item(0, 1).text().startswith("Gemma 3")
    assert installed.table.item(0, column(installed, "Images")).text() == ""  # a text-only model
    assert PUBLIC_REPO in installed.table.item(0, column(installed, "Source")).text()

    installed.table.selectRow(0)
    with qtbot.waitSignal(window.model_ready, timeout=LONG) as ready:
        qtbot.mouseClick(installed.load_button, Qt.MouseButton.LeftButton)
    assert ready.args[0].info.path == Path(window.paths.models) / PUBLIC_REPO / STARTER_NAME
    last_used = column(installed, "Last used")
    qtbot.waitUntil(lambda: installed.table.item(0, last_used).text().startswith("today"), timeout=5000)

    manager.network.refresh()
    reasons = [manager.network.table.item(r, 1).text() for r in range(manager.network.table.rowCount())]
    assert f"List the files of {PUBLIC_REPO}" in reasons and f"Download {PUBLIC_REPO} Q4_K_M" in reasons


def column(tab: InstalledTab, name: str) -> int:
    return tab.COLUMNS.index(name)


def test_a_vision_model_comes_with_its_projector(qtbot: QtBot, window: MainWindow, hub_server: HubServer) -> None:
    manager = window.open_models()
    discover = manager.discover
    assert not discover.with_projector.isVisible()  # nothing looked up yet
    discover.repo.setText(VISION_REPO)
    with qtbot.waitSignal(window.downloads.fetched, timeout=LONG):
        qtbot.mouseClick(discover.look_up, Qt.MouseButton.LeftButton)
    assert "1 model file, 2 image projectors" in discover.status.text()
    box = discover.with_projector
    assert box.isVisible() and box.isChecked()
    size = units.size(hub_server.blob(VISION_REPO, PROJECTOR_NAME).size)
    assert box.text() == f"Also get the image projector ({PROJECTOR_NAME}, {size}), to send it pictures"
    assert discover.projector.count() == 2 and discover.projector.itemText(0).startswith("F16")
    assert "Each image uses up to 280 tokens of the 2,048-token context." in discover.projector_note.text()
    fit = discover.options.item(0, 2).toolTip()
    assert "Image projector, with one image" in fit and "280 tokens" in fit
    discover.projector.setCurrentIndex(1)  # the user picks the Q8_0 one
    assert PROJECTOR_Q8_NAME in box.text()
    discover.projector.setCurrentIndex(0)

    with qtbot.waitSignal(window.downloads.installed, timeout=LONG) as done:
        qtbot.mouseClick(discover.options.cellWidget(0, 3), Qt.MouseButton.LeftButton)
        rows = manager.downloads.table
        assert rows.item(0, 0).text().endswith("Q8_0 + image projector")  # one download, one progress bar
    model = Path(done.args[0].path)
    projector = model.parent / PROJECTOR_NAME
    assert projector.exists() and model.parent == Path(window.paths.models) / VISION_REPO
    installed = manager.installed
    manager.tabs.setCurrentWidget(installed)
    images = column(installed, "Images")
    qtbot.waitUntil(lambda: installed.table.rowCount() == 1, timeout=5000)
    qtbot.waitUntil(lambda: installed.table.item(0, images).text() == "vision", timeout=5000)
    assert PROJECTOR_NAME in installed.table.item(0, images).toolTip()

    projector.unlink()  # lost: the list says so, and offers to fetch it again
    installed.refresh()
    qtbot.waitUntil(lambda: installed.table.item(0, images).text() == "", timeout=5000)
    installed.table.selectRow(0)
    assert installed.projector_button.isVisible()
    with qtbot.waitSignal(window.downloads.projector_installed, timeout=LONG):
        qtbot.mouseClick(installed.projector_button, Qt.MouseButton.LeftButton)
    assert projector.exists()
    qtbot.waitUntil(lambda: installed.table.item(0, images).text() == "vision", timeout=5000)
    assert f"{done.args[0].name} can now see images" in installed.status.text()
    entry = window.services.models.get(model)
    assert entry is not None and str(projector) in entry.files  # deleting the model takes it along
    manager.network.refresh()
    reasons = {manager.network.table.item(r, 1).text() for r in range(manager.network.table.rowCount())}
    assert f"Find the image projector of {VISION_REPO}" in reasons


def test_a_gated_repo_explains_what_to_do(qtbot: QtBot, window: MainWindow) -> None:
    manager = window.open_models()
    manager.discover.repo.setText("nobody/missing-GGUF")
    with qtbot.waitSignal(window.downloads.fetch_failed, timeout=LONG):
        manager.discover.look_up_repo()
    assert "no model nobody/missing-GGUF" in manager.discover.status.text()


def drop(window: MainWindow, path: Path) -> None:
    """Drag a file over the window, then drop it (as a file manager does)."""
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(
        QPoint(200, 200), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        QPointF(200, 200), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(window, event)


def test_dropping_a_gguf_imports_it_in_place_and_loads_it(
    qtbot: QtBot, window: MainWindow, starter_model: Path, tmp_path: Path
) -> None:
    with qtbot.waitSignal(window.model_ready, timeout=LONG) as ready:
        drop(window, starter_model)
    assert ready.args[0].info.path == starter_model
    entry = window.services.models.get(starter_model)
    assert entry is not None and entry.imported and entry.size == starter_model.stat().st_size
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4000))
    drop(window, broken)
    qtbot.waitUntil(lambda: "not a model Tern can load" in window.notice.label.text(), timeout=5000)
    assert window.services.models.get(broken) is None


def test_the_model_check_runs_off_the_gui_thread(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sparse file of 64 GiB apparent size whose header claims the most entries a real one could.
    hostile = tmp_path / "sparse.gguf"
    with hostile.open("wb") as f:
        f.write(b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (65_536).to_bytes(8, "little"))
        f.truncate(64 << 30)
    threads = []
    real_read = registry.read_gguf_info

    def spy(path: Path) -> object:  # records where the real check runs
        threads.append(threading.current_thread())
        return real_read(path)

    monkeypatch.setattr(registry, "read_gguf_info", spy)
    drop(window, hostile)
    qtbot.waitUntil(lambda: "not a model Tern can load" in window.notice.label.text(), timeout=5000)
    assert "empty or repeated metadata key" in window.notice.label.text()
    assert threads and threads[0] is not threading.main_thread()


def test_importing_a_copy_and_deleting_it(
    qtbot: QtBot, window: MainWindow, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = window.open_models()
    installed = manager.installed
    installed.copy_on_import.setChecked(True)
    # The platform's file dialog cannot be driven headless; it only supplies the path.
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(starter_model), ""))
    with qtbot.waitSignal(window.downloads.copied, timeout=LONG):  # copied on a worker thread
        qtbot.mouseClick(installed.import_button, Qt.MouseButton.LeftButton)
    copy = Path(window.paths.models) / "imported" / starter_model.name
    qtbot.waitUntil(lambda: installed.table.rowCount() == 1, timeout=5000)
    assert copy.exists()
    entry = window.services.models.get(copy)
    assert entry is not None and not entry.imported  # Tern's own copy: deleting removes the file
    installed.table.selectRow(0)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(installed.delete_button, Qt.MouseButton.LeftButton)  # deleted on the files thread
    qtbot.waitUntil(lambda: not copy.exists() and installed.table.rowCount() == 0, timeout=5000)
    assert starter_model.exists()  # the original was never touched


def test_the_token_only_goes_to_an_encrypted_hub(qtbot: QtBot, window: MainWindow) -> None:
    hub = window.open_models().hub
    hub.endpoint.setText("http://mirror.example.com")
    hub.save()
    assert "https://" in hub.status.text()
    assert window.settings.get(opts.HUB_ENDPOINT).startswith("http://127.0.0.1")  # unchanged
    hub.endpoint.setText("https://hf-mirror.example.com/")
    hub.save()
    assert window.settings.get(opts.HUB_ENDPOINT) == "https://hf-mirror.example.com"


def test_the_starter_is_listed_as_built_in_and_a_copy_of_it_is_not_added(
    qtbot: QtBot, window: MainWindow, starter_model: Path
) -> None:
    with qtbot.waitSignal(window.model_ready, timeout=LONG):
        window.load_model(None)  # the starter, assembled into the models folder
    installed = window.open_models().installed
    qtbot.waitUntil(lambda: installed.table.rowCount() == 1, timeout=LONG)
    assert installed.table.item(0, 0).text() == "Gemma 3 270M (starter)"
    assert installed.table.item(0, column(installed, "Source")).text() == "built-in"
    installed.table.selectRow(0)
    assert installed.load_button.isEnabled() and not installed.delete_button.isEnabled()
    assert "cannot be deleted" in installed.delete_button.toolTip()
    installed.delete(installed._models[0])  # even when asked directly, it stays
    qtbot.waitUntil(lambda: "cannot be deleted" in installed.status.text(), timeout=5000)
    assert installed.table.rowCount() == 1

    with qtbot.waitSignal(window.model_ready, timeout=LONG) as ready:
        drop(window, starter_model)  # the same file from elsewhere: the built-in one is used
    assert ready.args[0].info.path == Path(window.paths.models) / starter_model.name
    assert "copy of the starter model" in window.notice.label.text()
    assert installed.table.rowCount() == 1 and window.services.models.get(starter_model) is None


def test_a_copy_of_an_installed_model_is_not_listed_twice(
    qtbot: QtBot, window: MainWindow, tiny_gemma: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = window.open_models().installed
    installed.import_file(tiny_gemma)
    qtbot.waitUntil(lambda: installed.table.rowCount() == 1, timeout=LONG)
    renamed = tmp_path / "my-model.gguf"
    renamed.write_bytes(tiny_gemma.read_bytes())
    installed.import_file(renamed)
    qtbot.waitUntil(lambda: "already installed" in installed.status.text(), timeout=LONG)
    assert f"my-model.gguf is already installed as {installed._models[0].display_name}" in installed.status.text()
    assert tiny_gemma.name in installed.status.text()  # which file it is
    assert installed.table.rowCount() == 1 and installed.selected() is not None

    installed.copy_on_import.setChecked(True)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(renamed), ""))
    installed.status.clear()
    qtbot.mouseClick(installed.import_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "already installed" in installed.status.text(), timeout=LONG)
    assert not (Path(window.paths.models) / "imported" / renamed.name).exists()  # refused before copying
    assert installed.table.rowCount() == 1


def test_offline_look_up_says_why_and_offers_import(
    qtbot: QtBot, windows: Windows, app_paths: AppPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nothing listens on: what a hub out of reach looks like
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = settings_with(app_paths, {opts.HUB_ENDPOINT: f"http://127.0.0.1:{port}"})
    window = windows.start(settings, open_history=False, ready=False)
    manager = window.open_models()
    discover = manager.discover
    assert not discover.import_instead.isVisible()
    with qtbot.waitSignal(window.downloads.fetch_failed, timeout=LONG):
        qtbot.mouseClick(discover.look_up, Qt.MouseButton.LeftButton)
    text = discover.status.text()
    assert text.startswith("Tern could not reach the hub at 127.0.0.1: the connection was refused.")
    assert "may be offline" in text and "Import a GGUF file…" in text
    assert discover.import_instead.isVisible()
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: asked.append(1) or ("", ""))
    qtbot.mouseClick(discover.import_instead, Qt.MouseButton.LeftButton)
    assert asked and manager.tabs.currentWidget() is manager.installed

    network = manager.network
    network.refresh()
    rows = [network.table.item(r, 2).text() for r in range(network.table.rowCount())]
    row = next(r for r, request in enumerate(rows) if f":{port}/" in request)
    assert network.table.item(row, 3).text() == "No answer: connection refused"
