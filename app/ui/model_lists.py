"""The model manager's lists: installed models, the download queue, and the network log."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import settings as opts
from app.core.models.download import DownloadJob, Progress
from app.core.models.hub import hub_name
from app.core.models.network import ACTIVITY, Activity
from app.core.models.registry import InstalledModel
from app.services.downloads import DownloadManager
from app.services.models import ModelService
from app.settings import Settings
from app.ui import units


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def when(timestamp: float | None) -> str:
    """A short, human date: "today 14:05", "3 days ago", or "never"."""
    if not timestamp:
        return "never"
    days = int((time.time() - timestamp) // 86400)
    if days < 1:
        return time.strftime("today %H:%M", time.localtime(timestamp))
    return "yesterday" if days == 1 else f"{days} days ago"


BUILTIN_TIP = "Built into Tern so it works offline from the first launch; it cannot be deleted."
VISION = "vision"
_TEXT_ONLY = ("Gemma 3 270M", "Gemma 3 1B")  # the Gemma 3 sizes without an image tower


def may_see_images(model: InstalledModel) -> bool:
    """True for a model of a family that sees images (Gemma 4, Gemma 3n, Gemma 3 4B and up)."""
    return not model.builtin and model.family.startswith(("Gemma 4", "Gemma 3")) and model.family not in _TEXT_ONLY


class InstalledTab(QWidget):
    """Installed models (the built-in starter among them) with Load, Delete, Show in folder, and Import."""

    load_requested = Signal(object)  # Path
    embedding_requested = Signal(object)  # Path: use this model for document search

    COLUMNS = ("Model", "Family", "Images", "Size", "Parameters", "Last used", "Source")

    def __init__(
        self,
        models: ModelService,
        downloads: DownloadManager,
        models_dir: Path,
        is_loaded: Callable[[str], bool],
        settings: Settings | None = None,
    ) -> None:
        super().__init__()
        self._service = models
        self._downloads = downloads
        self._models_dir = models_dir
        self._is_loaded = is_loaded
        self._settings = settings
        self.table = _table(list(self.COLUMNS))
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.load_button = QPushButton("Load")
        self.delete_button = QPushButton("Delete…")
        self.reveal_button = QPushButton("Show in folder")
        self.embedding_button = QPushButton("Use for document search")
        self.embedding_button.setToolTip(
            "Documents are then found by meaning as well as by words (EmbeddingGemma is made for this)."
        )
        self.projector_button = QPushButton("Get its image projector")
        self.projector_button.setToolTip(
            "Download the model's image projector from the repository it came from, so you can send it pictures."
        )
        self.import_button = QPushButton("Import a GGUF file…")
        self.copy_on_import = QCheckBox("Copy it into Tern's models folder")
        self.copy_on_import.setToolTip("Otherwise Tern uses the file where it is, and never deletes it.")
        self.status = QLabel()
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.load_button, self.delete_button, self.reveal_button, self.embedding_button):
            buttons.addWidget(b)
        buttons.addWidget(self.projector_button)
        buttons.addStretch(1)
        buttons.addWidget(self.copy_on_import)
        buttons.addWidget(self.import_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self.load_button.clicked.connect(self._load)
        self.table.doubleClicked.connect(lambda _i: self._load())
        self.delete_button.clicked.connect(self._delete)
        self.reveal_button.clicked.connect(self._reveal)
        self.embedding_button.clicked.connect(self._use_for_embeddings)
        self.import_button.clicked.connect(self.choose_import)
        self.projector_button.clicked.connect(self._get_projector)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        downloads.copied.connect(self._copied)
        downloads.copy_failed.connect(self.status.setText)
        downloads.projector_queued.connect(self._projector_queued)
        downloads.projector_installed.connect(self._projector_installed)
        downloads.projector_failed.connect(self._projector_failed)
        models.changed.connect(self._show)
        self._show(models.installed)

    def refresh(self) -> None:
        """Read the list again (on the files thread; the table follows)."""
        self._service.refresh()

    def _show(self, models: list[InstalledModel]) -> None:
        chosen = self.selected()
        self._models = models
        self.table.setRowCount(len(self._models))
        for row, m in enumerate(self._models):
            params = units.params(m.effective_parameters)
            if m.ple_parameters:
                params += f" + {units.params(m.ple_parameters)} PLE"
            if m.builtin:
                source = "built-in"
            else:
                source = "imported" if m.imported else (f"{m.repo_id} {m.label}".strip() or "Tern")
            images = VISION if m.sees_images else ""
            cells = [m.display_name, m.family, images, units.size(m.size), params, when(m.last_used), source]
            tip = f"{m.path}\n{BUILTIN_TIP}" if m.builtin else m.path
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(self._images_tip(m) if self.COLUMNS[col] == "Images" else tip)
                self.table.setItem(row, col, item)
        for col in range(1, self.table.columnCount() - 1):  # the name stretches, the rest fit their text
            self.table.resizeColumnToContents(col)
        if chosen is not None:
            self.select(chosen.path)
        self._selection_changed()

    @staticmethod
    def _images_tip(m: InstalledModel) -> str:
        if m.sees_images:
            return f"Sees images through {Path(m.projector).name}, beside the model."
        if may_see_images(m):
            return "Its image projector is not beside it: “Get its image projector” fetches it."
        return "Text only."

    def select(self, path: str) -> None:
        """Highlight the model at `path`, if listed."""
        for row, m in enumerate(self._models):
            if m.path == path:
                self.table.selectRow(row)

    def _copied(self, model: InstalledModel) -> None:
        self.status.setText(f"Imported a copy of {model.display_name}.")  # the window adds it; the table follows

    def selected(self) -> InstalledModel | None:
        """The highlighted model."""
        rows = self.table.selectionModel().selectedRows()
        return self._models[rows[0].row()] if rows else None

    def _selection_changed(self) -> None:
        model = self.selected()
        for b in (self.load_button, self.reveal_button, self.embedding_button):
            b.setEnabled(model is not None)
        self.delete_button.setEnabled(model is not None and not model.builtin)
        self.delete_button.setToolTip(BUILTIN_TIP if model is not None and model.builtin else "")
        wanting = model is not None and may_see_images(model) and not model.sees_images
        self.projector_button.setVisible(wanting and self._settings is not None)

    def _get_projector(self) -> None:
        """Look the selected model's image projector up in its repository and queue it (the user's request)."""
        model = self.selected()
        if model is None or self._settings is None:
            return
        endpoint = str(self._settings.get(opts.HUB_ENDPOINT))
        self.status.setText(f"Looking for the image projector of {model.display_name} on {hub_name(endpoint)}…")
        self.projector_button.setEnabled(False)
        self._downloads.fetch_projector(model, endpoint, self._settings.load_options())

    def _named(self, path: str) -> str:
        model = next((m for m in self._models if m.path == path), None)
        return model.display_name if model is not None else Path(path).name

    def _projector_queued(self, path: str, job: DownloadJob) -> None:
        self.projector_button.setEnabled(True)
        self.status.setText(
            f"Downloading the image projector of {self._named(path)} ({units.size(job.total)}); see Downloads."
        )

    def _projector_installed(self, path: str, projector: Path) -> None:
        self.status.setText(f"{self._named(path)} can now see images ({projector.name}).")

    def _projector_failed(self, path: str, message: str) -> None:
        self.projector_button.setEnabled(True)
        self.status.setText(f"No image projector for {self._named(path)}: {message}")

    def _load(self) -> None:
        model = self.selected()
        if model is not None:
            self.load_requested.emit(Path(model.path))

    def _delete(self) -> None:
        model = self.selected()
        if model is None or model.builtin:
            return
        if self._is_loaded(model.path):
            self.status.setText(f"{model.name} is in use; load another model before deleting it.")
            return
        what = (
            "Remove it from Tern's list? The file stays where it is."
            if model.imported
            else (f"Delete {model.name} ({units.size(model.size)}) from this computer?")
        )
        if QMessageBox.question(self, "Delete model", what) == QMessageBox.StandardButton.Yes:
            self.delete(model)

    def delete(self, model: InstalledModel) -> None:
        """Forget a model, deleting its files (on the files thread) unless it was imported in place."""
        self.status.setText(f"Deleting {model.name}…" if not model.imported else "")

        def done(deleted: list[Path]) -> None:
            removed = f"Removed {model.name} from the list."
            self.status.setText(f"Deleted {len(deleted)} file(s)." if deleted else removed)

        self._service.remove(model.path, done, lambda exc: self.status.setText(str(exc)))

    def _use_for_embeddings(self) -> None:
        model = self.selected()
        if model is not None:
            self.embedding_requested.emit(Path(model.path))
            self.status.setText(f"{model.name} will find document passages by meaning (newly read documents).")

    def _reveal(self) -> None:
        model = self.selected()
        if model is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(model.path).parent)))

    def choose_import(self) -> None:
        """Pick a GGUF file with the platform's dialog and import it (a copy, when the box is ticked)."""
        path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF model", str(Path.home()), "GGUF models (*.gguf)")
        if not path:
            return
        if self.copy_on_import.isChecked():
            self.import_copy(Path(path))
        else:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> None:
        """Check (off the GUI thread) and register a local GGUF where it lies; the outcome shows in the status line."""
        self.status.setText(f"Checking {path.name}…")
        self._service.import_file(
            path, lambda m: self.status.setText(f"Imported {m.display_name}."), self.status.setText, self._already
        )

    def import_copy(self, path: Path) -> None:
        """Check the file, then copy it into Tern's models folder (unless that model is listed already)."""
        self.status.setText(f"Checking {path.name}…")

        def copy() -> None:
            self.status.setText(f"Copying {path.name}…")
            self._downloads.copy_in(path, self._models_dir / "imported")

        self._service.check_import(path, copy, self.status.setText, self._already)

    def _already(self, existing: InstalledModel, message: str) -> None:
        self.status.setText(message)
        self.select(existing.path)


