"""Downloads and hub look-ups on their own threads, with a queue that survives restarts.

`DownloadManager` (GUI thread) owns the queue and saves it on every change;
one download runs at a time on the download thread, and a look-up (browsing a
repository) runs on another, so listing files never waits behind a big
download. Pausing or cancelling sets the running job's `threading.Event`; the
downloader stops before its next chunk.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import close_session
from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.engine.gguf_info import GgufError
from app.core.models.download import Cancelled, DownloadError, DownloadJob, Progress, load_queue, run_job, save_queue
from app.core.models.fit import Machine
from app.core.models.hub import HubError, fetch_model
from app.core.models.network import online
from app.core.models.registry import InstalledModel, copy_model, inspect

log = logging.getLogger("tern.downloads")

# The user's hub token, fetched on the worker thread (the keychain may block).
TokenSource = Callable[[], str | None]
UNEXPECTED = "An unexpected error stopped this; the details are in Tern's log."


class _Runner(QObject):
    progress = Signal(str, object)  # job id, Progress
    installed = Signal(str, object)  # job id, InstalledModel
    failed = Signal(str, str)  # job id, message
    stopped = Signal(str)  # job id (paused or cancelled)
    fetched = Signal(str, object, object)  # repo id, RemoteModel, Machine (for fit guidance)
    fetch_failed = Signal(str, str)  # repo id, message
    copied = Signal(object)  # InstalledModel
    copy_failed = Signal(str)  # message

    def __init__(self, token: TokenSource, stall_s: float, models_dir: Path) -> None:
        super().__init__()
        self._token = token
        self._stall_s = stall_s
        self._models_dir = models_dir

    @Slot(object, object)
    def download(self, job: DownloadJob, cancel: threading.Event) -> None:
        try:
            paths = run_job(job, cancel, lambda p: self.progress.emit(job.id, p), self._token(), self._stall_s)
            model = inspect(paths[0], paths, repo_id=job.repo_id, label=job.label)
        except Cancelled:
            self.stopped.emit(job.id)
        except (DownloadError, HubError) as exc:
            self.failed.emit(job.id, str(exc))
        except GgufError as exc:
            self.failed.emit(job.id, f"The downloaded file is not a usable model: {exc}")
        except OSError as exc:
            log.exception("Download %s failed", job.id)
            self.failed.emit(job.id, f"The download could not be written: {exc.strerror or exc}.")
        except Exception:  # a bug: logged, and the queue moves on instead of waiting for ever
            log.exception("Download %s failed", job.id)
            self.failed.emit(job.id, UNEXPECTED)
        else:
            self.installed.emit(job.id, model)

    @Slot(str, str)
    def fetch(self, repo_id: str, endpoint: str) -> None:
        try:
            with online(f"List the files of {repo_id}"):
                model = fetch_model(repo_id, endpoint, self._token())
            machine = Machine.detect(self._models_dir)  # may ask nvidia-smi: not on the GUI thread
        except HubError as exc:
            self.fetch_failed.emit(repo_id, str(exc))
        except Exception:
            log.exception("Looking up %s failed", repo_id)
            self.fetch_failed.emit(repo_id, UNEXPECTED)
        else:
            self.fetched.emit(repo_id, model, machine)

    @Slot(object, object)
    def copy_in(self, source: Path, folder: Path) -> None:
        """Copy a local GGUF into Tern's folder (a multi-GB copy: never on the GUI thread)."""
        try:
            self.copied.emit(copy_model(source, folder))
        except GgufError as exc:
            self.copy_failed.emit(f"{source.name} was not imported: {exc}")
        except OSError as exc:
            self.copy_failed.emit(f"{source.name} could not be copied: {exc.strerror or exc}.")


