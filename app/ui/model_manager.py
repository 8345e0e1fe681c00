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
    QCheckBox,
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
from app.core.models.fit import Machine, MemoryEstimate, Verdict, estimate_memory, for_file, judge, recommend
from app.core.models.hub import HubError, QuantOption, RemoteModel, RemoteProjector, parse_repo_ref
from app.core.models.vision_fit import ProjectorCost, choose_projector, projector_cost, projector_note, with_projector
from app.services.downloads import DownloadManager
from app.services.local_api import LocalApiService
from app.services.models import ModelService
from app.settings import Settings
from app.ui import units
from app.ui.local_api_panel import InboundLog
from app.ui.model_lists import DownloadsTab, InstalledTab, NetworkTab

VERDICT_LABELS = {Verdict.FITS: "Fits", Verdict.TIGHT: "Tight", Verdict.WONT_FIT: "Won't fit"}


def estimates(
    remote: RemoteModel, options: list[QuantOption], n_ctx: int, settings: Settings
) -> list[MemoryEstimate] | None:
    """What each option needs on this machine's settings (None when the hub gave no header to work from)."""
    if remote.header is None:
        return None
    base = estimate_memory(remote.header, n_ctx, settings.residency(), settings.get(opts.GPU_LAYERS))
    return [for_file(base, remote.header.file_size, o.size) for o in options]


def fit_guidance(
    remote: RemoteModel,
    options: list[QuantOption],
    n_ctx: int,
    settings: Settings,
    machine: Machine,
    projector: ProjectorCost | None = None,
) -> tuple[list[tuple[str, str]], int | None]:
    """(verdict label, explanation) per option, and the index of the recommended one (best quality that fits).

    With `projector`, each option is weighed with that image projector loaded and one image read.
    """
    found = estimates(remote, options, n_ctx, settings)
    if found is None:
        return [("Unknown", "Its size could not be read from the hub.")] * len(options), None
    if projector is not None:
        found = [with_projector(e, projector) for e in found]
    rows = []
    for estimate in found:
        verdict, why = judge(estimate, machine)
        details = "\n".join(f"{label}: {units.size(n)}" for label, n in estimate.breakdown())
        if projector is not None:
            details += "\n\n" + projector_note(projector, n_ctx)
        rows.append((VERDICT_LABELS[verdict], f"{why}\n\n{details}"))
    best = recommend(list(enumerate(found)), machine, best_first=True)
    return rows, best


def projector_offer(projector: RemoteProjector) -> str:
    """The check box's words: "Also get the image projector (mmproj-….gguf, 940 MB), to send it pictures"."""
    return f"Also get the image projector ({projector.name}, {units.size(projector.size)}), to send it pictures"


