"""The main window: conversation sidebar, the chat, composer, Send/Stop, and a status bar.

It talks to the inference worker only through `InferenceThread` and to the
history only through `History` (both queued); nothing here waits for the model
or the disk. The turn flow itself lives in `ChatSession`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDragLeaveEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app import settings as opts
from app.core.engine.options import LoadedModel, Residency
from app.core.models.hub import load_token
from app.core.models.registry import InstalledModel, ModelRegistry, import_error, inspect
from app.core.models.starter import STARTER_DISPLAY_NAME, STARTER_NOTICE, is_starter
from app.core.paths import AppPaths
from app.core.store.errors import KeyringUnavailableError, StoreError, WrongKeyError
from app.core.store.key_change import PassphraseNeededError
from app.settings import Settings
from app.ui.chat_session import ChatSession
from app.ui.composer import Composer
from app.ui.conversation_view import ConversationView
from app.ui.documents_panel import DocumentChat
from app.ui.history import History
from app.ui.lock_page import IdleWatcher, LockMode, LockPage
from app.ui.menus import build_menus
from app.ui.model_info_panel import ModelInfoPanel
from app.ui.model_manager import ModelManager
from app.ui.notice_bar import NoticeBar
from app.ui.privacy_dialog import PrivacyDialog
from app.ui.settings_dialog import SettingsDialog
from app.ui.sidebar import Sidebar
from app.workers.background import in_background
from app.workers.download_worker import DownloadManager
from app.workers.inference_worker import InferenceThread, LoadRequest
from app.workers.memory_monitor import MemoryMonitor

log = logging.getLogger("tern.ui")


def _split_models(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """GGUF files (models) and everything else (documents and folders)."""
    return [p for p in paths if p.suffix.lower() == ".gguf"], [p for p in paths if p.suffix.lower() != ".gguf"]


class MainWindow(QMainWindow):
    """The conversation sidebar and the open conversation with the loaded model."""

    # GUI-thread notifications (the worker's own signals arrive queued; these fire after the UI has updated).
    answer_finished = Signal(object)  # TurnResult
    model_ready = Signal(object)  # LoadedModel
    model_failed = Signal(str)

    def __init__(
        self,
        settings: Settings,
        inference: InferenceThread,
        paths: AppPaths,
        show_dialogs: bool = True,
        history: History | None = None,
        open_history: bool = True,
    ) -> None:
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self._settings = settings
        self._inference = inference
        self._paths = paths
        self._show_dialogs = show_dialogs
        self._loaded: LoadedModel | None = None
        self._requested_model: Path | None = None  # the last load asked for (None: the starter)
        self._pending_documents: list[Path] = []  # opened before the history was ready
        self.log_file: Path | None = None  # shown in About; set by bootstrap

        self.history = history or History(paths.history_db, self)
        self.session = ChatSession(settings, inference, self.history, self)
        self.model = self.session.model
        self.stream_buffer = self.session.stream_buffer
        self.view = ConversationView()
        self.view.setModel(self.model)
        self.view.placeholder_html = self._placeholder()
        self.notice = NoticeBar()
        self.composer = Composer()
        self.send_button = QPushButton("Send")
        self.send_button.setMinimumWidth(80)
        self.regenerate_button = QPushButton("Regenerate")
        self.regenerate_button.setEnabled(False)
        self.sidebar = Sidebar()
        self.lock_page = LockPage()

        bottom = QHBoxLayout()
        bottom.addWidget(self.composer, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.regenerate_button)
        buttons.addStretch(1)
        bottom.addLayout(buttons)
        chat = QWidget()
        layout = QVBoxLayout(chat)
        layout.setContentsMargins(0, 0, 0, 8)
        layout.addWidget(self.notice)
        layout.addWidget(self.view, 1)
        inner = QWidget()
        inner.setLayout(bottom)
        bottom.setContentsMargins(10, 0, 10, 0)
        layout.addWidget(inner)
        self.splitter = QSplitter()
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(chat)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([260, 940])
        self.splitter.setChildrenCollapsible(False)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.splitter)
        self.pages.addWidget(self.lock_page)
        self.setCentralWidget(self.pages)

        self.model_label = QLabel("No model")
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 100)
        self.load_progress.setMaximumWidth(160)
        self.load_progress.setTextVisible(False)
        self.load_progress.hide()
        self.stats_label = QLabel()
        self.statusBar().addWidget(self.model_label)
        self.statusBar().addWidget(self.load_progress)
        self.statusBar().addPermanentWidget(self.stats_label)

        self.info_panel = ModelInfoPanel(self)
        self.info_panel.set_residency(settings.residency())
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.info_panel)
        self.info_panel.residency_changed.connect(self._change_residency)
        self.memory_monitor = MemoryMonitor(parent=self)
        self.memory_monitor.reading.connect(self.info_panel.show_reading)
        self.memory_monitor.start()
        self.registry = ModelRegistry(paths.data / "models.json")
        self.downloads = DownloadManager(paths.data / "downloads.json", load_token, paths.models, parent=self)
        self.downloads.installed.connect(self._model_installed)
        self.downloads.copied.connect(self._model_installed)
        self._manager: ModelManager | None = None
        self.documents = DocumentChat(self, self.history, self.session, self.view)
        embedding = settings.get(opts.EMBEDDING_MODEL)
        self.documents.indexer.embedder.set_path(Path(embedding) if embedding else None)
        self.setAcceptDrops(True)
        self.idle = IdleWatcher(self)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self.idle)

        self.lock_action = build_menus(self)
        self._connect()
        self._restore_geometry()
        self.composer.setFocus()
        if open_history:
            self.history.start()
        self.downloads.start()  # downloads the user queued before the last quit carry on

    def _connect(self) -> None:
        session, history, sidebar = self.session, self.history, self.sidebar
        self.composer.submitted.connect(self.send_message)
        self.composer.recall_requested.connect(self._recall_last)
        self.send_button.clicked.connect(self._send_or_stop)
        self.regenerate_button.clicked.connect(self.regenerate)
        self.view.edit_requested.connect(self.edit_message)
        self.view.regenerate_requested.connect(self.regenerate)
        self.view.delegate.copied.connect(lambda _t: self.stats_label.setText("Code copied"))
        self.view.delegate.version_requested.connect(session.switch_version)
        session.busy_changed.connect(self._set_busy)
        session.status.connect(self.stats_label.setText)
        session.answer_finished.connect(self.answer_finished)
        session.conversation_shown.connect(self._conversation_shown)
        session.message_shown.connect(self._scroll_to_row)

        worker = self._inference.worker
        worker.load_progress.connect(self._on_load_progress)
        worker.model_loaded.connect(self._on_model_loaded)
        worker.load_failed.connect(self._on_load_failed)

        history.ready.connect(self._history_ready)
        history.unavailable.connect(self._history_unavailable)
        history.closing.connect(self._history_closing)
        history.locked.connect(lambda: self._history_unavailable(None))
        history.conversations.connect(sidebar.set_conversations)
        history.search_results.connect(sidebar.set_search_results)
        history.error.connect(lambda msg: self.notice.show_text(f"Your history was not updated. {msg}", warning=True))
        history.finished.connect(self._history_reported)
        sidebar.new_chat_requested.connect(self.new_chat)
        sidebar.conversation_selected.connect(self.open_conversation)
        sidebar.rename_requested.connect(history.rename)
        sidebar.pin_requested.connect(history.set_pinned)
        sidebar.delete_requested.connect(self._delete_conversation)
        sidebar.undo_requested.connect(history.restore)
        sidebar.purge_requested.connect(history.purge)
        sidebar.search_requested.connect(history.search)
        sidebar.export_requested.connect(self.export_conversation)
        self.lock_page.passphrase_entered.connect(history.unlock)
        self.lock_page.new_history_requested.connect(history.start_new_history)
        self.lock_page.continue_requested.connect(self._continue_without_history)
        self.idle.idle.connect(self._auto_lock)

    # Layout and menus
    def _placeholder(self) -> str:
        return (
            f'<h2 align="center">{APP_NAME}</h2>'
            '<p align="center">A private assistant that runs entirely on this computer. '
            "Nothing you type leaves it.</p>"
        )

    def _restore_geometry(self) -> None:
        state = QSettings(str(self._paths.window_state_file), QSettings.Format.IniFormat)
        geometry = state.value("main/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1200, 760)
        layout = state.value("main/state")
        if layout is not None:
            self.restoreState(layout)
        splitter = state.value("main/splitter")
        if splitter is not None:
            self.splitter.restoreState(splitter)

    # Model
    @property
    def busy(self) -> bool:
        """True while an answer is being generated."""
        return self.session.busy

    def load_model(self, path: Path | None) -> None:
        """Load `path` (None: the starter model) in the worker."""
        if self.busy:
            self.stop()
        self._requested_model = path
        self.model_label.setText("Loading…")
        self.load_progress.setValue(0)
        self.load_progress.show()
        self._inference.load(LoadRequest(path, self._settings.load_options()))

    def choose_model(self) -> None:
        """Pick a GGUF file, add it to the installed list (in place), and load it."""
        path, _ = QFileDialog.getOpenFileName(self, "Open a GGUF model", str(Path.home()), "GGUF models (*.gguf)")
        if path:
            self.import_and_load(Path(path))

    def import_and_load(self, path: Path) -> None:
        """Check (off the GUI thread) and register a local GGUF without copying it, then load it."""

        def checked(model: InstalledModel) -> None:
            self.registry.add(model)
            self.load_model(path)  # the installed list refreshes when it has loaded

        refused = self.notice.show_warning
        in_background(lambda: inspect(path, imported=True), checked, lambda e: refused(import_error(path, e)), self)

    def _use_for_embeddings(self, path: Path) -> None:
        self._settings.set(opts.EMBEDDING_MODEL, str(path))
        self.documents.indexer.embedder.set_path(path)

    def _is_loaded(self, path: str) -> bool:
        return self._loaded is not None and str(self._loaded.info.path) == path

    def _model_installed(self, model: InstalledModel) -> None:
        self.registry.add(model)  # before the manager's list refreshes on the same signal
        self.notice.show_text(f"{model.name} is installed; load it from Tools → Models.")

    def open_models(self) -> ModelManager:
        """The model manager (one window, reused)."""
        if self._manager is None:
            self._manager = ModelManager(
                self.downloads, self.registry, self._settings, self._paths.models, self._is_loaded, self
            )
            self._manager.load_requested.connect(self.load_model)
            self._manager.embedding_requested.connect(self._use_for_embeddings)
        self._manager.show()
        self._manager.raise_()
        return self._manager

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        """Accept dropped files: models to load, anything else to chat about."""
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            if not all(p.lower().endswith(".gguf") for p in paths):
                self.documents.overlay.cover()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:  # noqa: N802
        """The files went elsewhere."""
        self.documents.overlay.hide()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        """A GGUF is imported (validated, not copied) and loaded; other files and folders are attached."""
        self.documents.overlay.hide()
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
        models, documents = _split_models(paths)
        if models:
            self.import_and_load(models[0])
        if documents:
            self.documents.attach(documents)

    def open_files(self, paths: list[Path]) -> None:
        """Files from the command line or "Open with": a model is loaded; documents start a chat of their own."""
        self.bring_to_front()  # then the same as a drop, except that documents wait for the history
        models, documents = _split_models(paths)
        if models:
            self.import_and_load(models[0])
        self._pending_documents += documents
        if self.history.is_open:
            self._attach_pending()

    def _attach_pending(self) -> bool:
        if not self._pending_documents:
            return False
        documents, self._pending_documents = self._pending_documents, []
        self.new_chat()
        self.documents.attach(documents)
        return True

    def bring_to_front(self) -> None:
        """Show the window above the others (the window manager may only flag it)."""
        self.showNormal() if self.isMinimized() else self.show()
        self.raise_()
        self.activateWindow()
        QApplication.alert(self)

    def _on_load_progress(self, stage: str, fraction: float) -> None:
        self.load_progress.show()
        self.load_progress.setValue(int(fraction * 100))
        self.model_label.setText(f"{stage}…")

    def _model_name(self, loaded: LoadedModel) -> str:
        return STARTER_DISPLAY_NAME if is_starter(loaded.info.path) else loaded.info.name

    def _model_text(self, loaded: LoadedModel | None) -> str:
        return "No model" if loaded is None else f"{self._model_name(loaded)} · {loaded.n_ctx} ctx"

    def _change_residency(self, mode: Residency) -> None:
        if mode != self._settings.residency():
            self._settings.set(opts.RESIDENCY, mode.value)
            self.load_model(self._requested_model)

    def _show_model(self, loaded: LoadedModel | None) -> None:
        self.info_panel.show_model(loaded)
        self.memory_monitor.set_model(loaded)
        self.session.model_name = self._model_name(loaded) if loaded else ""
        self.session.n_ctx = loaded.n_ctx if loaded else 0

    def _on_model_loaded(self, loaded: LoadedModel) -> None:
        self._loaded = loaded
        self._show_model(loaded)
        self.session.clear_cut()
        self.load_progress.hide()
        self.model_label.setText(self._model_text(loaded))
        starter = is_starter(loaded.info.path)
        self._settings.set(opts.MODEL_PATH, "" if starter else str(loaded.info.path))
        self.registry.touch(loaded.info.path)
        if self._manager is not None:
            self._manager.installed.refresh()
        if starter or loaded.template_note:
            self.notice.show_text(STARTER_NOTICE if starter else loaded.template_note, warning=not starter)
        elif self.notice.isVisible():
            self.notice.hide()
        self.stats_label.setText(f"Loaded in {loaded.load_ms / 1000:.1f} s")
        self.model_ready.emit(loaded)

    def _on_load_failed(self, message: str, still_loaded: LoadedModel | None) -> None:
        self._loaded = still_loaded
        self._show_model(still_loaded)
        self.load_progress.hide()
        self.model_label.setText(self._model_text(still_loaded))
        self.notice.show_text(f"The model could not be loaded. {message}", warning=True)
        if self._show_dialogs:
            QMessageBox.warning(self, "Model not loaded", message)
        self.model_failed.emit(message)

    # Conversation
    def _send_or_stop(self) -> None:
        if self.busy:
            self.stop()
        else:
            self.composer.submit()

    def send_message(self, text: str) -> bool:
        """Add the user's message and ask for an answer; False (text kept) while one streams."""
        if not self.session.send(text):
            return False
        self.composer.clear()
        self.view.scroll_to_end()
        return True

    def _set_busy(self, busy: bool) -> None:
        self.send_button.setText("Stop" if busy else "Send")
        last = self.model.rowCount() - 1
        self.regenerate_button.setEnabled(not busy and last >= 0 and self.model.item(last).role == "assistant")
        if busy:
            self.stats_label.setText("Generating…")

    def stop(self) -> None:
        """Stop the answer before its next token; the text so far stays."""
        self.session.stop()

    def regenerate(self) -> None:
        """A new version of the last answer; the old one stays as a version."""
        self.session.regenerate()
        self.view.scroll_to_end()

    def edit_message(self, row: int) -> None:
        """Put a user message back in the composer; sending it makes a new version."""
        text = self.session.edit(row)
        if text:
            self.composer.setPlainText(text)
            self.composer.setFocus()

    def _recall_last(self) -> None:
        for row in range(self.model.rowCount() - 1, -1, -1):
            if self.model.item(row).role == "user":
                self.edit_message(row)
                return

    def new_chat(self) -> None:
        """Start an empty conversation, abandoning an answer in progress."""
        self.session.new_conversation()
        self.composer.setFocus()

    def open_conversation(self, conversation_id: int, message_id: int | None = None) -> None:
        """Show a stored conversation (at `message_id` when given)."""
        self.session.clear()
        self.history.open_conversation(conversation_id, message_id)

    def _conversation_shown(self, conversation_id: int | None) -> None:
        self.sidebar.set_current(conversation_id)
        self._settings.set(opts.LAST_CONVERSATION, conversation_id or 0)

    def _scroll_to_row(self, row: int) -> None:
        if row >= self.model.rowCount() - 1:
            self.view.scroll_to_end()
        elif row >= 0:
            self.view.scroll_to_row(row)

    def _delete_conversation(self, conversation_id: int) -> None:
        """Leave the conversation if it is open, then delete it (the sidebar offers Undo)."""
        if self.history.conversation.value == conversation_id:
            self.session.new_conversation()
        self.history.delete(conversation_id)

    def export_conversation(self, conversation_id: int | None, fmt: str) -> None:
        """Ask where, then write a conversation (default: the open one) as Markdown or JSON."""
        conversation_id = conversation_id or self.history.conversation.value
        if conversation_id is None:
            self.stats_label.setText("Nothing to export yet")
            return
        suffix, kind = (".json", "JSON (*.json)") if fmt == "json" else (".md", "Markdown (*.md)")
        path, _ = QFileDialog.getSaveFileName(
            self, "Export conversation", str(Path.home() / f"conversation{suffix}"), kind
        )
        if path:
            self.history.export(conversation_id, Path(path), fmt)

    # History: open, lock
    def _history_ready(self) -> None:
        self.pages.setCurrentWidget(self.splitter)
        self.sidebar.setEnabled(True)
        self.history.refresh()
        wanted = self.history.conversation
        if not self._attach_pending():  # documents given at launch start a chat of their own
            self.history.open_latest(
                self._settings.get(opts.LAST_CONVERSATION) or None,
                lambda: self.history.conversation is wanted and self.model.rowCount() == 0,  # nothing started since
            )
        self._update_locking()
        self.composer.setFocus()

    def _history_closing(self) -> None:
        self.session.close()  # the answer so far is saved before the database closes
        self.session.new_conversation()
        self.sidebar.set_conversations([])

    def _history_reported(self, what: str, message: str) -> None:
        self.notice.show_text(message)
        if what == "passphrase":
            self._update_locking()

    def _update_locking(self) -> None:
        passphrase = self.history.uses_passphrase
        self.lock_action.setEnabled(passphrase)
        self.idle.set_minutes(self._settings.get(opts.AUTO_LOCK_MINUTES) if passphrase else 0)

    def _history_unavailable(self, error: StoreError | None) -> None:
        """Show the lock page: unlock, choose a passphrase, or decide about a problem."""
        if not self.session.waiting:  # a message sent while the history was opening stays, to be saved or sent
            self.session.new_conversation()
        self.sidebar.set_conversations([])
        self.idle.set_minutes(0)
        first_passphrase = isinstance(error, KeyringUnavailableError) and not self.history.exists
        if isinstance(error, WrongKeyError) and self.history.uses_passphrase:
            self.lock_page.show_error(str(error))
        elif isinstance(error, WrongKeyError):  # the keychain's own key fails: the file is damaged or replaced
            self.lock_page.show_mode(
                LockMode.PROBLEM,
                "Your history file cannot be decrypted with its key from the system keychain: it is damaged, or was "
                "replaced by another file. Nothing was changed. Start a new history (the old one is kept), or chat on.",
            )
        elif first_passphrase or isinstance(error, PassphraseNeededError | None):
            self.lock_page.show_mode(LockMode.UNLOCK if self.history.uses_passphrase else LockMode.CREATE)
        else:
            self.lock_page.show_mode(
                LockMode.PROBLEM,
                f"{error} You can start a new history (the old file is kept), or chat without saving.",
            )
        self.pages.setCurrentWidget(self.lock_page)

    def _continue_without_history(self) -> None:
        self.pages.setCurrentWidget(self.splitter)
        self.sidebar.setEnabled(False)
        unsaved = " Your message was sent without being saved." if self.session.waiting else ""
        self.session.send_unsaved()
        self.notice.show_text(f"History is off: this conversation will not be saved.{unsaved}", warning=True)
        self.composer.setFocus()

    def lock(self) -> None:
        """Close the history until the passphrase is entered again."""
        if self.history.uses_passphrase and self.history.is_open:
            self.history.lock()

    def _auto_lock(self) -> None:
        if self.busy:
            self.idle.set_minutes(self._settings.get(opts.AUTO_LOCK_MINUTES))  # try again later
        else:
            self.lock()

    # Dialogs
    def open_settings(self) -> None:
        """Edit preferences; reload the model when the context size or threads changed."""
        training = self._loaded.info.context_length if self._loaded else 0
        prompt = self._settings.get(opts.SYSTEM_PROMPT)
        dialog = SettingsDialog(self._settings, training, self)
        if not dialog.exec():
            return
        if self._settings.get(opts.SYSTEM_PROMPT) != prompt:  # for this conversation and new ones
            self.session.system_prompt = self._settings.get(opts.SYSTEM_PROMPT)
            self.history.set_system_prompt(self.session.system_prompt)
        if dialog.reload_needed:
            self.info_panel.set_residency(self._settings.residency())
            self.load_model(self._requested_model)

    def open_privacy(self) -> None:
        """Where the history lives, its encryption, passphrase, backup, restore and delete."""
        PrivacyDialog(self.history, self._settings, self).exec()
        if self.history.is_open:
            self._update_locking()

    def open_about(self) -> None:
        """Help → About Tern."""
        from app.ui.about_dialog import AboutDialog  # its licence list reads package metadata: not at start-up

        AboutDialog(self._paths, self.log_file, self).exec()

    def show_crash_notice(self, crash_log: Path) -> None:
        """Tell the user the previous run ended abnormally."""
        self.notice.show_text(f"{APP_NAME} closed unexpectedly last time. Details were saved to {crash_log}.", True)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Save the layout, stop generation, save the answer so far, and join the workers."""
        state = QSettings(str(self._paths.window_state_file), QSettings.Format.IniFormat)
        state.setValue("main/geometry", self.saveGeometry())
        state.setValue("main/state", self.saveState())
        state.setValue("main/splitter", self.splitter.saveState())
        state.sync()
        self._settings.sync()
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self.idle)
        self.session.close()
        self.sidebar.finish_deletions()
        self.memory_monitor.shutdown()
        self.documents.shutdown()
        self.downloads.shutdown()
        self._inference.shutdown()
        self.history.writer.shutdown()
        super().closeEvent(event)
