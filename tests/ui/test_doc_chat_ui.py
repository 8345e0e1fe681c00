"""Document chat in the real window: drop a folder, watch it being read, ask, and check the answer's sources."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.docs.doc_store import DocumentStore
from app.core.paths import AppPaths
from app.ui.main_window import MainWindow
from tests.core.docs.test_scanned_pages import SCAN, write_mixed_pdf
from tests.fixtures.pdfs import MakePdf
from tests.ui.windows import Windows, click_anchor, settings_with, settle

LONG = 60_000
pytestmark = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


MakeWindow = Callable[[], MainWindow]


@pytest.fixture
def make_window(windows: Windows, app_paths: AppPaths, starter_model: Path) -> MakeWindow:
    def start() -> MainWindow:
        settings = settings_with(app_paths, {opts.CONTEXT_SIZE: 2048, opts.MAX_TOKENS: 16})
        w = windows.start(settings, load=starter_model)
        w.resize(1280, 800)  # a laptop's window: the offscreen screen is 800×600, too small for panel and notices
        return w

    return start


def drop(window: MainWindow, paths: list[Path]) -> None:
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    no_button, no_keys = Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(QPoint(300, 300), Qt.DropAction.CopyAction, data, no_button, no_keys)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted() and window.documents.overlay.isVisible()
    QApplication.sendEvent(window, QDropEvent(QPointF(300, 300), Qt.DropAction.CopyAction, data, no_button, no_keys))
    assert not window.documents.overlay.isVisible()


def test_drop_ask_and_check_the_sources(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path, make_pdf: MakePdf
) -> None:
    folder = tmp_path / "dropped"
    folder.mkdir()
    make_pdf(folder / "report.pdf", ["An introduction to the island.", "The lighthouse keeper's name was Edda."])
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    w = make_window()
    panel = w.documents.panel
    drop(w, [folder])
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1 and panel.table.item(0, 1).text() == "Ready", timeout=LONG)
    assert panel.isVisible() and panel.table.item(0, 2).text() == "2"
    assert w.history.conversation_id is not None
    notice = w.chat.chat_notice.notice_for(w.history.conversation_id)
    assert "photo.png: images are not supported: no OCR" in notice

    with qtbot.waitSignal(w.answer_finished, timeout=LONG) as finished:
        assert w.send_message("What was the lighthouse keeper's name?")
    settle(qtbot, w)
    result = finished.args[0]
    answer = w.model.item(1)
    assert [s.citation() for s in answer.sources] == ["report.pdf, page 1", "report.pdf, page 2"]  # whole: it fits
    assert result.stats.prompt_tokens > 40  # the sources went into the prompt, not just the question
    shown = w.view.delegate.rendered(w.model.index(1)).doc.toPlainText()
    assert "Sources" in shown and "report.pdf, page 2" in shown  # always listed, whatever the model wrote
    click_anchor(qtbot, w, 1, "report.pdf, page 2")
    dialog = w.documents.source_dialog
    assert dialog is not None and dialog.isVisible()
    assert "Edda" in dialog.text.toPlainText() and dialog.open_button.isEnabled()
    qtbot.waitUntil(lambda: "An introduction to the island" in dialog.text.toPlainText(), timeout=LONG)  # in context
    w.close()

    again = make_window()
    qtbot.waitUntil(lambda: again.model.rowCount() == 2, timeout=LONG)
    assert [s.citation() for s in again.model.item(1).sources] == ["report.pdf, page 1", "report.pdf, page 2"]
    qtbot.waitUntil(lambda: again.documents.panel.table.rowCount() == 1, timeout=LONG)


def test_a_file_changed_on_disk_is_read_again(qtbot: QtBot, make_window: MakeWindow, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Ferry\n\nThe ferry leaves at nine from the north pier.\n")
    w = make_window()
    panel = w.documents.panel
    drop(w, [notes])
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1 and panel.table.item(0, 1).text() == "Ready", timeout=LONG)
    qtbot.waitUntil(lambda: panel.status.text() == "1 file read.", timeout=LONG)  # not "All 1 files read."
    notes.write_text("# Ferry\n\nSince May the ferry leaves at ten from the south pier, on weekdays only.\n")
    with qtbot.waitSignal(
        w.documents.indexer.state_changed, check_params_cb=lambda _d, s, _r: s == "ready", timeout=LONG
    ):
        w.documents.refresh()  # what opening the conversation does
    with qtbot.waitSignal(w.history.conversations, timeout=LONG):
        w.history.refresh()
    found = []
    w.history.query(
        lambda s: DocumentStore(s.connection).search(w.history.conversation_id or 0, "south pier weekdays"),
        found.extend,
    )
    qtbot.waitUntil(lambda: bool(found), timeout=LONG)
    assert "south pier" in found[0].text


def test_with_an_embedding_model_passages_get_vectors_and_questions_use_both(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path, make_pdf: MakePdf, starter_model: Path
) -> None:
    """The mechanism, not quality: the starter Gemma stands in for an embedding model (none can be downloaded here)."""
    pdf = make_pdf(
        tmp_path / "report.pdf", ["An introduction to the island.", "The lighthouse keeper's name was Edda."]
    )
    w = make_window()
    w.models.use_for_embeddings(starter_model)
    assert w.settings.get(opts.EMBEDDING_MODEL) == str(starter_model)
    panel = w.documents.panel
    drop(w, [pdf])
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1 and panel.table.item(0, 1).text() == "Ready", timeout=LONG)
    counts: list[tuple[int, int]] = []
    w.history.query(
        lambda s: s.connection.execute("SELECT count(*), count(vector) FROM chunks").fetchone(), counts.append
    )
    qtbot.waitUntil(lambda: bool(counts), timeout=LONG)
    assert counts[0][0] == counts[0][1] > 0  # every passage has its vector, in the encrypted store
    with qtbot.waitSignal(w.answer_finished, timeout=LONG):
        assert w.send_message("Who kept the lighthouse?")
    assert "report.pdf, page 2" in [s.citation() for s in w.model.item(1).sources]
    assert w.documents.indexer.embedder.error == ""


def test_files_that_fail_are_said_to_have_failed_with_their_reason(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path
) -> None:
    folder = tmp_path / "dropped"
    folder.mkdir()
    (folder / "notes.md").write_text("# Ferry\n\nThe ferry leaves at nine from the north pier.\n")
    (folder / "empty.pdf").write_bytes(b"")
    (folder / "damaged.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 64)
    w = make_window()
    panel = w.documents.panel
    drop(w, [folder])
    qtbot.waitUntil(lambda: "files read" in panel.status.text(), timeout=LONG)
    status = panel.status.text()
    assert status.startswith("1 of 3 files read. Could not read ")  # not "All 3 files read"
    assert "Could not read empty.pdf: it is empty." in status
    assert "Could not read damaged.pdf: it is damaged or not a PDF." in status

    def states() -> dict[str, str]:
        return {panel.table.item(r, 0).text(): panel.table.item(r, 1).text() for r in range(panel.table.rowCount())}

    expected = {
        "notes.md": "Ready",
        "empty.pdf": "Failed: it is empty",
        "damaged.pdf": "Failed: it is damaged or not a PDF",
    }
    qtbot.waitUntil(lambda: states() == expected, timeout=LONG)  # the table follows a moment later

    with qtbot.waitSignal(w.answer_finished, timeout=LONG) as finished:
        assert w.send_message("When does the ferry leave?")
    notice = finished.args[0].notice
    assert "Could not read empty.pdf: it is empty." in notice
    assert "Could not read damaged.pdf: it is damaged or not a PDF." in notice
    assert "Not read yet" not in notice and "Still being read" not in notice
    assert w.model.item(1).notice == notice  # shown under the answer


def test_scanned_pages_are_named_in_the_panel_and_under_an_answer_from_a_model_that_cannot_see(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path, qapp: object
) -> None:
    pdf = write_mixed_pdf(
        tmp_path / "mixed.pdf", ["The lighthouse keeper's name was Edda.", SCAN, SCAN, "She kept it for forty years."]
    )
    w = make_window()
    panel = w.documents.panel
    drop(w, [pdf])
    qtbot.waitUntil(
        lambda: panel.table.rowCount() == 1 and panel.table.item(0, 1).text().startswith("Ready"), timeout=LONG
    )
    state = panel.table.item(0, 1)
    assert state.text() == "Ready · pages 2–3 scanned"
    assert state.toolTip().startswith("Pages 2–3 of mixed.pdf are scans with no text")

    with qtbot.waitSignal(w.answer_finished, timeout=LONG) as finished:
        assert w.send_message("What was the lighthouse keeper's name?")
    settle(qtbot, w)
    notice = finished.args[0].notice
    assert "Pages 2–3 of mixed.pdf are scans: they need a model that sees images." in notice
    assert w.model.item(1).notice == notice
    assert [s.citation() for s in w.model.item(1).sources] == ["mixed.pdf, page 1", "mixed.pdf, page 4"]
