"""Shared fixtures: every user folder under tmp_path, the real starter model, a loaded engine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.core.engine.llama_engine import LlamaEngine, LoadOptions
from app.core.models.starter import ensure_starter_model
from app.core.paths import AppPaths
from tests.gui_io import GUARD

# The PDF and loopback-hub fixtures serve tests in several folders; pytest reads `pytest_plugins` only here.
pytest_plugins = ["tests.fixtures.pdfs", "tests.fixtures.hub", "tests.fixtures.gemma4", "tests.fixtures.vision"]

XDG_VARS = ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")


def user_env(root: Path) -> dict[str, str]:
    """Environment that points every user folder of the app below `root`."""
    env = {var: str(root / var.lower()) for var in XDG_VARS}
    env["HOME"] = str(root / "home")
    return env


@pytest.fixture(autouse=True)
def app_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppPaths:
    """No test touches the real home folder."""
    for key, value in user_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    paths = AppPaths.default()
    paths.create()
    return paths


def _is_ui_test(request: pytest.FixtureRequest) -> bool:
    """A test that drives widgets (with qtbot) in tests/ui or a *_ui.py file."""
    path = Path(str(request.node.fspath))
    return "qtbot" in request.fixturenames and (path.parent.name == "ui" or path.stem.endswith("_ui"))


@pytest.fixture(autouse=True)
def no_blocking_io_on_the_gui_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """In UI tests, app code may not open, rename or delete files or connect to a database on the GUI thread."""
    if not _is_ui_test(request):
        yield
        return
    GUARD.events.clear()
    GUARD.active = True
    try:
        yield
    finally:
        GUARD.active = False
    found, GUARD.events[:] = list(GUARD.events), []
    assert not found, "blocking work on the GUI thread:\n" + "\n".join(str(e) for e in found)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """keyring's `fail` backend: a machine without any usable system keychain."""
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


@pytest.fixture(scope="session")
def starter_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Gemma 3 270M GGUF, assembled once per run."""
    return ensure_starter_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def engine(starter_model: Path) -> Iterator[LlamaEngine]:
    """An engine with the starter model loaded (shared: tests must leave it loaded)."""
    e = LlamaEngine()
    e.load(starter_model, LoadOptions(n_ctx=2048))
    yield e
    e.unload()


@pytest.fixture(scope="session", autouse=True)
def _close_llama_devnull() -> Iterator[None]:
    """llama-cpp-python opens two /dev/null files at import and never closes them."""
    yield
    import llama_cpp._utils as llama_utils

    llama_utils.outnull_file.close()
    llama_utils.errnull_file.close()
