"""The document service: attaching files to a conversation and indexing them, one at a time, resumably.

Attaching records each file in the encrypted store as "queued" first, so a
restart finds it again (`resume`). The "documents" thread reads a file in a
child process (`ingest`) and hands the chunks to the history's store thread;
the GUI thread only hears about states and the batch's progress. A bad file
fails alone, with its reason, and the rest of the batch goes on. Closing Tern
kills a read in progress at once; that file is read again at the next start.

The embedding model has one owner, the "embeddings" thread: the indexer and a
turn's question both ask it for vectors, a batch at a time, so a question
never waits for a whole document.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from PySide6.QtCore import QObject, Signal

from app.core.docs.doc_store import DocumentInfo, DocumentStore, Passage
from app.core.docs.embedder import Embedder, EmbedderSlot
from app.core.docs.extract import classify, iter_files
from app.core.docs.ingest import IngestCancelledError, IngestError, ingest
from app.core.docs.page_images import render_pages
from app.core.engine.probe import ModelChecks
from app.core.images import ImageReader
from app.services.history import HistoryService
from app.services.worker_host import WorkerHost

T = TypeVar("T")

log = logging.getLogger("tern.docs")
EMBED_BATCH = 16  # chunks per request to the embeddings thread: a question waits for one batch at most


def _changed_on_disk(document: DocumentInfo) -> bool:
    try:
        st = Path(document.path).stat()
    except OSError:
        return False  # gone: its passages stay usable; the panel still lists it
    return (st.st_size, st.st_mtime) != (document.size, document.mtime)


class _IndexHost(WorkerHost):
    drain_on_shutdown = False  # the rest of the queue resumes at the next start

    def __init__(self, parent: QObject) -> None:
        super().__init__("documents", parent)
        self.cancel = threading.Event()  # kills the reader child
        self._pages: ImageReader | None = None  # renders scanned pages, in its child process (first use)

    def page_reader(self) -> ImageReader:
        """The reader that renders scanned PDF pages (on this thread)."""
        if self._pages is None:
            self._pages = ImageReader()
        return self._pages

    def about_to_stop(self) -> None:
        """Stop the file being read now."""
        self.cancel.set()

    def thread_stopping(self) -> None:
        """Stop the page renderer's child on the thread that used it."""
        if self._pages is not None:
            self._pages.close()
            self._pages = None


class _EmbeddingHost(WorkerHost):
    drain_on_shutdown = False

    def __init__(self, slot: EmbedderSlot, parent: QObject) -> None:
        super().__init__("embeddings", parent)
        self.slot = slot  # used on this thread only

    def thread_stopping(self) -> None:
        """Free the model on the thread that used it."""
        self.slot.set_path(None)


