"""Document chat in the window: drop or attach files, watch them being read, and check an answer's sources.

`DocumentChat` ties the pieces together: the drop overlay, the Documents dock
(each file's state, pages, chunks; the batch's progress and time left), the
background indexer, and the passage dialog that a click on a source opens.
Documents live in the encrypted history, so they need it open.
"""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QHeaderView,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.core.docs.doc_store import DocumentInfo, Passage
from app.core.docs.grounding import Source
from app.core.docs.retrieval import as_clause, failure_sentence, page_ranges
from app.services.documents import DocumentService
from app.services.history import HistoryService
from app.ui.chat_session import ChatSession
from app.ui.conversation_view import ConversationView

MAX_FAILURES_SHOWN = 4  # in the status line; the table lists every file with its reason
WARNING_COLOUR = "#92400e"
STATE_LABELS = {
    "queued": "Waiting",
    "extracting": "Reading…",
    "indexing": "Indexing…",
    "ready": "Ready",
    "failed": "Failed",
}


def scans_note(document: DocumentInfo) -> str:
    """What the panel says of a document's scanned pages ("" when it has none)."""
    if not document.scanned:
        return ""
    pages = page_ranges(document.scanned)
    one = len(document.scanned) == 1
    return (
        f"{pages[0].upper()}{pages[1:]} of {document.name} {'is a scan' if one else 'are scans'} with no text: "
        f"a model that sees images reads {'it' if one else 'them'} as {'a picture' if one else 'pictures'}, "
        f"and other models leave {'it' if one else 'them'} out."
    )


class DropOverlay(QLabel):
    """The hint shown over the window while files are dragged onto it."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__("Drop files or folders to chat about them", parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet(
            "background: rgba(30, 64, 175, 40); border: 3px dashed #1e40af; border-radius: 16px;"
            "font-size: 18pt; color: #1e3a8a;"
        )
        self.hide()

    def cover(self) -> None:
        """Show over the whole parent."""
        parent = self.parentWidget()
        if parent is not None:
            self.setGeometry(parent.rect().adjusted(12, 12, -12, -12))
        self.raise_()
        self.show()


class DocumentsPanel(QDockWidget):
    """The conversation's documents and the batch's progress."""

    attach_requested = Signal()
    remove_requested = Signal(int)  # document id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Documents", parent)
        self.setObjectName("documents")
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["File", "State", "Pages", "Passages"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.progress = QProgressBar()
        self.progress.hide()
        self.status = QLabel("Drop files here, or attach them, to ask about them.")
        self.status.setWordWrap(True)
        attach = QPushButton("Attach files…")
        self.remove_button = QPushButton("Remove")
        self.table.setAccessibleName("Documents")
        self.table.setAccessibleDescription(
            "Files attached to this conversation: each one's state, pages and passages."
        )
        attach.setAccessibleName("Attach files")
        attach.setAccessibleDescription("Choose files to attach to this conversation and ask about.")
        self.remove_button.setAccessibleName("Remove document")
        self.remove_button.setAccessibleDescription("Detach the selected file from this conversation.")
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(attach)
        layout.addWidget(self.remove_button)
        self.setWidget(body)
        self._documents: list[DocumentInfo] = []
        attach.clicked.connect(self.attach_requested)
        self.remove_button.clicked.connect(self._remove)

    def show_documents(self, documents: list[DocumentInfo]) -> None:
        """Replace the list."""
        self._documents = documents
        self.table.setRowCount(len(documents))
        for row, d in enumerate(documents):
            state = STATE_LABELS.get(d.state, d.state)
            if d.state == "ready" and d.scanned:
                state = f"{state} · {page_ranges(d.scanned)} scanned"
            cells = [
                d.name,
                state if d.state != "failed" else f"Failed: {as_clause(d.error)}",
                str(d.pages or ""),
                str(d.chunk_count or ""),
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(d.path if col == 0 else scans_note(d) if col == 1 and d.scanned else text)
                self.table.setItem(row, col, item)

    def show_progress(
        self, finished: int, total: int, seconds_left: float, failed: list[tuple[str, str]] | None = None
    ) -> None:
        """The batch: "3 of 10 files done · about 20 s left", then what was read and what failed, with why."""
        failed = failed or []
        self.progress.setVisible(finished < total)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(finished)
        problems = " ".join(f"{failure_sentence(name, reason)}." for name, reason in failed[:MAX_FAILURES_SHOWN])
        if len(failed) > MAX_FAILURES_SHOWN:
            problems += f" ({len(failed) - MAX_FAILURES_SHOWN} more could not be read; see the table.)"
        if finished < total:
            left = f" · about {seconds_left:.0f} s left" if seconds_left >= 0 else ""
            text = f"{finished} of {total} files done{left}. You can ask meanwhile."
        elif not total:
            text = self.status.text()
        elif not failed:
            text = "1 file read." if total == 1 else f"All {total} files read."
        else:
            read = total - len(failed)
            text = f"{read} of {total} files read." if read else ""
        self.status.setText(" ".join(t for t in (text, problems) if t))
        self.status.setStyleSheet(f"color: {WARNING_COLOUR};" if failed else "")

    def _remove(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.remove_requested.emit(self._documents[rows[0].row()].id)


class SourceDialog(QDialog):
    """A source's passage, highlighted, with its place in the file and a way to open the file."""

    def __init__(self, source: Source, path: str | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"[{source.number}] {source.citation()}")
        self.resize(620, 420)
        self._source = source
        self.text = QTextBrowser()
        self.show_context([])
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.open_button = buttons.addButton("Open file", QDialogButtonBox.ButtonRole.ActionRole)
        self.open_button.setEnabled(bool(path))  # a file gone since is the desktop's to report
        self.open_button.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(path or "")))
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)

    def show_context(self, neighbours: list[Passage]) -> None:
        """The passage highlighted among the passages around it in the document (when they are known)."""
        source = self._source
        parts = [f"<p><b>{html.escape(source.citation())}</b></p>"]
        chunk_ids = [p.chunk_id for p in neighbours]
        at = chunk_ids.index(source.chunk_id) if source.chunk_id in chunk_ids else -1
        before = neighbours[max(at - 1, 0) : at] if at >= 0 else []
        after = neighbours[at + 1 : at + 2] if at >= 0 else []
        muted = 'style="color:#6b7280;"'
        parts += [f"<p {muted}>…{html.escape(p.text[-600:])}</p>" for p in before]
        shown = source.text if source.image_key is None else "This page has no text: the model read it as a picture."
        parts.append(f'<p style="background-color:#fef9c3; color:#111827;">{html.escape(shown)}</p>')
        parts += [f"<p {muted}>{html.escape(p.text[:600])}…</p>" for p in after]
        self.text.setHtml("".join(parts))


