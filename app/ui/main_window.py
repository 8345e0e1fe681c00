"""The main window: conversation sidebar, the chat, composer, Send/Stop, and a status bar.

The window is layout and wiring. It holds references to the services
(`app.services`) and talks to them only by calls that return at once and by
their signals; nothing here waits for the model or the disk. Small
controllers do the rest: `ChatSession` (the open conversation's rows and its
turn), `ChatPane` (the messages, composer and buttons), `ModelController`
(loading and model status), `LockController` (the history's lock flow),
`ConversationList` (the sidebar), `FileDrops` (files given to the window)
and `DocumentChat` (attached documents and sources).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from PySide6.QtCore import QPoint, QRect, QSettings, QSize, Qt, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDragLeaveEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QWidget,
)

from app import APP_NAME
from app import settings as opts
from app.core.chat.image import StoredImage
from app.core.engine.options import LoadedModel
from app.core.models.registry import InstalledModel
from app.core.paths import AppPaths
from app.services import Services
from app.settings import Settings
from app.ui.chat_pane import ChatPane
from app.ui.chat_session import ChatSession
from app.ui.conversation_list import ConversationList
from app.ui.documents_panel import DocumentChat
from app.ui.file_drops import FileDrops
from app.ui.image_viewer import ImageViewer
from app.ui.local_api_panel import LocalApiController, LocalApiDialog
from app.ui.lock_controller import LockController
from app.ui.lock_page import LockPage
from app.ui.menus import build_menus
from app.ui.model_controller import ModelController
from app.ui.model_info_panel import ModelInfoPanel
from app.ui.model_lists import may_see_images
from app.ui.model_manager import ModelManager
from app.ui.privacy_dialog import PrivacyDialog
from app.ui.settings_dialog import SettingsDialog
from app.ui.sidebar import Sidebar
from app.ui.welcome import FirstRunCheck, WelcomePage

FIRST_SHARE = 0.85  # of the screen's free area that a first window takes, where the screen has room to spare
SMALL_SCREEN_SHARE = 0.92  # on a small or highly scaled screen: nearly all of it, less room for a title bar
COMFORTABLE = QSize(960, 640)  # the size below which the window takes the small-screen share
LARGEST_FIRST = QSize(1600, 1000)  # a first window on a big screen stops here
SIDEBAR_SHARE = 0.25  # of the window's width, for the conversation list at first
SIDEBAR_MIN, SIDEBAR_MAX = 160, 300  # px
STATUS_MIN_WIDTH = 60  # px: long status texts are cut rather than widening the window past the screen


def first_geometry(available: QRect) -> QRect:
    """Where a first window opens: most of the screen's free area, centred in it."""

    def side(room: int, comfortable: int, largest: int) -> int:
        return min(largest, max(int(room * FIRST_SHARE), min(comfortable, int(room * SMALL_SCREEN_SHARE))))

    size = QSize(
        side(available.width(), COMFORTABLE.width(), LARGEST_FIRST.width()),
        side(available.height(), COMFORTABLE.height(), LARGEST_FIRST.height()),
    )
    rect = QRect(QPoint(0, 0), size)
    rect.moveCenter(available.center())
    return rect


def tab_stops(container: QWidget) -> list[QWidget]:
    """The widgets inside `container` that Tab can reach, in their present Tab order."""
    found: list[QWidget] = []
    widget = container.nextInFocusChain()
    while widget is not None and widget is not container:  # the chain is a ring through the whole window
        if container.isAncestorOf(widget) and widget.focusPolicy() & Qt.FocusPolicy.TabFocus:
            found.append(widget)
        widget = widget.nextInFocusChain()
    return found


