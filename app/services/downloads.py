"""Downloads and hub look-ups on their own threads, with a queue that survives restarts.

`DownloadManager` (GUI thread) owns the queue; every change is written by the
"download-queue" thread. One download runs at a time on the "downloads"
thread, and a look-up (browsing a repository) or a local copy runs on
"hub-lookups", so listing files never waits behind a big download. Pausing or
cancelling sets the running job's `threading.Event`; the downloader stops
before its next chunk.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import close_session
from PySide6.QtCore import QObject, Signal

from app.core.engine.gguf_info import GgufError, read_gguf_info
from app.core.engine.options import LoadOptions
from app.core.errors import UserError
from app.core.models.download import MODEL, Cancelled, DownloadJob, Progress, load_queue, run_job, save_queue
from app.core.models.fit import Machine, estimate_memory
from app.core.models.hub import HubUnreachableError, RemoteModel, RemoteProjector, fetch_model, pairing, save_token
from app.core.models.names import projector_preference
from app.core.models.network import online
from app.core.models.projectors import check_pairs
from app.core.models.registry import InstalledModel, copy_model, inspect
from app.core.models.vision_fit import choose_projector, projector_cost
from app.services.worker_host import WorkerHost

log = logging.getLogger("tern.downloads")

# The user's hub token, fetched on the worker thread (the keychain may block).
TokenSource = Callable[[], str | None]


class _DownloadHost(WorkerHost):
    drain_on_shutdown = False  # a queued download resumes at the next start


@dataclass(frozen=True)
class _Arrived:
    """What a finished download brought: a model (with its projector or not), or a projector for a listed one."""

    model: InstalledModel | None
    for_model: str = ""  # the model a projector-only download was for
    projector: Path | None = None
    refused: str = ""  # why the projector that came with a model was not kept


class DownloadManager(QObject):
    """The download queue: add, pause, resume, cancel, retry; one job runs at a time."""

    changed = Signal(str)  # job id whose state or error changed ("" for the whole list)
    progress = Signal(str, object)  # job id, Progress
    installed = Signal(object)  # InstalledModel
    fetched = Signal(str, object, object)  # repo id, RemoteModel, Machine
    fetch_failed = Signal(str, str, bool)  # repo id, message, True when the hub could not be reached at all
    copied = Signal(object)  # InstalledModel, imported as a copy
    copy_failed = Signal(str)
    projector_queued = Signal(str, object)  # installed model's path, the DownloadJob bringing its image projector
    projector_installed = Signal(str, object)  # installed model's path, Path of its new image projector
    projector_failed = Signal(str, str)  # installed model's path, why its image projector could not be had

    def __init__(
        self,
        queue_file: Path,
        token: TokenSource,
        models_dir: Path,
        stall_s: float = 30.0,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._queue_file = queue_file
        self._token = token
        self._stall_s = stall_s
        self._models_dir = models_dir
        self.jobs: list[DownloadJob] = []
        self.last_progress: dict[str, Progress] = {}
        self._running: tuple[DownloadJob, threading.Event] | None = None
        self._cancelling: set[str] = set()  # stopped jobs to remove rather than pause
        self._loaded = self._started = False
        self._downloads = _DownloadHost("downloads", self)
        self._lookups = _DownloadHost("hub-lookups", self)
        self._queue = WorkerHost("download-queue", self)  # drains at shutdown: the last save lands
        self.hosts = (self._downloads, self._lookups, self._queue)
        self._progress.connect(self._on_progress)
        for host in self.hosts:
            host.start()  # here, not in `start`: a job may be added before the queue is resumed
        self._queue.submit(lambda: load_queue(queue_file), self._on_loaded, label="read the download queue")

    _progress = Signal(str, object)  # job id, Progress: from the downloads thread

    def _on_loaded(self, saved: list[DownloadJob]) -> None:
        for job in saved:
            if job.state == "downloading":  # the app quit mid-download: carry on
                job.state = "queued"
        known = {j.id for j in saved}
        self.jobs = [*saved, *(j for j in self.jobs if j.id not in known)]  # added while it was being read
        self._loaded = True
        self.changed.emit("")
        if self._started:
            self._next()

    # Queue
    def job(self, job_id: str) -> DownloadJob | None:
        """A job by id."""
        return next((j for j in self.jobs if j.id == job_id), None)

    def start(self) -> None:
        """Begin (or resume, after a restart) the queued downloads, once the queue has been read."""
        self._started = True
        if self._loaded:
            self._next()

    def add(self, job: DownloadJob) -> DownloadJob:
        """Queue a download (an identical one already queued is returned instead)."""

        def key(j: DownloadJob) -> tuple[object, ...]:
            return (j.repo_id, j.commit, j.endpoint, j.label, j.dest_dir, tuple(f.path for f in j.files))

        same = key(job)
        for existing in self.jobs:
            if key(existing) == same:
                if existing.state in ("paused", "failed"):
                    self.resume(existing.id)
                return existing
        self.jobs.append(job)
        self._save()
        self.changed.emit("")
        self._next()
        return job

    def pause(self, job_id: str) -> None:
        """Stop a download, keeping what arrived, until `resume`."""
        job = self.job(job_id)
        if job is None:
            return
        if self._running is not None and self._running[0].id == job_id:
            self._running[1].set()  # the runner reports `stopped`
        elif job.state == "queued":
            self._set(job, "paused")

    def resume(self, job_id: str) -> None:
        """Queue a paused or failed download again; it continues where it stopped."""
        job = self.job(job_id)
        if job is not None and job.state in ("paused", "failed"):
            job.error = ""
            self._set(job, "queued")
            self._next()

    def cancel(self, job_id: str) -> None:
        """Stop a download and delete what arrived."""
        job = self.job(job_id)
        if job is None:
            return
        if self._running is not None and self._running[0].id == job_id:
            self._cancelling.add(job_id)
            self._running[1].set()
        else:
            self._remove(job)

    def fetch(self, repo_id: str, endpoint: str) -> None:
        """List a repository's files (answers with `fetched` or `fetch_failed`)."""

        def job() -> tuple[object, Machine]:
            with online(f"List the files of {repo_id}"):
                model = fetch_model(repo_id, endpoint, self._token())
            return model, Machine.detect(self._models_dir)  # may ask nvidia-smi: not on the GUI thread

        self._lookups.submit(
            job,
            lambda result: self.fetched.emit(repo_id, *result),
            lambda exc: self.fetch_failed.emit(repo_id, str(exc), isinstance(exc, HubUnreachableError)),
            label=f"look up {repo_id}",
        )

    def fetch_projector(self, model: InstalledModel, endpoint: str, options: LoadOptions) -> None:
        """Find an installed model's image projector in the repository it came from and queue its download.

        The user's explicit request to go online. Answers with `projector_queued` (then the queue's usual
        `progress` and `changed`, and `projector_installed` when it is in place) or `projector_failed`.
        Of several projectors, the most precise one with which the model still fits this machine is chosen.
        """

        def find() -> tuple[RemoteModel, RemoteProjector]:
            if not model.repo_id:
                raise UserError(
                    f"{model.display_name} was added from a file, so Tern does not know which repository its "
                    "image projector is in. Put the projector (an mmproj GGUF) in the same folder as the model."
                )
            with online(f"Find the image projector of {model.repo_id}"):
                remote = fetch_model(model.repo_id, endpoint, self._token())
            return remote, self._pick_projector(model, remote, options)

        def queue(found: tuple[RemoteModel, RemoteProjector]) -> None:
            remote, projector = found
            job = DownloadJob.for_projector(remote.repo_id, remote.commit, projector.file, Path(model.path), endpoint)
            self.projector_queued.emit(model.path, self.add(job))

        self._lookups.submit(
            find, queue, lambda exc: self.projector_failed.emit(model.path, str(exc)), label="find a projector"
        )

    def _pick_projector(self, model: InstalledModel, remote: RemoteModel, options: LoadOptions) -> RemoteProjector:
        """On the look-up thread: the repository's projector for this model, preferred and fitting this machine."""
        try:
            info = read_gguf_info(model.path)
        except GgufError as exc:
            raise UserError(f"{model.display_name} could not be read: {exc}") from exc
        for_it = pairing(remote.projectors, info)
        usable = [p for p in for_it if not p.problem]
        if not usable:
            raise UserError(for_it[0].problem if for_it else f"{remote.repo_id} offers no image projector for it.")
        usable.sort(key=lambda p: projector_preference(Path(model.path).name, p.name))
        estimate = estimate_memory(info, options.n_ctx, options.residency, options.n_gpu_layers)
        costed = [
            (p, projector_cost(p.info, p.metadata, options.image_tokens))
            for p in usable
            if p.info is not None and p.metadata is not None
        ]
        return choose_projector(costed, estimate, Machine.detect(self._models_dir)) or usable[0]

    def copy_in(self, source: Path, folder: Path) -> None:
        """Import a local GGUF as a copy in `folder` (a multi-GB copy; answers with `copied` or `copy_failed`)."""

        def job() -> InstalledModel:
            try:
                return copy_model(source, folder)
            except UserError as exc:
                raise UserError(f"{source.name} was not imported: {exc}") from exc
            except OSError as exc:
                raise UserError(f"{source.name} could not be copied: {exc.strerror or exc}.") from exc

        self._lookups.submit(job, self.copied.emit, lambda exc: self.copy_failed.emit(str(exc)), label="copy a model")

    def save_token(self, token: str | None, done: Callable[[], None], failed: Callable[[UserError], None]) -> None:
        """Keep (or, with None, remove) the hub token in the system keychain, off the GUI thread."""
        self._queue.submit(lambda: save_token(token), lambda _r: done(), failed, label="save the hub token")

    def _next(self) -> None:
        if self._running is not None:
            return
        job = next((j for j in self.jobs if j.state == "queued"), None)
        if job is None:
            return
        cancel = threading.Event()
        self._running = (job, cancel)
        self._set(job, "downloading")
        self._downloads.submit(
            lambda: self._download(job, cancel),
            lambda arrived: self._on_installed(job.id, arrived),
            lambda exc: self._on_stopped(job.id) if isinstance(exc, _Stopped) else self._on_failed(job.id, str(exc)),
            label="download",
        )

    def _download(self, job: DownloadJob, cancel: threading.Event) -> _Arrived:
        """On the downloads thread: fetch every file, verify, then check the model's header and its projector's."""
        try:
            paths = run_job(job, cancel, lambda p: self._progress.emit(job.id, p), self._token(), self._stall_s)
        except Cancelled as exc:
            raise _Stopped("stopped") from exc
        except OSError as exc:
            log.exception("Download %s failed", job.id)
            raise UserError(f"The download could not be written: {exc.strerror or exc}.") from exc
        parts = [p for f, p in zip(job.files, paths, strict=True) if f.role == MODEL]
        projector = next((p for f, p in zip(job.files, paths, strict=True) if f.role != MODEL), None)
        if not parts:  # a projector for a model already listed
            assert projector is not None
            try:
                check_pairs(Path(job.for_model), projector)
            except UserError:
                projector.unlink(missing_ok=True)
                raise
            return _Arrived(None, job.for_model, projector)
        try:
            model = inspect(parts[0], parts, repo_id=job.repo_id, label=job.label)
        except UserError as exc:
            raise UserError(f"The downloaded file is not a usable model: {exc}") from exc
        if projector is None:
            return _Arrived(model)
        try:
            check_pairs(parts[0], projector)
        except UserError as exc:
            projector.unlink(missing_ok=True)  # verified against the hub, yet not for this model: of no use here
            return _Arrived(model, refused=str(exc))
        model.files.append(str(projector))
        model.size += projector.stat().st_size
        model.projector = str(projector)
        return _Arrived(model, projector=projector)

    def _set(self, job: DownloadJob, state: str, error: str = "") -> None:
        job.state, job.error = state, error
        self._save()
        self.changed.emit(job.id)

    def _remove(self, job: DownloadJob) -> None:
        job.remove_parts()
        self.jobs.remove(job)
        self.last_progress.pop(job.id, None)
        self._save()
        self.changed.emit("")

    def _save(self) -> None:
        snapshot = copy.deepcopy([j for j in self.jobs if j.state != "done"])  # the GUI thread keeps changing jobs
        self._queue.submit(lambda: save_queue(self._queue_file, snapshot), label="save the download queue")

    # Runner answers
    def _finished(self) -> DownloadJob | None:
        job = self._running[0] if self._running else None
        self._running = None
        if job is not None and job.id in self._cancelling:  # cancelled, whatever the runner's answer
            self._cancelling.discard(job.id)
            self._remove(job)
            return None
        return job

    def _on_progress(self, job_id: str, progress: Progress) -> None:
        self.last_progress[job_id] = progress
        self.progress.emit(job_id, progress)

    def _on_installed(self, job_id: str, arrived: _Arrived) -> None:
        job = self._running[0] if self._running else None
        self._running = None
        self._cancelling.discard(job_id)  # too late to cancel: it is installed
        if job is not None:
            self.jobs.remove(job)
            self._save()
            self.changed.emit("")
        if arrived.model is not None:
            self.installed.emit(arrived.model)
            if arrived.refused:
                self.projector_failed.emit(arrived.model.path, arrived.refused)
        elif arrived.projector is not None:
            self.projector_installed.emit(arrived.for_model, arrived.projector)
        self._next()

    def _on_failed(self, job_id: str, message: str) -> None:
        job = self._finished()
        if job is not None:
            self._set(job, "failed", message)
            if job.for_model:
                self.projector_failed.emit(job.for_model, message)
        self._next()

    def _on_stopped(self, job_id: str) -> None:
        job = self._finished()
        if job is not None:
            self._set(job, "paused")
        self._next()

    def shutdown(self, timeout_s: float = 3.0) -> bool:
        """Stop the running download (it resumes at the next start), save the queue, join the threads."""
        if self._running is not None:
            self._running[1].set()
            self._running[0].state = "queued"
            self._save()
        close_session()  # a look-up waiting on the network ends now instead of at its timeout
        return all([host.shutdown(timeout_s) for host in self.hosts])


class _Stopped(UserError):  # noqa: N818 (a request, not an error)
    """The download was paused or cancelled (not a failure)."""
