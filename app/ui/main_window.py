"""The main window: conversation sidebar, the chat, composer, Send/Stop, and a status bar.

The window is layout and wiring. It holds references to the services
(`app.services`) and talks to them only by calls that return at once and by
their signals; nothing here waits for the model or the disk. Small
controllers do the rest: `ChatSession` (the open conversation's rows and its
turn), `ModelController` (loading and model status), `LockController` (the
history's lock flow), `ConversationList` (the sidebar), `FileDrops` (files
given to the window) and `DocumentChat` (attached documents and sources).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDragLeaveEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app import settings as opts
from app.core.paths import AppPaths
from app.services import Services
from app.settings import Settings
from app.ui.chat_session import ChatSession
from app.ui.composer import Composer
from app.ui.conversation_list import ConversationList
from app.ui.conversation_view import ConversationView
from app.ui.documents_panel import DocumentChat
from app.ui.file_drops import FileDrops
from app.ui.lock_controller import LockController
from app.ui.lock_page import LockPage
from app.ui.menus import build_menus
from app.ui.model_controller import ModelController
from app.ui.model_info_panel import ModelInfoPanel
from app.ui.model_manager import ModelManager
from app.ui.notice_bar import NoticeBar
from app.ui.privacy_dialog import PrivacyDialog
from app.ui.settings_dialog import SettingsDialog
from app.ui.sidebar import Sidebar


class MainWindow(QMainWindow):
    """The conversation sidebar and the open conversation with the loaded model."""

    answer_finished = Signal(object)  # TurnResult, after the view has updated
    model_ready = Signal(object)  # LoadedModel, after the window has updated
    model_failed = Signal(str)

    def __init__(
        self,
        settings: Settings,
        services: Services,
        paths: AppPaths,
        show_dialogs: bool = True,
        open_history: bool = True,
    ) -> None:
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.settings = settings
        self.services = services
        self.paths = paths
        self.history = services.history
        self.downloads = services.downloads
        self.log_file: Path | None = None  # shown in About; set by bootstrap

        self.session = ChatSession(settings, services.turns, self.history, self)
        self.model = self.session.model
        self.stream_buffer = self.session.stream_buffer
        self._build_widgets()
        self.models = ModelController(self, show_dialogs)
        self.statusBar().addWidget(self.models.label)
        self.statusBar().addWidget(self.models.progress)
        self.statusBar().addPermanentWidget(self.stats_label)
        self.documents = DocumentChat(self, self.history, services.documents, self.session, self.view)
        self.drops = FileDrops(self)
        self.conversations = ConversationList(self)
        self.setAcceptDrops(True)
        self.lock_action = build_menus(self)
        self.locking = LockController(self)
        self._connect()
        self._restore_geometry()
        self.composer.setFocus()
        if open_history:
            self.history.start()

    def _build_widgets(self) -> None:
        self.view = ConversationView()
        self.view.setModel(self.model)
        self.view.placeholder_html = (
            f'<h2 align="center">{APP_NAME}</h2>'
            '<p align="center">A private assistant that runs entirely on this computer. '
            "Nothing you type leaves it.</p>"
        )
        self.notice = NoticeBar()
        self.composer = Composer()
        self.send_button = QPushButton("Send")
        self.send_button.setMinimumWidth(80)
        self.regenerate_button = QPushButton("Regenerate")
        self.regenerate_button.setEnabled(False)
        self.sidebar = Sidebar()
        self.lock_page = LockPage()
        self.stats_label = QLabel()
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.regenerate_button)
        buttons.addStretch(1)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(10, 0, 10, 0)
        bottom.addWidget(self.composer, 1)
        bottom.addLayout(buttons)
        inner = QWidget()
        inner.setLayout(bottom)
        chat = QWidget()
        layout = QVBoxLayout(chat)
        layout.setContentsMargins(0, 0, 0, 8)
        layout.addWidget(self.notice)
        layout.addWidget(self.view, 1)
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
        self.info_panel = ModelInfoPanel(self)
        self.info_panel.set_residency(self.settings.residency())
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.info_panel)

    def _connect(self) -> None:
        session, history = self.session, self.history
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
        session.message_shown.connect(self._scroll_to_row)
        self.models.ready.connect(self.model_ready)
        self.models.failed.connect(self.model_failed)
        self.services.bridge.message.connect(self.notice.show_text)
        history.error.connect(lambda msg: self.notice.show_text(f"Your history was not updated. {msg}", warning=True))

    def _restore_geometry(self) -> None:
        state = QSettings(str(self.paths.window_state_file), QSettings.Format.IniFormat)
        geometry = state.value("main/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1200, 760)
        layout = state.value("main/state")
        if layout is not None:
            self.restoreState(layout)
        splitter = state.value("main/splitter")
        if splitter is not None:
            self.splitter.restoreState(splitter)

    # Models (the controller does the work)
    @property
    def busy(self) -> bool:
        """True while an answer is being generated."""
        return self.session.busy

    def load_model(self, path: Path | None) -> None:
        """Load `path` (None: the starter model)."""
        self.models.load(path)

    def choose_model(self) -> None:
        """File → Open model."""
        self.models.choose()

    def open_models(self) -> ModelManager:
        """Tools → Models."""
        return self.models.open_manager()

    # Files dropped, or handed over by the command line or the desktop
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        """Files dragged over the window."""
        self.drops.drag_entered(event)

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:  # noqa: N802
        """The files went elsewhere."""
        self.drops.drag_left()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        """Models are loaded, anything else is attached."""
        self.drops.dropped(event)

    def open_files(self, paths: list[Path]) -> None:
        """Files from the command line or "Open with"."""
        self.bring_to_front()
        self.drops.open(paths)

    def bring_to_front(self) -> None:
        """Show the window above the others (the window manager may only flag it)."""
        self.showNormal() if self.isMinimized() else self.show()
        self.raise_()
        self.activateWindow()
        QApplication.alert(self)

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
        self.conversations.open(conversation_id, message_id)

    def export_conversation(self, conversation_id: int | None, fmt: str) -> None:
        """Chat → Export."""
        self.conversations.export(conversation_id, fmt)

    def _scroll_to_row(self, row: int) -> None:
        if row >= self.model.rowCount() - 1:
            self.view.scroll_to_end()
        elif row >= 0:
            self.view.scroll_to_row(row)

    def lock(self) -> None:
        """Close the history until the passphrase is entered again."""
        self.locking.lock()

    # Dialogs
    def open_settings(self) -> None:
        """Edit preferences; reload the model when the context size or threads changed."""
        loaded = self.models.loaded
        prompt = self.settings.get(opts.SYSTEM_PROMPT)
        dialog = SettingsDialog(self.settings, loaded.info.context_length if loaded else 0, self)
        if not dialog.exec():
            return
        if self.settings.get(opts.SYSTEM_PROMPT) != prompt:  # for this conversation and new ones
            self.session.system_prompt = self.settings.get(opts.SYSTEM_PROMPT)
            self.history.set_system_prompt(self.session.system_prompt)
        if dialog.reload_needed:
            self.info_panel.set_residency(self.settings.residency())
            self.models.reload()

    def open_privacy(self) -> None:
        """Where the history lives, its encryption, passphrase, backup, restore and delete."""
        PrivacyDialog(self.history, self.settings, self).exec()
        if self.history.is_open:
            self.locking.update()

    def open_about(self) -> None:
        """Help → About Tern (what it shows is read off the GUI thread first)."""
        from app.services.about import AboutDetails, about_details  # not needed at start-up
        from app.ui.about_dialog import AboutDialog

        def show(details: AboutDetails) -> None:
            AboutDialog(self.paths, self.log_file, details, self).exec()

        self.services.models.run(about_details, show)

    def show_crash_notice(self, crash_log: Path) -> None:
        """Tell the user the previous run ended abnormally."""
        self.notice.show_text(f"{APP_NAME} closed unexpectedly last time. Details were saved to {crash_log}.", True)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Save the layout, stop the answer (it is saved as it stands), and stop the services, each bounded."""
        state = QSettings(str(self.paths.window_state_file), QSettings.Format.IniFormat)
        state.setValue("main/geometry", self.saveGeometry())
        state.setValue("main/state", self.saveState())
        state.setValue("main/splitter", self.splitter.saveState())
        state.sync()
        self.settings.sync()
        self.locking.stop()
        self.session.close()
        self.sidebar.finish_deletions()
        self.services.shutdown()
        super().closeEvent(event)
