"""The welcome page on real services: a recommendation for this machine, a download from the loopback hub,
the offline answer, and when the window should show it."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.models.catalog import CatalogEntry, FirstChoice, Source, load_catalog
from app.core.models.network import ACTIVITY
from app.core.models.registry import InstalledModel, inspect
from app.core.models.starter import ensure_starter_model
from app.core.paths import AppPaths
from app.core.units import gb
from app.services.downloads import DownloadManager
from app.services.history import HistoryService
from app.services.models import ModelService
from app.settings import Settings
from app.ui.welcome import FirstRunCheck, WelcomePage, wants_welcome
from tests.fixtures.hub import PUBLIC_REPO, STARTER_NAME
from tests.fixtures.hub_server import Fault, HubServer
from tests.ui.windows import settings_with

LONG = 60_000


@dataclass
class Started:
    models: ModelService
    downloads: DownloadManager


@pytest.fixture
def services(app_paths: AppPaths) -> Iterator[Started]:
    """The model and download services as the app builds them, stopped after the test."""
    models = ModelService(app_paths.data / "models.json", models_dir=app_paths.models)
    downloads = DownloadManager(app_paths.data / "downloads.json", lambda: None, app_paths.models)
    models.start()
    downloads.start()
    yield Started(models, downloads)
    assert downloads.shutdown()
    assert models.shutdown()


def tiny_catalog(download_bytes: int) -> list[CatalogEntry]:
    """A catalogue whose welcome model is the loopback hub's public repository (the starter served as Q4_K_M)."""
    return [
        CatalogEntry(
            "tiny",
            "Tiny Gemma",
            "Gemma 3",
            "chat",
            "A small model served by the test hub.",
            "Gemma Terms of Use",
            ("Q8_0", "Q4_K_M"),
            (Source(PUBLIC_REPO, "the loopback hub"),),
            FirstChoice("Q4_K_M", download_bytes, 400_000_000, 8192),
        )
    ]


def page_for(
    qtbot: QtBot, services: Started, settings: Settings, app_paths: AppPaths, catalog: list[CatalogEntry] | None
) -> WelcomePage:
    page = WelcomePage(services.downloads, services.models, settings, app_paths.models, catalog)
    qtbot.addWidget(page)
    page.resize(900, 700)
    page.show()
    qtbot.waitUntil(lambda: page.download_button.isEnabled(), timeout=LONG)  # the machine was measured
    return page


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_recommendation_is_for_this_machine(qtbot: QtBot, services: Started, app_paths: AppPaths) -> None:
    page = page_for(qtbot, services, Settings(app_paths.settings_file), app_paths, None)
    found = page.recommendation
    assert found is not None
    assert found.entry.name in {e.name for e in load_catalog() if e.first_choice is not None}
    assert page.model_name.text() == found.entry.name
    assert (
        page.download_button.text().startswith(f"Download {found.entry.name} (")
        and "GB)" in page.download_button.text()
    )
    assert "RAM" in page.fit.text() and "free" in page.fit.text()  # why it fits, with the numbers
    assert "only time Tern goes online" in page.online_note.text() and "Hugging Face" in page.online_note.text()


def test_download_the_recommended_model_from_the_hub(
    qtbot: QtBot, services: Started, app_paths: AppPaths, hub_server: HubServer, starter_model: Path
) -> None:
    settings = settings_with(app_paths, {opts.HUB_ENDPOINT: hub_server.endpoint})
    size = starter_model.stat().st_size
    page = page_for(qtbot, services, settings, app_paths, tiny_catalog(size))
    assert page.download_button.text() == f"Download Tiny Gemma ({gb(size)})"
    assert "the hub at 127.0.0.1" in page.online_note.text()
    hub_server.faults[STARTER_NAME] = Fault(rate=80_000_000)  # slow enough to show progress
    with qtbot.waitSignal(page.model_installed, timeout=LONG) as installed:
        qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: page.progress.isVisible(), timeout=LONG)
    model: InstalledModel = installed.args[0]
    assert Path(model.path) == app_paths.models / PUBLIC_REPO / STARTER_NAME and Path(model.path).exists()
    assert model.label == "Q4_K_M" and model.repo_id == PUBLIC_REPO
    assert "is installed" in page.status.text() and page.progress.value() == 1000
    reasons = {a.reason for a in ACTIVITY.snapshot()}
    assert f"List the files of {PUBLIC_REPO}" in reasons and f"Download {PUBLIC_REPO} Q4_K_M" in reasons


