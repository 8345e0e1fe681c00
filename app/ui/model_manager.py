"""The model manager: discover Gemma models that fit, download them, and manage what is installed.

Nothing here touches the network by itself. "Look up" and "Download" are the
user's explicit requests; they run on the download manager's threads, and the
Network tab lists every request the app has made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import settings as opts
from app.core.models import network
from app.core.models.catalog import CatalogEntry, load_catalog
from app.core.models.download import DownloadJob
from app.core.models.fit import Machine, Verdict, estimate_memory, for_file, judge, recommend
from app.core.models.hub import HubError, QuantOption, RemoteModel, parse_repo_ref
from app.services.downloads import DownloadManager
from app.services.local_api import LocalApiService
from app.services.models import ModelService
from app.settings import Settings
from app.ui import units
from app.ui.local_api_panel import InboundLog
from app.ui.model_lists import DownloadsTab, InstalledTab, NetworkTab

VERDICT_LABELS = {Verdict.FITS: "Fits", Verdict.TIGHT: "Tight", Verdict.WONT_FIT: "Won't fit"}


def fit_guidance(
    remote: RemoteModel, options: list[QuantOption], n_ctx: int, settings: Settings, machine: Machine
) -> tuple[list[tuple[str, str]], int | None]:
    """(verdict label, explanation) per option, and the index of the recommended one (best quality that fits)."""
    if remote.header is None:
        return [("Unknown", "Its size could not be read from the hub.")] * len(options), None
    base = estimate_memory(remote.header, n_ctx, settings.residency(), settings.get(opts.GPU_LAYERS))
    estimates = [for_file(base, remote.header.file_size, o.size) for o in options]
    rows = []
    for estimate in estimates:
        verdict, why = judge(estimate, machine)
        details = "\n".join(f"{label}: {units.size(n)}" for label, n in estimate.breakdown())
        rows.append((VERDICT_LABELS[verdict], f"{why}\n\n{details}"))
    best = recommend(list(enumerate(estimates)), machine, best_first=True)
    return rows, best


VERDICT_COLOURS = {"Fits": "#15803d", "Tight": "#b45309", "Won't fit": "#b91c1c"}


class DiscoverTab(QWidget):
    """The catalogue, a repository's quantizations with fit guidance, and the Download buttons."""

    import_requested = Signal()  # "Import a GGUF file…", offered when the hub cannot be reached

    def __init__(self, downloads: DownloadManager, settings: Settings, models_dir: Path) -> None:
        super().__init__()
        self._downloads = downloads
        self._settings = settings
        self._models_dir = models_dir
        self._remote: RemoteModel | None = None
        self._machine: Machine | None = None  # measured by the look-up, off the GUI thread
        self._entry: CatalogEntry | None = None
        self.catalog = load_catalog()

        self.entries = QListWidget()
        self.entries.setSpacing(3)
        for entry in self.catalog:
            item = QListWidgetItem(
                f"{entry.name}\n{entry.family} · {'embedding' if entry.kind == 'embedding' else 'chat'}"
            )
            item.setData(Qt.ItemDataRole.UserRole, entry.id)
            self.entries.addItem(item)
        self.title = QLabel()
        self.title.setStyleSheet("font-size: 14pt; font-weight: 600;")
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.source = QComboBox()
        # A long source name is elided, so it does not set the window's width on a small screen.
        self.source.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source.setMinimumContentsLength(18)
        self.repo = QLineEdit()
        self.repo.setPlaceholderText("Or paste any Hugging Face model id or URL, e.g. org/model-GGUF")
        self.look_up = QPushButton("Look up files online")
        self.context = QSpinBox()
        self.context.setRange(512, 262144)
        self.context.setSingleStep(1024)
        self.context.setValue(settings.get(opts.CONTEXT_SIZE))
        self.context.setSuffix(" tokens of context")
        self.status = QLabel("Choose a model, then look up its files. Tern goes online only when you ask.")
        self.status.setWordWrap(True)
        self.import_instead = QPushButton("Import a GGUF file…")
        self.import_instead.setToolTip("Use a model file you already have; no network needed.")
        self.import_instead.hide()  # offered when the hub cannot be reached
        self.options = QTableWidget(0, 4)
        self.options.setHorizontalHeaderLabels(["Quantization", "Download", "Fit on this machine", ""])
        self.options.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.options.verticalHeader().hide()
        self.options.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.options.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)

        detail = QWidget()
        form = QVBoxLayout(detail)
        form.addWidget(self.title)
        form.addWidget(self.description)
        row = QHBoxLayout()
        row.addWidget(QLabel("From"))
        row.addWidget(self.source, 1)
        form.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.repo, 1)
        row.addWidget(self.look_up)
        form.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.context)
        row.addStretch(1)
        form.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.status, 1)
        row.addWidget(self.import_instead, 0, Qt.AlignmentFlag.AlignTop)
        form.addLayout(row)
        form.addWidget(self.options, 1)
        split = QSplitter()
        split.addWidget(self.entries)
        split.addWidget(detail)
        split.setSizes([260, 640])
        layout = QVBoxLayout(self)
        layout.addWidget(split)

        self.entries.currentRowChanged.connect(self._show_entry)
        self.look_up.clicked.connect(self.look_up_repo)
        self.import_instead.clicked.connect(self.import_requested)
        self.repo.returnPressed.connect(self.look_up_repo)
        self.source.currentIndexChanged.connect(lambda _i: self.repo.setText(self.source.currentData() or ""))
        self.context.valueChanged.connect(lambda _v: self._show_options())
        downloads.fetched.connect(self._on_fetched)
        downloads.fetch_failed.connect(self._on_fetch_failed)
        self.entries.setCurrentRow(0)

    def _show_entry(self, row: int) -> None:
        if not 0 <= row < len(self.catalog):
            return
        entry = self._entry = self.catalog[row]
        self.title.setText(entry.name)
        self.description.setText(f"{entry.use}\n\nLicence: {entry.licence}.")
        self.source.blockSignals(True)
        self.source.clear()
        for s in entry.sources:
            self.source.addItem(f"{s.repo} — {s.note}", s.repo)
        self.source.blockSignals(False)
        self.repo.setText(entry.sources[0].repo)
        self._remote = None
        self._show_options()

    def look_up_repo(self) -> None:
        """List the repository's files (the user's explicit request to go online)."""
        try:
            repo_id = parse_repo_ref(self.repo.text())
        except HubError as exc:
            self.status.setText(str(exc))
            return
        self.repo.setText(repo_id)
        self.import_instead.hide()
        self.status.setText(f"Looking up {repo_id}…")
        self.look_up.setEnabled(False)
        self._downloads.fetch(repo_id, self._settings.get(opts.HUB_ENDPOINT))

    def _on_fetched(self, repo_id: str, remote: RemoteModel, machine: Machine) -> None:
        self.look_up.setEnabled(True)
        if repo_id != self.repo.text().strip():  # the user moved on to another model meanwhile
            return
        self._remote, self._machine = remote, machine
        gated = " It is gated: the hub needs your token and accepted licence to download." if remote.gated else ""
        self.status.setText(
            f"{repo_id}: {len(remote.options)} model files"
            + (f", licence {remote.license}" if remote.license else "")
            + f".{gated}"
        )
        self._show_options()

    def _on_fetch_failed(self, repo_id: str, message: str, unreachable: bool) -> None:
        self.look_up.setEnabled(True)
        if repo_id == self.repo.text().strip():
            self.status.setText(message)
            self.import_instead.setVisible(unreachable)

    def _show_options(self) -> None:
        remote = self._remote
        options = remote.options if remote else []
        entry = self._entry
        if entry is not None:
            options = sorted(options, key=lambda o: (entry.quality(o.label), -o.size))
        self.options.setRowCount(len(options))
        verdicts: list[tuple[str, str]] = []
        best = None
        if remote is not None and self._machine is not None:
            verdicts, best = fit_guidance(remote, options, self.context.value(), self._settings, self._machine)
        for row, option in enumerate(options):
            verdict, explanation = verdicts[row]
            why = explanation.split("\n\n")[0]
            label = option.label + (f" ({len(option.files)} parts)" if len(option.files) > 1 else "")
            self.options.setItem(row, 0, QTableWidgetItem(label))
            self.options.setItem(row, 1, QTableWidgetItem(units.size(option.size)))
            text = f"{verdict}: {why}" + (" — recommended for this machine" if row == best else "")
            fit = QTableWidgetItem(text)
            fit.setToolTip(explanation)  # the sentence, then where the memory goes
            fit.setForeground(QColor(VERDICT_COLOURS.get(verdict, "#374151")))
            fit.setData(Qt.ItemDataRole.UserRole, verdict)
            self.options.setItem(row, 2, fit)
            button = QPushButton("Download")
            button.clicked.connect(lambda _c=False, o=option: self.download(o))
            self.options.setCellWidget(row, 3, button)
        self.options.resizeColumnsToContents()
        self.options.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)

    def download(self, option: QuantOption) -> DownloadJob | None:
        """Queue `option` of the looked-up repository."""
        if self._remote is None:
            return None
        remote = self._remote
        job = DownloadJob.for_option(remote.repo_id, remote.commit, option, self._models_dir, remote.endpoint)
        return self._downloads.add(job)


