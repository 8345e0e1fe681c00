"""The download queue on its threads: restart mid-download, pause, resume, cancel, failures."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.core.engine.options import LoadOptions
from app.core.models.download import DownloadJob, load_queue
from app.core.models.hub import fetch_model
from app.core.models.network import online
from app.core.models.registry import InstalledModel
from app.services.downloads import DownloadManager
from tests.fixtures.hub import GATED_NAME, GATED_REPO, PROJECTOR_NAME, VISION_REPO
from tests.fixtures.hub_server import Fault, HubServer

LONG = 30_000


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_job(server: HubServer, dest: Path) -> DownloadJob:
    with online("test: list files"):
        remote = fetch_model(GATED_REPO, server.endpoint)
    return DownloadJob.for_option(GATED_REPO, remote.commit, remote.options[0], dest, server.endpoint)


def manager(server: HubServer, queue: Path) -> DownloadManager:
    return DownloadManager(queue, lambda: server.valid_token, queue.parent / "models", stall_s=5.0)


def progressed(m: DownloadManager, job_id: str, at_least: int) -> bool:
    p = m.last_progress.get(job_id)
    return p is not None and p.done >= at_least


def test_a_restart_mid_download_resumes_it(qtbot: QtBot, hub_server: HubServer, tmp_path: Path) -> None:
    queue = tmp_path / "downloads.json"
    hub_server.faults[GATED_NAME] = Fault(rate=3_000_000)
    first = manager(hub_server, queue)
    job = first.add(make_job(hub_server, tmp_path / "models"))
    qtbot.waitUntil(lambda: progressed(first, job.id, 2_000_000), timeout=LONG)
    first.shutdown()  # the app quits mid-download
    saved = load_queue(queue)
    assert [(j.id, j.state) for j in saved] == [(job.id, "queued")]
    part = saved[0].part(saved[0].files[0])
    kept = part.stat().st_size
    assert 0 < kept < job.total

    second = manager(hub_server, queue)  # the next start
    try:
        with qtbot.waitSignal(second.installed, timeout=LONG) as done:
            second.start()
        model: InstalledModel = done.args[0]
        assert (
            hashlib.sha256(Path(model.path).read_bytes()).hexdigest() == hub_server.blob(GATED_REPO, GATED_NAME).sha256
        )
        assert model.repo_id == GATED_REPO and model.family.startswith("Gemma 4")
        assert hub_server.requests_for(GATED_NAME)[-1].range_header == f"bytes={kept}-"
        assert second.jobs == []
        qtbot.waitUntil(lambda: load_queue(queue) == [], timeout=5000)  # written by the download-queue thread
    finally:
        second.shutdown()


def test_pause_resume_and_cancel(qtbot: QtBot, hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.faults[GATED_NAME] = Fault(rate=3_000_000, times=3)
    m = manager(hub_server, tmp_path / "downloads.json")
    try:
        job = m.add(make_job(hub_server, tmp_path / "models"))
        qtbot.waitUntil(lambda: progressed(m, job.id, 1_000_000), timeout=LONG)
        with qtbot.waitSignal(m.changed, check_params_cb=lambda _id: job.state == "paused", timeout=LONG):
            m.pause(job.id)
        part = job.part(job.files[0])
        assert part.exists()
        with qtbot.waitSignal(m.installed, timeout=LONG):
            m.resume(job.id)
        assert job.target(job.files[0]).exists()

        again = m.add(make_job(hub_server, tmp_path / "other"))
        qtbot.waitUntil(lambda: progressed(m, again.id, 1_000_000), timeout=LONG)
        with qtbot.waitSignal(m.changed, check_params_cb=lambda _id: m.job(again.id) is None, timeout=LONG):
            m.cancel(again.id)
        assert not again.part(again.files[0]).exists() and not again.target(again.files[0]).exists()
    finally:
        m.shutdown()


def test_a_failed_download_says_why_and_can_be_retried(qtbot: QtBot, hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.faults[GATED_NAME] = Fault(corrupt_at=123)
    m = manager(hub_server, tmp_path / "downloads.json")
    try:
        job = make_job(hub_server, tmp_path / "models")
        with qtbot.waitSignal(m.changed, check_params_cb=lambda _id: job.state == "failed", timeout=LONG):
            m.add(job)
        assert "damaged" in job.error
        # Survives a restart, with why (written by the download-queue thread).
        qtbot.waitUntil(lambda: load_queue(tmp_path / "downloads.json")[0].state == "failed", timeout=5000)
        with qtbot.waitSignal(m.installed, timeout=LONG):
            m.resume(job.id)
    finally:
        m.shutdown()


def test_a_model_comes_with_its_projector_and_a_missing_one_is_fetched(
    qtbot: QtBot, hub_server: HubServer, tmp_path: Path
) -> None:
    with online("test: list files"):
        remote = fetch_model(VISION_REPO, hub_server.endpoint)
    m = manager(hub_server, tmp_path / "downloads.json")
    try:
        job = DownloadJob.for_option(
            VISION_REPO,
            remote.commit,
            remote.options[0],
            tmp_path / "models",
            hub_server.endpoint,
            remote.projectors[0].file,
        )
        with qtbot.waitSignal(m.installed, timeout=LONG) as done:
            m.add(job)
        model: InstalledModel = done.args[0]
        projector = Path(model.path).parent / PROJECTOR_NAME
        assert model.projector == str(projector) and model.sees_images
        assert model.files == [model.path, str(projector)]  # deleting the model deletes its projector too
        assert model.size == Path(model.path).stat().st_size + projector.stat().st_size

        projector.unlink()  # gone: the model manager offers to fetch it again
        model.repo_id, model.projector = VISION_REPO, ""
        with qtbot.waitSignal(m.projector_installed, timeout=LONG) as arrived:
            m.fetch_projector(model, hub_server.endpoint, LoadOptions(n_ctx=2048))
        assert arrived.args == [model.path, projector]  # the most precise, fitting, next to the model
        assert sha256(projector) == hub_server.blob(VISION_REPO, PROJECTOR_NAME).sha256
        assert m.jobs == []

        model.repo_id = ""  # a file the user added: Tern does not know where it came from
        with qtbot.waitSignal(m.projector_failed, timeout=LONG) as failed:
            m.fetch_projector(model, hub_server.endpoint, LoadOptions())
        assert failed.args[0] == model.path and "does not know which repository" in failed.args[1]

        model.repo_id = GATED_REPO  # a repository without projectors
        with qtbot.waitSignal(m.projector_failed, timeout=LONG) as failed:
            m.fetch_projector(model, hub_server.endpoint, LoadOptions())
        assert failed.args[1] == f"{GATED_REPO} offers no image projector for it."
    finally:
        m.shutdown()