class DocumentService(QObject):
    """Attach files to a conversation and index them; `state_changed` reports each document's progress."""

    state_changed = Signal(int, str, str)  # document id, state (queued … ready/failed), reason
    attached = Signal(list, list)  # [DocumentInfo] newly queued, [(path, reason)] not attachable
    # finished, total, seconds left (-1 when unknown), [(file name, reason)] of the batch's files that failed
    batch_progress = Signal(int, int, float, list)
    embedder_failed = Signal(str)  # the chosen embedding model could not be loaded, and why

    def __init__(self, history: HistoryService, checks: ModelChecks | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._history = history
        self._store = history.host
        self.embedder = EmbedderSlot(checks)
        self._index = _IndexHost(self)
        self._embeddings = _EmbeddingHost(self.embedder, self)
        self._total = self._finished = 0
        self._started = 0.0
        self._queued: dict[int, str] = {}  # document id → file name, until it is read or fails
        self._failed: list[tuple[str, str]] = []  # this batch's failures: (file name, reason)
        self.state_changed.connect(self._count)

    @property
    def hosts(self) -> tuple[WorkerHost, ...]:
        """Its threads, for the failure route."""
        return self._index, self._embeddings

    def start(self) -> None:
        """Start the documents and embeddings threads."""
        self._index.start()
        self._embeddings.start()

    def shutdown(self, timeout_s: float = 3.0) -> bool:
        """Stop reading (the rest resumes at the next start) and join both threads; False if one was abandoned."""
        indexing = self._index.shutdown(timeout_s)
        return self._embeddings.shutdown(timeout_s) and indexing

    # The embedding model
    def set_embedding_model(self, path: Path | None) -> None:
        """Choose (or, with None, drop) the model for hybrid search; it loads on first use."""
        self._embeddings.submit(lambda: self.embedder.set_path(path), label="choose the embedding model")

    def embed_question(self, question: str) -> npt.NDArray[np.float32] | None:
        """The question's vector, or None without an embedding model (from a worker thread; waits)."""

        def job() -> npt.NDArray[np.float32] | None:
            embedder = self.embedder.get()
            return embedder.embed([question])[0] if embedder is not None else None

        return self._embeddings.call(job)

    def run_embedding(self, use: Callable[[Embedder], T]) -> T | None:
        """`use(embedder)` on the embeddings thread, or None without a loadable model (from another thread; waits)."""

        def job() -> T | None:
            embedder = self.embedder.get()
            return use(embedder) if embedder is not None else None

        return self._embeddings.call(job)

    def _embed_chunks(self, texts: list[str]) -> list[bytes] | None:
        blobs: list[bytes] = []
        for start in range(0, len(texts), EMBED_BATCH):
            if self._index.stopping.is_set():
                raise IngestCancelledError("stopped")
            batch = self._embeddings.call(
                functools.partial(self.embedder.embed_chunks, texts[start : start + EMBED_BATCH])
            )
            if batch is None:
                return None
            blobs += batch
        return blobs or None

    # Attaching
    def attach(self, conversation_id: int, paths: list[Path]) -> None:
        """Queue dropped files and folders; unsupported ones come back with a reason in `attached`."""
        store = self._store

        def job() -> tuple[list[DocumentInfo], list[tuple[str, str]]]:
            files, skipped = iter_files(paths)  # walking a folder touches the disk: on the store thread
            docs = DocumentStore(store.require().connection)
            ids = set()
            for p in files:
                st = p.stat()
                ids.add(docs.add(conversation_id, str(p.resolve()), p.name, classify(p) or "", st.st_size, st.st_mtime))
            return [d for d in docs.documents(conversation_id) if d.id in ids], [(str(p), r) for p, r in skipped]

        def done(result: tuple[list[DocumentInfo], list[tuple[str, str]]]) -> None:
            attached, skipped = result
            self.attached.emit(attached, skipped)
            self._queue([d for d in attached if d.state == "queued"])

        store.submit(job, done, self._history_failed, label="attach documents")

    def documents(self, conversation_id: int, then: Callable[[list[DocumentInfo], list[Path]], None]) -> None:
        """The conversation's documents, and those changed on disk since they were read (stat: not on the GUI)."""
        store = self._store

        def job() -> tuple[list[DocumentInfo], list[Path]]:
            documents = DocumentStore(store.require().connection).documents(conversation_id)
            changed = [Path(d.path) for d in documents if d.state in ("ready", "failed") and _changed_on_disk(d)]
            return documents, changed

        store.submit(job, lambda result: then(*result), self._history_failed, label="list documents")

    def passages(self, document_id: int, then: Callable[[list[Passage]], None]) -> None:
        """Every passage of a document, in order."""
        store = self._store
        store.submit(lambda: DocumentStore(store.require().connection).chunks(document_id), then, label="passages")

    def remove(self, document_id: int, then: Callable[[], None]) -> None:
        """Detach a document from its conversation."""
        store = self._store
        store.submit(
            lambda: DocumentStore(store.require().connection).remove(document_id),
            lambda _r: then(),
            self._history_failed,
            label="remove a document",
        )

    def resume(self) -> None:
        """Queue documents whose indexing had not finished when Tern last stopped."""
        store = self._store
        store.submit(lambda: DocumentStore(store.require().connection).unfinished(), self._queue, label="resume")

    def _history_failed(self, exc: Exception) -> None:
        self._history.error.emit(str(exc))

    def _queue(self, documents: list[DocumentInfo]) -> None:
        documents = [d for d in documents if d.id not in self._queued]
        if not documents:
            return
        if self._finished >= self._total:  # a new batch
            self._total = self._finished = 0
            self._failed = []
            self._started = time.monotonic()
        self._total += len(documents)
        for d in documents:
            self._queued[d.id] = d.name
            self._index.submit(functools.partial(self._read, d.id, Path(d.path)), label="read a document")
            self.state_changed.emit(d.id, "queued", "")
        self._report()

    def _count(self, doc: int, state: str, reason: str) -> None:
        if state in ("ready", "failed") and doc in self._queued:
            name = self._queued.pop(doc)
            if state == "failed":
                self._failed.append((name, reason))
            self._finished += 1
            self._report()

    def _report(self) -> None:
        elapsed = time.monotonic() - self._started
        left = (elapsed / self._finished) * (self._total - self._finished) if self._finished else -1.0
        self.batch_progress.emit(self._finished, self._total, left, list(self._failed))

    # On the documents thread
    def _read(self, doc: int, path: Path) -> None:
        store = self._store
        store.submit(lambda: DocumentStore(store.require().connection).set_state(doc, "extracting"), label="state")
        self.state_changed.emit(doc, "extracting", "")
        try:
            result = ingest(path, cancel=self._index.cancel)
            self.state_changed.emit(doc, "indexing", "")
            rendered = render_pages(self._index.page_reader(), path, result, self._index.cancel.is_set)
            chunks = rendered.chunks
            if rendered.left_out:
                log.info("%s: %d scanned pages could not be kept as images", path.name, len(rendered.left_out))
            texts = [c.text for c in chunks if c.image_key is None]
            text_vectors = self._embed_chunks(texts)  # None without a model
            vectors = None
            if text_vectors is not None:  # a scanned page has no text to embed
                found = iter(text_vectors)
                vectors = [next(found) if c.image_key is None else None for c in chunks]
        except IngestCancelledError:
            return  # still unfinished in the store: read again at the next start
        except IngestError as exc:
            reason = str(exc).split(": ", 1)[-1]

            def failed() -> None:
                DocumentStore(store.require().connection).set_state(doc, "failed", reason)
                self.state_changed.emit(doc, "failed", reason)  # reported once it is stored

            store.submit(failed, label="record a failed document")
            return

        def save() -> None:
            docs = DocumentStore(store.require().connection)
            docs.set_state(doc, "indexing", pages=result.pages)
            docs.replace_chunks(doc, chunks, vectors, rendered.images)
            self.state_changed.emit(doc, "ready", "")

        store.submit(save, failed=self._history_failed, label="store a document's passages")
