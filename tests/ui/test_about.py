"""Help → About Tern: the versions, the folders and the licences, as the user sees them."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PySide6.QtWidgets import QTextBrowser
from pytestqt.qtbot import QtBot

from app import __version__
from app.core.engine import backends
from app.core.engine.llama_engine import LlamaEngine
from app.core.paths import AppPaths
from app.licences import components, notice_text
from app.services.about import about_details
from app.ui.about_dialog import AboutDialog

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_version_comes_from_pyproject() -> None:
    declared = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert declared is not None and __version__ == declared.group(1)


def test_about_shows_versions_folders_and_licences(qtbot: QtBot, app_paths: AppPaths, engine: LlamaEngine) -> None:
    backend = backends.current()
    assert backend is not None  # the engine fixture loaded a model, which loads the CPU backend
    with ThreadPoolExecutor(1) as pool:  # as the app does: package metadata is read off the GUI thread
        details = pool.submit(about_details).result()
    dialog = AboutDialog(app_paths, app_paths.logs / "tern.log", details)
    qtbot.addWidget(dialog)
    versions = dict(dialog._versions)
    assert versions["Tern"].startswith(__version__)
    assert re.match(r"[0-9a-f]{7}", versions["llama.cpp"])  # the commit it was built from
    assert versions["llama.cpp CPU backend"].startswith(backend.variant)
    assert versions["Qt"].startswith("6.") and versions["SQLCipher"].startswith("4.")
    folders = dialog.tabs.widget(1).toPlainText()
    assert str(app_paths.data) in folders and str(app_paths.models) in folders and str(app_paths.logs) in folders
    licences = dialog.tabs.widget(2).findChild(QTextBrowser).toPlainText()
    assert "Gemma Terms of Use" in licences and "llama.cpp and ggml" in licences


def test_the_notice_names_every_component_with_its_licence_text() -> None:
    found = {re.sub(r"[-_.]+", "-", c.name).lower(): c for c in components()}
    assert {"llama-cpp-python", "pyside6-essentials", "sqlcipher3-wheels", "numpy", "keyring"} <= set(found)
    assert found["llama-cpp-python"].carries == "llama.cpp and ggml"
    assert "pytest" not in found and "mypy" not in found  # dev tools are not shipped
    text = notice_text()
    assert "Apache License" in text and "Gemma Terms of Use" in text
    assert text.count("=" * 78) >= 2 * 20  # licence texts, not just names


def test_the_cpu_backend_is_described(engine: LlamaEngine) -> None:
    backend = backends.ensure_loaded()
    assert backend is backends.current()
    assert backend.variant == "native" and backend.library is None  # the venv's build is compiled for this CPU
    assert "AMX_INT8" not in backend.features  # llama.cpp's AMX code crashes on some CPUs; the build leaves it out
    assert backends.cpu_buffer_type() != 0
