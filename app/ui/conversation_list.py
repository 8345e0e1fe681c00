"""The sidebar's conversations, wired to the history: open, rename, pin, delete with Undo, search, export."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog

from app import settings as opts

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


class ConversationList(QObject):
    """Connects the sidebar to the history service and the open conversation."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window
        history, sidebar, session = window.history, window.sidebar, window.session
        history.conversations.connect(sidebar.set_conversations)
        history.search_results.connect(sidebar.set_search_results)
        session.conversation_shown.connect(self._shown)
        sidebar.new_chat_requested.connect(window.new_chat)
        sidebar.conversation_selected.connect(self.open)
        sidebar.rename_requested.connect(history.rename)
        sidebar.pin_requested.connect(history.set_pinned)
        sidebar.delete_requested.connect(self._delete)
        sidebar.undo_requested.connect(history.restore)
        sidebar.purge_requested.connect(history.purge)
        sidebar.search_requested.connect(history.search)
        sidebar.export_requested.connect(self.export)

    def open(self, conversation_id: int, message_id: int | None = None) -> None:
        """Show a stored conversation (at `message_id` when given)."""
        self._window.session.clear()
        self._window.history.open_conversation(conversation_id, message_id)

    def _shown(self, conversation_id: int | None) -> None:
        self._window.sidebar.set_current(conversation_id)
        self._window.settings.set(opts.LAST_CONVERSATION, conversation_id or 0)

    def _delete(self, conversation_id: int) -> None:
        """Leave the conversation if it is open, then delete it (the sidebar offers Undo)."""
        if self._window.history.conversation_id == conversation_id:
            self._window.session.new_conversation()
        self._window.history.delete(conversation_id)

    def export(self, conversation_id: int | None, fmt: str) -> None:
        """Ask where, then write a conversation (default: the open one) as Markdown or JSON."""
        w = self._window
        conversation_id = conversation_id or w.history.conversation_id
        if conversation_id is None:
            w.stats_label.setText("Nothing to export yet")
            return
        suffix, kind = (".json", "JSON (*.json)") if fmt == "json" else (".md", "Markdown (*.md)")
        path, _ = QFileDialog.getSaveFileName(
            w, "Export conversation", str(Path.home() / f"conversation{suffix}"), kind
        )
        if path:
            w.history.export(conversation_id, Path(path), fmt)