class DocumentChat(QObject):
    """Attaching documents to the open conversation, indexing them, and showing their sources."""

    def __init__(
        self,
        window: QMainWindow,
        history: HistoryService,
        documents: DocumentService,
        session: ChatSession,
        view: ConversationView,
    ) -> None:
        super().__init__(window)
        self._window, self._history, self._session, self._view = window, history, session, view
        self.indexer = documents
        self.panel = DocumentsPanel(window)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.panel)
        self.panel.hide()
        self.overlay = DropOverlay(window)
        self.source_dialog: SourceDialog | None = None
        self._paths: dict[int, str] = {}
        self._refresh_soon = QTimer(self)
        self._refresh_soon.setSingleShot(True)
        self._refresh_soon.setInterval(150)
        self._refresh_soon.timeout.connect(self.refresh)
        history.ready.connect(self.indexer.resume)
        session.conversation_shown.connect(lambda _cid: self.refresh())
        self.indexer.state_changed.connect(lambda *_: self._refresh_soon.start())
        self.indexer.batch_progress.connect(self.panel.show_progress)
        self.indexer.attached.connect(self._attached)
        self.panel.attach_requested.connect(self.choose_files)
        self.panel.remove_requested.connect(self._remove)
        view.delegate.source_requested.connect(self.show_source)

    def choose_files(self) -> None:
        """Pick files with the platform's dialog and attach them."""
        paths, _ = QFileDialog.getOpenFileNames(self._window, "Attach documents", str(Path.home()))
        if paths:
            self.attach([Path(p) for p in paths])

    def attach(self, paths: list[Path]) -> None:
        """Attach files or folders to the open conversation (starting one if needed)."""
        if not self._history.is_open:
            self.panel.show()
            self.panel.status.setText("Documents are kept in your encrypted history; open (or unlock) it first.")
            return
        self.panel.show()
        self.panel.status.setText("Adding…")
        self._history.ensure_conversation(self._session.system_prompt, lambda cid: self.indexer.attach(cid, paths))

    def _attached(self, _documents: list[DocumentInfo], _skipped: list[tuple[str, str]]) -> None:
        """Files that were not attached are named in the chat's own notice (`FileDrops`)."""
        self.refresh()
        self._session.conversation_shown.emit(self._history.conversation_id)  # a new chat now exists

    def refresh(self) -> None:
        """Re-read the open conversation's documents."""
        cid = self._history.conversation_id
        if cid is None or not self._history.is_open:
            self.panel.show_documents([])
            return

        def shown(documents: list[DocumentInfo], changed: list[Path]) -> None:
            if self._history.conversation_id != cid:
                return
            self._paths = {d.id: d.path for d in documents}
            self.panel.show_documents(documents)
            if documents:
                self.panel.show()
            if changed:  # edited since it was read: read it again
                self.indexer.attach(cid, changed)

        self.indexer.documents(cid, shown)

    def _remove(self, document_id: int) -> None:
        self.indexer.remove(document_id, self.refresh)

    def show_source(self, row: int, number: int) -> None:
        """Open the passage of source `number` of the answer at `row`."""
        sources = self._session.model.item(row).sources
        if not 1 <= number <= len(sources):
            return
        source = sources[number - 1]
        dialog = self.source_dialog = SourceDialog(source, self._paths.get(source.document_id), self._window)
        dialog.show()
        if self._history.is_open:  # the text around it, read from the store
            self.indexer.passages(source.document_id, dialog.show_context)
