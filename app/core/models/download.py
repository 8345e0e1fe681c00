"""Downloading a model's files: resume, stall detection, retries with backoff, sha256, atomic install.

Each file streams into `<name>.part` through huggingface_hub's HTTP session
(inside `network.online`), with a `Range` request to continue whatever is
already there, so a dropped connection, a sleep or an app restart resumes
where it stopped. The bytes are hashed as they arrive; a file becomes usable
only when its size and sha256 match the hub's LFS metadata, and the parts of a
split model are renamed into place only when all of them are verified.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import hf_hub_url
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status  # type: ignore[attr-defined]

from app.core import units
from app.core.errors import UserError
from app.core.models import network
from app.core.models.hub import DEFAULT_ENDPOINT, QuantOption, RemoteFile, hub_name, safe_path, translate
from app.core.models.names import quant_label

CHUNK = 256 * 1024
DISK_MARGIN = 200 * 1024 * 1024  # left free after a download, for the rest of the system
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # waits between attempts that made no progress
MAX_ATTEMPTS = 100  # in all, even when each makes a little progress
PROGRESS_EVERY_S = 0.2


class DownloadError(UserError):
    """A download that cannot go on, phrased for the user."""


class _StartOver(Exception):  # noqa: N818 (a signal inside the download loop)
    """The partial file must be discarded."""


class Cancelled(Exception):  # noqa: N818 (a request, not an error)
    """The user paused or cancelled."""


MODEL, PROJECTOR = "model", "projector"


@dataclass
class JobFile:
    """One file of a download."""

    path: str  # in the repository
    size: int
    sha256: str | None
    verified: bool = False  # its .part matched size and sha256
    role: str = MODEL  # MODEL (a part of the model) or PROJECTOR (its image projector)
    save_as: str = ""  # where it goes inside the job's folder, when not at its repository path

    @classmethod
    def of(cls, remote: RemoteFile, role: str = MODEL, save_as: str = "") -> JobFile:
        """A file of a repository listing."""
        return cls(remote.path, remote.size, remote.sha256, role=role, save_as=save_as)


@dataclass
class DownloadJob:
    """A model to download (one GGUF, or every part of a split one); saved in the queue file."""

    repo_id: str
    commit: str
    label: str
    files: list[JobFile]
    dest_dir: str
    endpoint: str = DEFAULT_ENDPOINT  # the hub (or mirror) it comes from
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "queued"  # queued, downloading, paused, failed, done
    error: str = ""
    added: float = field(default_factory=time.time)
    for_model: str = ""  # a projector-only job: the installed model (its path) the projector is for

    @classmethod
    def for_option(
        cls,
        repo_id: str,
        commit: str,
        option: QuantOption,
        models_dir: Path,
        endpoint: str = DEFAULT_ENDPOINT,
        projector: RemoteFile | None = None,
    ) -> DownloadJob:
        """A job for a quantization option, into `models_dir/<org>/<name>/`, with its image projector if given.

        The projector is saved next to the model's first file, where `projectors.projector_for` looks.
        """
        files = [JobFile.of(f) for f in option.files]
        if projector is not None:
            folder = option.first.rpartition("/")[0]
            name = projector.path.rsplit("/", 1)[-1]
            files.append(JobFile.of(projector, PROJECTOR, f"{folder}/{name}" if folder else name))
        return cls(repo_id, commit, option.label, files, str(models_dir / repo_id), endpoint)

    @classmethod
    def for_projector(
        cls, repo_id: str, commit: str, projector: RemoteFile, model_path: Path, endpoint: str = DEFAULT_ENDPOINT
    ) -> DownloadJob:
        """A job for an installed model's missing image projector, saved into the model's folder."""
        name = projector.path.rsplit("/", 1)[-1]
        label = f"image projector {quant_label(name)}"
        files = [JobFile.of(projector, PROJECTOR, name)]
        return cls(repo_id, commit, label, files, str(model_path.parent), endpoint, for_model=str(model_path))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DownloadJob:
        """Read back `as_dict`."""
        files = [JobFile(**f) for f in data.pop("files")]
        return cls(files=files, **data)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)

    @property
    def total(self) -> int:
        """Bytes of all files."""
        return sum(f.size for f in self.files)

    @property
    def projector(self) -> JobFile | None:
        """The image projector this job brings, if any."""
        return next((f for f in self.files if f.role == PROJECTOR), None)

    def target(self, f: JobFile) -> Path:
        """Where a file ends up: always inside `dest_dir`, whatever the queue file or a listing says."""
        folder = Path(self.dest_dir).resolve()
        where = f.save_as or f.path
        path = (folder / where).resolve()
        if not safe_path(where) or not path.is_relative_to(folder):
            raise DownloadError(f"The file name “{where}” would be stored outside the model's folder; refused.")
        return path

    def part(self, f: JobFile) -> Path:
        """Where a file grows until it is verified."""
        t = self.target(f)
        return t.with_name(t.name + ".part")

    def done_bytes(self) -> int:
        """Bytes already on disk (finished files and parts)."""
        total = 0
        for f in self.files:
            for p in (self.target(f), self.part(f)):
                if p.exists():
                    total += min(p.stat().st_size, f.size)
                    break
        return total

    def remove_parts(self) -> None:
        """Delete unfinished data (a cancelled download)."""
        for f in self.files:
            self.part(f).unlink(missing_ok=True)


@dataclass(frozen=True)
class Progress:
    """How a download is going."""

    done: int
    total: int
    speed: float  # bytes per second, over the last few seconds
    eta_s: float | None


class _Meter:
    """Speed over a sliding window, and rate-limited progress reports."""

    def __init__(self, job: DownloadJob, report: Callable[[Progress], None]) -> None:
        self._report = report
        self._total = job.total
        self._done = job.done_bytes()
        self._samples: list[tuple[float, int]] = [(time.monotonic(), self._done)]
        self._last = 0.0

    def restart_file(self, discarded: int) -> None:
        """Bytes already counted are being fetched again."""
        self._done -= discarded

    def add(self, n: int, force: bool = False) -> None:
        self._done += n
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        self._samples.append((now, self._done))
        self._samples = [s for s in self._samples if now - s[0] <= 5.0] or self._samples[-1:]
        t0, d0 = self._samples[0]
        speed = (self._done - d0) / (now - t0) if now > t0 else 0.0
        eta = (self._total - self._done) / speed if speed > 0 else None
        self._report(Progress(self._done, self._total, speed, eta))


def check_disk(job: DownloadJob) -> None:
    """Refuse to start when the rest of the download would not fit, with the numbers."""
    folder = Path(job.dest_dir)
    folder.mkdir(parents=True, exist_ok=True)
    needed = job.total - job.done_bytes()
    free = shutil.disk_usage(folder).free
    if needed + DISK_MARGIN > free:
        raise DownloadError(
            f"Not enough disk space: {job.label} needs {units.size(needed)} more, "
            f"and {units.size(free)} is free on that disk."
        )


def _hash_existing(path: Path, cancel: threading.Event) -> tuple[Any, int]:
    digest = hashlib.sha256()
    size = 0
    if path.exists():
        with path.open("rb") as f:
            while block := f.read(4 * CHUNK):
                if cancel.is_set():
                    raise Cancelled
                digest.update(block)
                size += len(block)
    return digest, size


def _fetch(
    job: DownloadJob,
    f: JobFile,
    url: str,
    token: str | None,
    cancel: threading.Event,
    meter: _Meter,
    stall_s: float,
) -> None:
    """Stream `f` into its .part until complete, resuming and retrying; verify its sha256."""
    part = job.part(f)
    part.parent.mkdir(parents=True, exist_ok=True)
    digest, have = _hash_existing(part, cancel)
    if have > f.size:  # longer than the file can be: start over
        part.unlink()
        digest, have = hashlib.sha256(), 0
    attempt = attempts = 0
    timeout = httpx2.Timeout(connect=15.0, read=stall_s, write=15.0, pool=15.0)
    while have < f.size:
        if cancel.is_set():
            raise Cancelled
        attempts += 1
        headers = build_hf_headers(token=token or False)
        if have:
            headers["Range"] = f"bytes={have}-"
        received = 0
        try:
            with get_session().stream("GET", url, headers=headers, timeout=timeout) as response:
                if response.status_code == 416:  # the part does not fit the file the hub has now
                    raise _StartOver
                hf_raise_for_status(response)
                if have and response.status_code == 200:  # the server ignored Range: start over
                    meter.restart_file(have)
                    digest, have = hashlib.sha256(), 0
                    part.unlink(missing_ok=True)
                with part.open("ab") as out:
                    for chunk in response.iter_bytes():  # as received: a fixed size would drop a partial buffer
                        if cancel.is_set():
                            raise Cancelled
                        out.write(chunk)
                        digest.update(chunk)
                        have += len(chunk)
                        received += len(chunk)
                        meter.add(len(chunk))
        except network.InsecureTokenError as exc:
            raise DownloadError(str(exc)) from exc  # never retried: the address itself is the problem
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DownloadError("The disk filled up during the download; free some space and resume.") from exc
            if not isinstance(exc, HfHubHTTPError):
                raise
            status = exc.response.status_code if exc.response is not None else 0
            if status < 500 and status not in (408, 429):
                raise DownloadError(str(translate(exc, job.repo_id))) from exc
            problem = f"the hub answered {status}"
        except _StartOver:
            meter.restart_file(have)
            part.unlink(missing_ok=True)
            digest, have = hashlib.sha256(), 0
            problem = "the hub refused to continue the partial file"
        except httpx2.ConnectError as exc:  # no network, or the name does not resolve
            problem = f"Tern could not reach {hub_name(job.endpoint)} ({network.why_no_answer(exc).value})"
        except (httpx2.TransportError, httpx2.StreamError) as exc:
            problem = "the download stalled" if isinstance(exc, httpx2.TimeoutException) else "the connection dropped"
        else:
            if have < f.size:
                problem = "the connection ended early"
            else:
                break
        attempt = 0 if received else attempt + 1  # only attempts without progress count toward giving up
        if attempt > len(BACKOFF_S) or attempts >= MAX_ATTEMPTS:
            raise DownloadError(f"The download of {f.path} keeps failing: {problem.rstrip('.')}.")
        if cancel.wait(BACKOFF_S[attempt - 1] if attempt else 0.5):
            raise Cancelled
    if have != f.size or (f.sha256 and digest.hexdigest() != f.sha256.lower()):
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{f.path} arrived damaged (its checksum does not match the hub's), so it was deleted. "
            "Retry to download it again."
        )
    f.verified = True


def _installed(target: Path, f: JobFile, cancel: threading.Event) -> bool:
    """An earlier download of this very file is already in place (checked by hash, not trusted by name)."""
    if not target.exists() or target.stat().st_size != f.size:
        return False
    if f.sha256 is None:
        return True
    digest, _ = _hash_existing(target, cancel)
    return bool(digest.hexdigest() == f.sha256.lower())


def run_job(
    job: DownloadJob,
    cancel: threading.Event,
    on_progress: Callable[[Progress], None],
    token: str | None = None,
    stall_s: float = 30.0,
) -> list[Path]:
    """Download, verify and install every file of `job`; returns the installed paths.

    Raises DownloadError (with a message for the user) or Cancelled; the .part
    files stay for a later resume either way, except a damaged one.
    """
    check_disk(job)
    network.install()
    meter = _Meter(job, on_progress)
    with network.online(f"Download {job.repo_id} {job.label}"):
        for f in job.files:
            if _installed(job.target(f), f, cancel):
                continue
            if f.verified and job.part(f).exists() and job.part(f).stat().st_size == f.size:
                continue
            url = hf_hub_url(job.repo_id, f.path, revision=job.commit or None, endpoint=job.endpoint)
            _fetch(job, f, url, token, cancel, meter, stall_s)
    for f in job.files:  # all verified: now they become usable, together
        if job.part(f).exists():
            os.replace(job.part(f), job.target(f))
    meter.add(0, force=True)
    return [job.target(f) for f in job.files]


def load_queue(path: Path) -> list[DownloadJob]:
    """The saved download queue; an unreadable file is kept aside (as .unreadable) and the queue starts empty."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [DownloadJob.from_dict(dict(d)) for d in data]
    except FileNotFoundError:
        return []
    except (ValueError, TypeError, KeyError, AttributeError):
        os.replace(path, path.with_name(path.name + ".unreadable"))
        return []


def save_queue(path: Path, jobs: list[DownloadJob]) -> None:
    """Write the queue atomically, so a restart resumes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([j.as_dict() for j in jobs], indent=1), encoding="utf-8")
    os.replace(tmp, path)
