"""Reading files in a child process: results come back as plain data; slow or crashing readers fail alone."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from app.core.docs.ingest import IngestError, ingest
from tests.fixtures.pdfs import MakePdf


def test_a_pdf_is_read_and_chunked_in_a_child(tmp_path: Path, make_pdf: MakePdf) -> None:
    pdf = make_pdf(tmp_path / "notes.pdf", ["The first page.", "The keeper's name was Edda."])
    result = ingest(pdf)
    assert (result.kind, result.pages) == ("pdf", 2)
    assert [c.page for c in result.chunks if "Edda" in c.text] == [2]


def test_a_bad_file_fails_with_its_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(IngestError, match=r"empty\.txt: is empty"):
        ingest(empty)


def test_a_reader_over_its_time_limit_is_stopped(tmp_path: Path, make_pdf: MakePdf) -> None:
    pdf = make_pdf(tmp_path / "long.pdf", [f"Page {n} of a long report." for n in range(300)])
    with pytest.raises(IngestError, match="took longer than"):
        ingest(pdf, time_limit_s=0.05)  # less than starting the child takes


def test_a_reader_that_crashes_is_reported_not_waited_for(tmp_path: Path, make_pdf: MakePdf) -> None:
    pdf = make_pdf(tmp_path / "big.pdf", [f"Page {n} of a long report about lighthouses." for n in range(900)])

    def crash_the_child() -> None:  # what a parser bug on a hostile file does: SIGSEGV
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for child in multiprocessing.active_children():
                if child.name == "tern-ingest" and child.pid:
                    os.kill(child.pid, signal.SIGSEGV)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=crash_the_child)
    killer.start()
    started = time.monotonic()
    with pytest.raises(IngestError, match=r"stopped unexpectedly \(exit -11\)"):
        ingest(pdf, time_limit_s=60)
    killer.join()
    assert time.monotonic() - started < 10  # noticed at once, not at the time limit