def test_offline_the_page_says_so_and_points_to_import(
    qtbot: QtBot, services: Started, app_paths: AppPaths, starter_model: Path
) -> None:
    port = closed_port()
    settings = settings_with(app_paths, {opts.HUB_ENDPOINT: f"http://127.0.0.1:{port}"})
    page = page_for(qtbot, services, settings, app_paths, tiny_catalog(starter_model.stat().st_size))
    with qtbot.waitSignal(services.downloads.fetch_failed, timeout=LONG) as failed:
        qtbot.mouseClick(page.download_button, Qt.MouseButton.LeftButton)
    assert failed.args[2] is True  # the hub could not be reached at all
    text = page.status.text()
    assert "could not reach the hub at 127.0.0.1" in text and "connection was refused" in text
    assert "may be offline" in text and "Import a GGUF file…" in text
    assert "Errno" not in text and "Error" not in text  # no Python in the message
    assert page.download_button.isEnabled() and page.download_button.text() == "Try again"
    answers = [a.answer() for a in ACTIVITY.snapshot() if f":{port}/" in a.url]
    assert answers and answers[-1] == "No answer: connection refused"

    with qtbot.waitSignal(page.import_requested, timeout=1000):
        qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(page.dismissed, timeout=1000):
        qtbot.mouseClick(page.keep_button, Qt.MouseButton.LeftButton)


def test_the_page_is_wanted_until_there_is_a_chat_or_a_real_model(
    qtbot: QtBot, services: Started, app_paths: AppPaths, tiny_gemma: Path
) -> None:
    ensure_starter_model(app_paths.models)  # what the first load does
    history = HistoryService(app_paths.history_db)
    history.start_thread()
    try:
        with qtbot.waitSignal(history.ready, timeout=LONG):
            history.open_with_key(secrets.token_bytes(32))
        check = FirstRunCheck(services.models, history)
        qtbot.waitUntil(lambda: check.is_wanted, timeout=LONG)
        assert [m.builtin for m in services.models.installed] == [True]  # the starter is listed, built in
        with qtbot.waitSignal(check.wanted, timeout=LONG) as wanted:
            history.query(lambda s: s.create_conversation("First chat"), lambda _r: history.refresh())
        assert wanted.args == [False]
    finally:
        assert history.shutdown()

    starter = services.models.installed[0]
    other = inspect(tiny_gemma)
    embedding = InstalledModel(**{**other.__dict__, "family": "gemma-embedding"})
    assert wants_welcome([starter], 0) and wants_welcome([], 0) and wants_welcome([starter, embedding], 0)
    assert not wants_welcome([starter, other], 0) and not wants_welcome([starter], 1)


def test_keep_using_the_starter_hides_it_until_the_next_start(
    qtbot: QtBot, services: Started, app_paths: AppPaths
) -> None:
    history = HistoryService(app_paths.history_db)
    history.start_thread()
    try:
        with qtbot.waitSignal(history.ready, timeout=LONG):
            history.open_with_key(secrets.token_bytes(32))
        check = FirstRunCheck(services.models, history)
        qtbot.waitUntil(lambda: check.is_wanted, timeout=LONG)  # nothing installed yet: a first launch
        with qtbot.waitSignal(check.wanted, timeout=1000) as wanted:
            check.dismiss()
        assert wanted.args == [False]
        with qtbot.waitSignal(services.models.changed, timeout=LONG):
            services.models.refresh()
        assert not check.is_wanted
    finally:
        assert history.shutdown()
