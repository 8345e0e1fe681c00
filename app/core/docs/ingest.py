"""One file, start to finish, in a child process: extract, then chunk; bounded in time and memory.

The parsers are C libraries (PDFium, lxml, lexbor) fed untrusted files, so
each file is read in a short-lived child process: a file that hangs is killed
at its time limit, one that makes a parser crash or balloon fails alone with a
reason, and the app goes on. The parent only ever receives plain data.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app.core.docs.chunking import Chunk, SectionText, chunk_sections
from app.core.docs.extract import ExtractError, extract
from app.core.errors import UserError
from app.core.sandbox import exit_with_parent

TIME_LIMIT_S = 120.0
MEMORY_LIMIT = 2 * 1024**3  # address space of the child; a 200 MB file never needs more


@dataclass(frozen=True)
class Ingested:
    """What indexing a file produced."""

    kind: str
    pages: int | None
    title: str | None
    chunks: list[Chunk]
    scanned: tuple[int, ...] = ()  # a PDF's pages with no text layer, to be kept as images (1-based)


class IngestError(UserError):
    """A file that could not be indexed, with the reason for the user."""


class IngestCancelledError(IngestError):
    """Reading was stopped (Tern is closing); the file stays queued for the next start."""


def ingest_here(path: Path, deadline_s: float = TIME_LIMIT_S) -> Ingested:
    """Extract and chunk in this process (the child's work; also handy in tests)."""
    extracted = extract(path, deadline_s=deadline_s)
    sections = [SectionText(s.text, s.page, s.heading, s.line_start, s.line_end) for s in extracted.sections]
    return Ingested(extracted.kind, extracted.pages, extracted.title, chunk_sections(sections), extracted.scanned)


def _child(path: str, deadline_s: float, memory_limit: int, out: multiprocessing.Queue, parent: int) -> None:  # type: ignore[type-arg]
    exit_with_parent(parent)
    if sys.platform.startswith("linux"):
        import resource  # POSIX only; Windows and macOS readers rely on the time limit alone

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    try:
        out.put(("ok", ingest_here(Path(path), deadline_s)))
    except ExtractError as exc:
        out.put(("error", exc.reason))
    except MemoryError:
        out.put(("error", "needs more memory than a document may use"))
    except Exception:  # a parser bug on a strange file: that file fails, not the app
        out.put(("error", "could not be read: the reader failed on it (it may be damaged)"))


def ingest(
    path: Path,
    time_limit_s: float = TIME_LIMIT_S,
    memory_limit: int = MEMORY_LIMIT,
    cancel: threading.Event | None = None,
) -> Ingested:
    """Index `path` in a child process; raises IngestError with the reason when it fails or runs too long.

    Setting `cancel` kills the child within a fifth of a second (IngestCancelledError): closing Tern never
    waits for a long file.
    """
    context = multiprocessing.get_context("spawn")  # no inherited threads or Qt state in the child
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    child = context.Process(
        target=_child,
        args=(str(path), time_limit_s * 0.9, memory_limit, results, os.getpid()),
        name="tern-ingest",
        daemon=True,
    )
    child.start()
    deadline = time.monotonic() + time_limit_s
    try:
        while True:
            try:
                status, value = results.get(timeout=max(0.01, min(0.2, deadline - time.monotonic())))
                break
            except queue.Empty:
                if not child.is_alive() and results.empty():  # it died without an answer: a crash
                    raise IngestError(f"{path.name}: the reader stopped unexpectedly (exit {child.exitcode})") from None
                if cancel is not None and cancel.is_set():
                    child.kill()
                    raise IngestCancelledError(f"{path.name}: reading was stopped") from None
                if time.monotonic() > deadline:
                    child.kill()
                    raise IngestError(f"{path.name}: took longer than {time_limit_s:.0f} s to read") from None
    finally:
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
            child.join()
        results.close()
    if status == "error":
        raise IngestError(f"{path.name}: {value}")
    assert isinstance(value, Ingested)
    return value
