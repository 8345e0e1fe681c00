"""Indexing attached documents in the background, one file at a time, resumable after a restart.

Attaching records each file in the encrypted store as "queued" first, so a
restart finds it again (`resume`). The indexer thread reads a file in a child
process (`ingest`), then hands the chunks to the store writer; the GUI thread
only hears about states and the batch's progress. A bad file fails alone,
with its reason, and the rest of the batch goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.docs.doc_store import DocumentInfo, DocumentStore
from app.core.docs.embedder import EmbedderSlot
from app.core.docs.extract import classify, iter_files
from app.core.docs.ingest import IngestError, ingest
from app.core.store.conversation_store import ConversationStore
from app.workers.store_writer import StoreWriter

log = logging.getLogger("tern.docs")


class _Worker(QObject):
    state = Signal(int, str, str)  # document id, state, error

    def __init__(self, writer: StoreWriter, embedder: EmbedderSlot) -> None:
        super().__init__()
        self._writer = writer
        self._embedder = embedder
        self._queue: deque[tuple[int, Path]] = deque()
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def enqueue(self, items: list[tuple[int, Path]]) -> None:
        with self._lock:
            queued = {doc for doc, _ in self._queue}
            self._queue.extend(item for item in items if item[0] not in queued)

    @Slot()
    def run(self) -> None:
        while not self.stopping.is_set():
            with self._lock:
                if not self._queue:
                    break
                doc, path = self._queue.popleft()
            self._index(doc, path)

    def _store(self, job: object) -> None:
        self._writer.submit("docs", job)  # type: ignore[arg-type]

    def _index(self, doc: int, path: Path) -> None:
        self._store(lambda s: DocumentStore(s.connection).set_state(doc, "extracting"))
        self.state.emit(doc, "extracting", "")
        try:
            result = ingest(path)
        except IngestError as exc:
            reason = str(exc).split(": ", 1)[-1]

            def failed(store: ConversationStore) -> None:
                DocumentStore(store.connection).set_state(doc, "failed", reason)
                self.state.emit(doc, "failed", reason)  # reported once it is stored

            self._store(failed)
            return
        self.state.emit(doc, "indexing", "")
        vectors = self._embedder.embed_chunks([c.text for c in result.chunks])  # None without a model

        def save(store: ConversationStore) -> None:
            docs = DocumentStore(store.connection)
            docs.set_state(doc, "indexing", pages=result.pages)
            docs.replace_chunks(doc, result.chunks, vectors)
            self.state.emit(doc, "ready", "")

        self._store(save)


class DocumentIndexer(QObject):
    """Attach files to a conversation and index them; `state_changed` reports each document's progress."""

    state_changed = Signal(int, str, str)  # document id, state (queued … ready/failed), reason
    attached = Signal(list, list)  # [DocumentInfo] newly queued, [(path, reason)] not attachable
    batch_progress = Signal(int, int, float)  # finished, total, seconds left (-1 when unknown)
    _run_requested = Signal()

    def __init__(
        self, writer: StoreWriter, embedder: EmbedderSlot | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._writer = writer
        self.embedder = embedder or EmbedderSlot()
        self._thread = QThread()
        self._thread.setObjectName("documents")
        self._worker = _Worker(writer, self.embedder)
        self._worker.moveToThread(self._thread)
        self._run_requested.connect(self._worker.run)
        self._worker.state.connect(self._on_state)
        writer.done.connect(self._on_store_done)
        self._thread.start()
        self._total = self._finished = 0
        self._started = 0.0

    def attach(self, conversation_id: int, paths: list[Path]) -> None:
        """Queue dropped files and folders; unsupported ones come back with a reason in `attached`."""

        def job(store: ConversationStore) -> tuple[list[DocumentInfo], list[tuple[str, str]]]:
            # Walking a dropped folder touches the disk: here, on the writer thread, not the GUI's.
            files, skipped = iter_files(paths)
            docs = DocumentStore(store.connection)
            ids = set()
            for p in files:
                st = p.stat()
                ids.add(docs.add(conversation_id, str(p.resolve()), p.name, classify(p) or "", st.st_size, st.st_mtime))
            attached = [d for d in docs.documents(conversation_id) if d.id in ids]
            return attached, [(str(p), reason) for p, reason in skipped]

        self._writer.submit("docs:attach", job)

    @Slot(str, object)
    def _on_store_done(self, tag: str, result: object) -> None:
        if tag == "docs:attach" and isinstance(result, tuple):
            attached, skipped = result
            self.attached.emit(attached, skipped)
            self._queue([d for d in attached if d.state == "queued"])
        elif tag == "docs:unfinished" and isinstance(result, list):
            self._queue(result)

    def resume(self) -> None:
        """Queue documents whose indexing had not finished when Tern last stopped."""
        self._writer.submit("docs:unfinished", lambda s: DocumentStore(s.connection).unfinished())

    def _queue(self, documents: list[DocumentInfo]) -> None:
        if not documents:
            return
        if self._finished >= self._total:  # a new batch
            self._total = self._finished = 0
            self._started = time.monotonic()
        self._total += len(documents)
        self._worker.enqueue([(d.id, Path(d.path)) for d in documents])
        for d in documents:
            self.state_changed.emit(d.id, "queued", "")
        self._run_requested.emit()
        self._report()

    def _on_state(self, doc: int, state: str, reason: str) -> None:
        if state in ("ready", "failed"):
            self._finished += 1
            self._report()
        self.state_changed.emit(doc, state, reason)

    def _report(self) -> None:
        elapsed = time.monotonic() - self._started
        left = (elapsed / self._finished) * (self._total - self._finished) if self._finished else -1.0
        self.batch_progress.emit(self._finished, self._total, left)

    def shutdown(self) -> None:
        """Stop after the current file (the rest resumes at the next start) and join the thread."""
        self._worker.stopping.set()
        self._thread.quit()
        self._thread.wait()
