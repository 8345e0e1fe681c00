"""Attaching and indexing documents on the background thread, with the real store writer and child readers."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import docx
import pytest
from pytestqt.qtbot import QtBot

from app.core.docs.doc_store import DocumentStore
from app.core.store.database import open_database
from app.services.documents import DocumentService
from app.services.history import HistoryService
from tests.fixtures.pdfs import MakePdf

LONG = 60_000


@pytest.fixture
def writer(qtbot: QtBot, tmp_path: Path) -> Iterator[tuple[HistoryService, Path, bytes]]:
    key = secrets.token_bytes(32)
    w = HistoryService(tmp_path / "history.db")
    w.start_thread()
    with qtbot.waitSignal(w.ready, timeout=10_000):
        w.open_with_key(key)
    with qtbot.waitSignal(w.conversations, timeout=10_000):
        w.query(lambda s: s.create_conversation("Reading"), lambda _r: w.refresh())
    yield w, tmp_path / "history.db", key
    assert w.shutdown()


def started(history: HistoryService) -> DocumentService:
    service = DocumentService(history)
    service.start()
    return service


def folder_of_documents(root: Path, make_pdf: MakePdf) -> Path:
    folder = root / "dropped"
    (folder / "sub").mkdir(parents=True)
    make_pdf(folder / "report.pdf", ["Introduction.", "The keeper's name was Edda."])
    word = docx.Document()
    word.add_heading("Maintenance", level=1)
    word.add_paragraph("The lens was cleaned every Sunday.")
    word.save(str(folder / "sub" / "log.docx"))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    return folder


def test_a_dropped_folder_is_indexed_and_bad_files_fail_alone(
    qtbot: QtBot, writer: tuple[HistoryService, Path, bytes], tmp_path: Path, make_pdf: MakePdf
) -> None:
    w, db, key = writer
    indexer = started(w)
    states: dict[str, list[str]] = {}
    names: dict[int, str] = {}
    progress: list[tuple[int, int, float, list[tuple[str, str]]]] = []
    try:
        indexer.batch_progress.connect(lambda done, total, left, failed: progress.append((done, total, left, failed)))
        with qtbot.waitSignal(indexer.attached, timeout=LONG) as attached:
            indexer.attach(1, [folder_of_documents(tmp_path, make_pdf)])
        docs, skipped = attached.args
        names.update({d.id: d.name for d in docs})
        indexer.state_changed.connect(lambda doc, state, _r: states.setdefault(names[doc], []).append(state))
        assert sorted(d.name for d in docs) == ["empty.txt", "log.docx", "report.pdf"]
        assert [(Path(p).name, reason) for p, reason in skipped] == [("photo.png", "images are not supported: no OCR")]
        qtbot.waitUntil(lambda: bool(progress) and progress[-1][:2] == (3, 3), timeout=LONG)
    finally:
        indexer.shutdown()
    assert states["report.pdf"][-1] == "ready" and "extracting" in states["report.pdf"]
    assert states["empty.txt"][-1] == "failed"
    assert progress[-1][3] == [("empty.txt", "is empty")]  # the batch says which file failed, and why
    conn = open_database(db, key)
    store = DocumentStore(conn)
    by_name = {d.name: d for d in store.documents(1)}
    assert by_name["empty.txt"].error == "is empty"
    assert (by_name["report.pdf"].state, by_name["report.pdf"].pages) == ("ready", 2)
    assert store.search(1, "Who kept the lighthouse? Edda")[0].page == 2
    assert store.search(1, "lens cleaning")[0].heading == "Maintenance"
    conn.close()


def test_indexing_resumes_after_a_restart(
    qtbot: QtBot, writer: tuple[HistoryService, Path, bytes], tmp_path: Path, make_pdf: MakePdf
) -> None:
    w, db, key = writer
    files = [
        make_pdf(tmp_path / f"part{n}.pdf", [f"Chapter {n} tells how the lighthouse on the point was built."])
        for n in range(4)
    ]
    first = DocumentService(w)  # never started: the app quit right after attaching
    with qtbot.waitSignal(first.attached, timeout=LONG):
        first.attach(1, files)
    with qtbot.waitSignal(w.conversations, timeout=LONG):
        w.refresh()  # answered after the attach, on the same thread
    conn = open_database(db, key)
    assert {d.state for d in DocumentStore(conn).documents(1)} == {"queued"}  # recorded, not lost
    conn.close()

    second = started(w)  # the next start
    try:
        progress: list[tuple[int, int]] = []
        second.batch_progress.connect(lambda done, total, _left: progress.append((done, total)))
        second.resume()
        qtbot.waitUntil(lambda: bool(progress) and progress[-1] == (4, 4), timeout=LONG)
    finally:
        second.shutdown()
    conn = open_database(db, key)
    assert {d.state for d in DocumentStore(conn).documents(1)} == {"ready"}
    conn.close()