class HubSettings(QWidget):
    """Hub address (a mirror) and the access token, which lives in the keychain."""

    def __init__(self, settings: Settings, downloads: DownloadManager) -> None:
        super().__init__()
        self._settings = settings
        self._downloads = downloads
        self.endpoint = QLineEdit(settings.get(opts.HUB_ENDPOINT))
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("hf_… (for gated models; kept in the system keychain)")
        save = QPushButton("Save")
        forget = QPushButton("Remove token")
        self.status = QLabel()
        self.status.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("Hub address", self.endpoint)
        form.addRow("Access token", self.token)
        buttons = QHBoxLayout()
        buttons.addWidget(save)
        buttons.addWidget(forget)
        buttons.addStretch(1)
        form.addRow("", buttons)
        form.addRow("", self.status)
        save.clicked.connect(self.save)
        forget.clicked.connect(lambda: self._store_token(None))

    def save(self) -> None:
        """Keep the address in settings and the token (if typed) in the keychain."""
        address = self.endpoint.text().strip().rstrip("/") or opts.HUB_ENDPOINT.default
        if not network.may_carry_token(address):  # a mirror on this machine needs no encryption
            self.status.setText("The hub address must start with https:// (your token must never travel unencrypted).")
            return
        self._settings.set(opts.HUB_ENDPOINT, address)
        self._settings.sync()
        if self.token.text().strip():
            self._store_token(self.token.text())
        else:
            self.status.setText("Saved.")

    def _store_token(self, token: str | None) -> None:
        def saved() -> None:
            self.token.clear()
            self.status.setText("Token saved in the system keychain." if token else "Token removed.")

        self.status.setText("Saving…")
        self._downloads.save_token(token, saved, lambda exc: self.status.setText(str(exc)))  # the keychain may block


