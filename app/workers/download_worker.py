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

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.engine.gguf_info import GgufError
from app.core.models.download import Cancelled, DownloadError, DownloadJob, Progress, load_queue, run_job, save_queue
from app.core.models.hub import HubError, fetch_model
from app.core.models.network import online
from app.core.models.registry import InstalledModel, inspect

log = logging.getLogger("tern.downloads")

# The user's hub token, fetched on the worker thread (the keychain may block).
TokenSource = Callable[[], str | None]


class _Runner(QObject):
    progress = Signal(str, object)  # job id, Progress
    installed = Signal(str, object)  # job id, InstalledModel
    failed = Signal(str, str)  # job id, message
    stopped = Signal(str)  # job id (paused or cancelled)
    fetched = Signal(str, object)  # repo id, RemoteModel
    fetch_failed = Signal(str, str)  # repo id, message

    def __init__(self, token: TokenSource, stall_s: float) -> None:
        super().__init__()
        self._token = token
        self._stall_s = stall_s

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
        else:
            self.installed.emit(job.id, model)

    @Slot(str, str)
    def fetch(self, repo_id: str, endpoint: str) -> None:
        try:
            with online(f"List the files of {repo_id}"):
                model = fetch_model(repo_id, endpoint, self._token())
        except HubError as exc:
            self.fetch_failed.emit(repo_id, str(exc))
        else:
            self.fetched.emit(repo_id, model)


class DownloadManager(QObject):
    """The download queue: add, pause, resume, cancel, retry; one job runs at a time."""

    changed = Signal(str)  # job id whose state or error changed ("" for the whole list)
    progress = Signal(str, object)  # job id, Progress
    installed = Signal(object)  # InstalledModel
    fetched = Signal(str, object)  # repo id, RemoteModel
    fetch_failed = Signal(str, str)  # repo id, message
    _download_requested = Signal(object, object)
    _fetch_requested = Signal(str, str)

    def __init__(
        self, queue_file: Path, token: TokenSource, stall_s: float = 30.0, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._queue_file = queue_file
        self.jobs = load_queue(queue_file)
        self.last_progress: dict[str, Progress] = {}
        self._running: tuple[DownloadJob, threading.Event] | None = None
        self._cancelling: set[str] = set()  # stopped jobs to remove rather than pause
        self._threads: list[QThread] = []
        self._runners: list[_Runner] = []  # owned here: they live on their threads, without a Qt parent
        self._download_runner = self._start_runner("downloads", token, stall_s)
        self._fetch_runner = self._start_runner("hub-lookups", token, stall_s)
        self._download_requested.connect(self._download_runner.download)
        self._fetch_requested.connect(self._fetch_runner.fetch)
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

    def _start_runner(self, name: str, token: TokenSource, stall_s: float) -> _Runner:
        thread = QThread()
        thread.setObjectName(name)
        runner = _Runner(token, stall_s)
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
        for existing in self.jobs:
            if existing.repo_id == job.repo_id and existing.label == job.label and existing.state != "done":
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
        return job

    def _on_progress(self, job_id: str, progress: Progress) -> None:
        self.last_progress[job_id] = progress
        self.progress.emit(job_id, progress)

    def _on_installed(self, job_id: str, model: InstalledModel) -> None:
        job = self._finished()
        if job is not None:
            self._set(job, "done")
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
            if job_id in self._cancelling:
                self._cancelling.discard(job_id)
                self._remove(job)
            else:
                self._set(job, "paused")
        self._next()

    def shutdown(self) -> None:
        """Stop the running download (it resumes at the next start) and join the threads."""
        if self._running is not None:
            self._running[1].set()
            self._running[0].state = "queued"
            self._save()
        for thread in self._threads:
            thread.quit()
            thread.wait()
