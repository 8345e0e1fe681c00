"""Closing the window is bounded: a 2,000-page PDF being read and an answer streaming do not hold it up.

The reader child is killed, the document stays unfinished in the store (it is
read again at the next start), and the answer so far is saved as interrupted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.paths import AppPaths
from app.core.store.database import open_database
from app.core.store.keys import load_or_create_key
from tests.fixtures.pdfs import MakePdf
from tests.ui.windows import Windows, settings_with

LONG = 120_000
CLOSE_LIMIT_S = 3.0

pytestmark = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


def reader_children() -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True) if "tern-ingest" in " ".join(c.cmdline())]


def test_closing_mid_pdf_and_mid_answer_takes_at_most_three_seconds(
    qtbot: QtBot, windows: Windows, app_paths: AppPaths, starter_model: Path, tmp_path: Path, make_pdf: MakePdf
) -> None:
    pages = [f"Page {n}. " + "The keeper trimmed the wick and wrote the weather in the log. " * 30 for n in range(2000)]
    book = make_pdf(tmp_path / "logbook.pdf", pages)
    w = windows.start(settings_with(app_paths, {opts.CONTEXT_SIZE: 2048, opts.MAX_TOKENS: 4000}), load=starter_model)
    services = w.services
    states: list[str] = []
    services.documents.state_changed.connect(lambda _doc, state, _reason: states.append(state))
    w.documents.attach([book])
    qtbot.waitUntil(lambda: "extracting" in states, timeout=LONG)
    assert w.send_message("Write a very long story about a lighthouse keeper.")
    qtbot.waitUntil(lambda: len(w.model.item(w.model.rowCount() - 1).text) > 20, timeout=LONG)
    assert "ready" not in states and w.busy  # both still going

    started = time.monotonic()
    w.close()
    took = time.monotonic() - started
    print(f"closed in {took:.2f} s")  # quoted in the notes: run with -s

    assert took <= CLOSE_LIMIT_S, f"closing took {took:.1f} s"
    assert services.stopped is True  # every thread joined, none abandoned
    deadline = time.monotonic() + 5
    while reader_children() and time.monotonic() < deadline:  # killed; reaped by the reader's own join
        time.sleep(0.1)
    assert reader_children() == []
    conn = open_database(app_paths.history_db, load_or_create_key(app_paths.history_db))
    try:
        state, error = conn.execute("SELECT state, error FROM documents").fetchone()
        answer, stats = conn.execute("SELECT content, stats FROM messages WHERE role = 'assistant'").fetchone()
    finally:
        conn.close()
    assert state in ("queued", "extracting"), error  # unfinished: read again at the next start
    assert len(answer) > 20 and "interrupted" in stats  # the answer so far, marked as interrupted