def cost_of(projector: RemoteProjector, settings: Settings) -> ProjectorCost | None:
    """What a listed projector costs at the image detail in the settings (None when its header was not read)."""
    if projector.info is None or projector.metadata is None:
        return None
    return projector_cost(projector.info, projector.metadata, settings.get(opts.IMAGE_TOKENS))


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
            kind = "embedding" if entry.kind == "embedding" else "chat"
            images = ""
            if entry.sees_images:
                images = " · sees images" if entry.images_in_tern else " · sees images (not in Tern yet)"
            item = QListWidgetItem(f"{entry.name}\n{entry.family} · {kind}{images}")
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
        self.with_projector = QCheckBox()
        self.with_projector.setChecked(True)
        self.with_projector.setToolTip(
            "A vision model sees images through a separate projector file from the same repository. "
            "It is saved next to the model, checked like the model, and shown in the download's progress."
        )
        self.projector = QComboBox()  # when the repository offers several
        self.projector.setAccessibleName("Image projector")
        self.projector.setToolTip("Full precision (F16, BF16) reads images best; Q8_0 takes less memory.")
        self.projector_note = QLabel()
        self.projector_note.setWordWrap(True)
        for widget in (self.with_projector, self.projector, self.projector_note):
            widget.hide()  # until a look-up finds a projector

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
        row = QHBoxLayout()
        row.addWidget(self.with_projector, 1)
        row.addWidget(self.projector)
        form.addLayout(row)
        form.addWidget(self.projector_note)
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
        self.with_projector.toggled.connect(lambda _on: self._show_options())
        self.projector.currentIndexChanged.connect(lambda _i: self._projector_chosen())
        downloads.fetched.connect(self._on_fetched)
        downloads.fetch_failed.connect(self._on_fetch_failed)
        self.entries.setCurrentRow(0)

    def _show_entry(self, row: int) -> None:
        if not 0 <= row < len(self.catalog):
            return
        entry = self._entry = self.catalog[row]
        self.title.setText(entry.name)
        images = ""
        if entry.sees_images:
            images = (
                "\n\nIt sees images: download its image projector with it to send it pictures."
                if entry.images_in_tern
                else "\n\nIt sees images, but through a kind of image projector this version of Tern cannot load yet."
            )
        self.description.setText(f"{entry.use}{images}\n\nLicence: {entry.licence}.")
        self.source.blockSignals(True)
        self.source.clear()
        for s in entry.sources:
            self.source.addItem(f"{s.repo} — {s.note}", s.repo)
        self.source.blockSignals(False)
        self.repo.setText(entry.sources[0].repo)
        self._remote = None
        self._show_projectors()
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
        usable = [p for p in remote.projectors if not p.problem]
        images = f", {len(usable)} image projector{'s' if len(usable) != 1 else ''}" if usable else ""
        files = f"{len(remote.options)} model file{'s' if len(remote.options) != 1 else ''}"
        self.status.setText(
            f"{repo_id}: {files}{images}" + (f", licence {remote.license}" if remote.license else "") + f".{gated}"
        )
        self._show_projectors()
        self._show_options()

    def _on_fetch_failed(self, repo_id: str, message: str, unreachable: bool) -> None:
        self.look_up.setEnabled(True)
        if repo_id == self.repo.text().strip():
            self.status.setText(message)
            self.import_instead.setVisible(unreachable)

    def _ranked(self) -> list[QuantOption]:
        remote, entry = self._remote, self._entry
        options = remote.options if remote else []
        return sorted(options, key=lambda o: (entry.quality(o.label), -o.size)) if entry is not None else options

    def _show_projectors(self) -> None:
        """Offer the looked-up repository's image projectors: the most precise one with which the model fits."""
        remote = self._remote
        projectors = remote.projectors if remote is not None else []
        usable = [p for p in projectors if not p.problem]
        self.projector.blockSignals(True)
        self.projector.clear()
        for p in usable:
            self.projector.addItem(f"{p.label} · {units.size(p.size)}", p.file.path)
        if remote is not None and usable and self._machine is not None:
            found = estimates(remote, self._ranked(), self.context.value(), self._settings)
            if found:  # weighed with the option Tern would recommend without images
                best = recommend(list(enumerate(found)), self._machine, best_first=True)
                costed = [(i, c) for i, p in enumerate(usable) if (c := cost_of(p, self._settings)) is not None]
                choice = choose_projector(costed, found[best if best is not None else -1], self._machine)
                self.projector.setCurrentIndex(choice if choice is not None else 0)
        self.projector.blockSignals(False)
        self.with_projector.setVisible(bool(usable))
        self.projector.setVisible(len(usable) > 1)
        if usable:
            self._projector_chosen(show=False)
        elif projectors:  # made for this model, but not a kind Tern can load
            self.projector_note.setText(f"No images with this model yet: {projectors[0].problem}")
        self.projector_note.setVisible(bool(projectors))

    def _projector_chosen(self, show: bool = True) -> None:
        chosen = self.chosen_projector()
        if chosen is None:
            return
        self.with_projector.setText(projector_offer(chosen))
        cost = cost_of(chosen, self._settings)
        self.projector_note.setText(projector_note(cost, self.context.value()) if cost is not None else "")
        if show:
            self._show_options()

    def chosen_projector(self) -> RemoteProjector | None:
        """The image projector picked for the looked-up repository, whether or not its box is ticked."""
        remote = self._remote
        if remote is None or self.projector.count() == 0:
            return None
        path = self.projector.currentData()
        return next((p for p in remote.projectors if p.file.path == path), None)

    def _show_options(self) -> None:
        remote = self._remote
        options = self._ranked()
        self.options.setRowCount(len(options))
        verdicts: list[tuple[str, str]] = []
        best = None
        projector = self.chosen_projector() if self.with_projector.isChecked() else None
        cost = cost_of(projector, self._settings) if projector is not None else None
        if cost is not None:
            self.projector_note.setText(projector_note(cost, self.context.value()))
        if remote is not None and self._machine is not None:
            verdicts, best = fit_guidance(remote, options, self.context.value(), self._settings, self._machine, cost)
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
        """Queue `option` of the looked-up repository, with the chosen image projector when its box is ticked."""
        if self._remote is None:
            return None
        remote = self._remote
        projector = self.chosen_projector() if self.with_projector.isChecked() else None
        job = DownloadJob.for_option(
            remote.repo_id,
            remote.commit,
            option,
            self._models_dir,
            remote.endpoint,
            projector.file if projector is not None else None,
        )
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
        self.installed = InstalledTab(models, downloads, models_dir, is_loaded, settings)
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