class ModelManager(QDialog):
    """Discover, Installed, Downloads, Network and Hub tabs."""

    load_requested = Signal(object)  # Path of a model to load
    embedding_requested = Signal(object)  # Path of a model for document search

    def __init__(
        self,
        downloads: DownloadManager,
        models: ModelService,
        settings: Settings,
        models_dir: Path,
        is_loaded: Callable[[str], bool],
        parent: QWidget | None = None,
        api: LocalApiService | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        screen = (parent.screen() if parent is not None else None) or QApplication.primaryScreen()
        if screen is not None:  # the size it was designed at, or most of a small (or highly scaled) screen
            room = screen.availableGeometry()
            self.resize(min(980, int(room.width() * 0.9)), min(620, int(room.height() * 0.85)))
        self.discover = DiscoverTab(downloads, settings, models_dir)
        self.installed = InstalledTab(models, downloads, models_dir, is_loaded)
        self.downloads = DownloadsTab(downloads)
        self.network = NetworkTab(InboundLog(api) if api is not None else None)
        self.hub = HubSettings(settings, downloads)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.discover, "Discover")
        self.tabs.addTab(self.installed, "Installed")
        self.tabs.addTab(self.downloads, "Downloads")
        self.tabs.addTab(self.network, "Network activity")
        self.tabs.addTab(self.hub, "Hub and token")
        # On a small or highly scaled screen the window may be smaller than its tabs need:
        # they scroll inside it rather than run off the screen.
        self.scroller = QScrollArea()
        self.scroller.setWidget(self.tabs)
        self.scroller.setWidgetResizable(True)
        self.scroller.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.addWidget(self.scroller)
        self.installed.load_requested.connect(self.load_requested)
        self.discover.import_requested.connect(self._import_instead)
        self.installed.embedding_requested.connect(self.embedding_requested)
        downloads.installed.connect(lambda _m: self.installed.refresh())
        downloads.changed.connect(lambda _id: self._count_downloads(downloads))
        self._count_downloads(downloads)

    def _import_instead(self) -> None:
        self.tabs.setCurrentWidget(self.installed)
        self.installed.choose_import()

    def _count_downloads(self, downloads: DownloadManager) -> None:
        active = sum(1 for j in downloads.jobs if j.state in ("queued", "downloading"))
        self.tabs.setTabText(2, f"Downloads ({active})" if active else "Downloads")