class DownloadManager(QObject):
    """The download queue: add, pause, resume, cancel, retry; one job runs at a time."""

    changed = Signal(str)  # job id whose state or error changed ("" for the whole list)
    progress = Signal(str, object)  # job id, Progress
    installed = Signal(object)  # InstalledModel
    fetched = Signal(str, object, object)  # repo id, RemoteModel, Machine
    fetch_failed = Signal(str, str)  # repo id, message
    copied = Signal(object)  # InstalledModel, imported as a copy
    copy_failed = Signal(str)
    _download_requested = Signal(object, object)
    _fetch_requested = Signal(str, str)
    _copy_requested = Signal(object, object)

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
        self.jobs = load_queue(queue_file)
        self.last_progress: dict[str, Progress] = {}
        self._running: tuple[DownloadJob, threading.Event] | None = None
        self._cancelling: set[str] = set()  # stopped jobs to remove rather than pause
        self._threads: list[QThread] = []
        self._runners: list[_Runner] = []  # owned here: they live on their threads, without a Qt parent
        self._download_runner = self._start_runner("downloads", token, stall_s, models_dir)
        self._fetch_runner = self._start_runner("hub-lookups", token, stall_s, models_dir)
        self._download_requested.connect(self._download_runner.download)
        self._fetch_requested.connect(self._fetch_runner.fetch)
        self._copy_requested.connect(self._fetch_runner.copy_in)
        self._fetch_runner.copied.connect(self.copied)
        self._fetch_runner.copy_failed.connect(self.copy_failed)
        r = self._download_runner
        r.progress.connect(self._on_progress)
        r.installed.connect(self._on_installed)
        r.failed.connect(self._on_failed)
        r.stopped.connect(self._on_stopped)
        self._fetch_runner.fetched.connect(self.fetched)
        self._fetch_runner.fetch_failed.connect(self.fetch_failed)
        for job in self.jobs:
            if job.state == "downloading":  # the app quit mid-download: carry on
                job.state = "queued"

    def _start_runner(self, name: str, token: TokenSource, stall_s: float, models_dir: Path) -> _Runner:
        thread = QThread()
        thread.setObjectName(name)
        runner = _Runner(token, stall_s, models_dir)
        runner.moveToThread(thread)
        thread.start()
        self._threads.append(thread)
        self._runners.append(runner)
        return runner

    # Queue
    def job(self, job_id: str) -> DownloadJob | None:
        """A job by id."""
        return next((j for j in self.jobs if j.id == job_id), None)

    def start(self) -> None:
        """Begin (or resume, after a restart) the queued downloads."""
        self._next()

    def add(self, job: DownloadJob) -> DownloadJob:
        """Queue a download (an identical one already queued is returned instead)."""
        same = (job.repo_id, job.commit, job.endpoint, job.label)
        for existing in self.jobs:
            if (existing.repo_id, existing.commit, existing.endpoint, existing.label) == same:
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
        self._fetch_requested.emit(repo_id, endpoint)

    def copy_in(self, source: Path, folder: Path) -> None:
        """Import a local GGUF as a copy in `folder` (answers with `copied` or `copy_failed`)."""
        self._copy_requested.emit(source, folder)

    def _next(self) -> None:
        if self._running is not None:
            return
        job = next((j for j in self.jobs if j.state == "queued"), None)
        if job is None:
            return
        cancel = threading.Event()
        self._running = (job, cancel)
        self._set(job, "downloading")
        self._download_requested.emit(job, cancel)

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
        save_queue(self._queue_file, [j for j in self.jobs if j.state != "done"])

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

    def _on_installed(self, job_id: str, model: InstalledModel) -> None:
        job = self._running[0] if self._running else None
        self._running = None
        self._cancelling.discard(job_id)  # too late to cancel: it is installed
        if job is not None:
            self.jobs.remove(job)
            self._save()
            self.changed.emit("")
        self.installed.emit(model)
        self._next()

    def _on_failed(self, job_id: str, message: str) -> None:
        job = self._finished()
        if job is not None:
            self._set(job, "failed", message)
        self._next()

    def _on_stopped(self, job_id: str) -> None:
        job = self._finished()
        if job is not None:
            self._set(job, "paused")
        self._next()

    def shutdown(self) -> None:
        """Stop the running download (it resumes at the next start) and join the threads."""
        if self._running is not None:
            self._running[1].set()
            self._running[0].state = "queued"
            self._save()
        close_session()  # a look-up waiting on the network ends now instead of at its timeout
        for thread in self._threads:
            thread.quit()
            thread.wait()