def progress_text(job: DownloadJob, p: Progress | None) -> str:
    """A download's state in words: "1.2 GB of 3.4 GB · 5.0 MB/s · 4 min 10 s left", "Paused", its error."""
    if job.state == "failed":
        return job.error
    if p is None:
        return {"queued": "Waiting", "paused": "Paused"}.get(job.state, job.state.capitalize())
    text = f"{units.size(p.done)} of {units.size(p.total)}"
    if job.state == "downloading" and p.speed > 0:
        text += f" · {units.size(int(p.speed))}/s"
        if p.eta_s is not None:
            minutes, seconds = divmod(int(p.eta_s), 60)
            text += f" · {minutes} min {seconds:02d} s left" if minutes else f" · {seconds} s left"
    elif job.state == "paused":
        text += " · paused"
    return text


class DownloadsTab(QWidget):
    """The queue: each download's progress, and Pause / Resume / Cancel."""

    def __init__(self, downloads: DownloadManager) -> None:
        super().__init__()
        self._downloads = downloads
        self.table = _table(["Model", "Progress", "Status"])
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume or retry")
        self.cancel_button = QPushButton("Cancel")
        self.empty = QLabel("No downloads. Choose a model in Discover.")
        buttons = QHBoxLayout()
        for b in (self.pause_button, self.resume_button, self.cancel_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.empty)
        layout.addLayout(buttons)
        self.pause_button.clicked.connect(lambda: self._act(downloads.pause))
        self.resume_button.clicked.connect(lambda: self._act(downloads.resume))
        self.cancel_button.clicked.connect(lambda: self._act(downloads.cancel))
        self.table.itemSelectionChanged.connect(self._update_buttons)
        downloads.changed.connect(lambda _id: self.refresh())
        downloads.progress.connect(self._on_progress)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the rows from the queue."""
        jobs = self._downloads.jobs
        self.table.setRowCount(len(jobs))
        for row, job in enumerate(jobs):
            extra = " + image projector" if job.projector is not None and not job.for_model else ""
            name = QTableWidgetItem(f"{job.repo_id} {job.label}{extra}")
            name.setData(Qt.ItemDataRole.UserRole, job.id)
            self.table.setItem(row, 0, name)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            self.table.setCellWidget(row, 1, bar)
            self._show(row, job, self._downloads.last_progress.get(job.id))
        self.empty.setVisible(not jobs)
        self._update_buttons()

    def _show(self, row: int, job: DownloadJob, p: Progress | None) -> None:
        bar = self.table.cellWidget(row, 1)
        if isinstance(bar, QProgressBar):
            done = p.done if p else job.done_bytes() if job.state != "queued" else 0
            bar.setValue(int(1000 * done / job.total) if job.total else 0)
        self.table.setItem(row, 2, QTableWidgetItem(progress_text(job, p)))

    def _on_progress(self, job_id: str, progress: Progress) -> None:
        for row, job in enumerate(self._downloads.jobs):
            if job.id == job_id:
                self._show(row, job, progress)

    def _selected(self) -> DownloadJob | None:
        rows = self.table.selectionModel().selectedRows()
        item = self.table.item(rows[0].row(), 0) if rows else None
        return self._downloads.job(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def _update_buttons(self) -> None:
        job = self._selected()
        state = job.state if job else ""
        self.pause_button.setEnabled(state in ("queued", "downloading"))
        self.resume_button.setEnabled(state in ("paused", "failed"))
        self.cancel_button.setEnabled(job is not None)

    def _act(self, action: object) -> None:
        job = self._selected()
        if job is not None and callable(action):
            action(job.id)
        self._update_buttons()


class _ActivityBridge(QObject):
    """Brings news of network log entries (recorded on worker threads) to the GUI thread."""

    entry = Signal()


class NetworkTab(QWidget):
    """Every request Tern made, with why (the user action) and the answer; below, requests made to Tern."""

    def __init__(self, inbound: QWidget | None = None) -> None:
        super().__init__()
        self.table = _table(["Time", "Why", "Request", "Answer"])
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        note = QLabel(
            "Tern contacts the network only when you look up or download a model. "
            "Every request it made since it started is listed here; there is no telemetry."
        )
        note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(self.table, 1)
        self.inbound = inbound
        if inbound is not None:
            layout.addWidget(inbound, 2)
        self._refresh_soon = QTimer(self)
        self._refresh_soon.setSingleShot(True)
        self._refresh_soon.setInterval(200)
        self._refresh_soon.timeout.connect(self.refresh)
        self._bridge = _ActivityBridge()
        self._bridge.entry.connect(self._refresh_soon.start)  # a QTimer slot: queued to this thread
        bridge = self._bridge

        def listener(_entry: Activity) -> None:
            bridge.entry.emit()

        ACTIVITY.listeners.append(listener)
        self.destroyed.connect(lambda: self._forget(listener))
        self.refresh()

    @staticmethod
    def _forget(listener: Callable[[Activity], None]) -> None:
        if listener in ACTIVITY.listeners:
            ACTIVITY.listeners.remove(listener)

    def refresh(self) -> None:
        """Show the log, newest first."""
        entries: list[Activity] = list(reversed(ACTIVITY.snapshot()))
        self.table.setRowCount(len(entries))
        for row, e in enumerate(entries):
            cells = [time.strftime("%H:%M:%S", time.localtime(e.when)), e.reason, f"{e.method} {e.url}", e.answer()]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, col, item)
        for col in (0, 1, 3):  # the request takes the room left
            self.table.resizeColumnToContents(col)
