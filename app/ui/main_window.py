"""The main window: conversation, composer, Send/Stop, and a status bar.

It talks to the inference worker only through `InferenceThread` (queued
signals); nothing here waits for the model.
"""

from __future__ import annotations

import html
import logging
import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app import settings as opts
from app.core.engine.llama_engine import LoadedModel, Residency
from app.core.models.starter import STARTER_DISPLAY_NAME, STARTER_NOTICE, is_starter
from app.core.paths import AppPaths
from app.core.turn import TurnRequest, TurnResult
from app.settings import Settings
from app.ui.chat_model import MessageListModel, StreamBuffer
from app.ui.composer import Composer
from app.ui.conversation_view import ConversationView, stats_line
from app.ui.model_info_panel import ModelInfoPanel
from app.ui.settings_dialog import SettingsDialog
from app.workers.inference_worker import InferenceThread, LoadRequest
from app.workers.memory_monitor import MemoryMonitor

log = logging.getLogger("tern.ui")


class NoticeBar(QWidget):
    """A dismissible line of information above the conversation."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        close = QPushButton("Dismiss")
        close.setFlat(True)
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 8, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.setAutoFillBackground(True)
        self.hide()

    def show_text(self, text: str, warning: bool = False) -> None:
        """Show `text` (plain), in amber when it is a warning."""
        colour = "#fef3c7" if warning else "#e0f2fe"
        self.setStyleSheet(f"NoticeBar {{ background: {colour}; }}")
        self.label.setText(html.escape(text))
        self.show()


class MainWindow(QMainWindow):
    """One conversation with the loaded model."""

    # GUI-thread notifications (the worker's own signals arrive queued; these fire after the UI has updated).
    answer_finished = Signal(object)  # TurnResult
    model_ready = Signal(object)  # LoadedModel
    model_failed = Signal(str)

    def __init__(
        self, settings: Settings, inference: InferenceThread, paths: AppPaths, show_dialogs: bool = True
    ) -> None:
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self._settings = settings
        self._inference = inference
        self._paths = paths
        self._show_dialogs = show_dialogs
        self._loaded: LoadedModel | None = None
        self._requested_model: Path | None = None  # the last load asked for (None: the starter)
        self._turn_id = 0
        self._answer_row: int | None = None
        self._dropped = 0  # messages the last turn left out, to keep the cached prefix
        self._stream_started = 0.0
        self._stream_pieces = 0

        self.model = MessageListModel(self)
        self.stream_buffer = StreamBuffer(self.model, self)
        self.view = ConversationView()
        self.view.setModel(self.model)
        self.view.placeholder_html = self._placeholder()
        self.notice = NoticeBar()
        self.composer = Composer()
        self.send_button = QPushButton("Send")
        self.send_button.setMinimumWidth(80)
        self.regenerate_button = QPushButton("Regenerate")
        self.regenerate_button.setEnabled(False)

        bottom = QHBoxLayout()
        bottom.addWidget(self.composer, 1)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.regenerate_button)
        buttons.addStretch(1)
        bottom.addLayout(buttons)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 8)
        layout.addWidget(self.notice)
        layout.addWidget(self.view, 1)
        inner = QWidget()
        inner.setLayout(bottom)
        bottom.setContentsMargins(10, 0, 10, 0)
        layout.addWidget(inner)
        self.setCentralWidget(central)

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

        self._build_menus()
        self.composer.submitted.connect(self.send_message)
        self.composer.recall_requested.connect(self._recall_last)
        self.send_button.clicked.connect(self._send_or_stop)
        self.regenerate_button.clicked.connect(self.regenerate)
        self.view.edit_requested.connect(self.edit_message)
        self.view.regenerate_requested.connect(self.regenerate)
        self.view.delegate.copied.connect(lambda _t: self.stats_label.setText("Code copied"))

        worker = inference.worker
        worker.load_progress.connect(self._on_load_progress)
        worker.model_loaded.connect(self._on_model_loaded)
        worker.load_failed.connect(self._on_load_failed)
        worker.chunk.connect(self._on_chunk)
        worker.turn_finished.connect(self._on_turn_finished)
        worker.turn_failed.connect(self._on_turn_failed)
        self._restore_geometry()
        self.composer.setFocus()

    # Layout and menus
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_model = QAction("&Open model file…", self)
        open_model.setShortcut(QKeySequence.StandardKey.Open)
        open_model.triggered.connect(self._choose_model)
        starter = QAction("Use the &starter model", self)
        starter.triggered.connect(lambda: self.load_model(None))
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        for action in (open_model, starter, quit_action):
            file_menu.addAction(action)
        chat_menu = self.menuBar().addMenu("&Chat")
        new_chat = QAction("&New chat", self)
        new_chat.setShortcut(QKeySequence.StandardKey.New)
        new_chat.triggered.connect(self.new_chat)
        stop = QAction("&Stop", self)
        stop.setShortcut(QKeySequence("Esc"))
        stop.triggered.connect(self.stop)
        regenerate = QAction("&Regenerate", self)
        regenerate.setShortcut(QKeySequence("Ctrl+R"))
        regenerate.triggered.connect(self.regenerate)
        for action in (new_chat, stop, regenerate):
            chat_menu.addAction(action)
        prefs = QAction("&Settings…", self)
        prefs.setShortcut(QKeySequence.StandardKey.Preferences)
        prefs.triggered.connect(self.open_settings)
        self.menuBar().addMenu("&Tools").addAction(prefs)
        panel = self.info_panel.toggleViewAction()
        panel.setText("&Model info")
        panel.setShortcut(QKeySequence("Ctrl+I"))
        self.menuBar().addMenu("&View").addAction(panel)

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

    # Model
    @property
    def busy(self) -> bool:
        """True while an answer is being generated."""
        return self._answer_row is not None

    def load_model(self, path: Path | None) -> None:
        """Load `path` (None: the starter model) in the worker."""
        if self.busy:
            self.stop()
        self._requested_model = path
        self.model_label.setText("Loading…")
        self.load_progress.setValue(0)
        self.load_progress.show()
        self._inference.load(LoadRequest(path, self._settings.load_options()))

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a GGUF model", str(Path.home()), "GGUF models (*.gguf)")
        if path:
            self.load_model(Path(path))

    def _on_load_progress(self, stage: str, fraction: float) -> None:
        self.load_progress.show()
        self.load_progress.setValue(int(fraction * 100))
        self.model_label.setText(f"{stage}…")

    def _model_text(self, loaded: LoadedModel | None) -> str:
        if loaded is None:
            return "No model"
        name = STARTER_DISPLAY_NAME if is_starter(loaded.info.path) else loaded.info.name
        return f"{name} · {loaded.n_ctx} ctx"

    def _change_residency(self, mode: Residency) -> None:
        if mode != self._settings.residency():
            self._settings.set(opts.RESIDENCY, mode.value)
            self.load_model(self._requested_model)

    def _show_model(self, loaded: LoadedModel | None) -> None:
        self.info_panel.show_model(loaded)
        self.memory_monitor.set_model(loaded)

    def _on_model_loaded(self, loaded: LoadedModel) -> None:
        self._loaded = loaded
        self._show_model(loaded)
        self._dropped = 0
        self.load_progress.hide()
        self.model_label.setText(self._model_text(loaded))
        starter = is_starter(loaded.info.path)
        self._settings.set(opts.MODEL_PATH, "" if starter else str(loaded.info.path))
        if starter:
            self.notice.show_text(STARTER_NOTICE)
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
        text = text.strip()
        if not text:
            return False
        if self.busy:
            self.stats_label.setText("Wait for the answer to finish, or press Stop")
            return False
        self.composer.clear()
        self.model.append("user", text)
        row = self.model.append("assistant", streaming=True)
        self.view.scroll_to_end()
        self._start_turn(row)
        return True

    def _start_turn(self, answer_row: int) -> None:
        self._turn_id += 1
        self._answer_row = answer_row
        self._stream_started = time.perf_counter()
        self._stream_pieces = 0
        request = TurnRequest(
            turn_id=self._turn_id,
            history=self.model.history(upto=answer_row),
            system_prompt=self._settings.get(opts.SYSTEM_PROMPT),
            sampling=self._settings.sampling(),
            previous_dropped=self._dropped,
        )
        self._inference.submit(request)
        self._set_busy(True)

    def _set_busy(self, busy: bool) -> None:
        self.send_button.setText("Stop" if busy else "Send")
        last = self.model.rowCount() - 1
        self.regenerate_button.setEnabled(not busy and last >= 0 and self.model.item(last).role == "assistant")
        if busy:
            self.stats_label.setText("Generating…")

    def stop(self) -> None:
        """Stop the answer before its next token; the text so far stays."""
        if self.busy:
            self._inference.cancel()

    def regenerate(self) -> None:
        """Replace the last answer with a new one."""
        last = self.model.rowCount() - 1
        if self.busy or last < 1 or self.model.item(last).role != "assistant":
            return
        self.model.reset_message(last)
        self.view.scroll_to_end()
        self._start_turn(last)

    def edit_message(self, row: int) -> None:
        """Put a user message back in the composer, dropping it and what followed."""
        if self.busy or self.model.item(row).role != "user":
            return
        text = self.model.item(row).text
        self.model.truncate(row)
        self.composer.setPlainText(text)
        self.composer.setFocus()
        self._set_busy(False)

    def _recall_last(self) -> None:
        for row in range(self.model.rowCount() - 1, -1, -1):
            if self.model.item(row).role == "user":
                self.edit_message(row)
                return

    def new_chat(self) -> None:
        """Start an empty conversation, abandoning an answer in progress."""
        if self.busy:
            self.stop()
            self._turn_id += 1  # late chunks and results of the old turn are ignored
            self._answer_row = None
            self.stream_buffer.discard()
        self.model.clear()
        self._dropped = 0
        self._set_busy(False)

    def _on_chunk(self, turn_id: int, text: str) -> None:
        if turn_id != self._turn_id or self._answer_row is None:
            return
        self.stream_buffer.add(self._answer_row, text)
        self._stream_pieces += 1
        if self._stream_pieces % 8 == 0:
            elapsed = time.perf_counter() - self._stream_started
            self.stats_label.setText(f"Generating… {elapsed:.0f} s")

    def _on_turn_finished(self, result: TurnResult) -> None:
        if result.turn_id != self._turn_id or self._answer_row is None:
            return
        self.stream_buffer.flush()
        notice = ""
        if result.dropped_messages:
            notice = (
                f"{result.dropped_messages} earlier messages were left out to fit the "
                f"{self._loaded.n_ctx if self._loaded else ''}-token context window."
            )
        self._dropped = result.dropped_messages
        self.model.finish(self._answer_row, result.stats, notice)
        s = result.stats
        self.stats_label.setText(f"{stats_line(s)} · prompt {s.prompt_tokens} tokens ({s.prompt_evaluated} new)")
        self._answer_row = None
        self._set_busy(False)
        self.answer_finished.emit(result)

    def _on_turn_failed(self, turn_id: int, message: str) -> None:
        if turn_id != self._turn_id or self._answer_row is None:
            return
        self.stream_buffer.flush()
        self.model.finish(self._answer_row, None, message or "Stopped before the first token.")
        self._answer_row = None
        self._set_busy(False)
        if message:
            self.stats_label.setText("The answer failed (see the note under it)")

    # Dialogs
    def open_settings(self) -> None:
        """Edit preferences; reload the model when the context size or threads changed."""
        training = self._loaded.info.context_length if self._loaded else 0
        dialog = SettingsDialog(self._settings, training, self)
        if dialog.exec() and dialog.reload_needed:
            self.info_panel.set_residency(self._settings.residency())
            self.load_model(self._requested_model)

    def show_crash_notice(self, crash_log: Path) -> None:
        """Tell the user the previous run ended abnormally."""
        self.notice.show_text(f"{APP_NAME} closed unexpectedly last time. Details were saved to {crash_log}.", True)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Save the layout, stop generation and join the worker thread."""
        state = QSettings(str(self._paths.window_state_file), QSettings.Format.IniFormat)
        state.setValue("main/geometry", self.saveGeometry())
        state.setValue("main/state", self.saveState())
        state.sync()
        self._settings.sync()
        self.stream_buffer.discard()
        self.memory_monitor.shutdown()
        self._inference.shutdown()
        super().closeEvent(event)