def fits_a_screen(rect: QRect) -> bool:
    """True when `rect` lies within the free area of one of the screens."""
    return any(screen.availableGeometry().contains(rect) for screen in QGuiApplication.screens())


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
        for label in (self.models.label, self.stats_label):
            label.setMinimumWidth(STATUS_MIN_WIDTH)
        self.statusBar().addWidget(self.models.label)
        self.statusBar().addWidget(self.models.progress)
        self.api = LocalApiController(self)
        self.statusBar().addPermanentWidget(self.api.status)
        self.statusBar().addPermanentWidget(self.stats_label)
        self.documents = DocumentChat(self, self.history, services.documents, self.session, self.view)
        self.drops = FileDrops(self)
        self.conversations = ConversationList(self)
        self.welcome = WelcomePage(services.downloads, services.models, settings, paths.models)
        self.chat.set_welcome(self.welcome)
        self.first_run = FirstRunCheck(services.models, self.history, self)
        self.setAcceptDrops(True)
        self.lock_action = build_menus(self)
        self.locking = LockController(self)
        self._connect()
        self._describe()
        self._set_tab_order()
        self._restore_geometry()
        self.composer.setFocus()
        if open_history:
            self.history.start()

    def _build_widgets(self) -> None:
        self.stats_label = QLabel()
        self.chat = ChatPane(self.session, self.stats_label)
        self.view, self.notice, self.composer = self.chat.view, self.chat.notice, self.chat.composer
        self.send_button, self.regenerate_button = self.chat.send_button, self.chat.regenerate_button
        self.sidebar = Sidebar()
        self.lock_page = LockPage()
        self.splitter = QSplitter()
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(self.chat)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.splitter)
        self.pages.addWidget(self.lock_page)
        self.setCentralWidget(self.pages)
        self.info_panel = ModelInfoPanel(self)
        self.info_panel.set_residency(self.settings.residency())
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.info_panel)
        self.info_panel.hide()  # developer detail: View → Model details shows it

    def _describe(self) -> None:
        """Names and descriptions for assistive technology, for the widgets the window itself holds."""
        self.splitter.setAccessibleName("Conversations and chat")
        self.stats_label.setAccessibleName("Answer statistics")
        self.models.label.setAccessibleName("Model status")

    def _set_tab_order(self) -> None:
        """Tab runs as the eye reads: the sidebar, the chat, then the side panels (each keeps its own order)."""
        chain = [
            widget
            for part in (self.sidebar, self.chat, self.documents.panel, self.info_panel)
            for widget in tab_stops(part)
        ]
        for first, second in itertools.pairwise(chain):
            QWidget.setTabOrder(first, second)

    def _connect(self) -> None:
        self.session.answer_finished.connect(self.answer_finished)
        self.models.ready.connect(self.model_ready)
        self.models.failed.connect(self.model_failed)
        self.services.bridge.message.connect(self.notice.show_text)
        self.chat.attach_requested.connect(self.choose_attachments)
        self.chat.images = self.services.images
        self.chat.tray.view_requested.connect(self.show_image)
        self.chat.tray.projector_requested.connect(self.get_projector)
        self.view.delegate.image_requested.connect(self._show_image_at)
        self.services.turns.model_loaded.connect(self._show_vision)
        self.first_run.wanted.connect(self.chat.show_welcome)
        self.welcome.dismissed.connect(self.first_run.dismiss)
        self.welcome.import_requested.connect(self.choose_model)
        self.welcome.model_installed.connect(self._welcome_model_installed)
        self.history.error.connect(
            lambda msg: self.notice.show_text(f"Your history was not updated. {msg}", warning=True)
        )

    def choose_attachments(self) -> None:
        """Attach…: documents for the chat to answer from, and images to send with the next message."""
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Attach documents or images", str(Path.home()), "All files (*);;Images (*.png *.jpg *.jpeg *.webp)"
        )
        if paths:
            self.drops.give([Path(p) for p in paths])

    def show_image(self, image: StoredImage) -> None:
        """Open an image larger (its data read from the history first when only its thumbnail is here)."""

        def show(whole: StoredImage | None) -> None:
            viewer = ImageViewer(whole or image, self)
            viewer.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            viewer.open()

        self.services.images.whole(image, show)

    def _show_image_at(self, row: int, key: str) -> None:
        if 0 <= row < self.model.rowCount():
            image = next((i for i in self.model.item(row).images if i.key == key), None)
            if image is not None:
                self.show_image(image)

    def _show_vision(self, loaded: LoadedModel) -> None:
        """Tell the image tray whether the new model sees images, and why not; offer its projector if it has one."""
        installed = self.services.models.get(loaded.info.path)
        offer = installed is not None and bool(installed.repo_id) and may_see_images(installed)
        if loaded.projector:
            self.chat.tray.set_unseen("", False)
        elif loaded.vision_note:
            self.chat.tray.set_unseen(f"Images are off for this model: {loaded.vision_note}", False)
        elif offer:
            self.chat.tray.set_unseen(
                f"{self.models.display_name(loaded)} sees images with its image projector, which is not here yet.",
                True,
            )
        elif not self.settings.get(opts.IMAGES):
            self.chat.tray.set_unseen("Images are turned off in Settings → Images.", False)
        else:
            self.chat.tray.set_unseen(
                "The loaded model can't see images. Load a model that can, with its image projector "
                "(an mmproj file beside it), such as Gemma 4 E2B.",
                False,
            )

    def get_projector(self) -> None:
        """The tray's "Get the image projector…": look it up in the loaded model's repository and download it."""
        loaded = self.models.loaded
        installed = self.services.models.get(loaded.info.path) if loaded is not None else None
        if installed is None:
            return
        self.stats_label.setText(f"Looking for the image projector of {installed.display_name}…")
        endpoint = str(self.settings.get(opts.HUB_ENDPOINT))
        self.downloads.fetch_projector(installed, endpoint, self.settings.load_options())

    def _restore_geometry(self) -> None:
        """The saved size and place if they fit a screen now (scaling or screens may have changed), else a new one."""
        state = QSettings(str(self.paths.window_state_file), QSettings.Format.IniFormat)
        geometry, frame = state.value("main/geometry"), state.value("main/frame")
        # Checked before restoring: Qt would squeeze a window that no longer fits into the screen whole.
        # A layout saved without its frame (an older version, when the window was a fixed size) is not reused.
        fits = isinstance(frame, QRect) and fits_a_screen(frame)
        reused = fits and geometry is not None and self.restoreGeometry(geometry)
        if not reused:
            screen = self.screen() or QGuiApplication.primaryScreen()
            first = first_geometry(screen.availableGeometry())
            self.resize(first.size())
            self.move(first.topLeft())  # the frame's corner, so a title bar stays on the screen
        layout = state.value("main/state")
        if layout is not None:
            self.restoreState(layout)
        splitter = state.value("main/splitter")  # its sizes belong to the saved window size
        if not (reused and splitter is not None and self.splitter.restoreState(splitter)):
            width = self.width()
            sidebar = max(SIDEBAR_MIN, min(SIDEBAR_MAX, int(width * SIDEBAR_SHARE)))
            self.splitter.setSizes([sidebar, width - sidebar])
        # Hidden unless the user chose to show it; a layout saved before this choice existed does not count.
        self.info_panel.setVisible(str(state.value("main/model_panel", "false")).lower() == "true")

    # Models (the controller does the work)
    @property
    def busy(self) -> bool:
        """True while an answer is being generated."""
        return self.session.busy

    def load_model(self, path: Path | None) -> None:
        """Load `path` (None: the starter model)."""
        self.models.load(path)

    def _welcome_model_installed(self, installed: InstalledModel) -> None:
        """The model the welcome page downloaded: load it, unless an answer is being written."""
        if not self.busy:
            self.load_model(Path(installed.path))

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

    # Conversation (the chat pane and the session do the work)
    def send_message(self, text: str) -> bool:
        """Send `text` as the composer would; False (text kept) while an answer streams."""
        return self.chat.send(text)

    def stop(self) -> None:
        """Stop the answer before its next token; the text so far stays."""
        self.session.stop()

    def regenerate(self) -> None:
        """A new version of the last answer."""
        self.chat.regenerate()

    def edit_message(self, row: int) -> None:
        """Put a user message back in the composer."""
        self.chat.edit(row)

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

    def lock(self) -> None:
        """Close the history until the passphrase is entered again."""
        self.locking.lock()

    # Dialogs
    def open_settings(self) -> None:
        """Edit preferences; reload the model when the context size or threads changed."""
        loaded = self.models.loaded
        prompt = self.settings.get(opts.SYSTEM_PROMPT)
        context = loaded.info.context_length if loaded else 0
        dialog = SettingsDialog(self.settings, context, self, self.session.reading_tok_s)
        if not dialog.exec():
            return
        if self.settings.get(opts.SYSTEM_PROMPT) != prompt:  # for this conversation and new ones
            self.session.system_prompt = self.settings.get(opts.SYSTEM_PROMPT)
            self.history.set_system_prompt(self.session.system_prompt)
        self.api.settings_changed()
        if dialog.reload_needed:
            self.info_panel.set_residency(self.settings.residency())
            self.models.reload()

    def open_local_api(self) -> LocalApiDialog:
        """Tools → Local API: the endpoint for IDEs."""
        return self.api.open_dialog()

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
        state.setValue("main/frame", self.frameGeometry())
        state.setValue("main/state", self.saveState())
        state.setValue("main/splitter", self.splitter.saveState())
        state.setValue("main/model_panel", self.info_panel.toggleViewAction().isChecked())
        state.sync()
        self.settings.sync()
        self.locking.stop()
        self.session.close()
        self.sidebar.finish_deletions()
        self.services.shutdown()
        super().closeEvent(event)
