"""The welcome page: the first step from the built-in starter to a real model.

It offers one model, chosen for this computer by the fit guidance
(`catalog.recommend_first`: the largest catalogue model whose memory and disk
needs fit what is free), with its size and why it fits; one button that
downloads it; "Import a GGUF file…" for a model already at hand; and a quiet
"Keep using the starter".

The download runs on the download manager's threads and shows its progress
here, where the user pressed the button, rather than in the model manager:
the first thing a new user does should answer in place, and the model
manager's five tabs are more than this step needs. The same job is listed
in the manager's Downloads tab, where it can also be paused or cancelled.

`FirstRunCheck` says when the window should show the page (see `wants_welcome`).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app import settings as opts
from app.core.models.catalog import CatalogEntry, Recommendation, load_catalog, recommend_first
from app.core.models.download import DownloadJob, Progress
from app.core.models.fit import Machine, Verdict
from app.core.models.hub import RemoteModel, hub_name
from app.core.models.registry import InstalledModel
from app.core.units import gb
from app.services.downloads import DownloadManager
from app.services.history import HistoryService
from app.services.models import ModelService
from app.settings import Settings
from app.ui.model_lists import progress_text
from app.ui.model_manager import fit_guidance

PAGE_WIDTH = 620  # the text column; wider lines are hard to read


def wants_welcome(installed: list[InstalledModel], conversations: int) -> bool:
    """True when no chat model but the built-in starter is installed and no conversation exists yet.

    That is a first launch, and any later one before the user has chatted or got another model
    (embedding models do not count: they cannot chat).
    """
    chat_models = [m for m in installed if not m.builtin and "embedding" not in m.family.lower()]
    return not chat_models and conversations == 0


class FirstRunCheck(QObject):
    """Follows the installed models and the conversation list; `wanted` says whether to show the welcome page.

    It answers only once both are known, so a returning user never sees the page flash. `dismiss`
    ("Keep using the starter", or the first message sent) hides it until the app is started again.
    """

    wanted = Signal(bool)

    def __init__(self, models: ModelService, history: HistoryService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._installed: list[InstalledModel] | None = None
        self._conversations: int | None = None
        self._dismissed = False
        self.is_wanted = False
        models.changed.connect(self._models_changed)
        history.conversations.connect(self._conversations_changed)
        history.ready.connect(history.refresh)  # the list, even if nothing else asks for it yet
        models.refresh()  # an answer that arrived before this check existed is asked for again
        if history.is_open:
            history.refresh()

    def dismiss(self) -> None:
        """Hide the page until the next start."""
        self._dismissed = True
        self._update()

    def _models_changed(self, installed: list[InstalledModel]) -> None:
        self._installed = installed
        self._update()

    def _conversations_changed(self, conversations: list[object]) -> None:
        self._conversations = len(conversations)
        self._update()

    def _update(self) -> None:
        known = self._installed is not None and self._conversations is not None
        wanted = (
            known
            and not self._dismissed
            and wants_welcome(self._installed or [], self._conversations or 0)  # both known here
        )
        if wanted != self.is_wanted:
            self.is_wanted = wanted
            self.wanted.emit(wanted)


class WelcomePage(QScrollArea):
    """One recommended model with a Download button, Import, and Keep using the starter."""

    import_requested = Signal()  # the window opens its file dialog (ModelController.choose)
    dismissed = Signal()  # "Keep using the starter"
    model_installed = Signal(object)  # InstalledModel: the model downloaded from this page is ready to load

    def __init__(
        self,
        downloads: DownloadManager,
        models: ModelService,
        settings: Settings,
        models_dir: Path,
        catalog: list[CatalogEntry] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._downloads = downloads
        self._settings = settings
        self._models_dir = models_dir
        self._catalog = catalog if catalog is not None else load_catalog()
        self.recommendation: Recommendation | None = None
        self._machine: Machine | None = None
        self._looking_up = ""  # the repository being looked up for this page
        self.job: DownloadJob | None = None  # this page's download, while queued
        self._expecting: tuple[str, str] | None = None  # its (repo, quantization): the queue drops it when done
        self._build()
        downloads.fetched.connect(self._on_fetched)
        downloads.fetch_failed.connect(self._on_fetch_failed)
        downloads.changed.connect(lambda _id: self._follow_job())
        downloads.progress.connect(self._on_progress)
        downloads.installed.connect(self._on_installed)
        models.run(lambda: Machine.detect(models_dir), self._on_machine)  # psutil and nvidia-smi: not here

    # Layout
    def _build(self) -> None:
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAccessibleName("Welcome")
        self.setAccessibleDescription("Get a real model for this computer, import one, or keep using the starter.")
        self.title = QLabel(f"Welcome to {APP_NAME}")
        self.title.setStyleSheet("font-size: 20pt; font-weight: 600;")
        self.intro = _text(
            f"{APP_NAME} is running its built-in starter model, so it works offline from the first minute. "
            "The starter is tiny and its answers are weak. For real help, get a proper model once; "
            "it then stays on this computer."
        )
        self.model_name = QLabel()
        self.model_name.setStyleSheet("font-size: 14pt; font-weight: 600;")
        self.model_use = _text("")
        self.fit = _text("Checking what this computer can run…")
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("primary")
        self.download_button.setEnabled(False)
        self.download_button.setStyleSheet(
            "QPushButton#primary { background: #1d4ed8; color: white; font-weight: 600; padding: 8px 18px;"
            " border-radius: 6px; } QPushButton#primary:disabled { background: #93a3c4; }"
        )
        self.download_button.setAccessibleName("Download the recommended model")
        self.download_button.setAccessibleDescription("Downloads the recommended model; Tern goes online only then.")
        self.online_note = _text("")
        self.online_note.setStyleSheet("color: #4b5563;")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setAccessibleName("Download progress")
        self.progress.hide()
        self.status = _text("")
        self.status.hide()
        for label, name in (
            (self.model_use, "About the recommended model"),
            (self.fit, "Whether it fits this computer"),
            (self.online_note, "When Tern goes online"),
            (self.status, "Download status"),
        ):
            label.setAccessibleName(name)  # their text changes; the name says what they are for
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.setFlat(True)
        self.cancel_button.setAccessibleName("Cancel download")
        self.cancel_button.setAccessibleDescription("Stop the download; what was fetched is kept so it can resume.")
        self.cancel_button.hide()
        self.import_button = QPushButton("Import a GGUF file…")
        self.import_button.setAccessibleName("Import a GGUF file")
        self.import_button.setAccessibleDescription("Use a model file already on this computer; no network needed.")
        self.keep_button = QPushButton("Keep using the starter")
        self.keep_button.setFlat(True)
        self.keep_button.setAccessibleName("Keep using the starter")
        self.keep_button.setAccessibleDescription("Close this page and chat with the built-in starter model.")

        card = QFrame()
        card.setObjectName("card")
        card.setStyleSheet("QFrame#card { border: 1px solid palette(mid); border-radius: 10px; }")
        inside = QVBoxLayout(card)
        inside.setContentsMargins(18, 16, 18, 16)
        inside.setSpacing(8)
        recommended = QLabel("Recommended for this computer")
        recommended.setStyleSheet("color: #1d4ed8; font-weight: 600;")
        inside.addWidget(recommended)
        inside.addWidget(self.model_name)
        inside.addWidget(self.model_use)
        inside.addWidget(self.fit)
        row = QHBoxLayout()
        row.addWidget(self.download_button)
        row.addWidget(self.cancel_button)
        row.addStretch(1)
        inside.addLayout(row)
        inside.addWidget(self.progress)
        inside.addWidget(self.status)
        inside.addWidget(self.online_note)

        have = QHBoxLayout()
        have.addWidget(_text("Already have a model file (GGUF)?"), 1)
        have.addWidget(self.import_button)
        keep = QHBoxLayout()
        keep.addStretch(1)
        keep.addWidget(self.keep_button)

        column = QWidget()
        column.setMaximumWidth(PAGE_WIDTH)
        column.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        layout = QVBoxLayout(column)
        layout.setSpacing(14)
        layout.addWidget(self.title)
        layout.addWidget(self.intro)
        layout.addWidget(card)
        layout.addLayout(have)
        layout.addLayout(keep)
        centred = QHBoxLayout()  # the column takes up to PAGE_WIDTH, the margins share the rest
        centred.addStretch(1)
        centred.addWidget(column, 100)
        centred.addStretch(1)
        page = QWidget()
        outer = QVBoxLayout(page)
        outer.setContentsMargins(24, 24, 24, 24)
        outer.addStretch(1)
        outer.addLayout(centred)
        outer.addStretch(2)
        self.setWidget(page)

        self.download_button.clicked.connect(self.download)
        self.cancel_button.clicked.connect(self._cancel)
        self.import_button.clicked.connect(self.import_requested)
        self.keep_button.clicked.connect(self.dismissed)

    # The recommendation
    def _on_machine(self, machine: Machine) -> None:
        self._machine = machine
        self.recommendation = found = recommend_first(self._catalog, machine)
        if found is None:  # a catalogue without welcome models: only import is left
            self.fit.setText("No model to recommend; import a GGUF file or open Tools → Models.")
            return
        entry, choice = found.entry, found.choice
        size = gb(choice.download_bytes)  # as fit.judge writes sizes, so the two agree
        self.model_name.setText(entry.name)
        self.model_use.setText(entry.use)
        self.fit.setText(f"{size} download. {fit_sentence(found)}")
        self.download_button.setText(f"Download {entry.name} ({size})")
        self.download_button.setAccessibleName(f"Download {entry.name}")
        where = hub_name(self._endpoint)
        self.online_note.setText(
            f"This is the only time {APP_NAME} goes online, and only when you press Download: it fetches the "
            f"model file from {where}, checks it, and from then on works offline. "
            "Nothing you type ever leaves this computer."
        )
        self.download_button.setEnabled(True)
        self._follow_job()  # a download from this page, queued before the last quit, carries on

    @property
    def _endpoint(self) -> str:
        return str(self._settings.get(opts.HUB_ENDPOINT))

    # Downloading
    def download(self) -> None:
        """Look the recommended model's files up (the user's request to go online), then queue the download."""
        found = self.recommendation
        if found is None:
            return
        if self.job is not None and self.job.state in ("paused", "failed"):
            self._downloads.resume(self.job.id)
            return
        self._looking_up = found.entry.sources[0].repo
        self.download_button.setEnabled(False)
        self._say(f"Finding {found.entry.name} on {hub_name(self._endpoint)}…")
        self._downloads.fetch(self._looking_up, self._endpoint)

    def _on_fetched(self, repo_id: str, remote: RemoteModel, machine: Machine) -> None:
        found = self.recommendation
        if repo_id != self._looking_up or found is None:
            return  # the model manager's look-up, not this page's
        self._looking_up = ""
        option = next((o for o in remote.options if o.label.upper() == found.choice.quant.upper()), None)
        if option is None and remote.options:  # the file offered is gone: the best that fits, as Discover picks it
            ranked = sorted(remote.options, key=lambda o: (found.entry.quality(o.label), -o.size))
            _, best = fit_guidance(remote, ranked, self._settings.get(opts.CONTEXT_SIZE), self._settings, machine)
            option = ranked[best if best is not None else -1]
        if option is None:
            self._failed(f"{repo_id} offers no model file {APP_NAME} can use now; try Tools → Models.")
            return
        # A model that sees images comes with its image projector (the repository's preferred one), as in Discover.
        projector = next((p.file for p in remote.projectors if p.info is not None and not p.problem), None)
        if not self._settings.get(opts.IMAGES):
            projector = None
        job = DownloadJob.for_option(
            remote.repo_id, remote.commit, option, self._models_dir, remote.endpoint, projector=projector
        )
        self.job = self._downloads.add(job)
        self._expecting = (job.repo_id, job.label)
        self._follow_job()

    def _on_fetch_failed(self, repo_id: str, message: str, _unreachable: bool) -> None:
        if repo_id == self._looking_up:
            self._looking_up = ""
            self._failed(message)  # an unreachable hub's message already points to "Import a GGUF file…"

    def _follow_job(self) -> None:
        """Show this page's download as the queue has it (adopting one queued before a restart)."""
        if self.job is None and self.recommendation is not None:
            self.job = self._queued_for(self.recommendation)
            if self.job is not None:
                self._expecting = (self.job.repo_id, self.job.label)
        job = self.job
        if job is None:
            return
        if self._downloads.job(job.id) is None:  # cancelled, or installed (`installed` follows at once)
            self.job = None
            self._reset()
            return
        self.download_button.setVisible(job.state in ("paused", "failed"))
        self.download_button.setEnabled(True)
        self.download_button.setText("Try again" if job.state == "failed" else "Resume download")
        self.cancel_button.setVisible(True)
        self.progress.setVisible(job.state != "failed")
        self._show_progress(job, self._downloads.last_progress.get(job.id))

    def _queued_for(self, found: Recommendation) -> DownloadJob | None:
        repos = {s.repo for s in found.entry.sources}
        quant = found.choice.quant.upper()
        return next((j for j in self._downloads.jobs if j.repo_id in repos and j.label.upper() == quant), None)

    def _on_progress(self, job_id: str, progress: Progress) -> None:
        if self.job is not None and job_id == self.job.id:
            self._show_progress(self.job, progress)

    def _show_progress(self, job: DownloadJob, progress: Progress | None) -> None:
        done = progress.done if progress is not None else 0
        self.progress.setValue(int(1000 * done / job.total) if job.total else 0)
        words = progress_text(job, progress)
        if job.state == "downloading":
            name = self.recommendation.entry.name if self.recommendation else job.repo_id
            words = f"Downloading {name}: {words}. You can keep chatting with the starter meanwhile."
        elif job.state == "queued":
            words = "Waiting for another download to finish…"
        self._say(words, warning=job.state == "failed")

    def _on_installed(self, model: InstalledModel) -> None:
        if self._expecting is None or (model.repo_id, model.label) != self._expecting:
            return
        self._expecting = None
        self.progress.show()
        self.progress.setValue(1000)
        self.cancel_button.hide()
        self.download_button.hide()
        found = self.recommendation
        self._say(f"{found.entry.name if found else model.display_name} is installed.")
        self.model_installed.emit(model)

    def _cancel(self) -> None:
        if self.job is not None:
            self._downloads.cancel(self.job.id)

    def _failed(self, message: str) -> None:
        self._say(message, warning=True)
        self.download_button.setEnabled(True)
        self.download_button.setText("Try again")

    def _reset(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self.status.hide()
        self.download_button.show()
        if self._machine is not None:
            self._on_machine(self._machine)  # the button's words and the fit, as before the download

    def _say(self, text: str, warning: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b91c1c;" if warning else "")
        self.status.show()


def _text(words: str) -> QLabel:
    label = QLabel(words)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def fit_sentence(found: Recommendation) -> str:
    """Why the recommended model fits this computer (or how nearly), with the numbers."""
    why = found.why
    if found.verdict == Verdict.FITS:
        return f"Fits this computer: {why[:1].lower()}{why[1:]}"
    if found.verdict == Verdict.TIGHT:
        return f"Fits, but only just: {why[:1].lower()}{why[1:]}"
    return f"{why} Close other apps and it may run; or import a smaller GGUF file."
