"""Loading models and showing their state: the status-bar label and progress, the info panel, the notices.

The window asks it to load a file, the starter, or what a drop or the model
manager names; it hands the request to the turn service (whose thread owns
the model) and shows what comes back.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QLabel, QMessageBox, QProgressBar

from app import settings as opts
from app.core.chat.gemma4 import Gemma4Template
from app.core.engine.options import LoadedModel, Residency
from app.core.models.registry import InstalledModel
from app.core.models.starter import STARTER_DISPLAY_NAME, STARTER_NOTICE, is_starter
from app.services.turns import LoadRequest
from app.ui.model_manager import ModelManager

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


class ModelController(QObject):
    """One model at a time: load, show, and the model manager window."""

    ready = Signal(object)  # LoadedModel, after the window has updated
    failed = Signal(str)

    def __init__(self, window: MainWindow, show_dialogs: bool) -> None:
        super().__init__(window)
        self._window = window
        self._services = window.services
        self._settings = window.settings
        self._show_dialogs = show_dialogs
        self.loaded: LoadedModel | None = None
        self.requested: Path | None = None  # the last load asked for (None: the starter)
        self._manager: ModelManager | None = None
        self._load_note = ""  # shown with the next load's notice (why another model than the one asked for)
        self.label = QLabel("No model")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(False)
        self.progress.hide()
        turns = self._services.turns
        turns.load_progress.connect(self._on_progress)
        turns.model_loaded.connect(self._on_loaded)
        turns.load_failed.connect(self._on_failed)
        self._services.downloads.installed.connect(self._installed)
        self._services.downloads.copied.connect(self._installed)
        self._services.downloads.projector_installed.connect(self._projector_installed)
        self._services.memory.reading.connect(window.info_panel.show_reading)
        window.info_panel.residency_changed.connect(self._change_residency)
        embedding = self._settings.get(opts.EMBEDDING_MODEL)
        self._services.documents.set_embedding_model(Path(embedding) if embedding else None)

    def load(self, path: Path | None) -> None:
        """Load `path` (None: the starter model) on the inference thread; an answer in progress stops."""
        self._window.session.stop()
        self.requested = path
        self.label.setText("Loading…")
        self.progress.setValue(0)
        self.progress.show()
        self._services.turns.load(LoadRequest(path, self._settings.load_options()))

    def reload(self) -> None:
        """Load the same model again (new settings)."""
        self.load(self.requested)

    def choose(self) -> None:
        """Pick a GGUF file, add it to the installed list (in place), and load it."""
        path, _ = QFileDialog.getOpenFileName(
            self._window, "Open a GGUF model", str(Path.home()), "GGUF models (*.gguf)"
        )
        if path:
            self.import_and_load(Path(path))

    def import_and_load(self, path: Path) -> None:
        """Check (off the GUI thread) and register a local GGUF without copying it, then load it.

        A copy of a model already installed is not listed twice: the installed one is loaded instead.
        """

        def already(existing: InstalledModel, message: str) -> None:
            self._window.notice.show_text(f"{message} Loading {existing.display_name}.")
            self._load_note = f"{message} {existing.display_name} is loaded instead."  # kept past the load
            self.load(None if existing.builtin else Path(existing.path))

        self._services.models.import_file(
            path, lambda model: self.load(Path(model.path)), self._window.notice.show_warning, already
        )

    def is_loaded(self, path: str) -> bool:
        """True when `path` is the model in use."""
        return self.loaded is not None and str(self.loaded.info.path) == path

    def open_manager(self) -> ModelManager:
        """The model manager (one window, reused)."""
        if self._manager is None:
            s = self._services
            self._manager = ModelManager(
                s.downloads, s.models, self._settings, self._window.paths.models, self.is_loaded, self._window, s.api
            )
            self._manager.load_requested.connect(self._load_installed)
            self._manager.embedding_requested.connect(self.use_for_embeddings)
        self._manager.show()
        self._manager.raise_()
        return self._manager

    def _load_installed(self, path: Path) -> None:
        entry = self._services.models.get(path)
        self.load(None if entry is not None and entry.builtin else path)  # the starter is checked as it loads

    def use_for_embeddings(self, path: Path) -> None:
        """Find document passages by meaning with this model too (newly read documents)."""
        self._settings.set(opts.EMBEDDING_MODEL, str(path))
        self._services.documents.set_embedding_model(path)

    def _installed(self, model: InstalledModel) -> None:
        self._services.models.add(model)
        self._window.notice.show_text(f"{model.name} is installed; load it from Tools → Models.")

    def _projector_installed(self, path: str, projector: Path) -> None:
        """A listed model's image projector arrived: count it among the model's files; offer to reload it."""
        self._services.models.attach_projector(path, projector)
        entry = self._services.models.get(path)
        name = entry.display_name if entry is not None else Path(path).name
        if self.is_loaded(path):
            self._window.notice.show_text(
                f"{name} can now see images; reload it to send it pictures.", action=("Reload", self.reload)
            )
        else:
            self._window.notice.show_text(f"{name} can now see images.")

    def _change_residency(self, mode: Residency) -> None:
        if mode != self._settings.residency():
            self._settings.set(opts.RESIDENCY, mode.value)
            self.reload()

    def _on_progress(self, stage: str, fraction: float) -> None:
        self.progress.show()
        self.progress.setValue(int(fraction * 100))
        self.label.setText(f"{stage}…")

    @staticmethod
    def display_name(loaded: LoadedModel) -> str:
        """The name the user knows the model by."""
        return STARTER_DISPLAY_NAME if is_starter(loaded.info.path) else loaded.info.name

    def _show(self, loaded: LoadedModel | None) -> None:
        self.loaded = loaded
        self._window.info_panel.show_model(loaded)
        self._services.memory.set_model(loaded)
        session = self._window.session
        session.model_name = self.display_name(loaded) if loaded else ""
        session.n_ctx = loaded.n_ctx if loaded else 0
        session.set_model_features(loaded is not None and loaded.template_name == Gemma4Template.name)
        self.progress.hide()
        self.label.setText("No model" if loaded is None else f"{self.display_name(loaded)} · {loaded.n_ctx} ctx")

    def _on_loaded(self, loaded: LoadedModel) -> None:
        self._show(loaded)
        self._window.session.clear_cut()
        starter = is_starter(loaded.info.path)
        self._settings.set(opts.MODEL_PATH, "" if starter else str(loaded.info.path))
        self._services.models.touch(loaded.info.path)  # the installed list follows
        notice = self._window.notice
        note, self._load_note = self._load_note, ""
        texts = [t for t in (note, STARTER_NOTICE if starter else loaded.template_note) if t]
        if texts:
            action = ("Get a model…", self.open_manager) if starter else None
            notice.show_text(" ".join(texts), warning=bool(loaded.template_note) and not starter, action=action)
        elif notice.isVisible():
            notice.hide()
        self._window.stats_label.setText(f"Loaded in {loaded.load_ms / 1000:.1f} s")
        self.ready.emit(loaded)

    def _on_failed(self, message: str, still_loaded: LoadedModel | None) -> None:
        self._load_note = ""
        self._show(still_loaded)
        self._window.notice.show_text(f"The model could not be loaded. {message}", warning=True)
        if self._show_dialogs:
            QMessageBox.warning(self._window, "Model not loaded", message)
        self.failed.emit(message)
