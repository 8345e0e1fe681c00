"""Files handed to the window: dropped on it, chosen with Attach, named on the command line, or sent by "Open with".

A GGUF is imported where it lies (its header checked off the GUI thread) and
loaded; an image waits above the composer, to go with the next message; any
other file or folder is attached to the open conversation as a document.
Documents that arrive before the history is open wait for it, and then start
a chat of their own. Files that could not be attached are named in
a notice that belongs to the chat they were meant for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from app.core.docs.doc_store import DocumentInfo
from app.ui.composer import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


def split_images(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Image files (to send to the model) and everything else."""
    return [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES], [
        p for p in paths if p.suffix.lower() not in IMAGE_SUFFIXES
    ]


def split_models(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """GGUF files (models) and everything else (documents and folders)."""
    return [p for p in paths if p.suffix.lower() == ".gguf"], [p for p in paths if p.suffix.lower() != ".gguf"]


class FileDrops(QObject):
    """Where files given to the window go."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window
        self._pending: list[Path] = []  # documents opened before the history was ready
        window.documents.indexer.attached.connect(self._report_skipped)

    def drag_entered(self, event: QDragEnterEvent) -> None:
        """Accept dropped files: models to load, anything else to chat about (the overlay says so)."""
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            if not all(p.lower().endswith(".gguf") for p in paths):
                self._window.documents.overlay.cover()

    def drag_left(self) -> None:
        """The files went elsewhere."""
        self._window.documents.overlay.hide()

    def dropped(self, event: QDropEvent) -> None:
        """A GGUF is imported (validated, not copied) and loaded; other files and folders are attached."""
        self._window.documents.overlay.hide()
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
        self.give(paths)

    def give(self, paths: list[Path]) -> None:
        """A GGUF is loaded, images wait above the composer, other files and folders are attached."""
        models, others = split_models(paths)
        images, documents = split_images(others)
        if models:
            self._window.models.import_and_load(models[0])
        if images:
            self._window.chat.add_images(list(images))
        if documents:
            self._window.documents.attach(documents)

    def open(self, paths: list[Path]) -> None:
        """Files from the command line or "Open with": as a drop, except that documents wait for the history."""
        models, others = split_models(paths)
        images, documents = split_images(others)
        if models:
            self._window.models.import_and_load(models[0])
        if images:
            self._window.chat.add_images(list(images))
        self._pending += documents
        if self._window.history.is_open:
            self.attach_pending()

    def attach_pending(self) -> bool:
        """Attach documents that waited for the history, in a new chat; False when there were none."""
        if not self._pending:
            return False
        documents, self._pending = self._pending, []
        self._window.new_chat()
        self._window.documents.attach(documents)
        return True

    def _report_skipped(self, documents: list[DocumentInfo], skipped: list[tuple[str, str]]) -> None:
        """Name the files that were not attached, with why, in a notice of the chat they were for."""
        conversation_id = documents[0].conversation_id if documents else self._window.history.conversation_id
        if not skipped or conversation_id is None:
            return
        lines = "; ".join(f"{Path(p).name}: {reason}" for p, reason in skipped[:6])
        more = f" (and {len(skipped) - 6} more)" if len(skipped) > 6 else ""
        self._window.chat.chat_notice.show_for(conversation_id, f"Not attached: {lines}{more}.", warning=True)
