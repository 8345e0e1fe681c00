"""One Tern per profile: a later launch hands its files to the running window, over a real local socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.bootstrap import parse_args, shutdown, start
from app.single_instance import SingleInstance, server_name
from tests.conftest import user_env
from tests.fixtures.pdfs import write_pdf
from tools.synthetic_gemma import TINY_GEMMA4, write_gemma

ROOT = Path(__file__).resolve().parent.parent
LONG = 120_000
# A later launch, cut down to the hand-over: argv is the data folder, the time limit, then the files.
SEND = (
    "import sys; from pathlib import Path; from PySide6.QtCore import QCoreApplication;"
    "from app.single_instance import SingleInstance; app = QCoreApplication([]);"
    "i = SingleInstance(Path(sys.argv[1])); assert not i.claim();"
    "sys.exit(0 if i.send([Path(p) for p in sys.argv[3:]], timeout_s=float(sys.argv[2])) else 3)"
)


def test_a_later_launch_hands_over_its_files(qtbot: QtBot, tmp_path: Path) -> None:
    first = SingleInstance(tmp_path)
    assert first.claim()
    first.listen()
    try:
        with qtbot.waitSignal(first.files_received, timeout=30_000) as received:
            process = subprocess.Popen(
                [sys.executable, "-c", SEND, str(tmp_path), "20", "notes.md", "/abs/model.gguf"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        qtbot.waitUntil(lambda: process.poll() is not None, timeout=30_000)
        _out, errors = process.communicate()
        assert process.returncode == 0, errors
        assert received.args == [[ROOT / "notes.md", Path("/abs/model.gguf")]]  # relative paths made absolute
    finally:
        first.release()


def test_profiles_do_not_meet_and_a_dead_holder_frees_the_profile(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    assert SingleInstance(one).name != SingleInstance(two).name
    code = (
        "import os, signal, sys; from pathlib import Path; from app.single_instance import SingleInstance;"
        "assert SingleInstance(Path(sys.argv[1])).claim(); os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(one)], cwd=ROOT, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    survivor = SingleInstance(one)
    assert survivor.claim()  # the lock of a process that died is stale, whatever its age
    survivor.release()


def test_nobody_answering_is_reported_not_waited_on_forever(tmp_path: Path) -> None:
    holder = SingleInstance(tmp_path)
    assert holder.claim()  # holds the profile but never listens: a Tern that hangs at start-up
    try:
        result = subprocess.run([sys.executable, "-c", SEND, str(tmp_path), "0.5", "a.md"], cwd=ROOT, timeout=60)
        assert result.returncode == 3
    finally:
        holder.release()


@pytest.mark.skipif(os.environ.get("TERN_TEST_KEYRING") != "1", reason="needs the Secret Service ./test.sh starts")
def test_open_with_hands_a_model_and_a_document_to_the_running_window(
    qtbot: QtBot, tmp_path: Path, starter_model: Path
) -> None:
    report = write_pdf(tmp_path / "report.pdf", ["The ferry to the island leaves at noon."])
    # A second, different model: a link to the starter would now be recognised as the starter itself.
    model = write_gemma(tmp_path / "another-model.gguf", TINY_GEMMA4, starter_model)
    args = parse_args(["--no-err-windows"])
    from app.core.paths import AppPaths

    instance = SingleInstance(AppPaths.default().data)
    assert instance.claim()
    session = start(args, instance)
    window = session.window
    try:
        qtbot.waitSignal(window.history.ready, timeout=LONG).wait()
        qtbot.waitSignal(window.model_ready, timeout=LONG).wait()  # the starter
        env = {**os.environ, **user_env(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
        loaded = qtbot.waitSignal(window.model_ready, timeout=LONG, check_params_cb=lambda m: m.info.path == model)
        second = subprocess.Popen(
            [sys.executable, "-m", "app", str(report), str(model)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        qtbot.waitUntil(lambda: second.poll() is not None, timeout=LONG)  # the window keeps running meanwhile
        _out, errors = second.communicate()
        assert second.returncode == 0, errors
        panel = window.documents.panel
        qtbot.waitUntil(lambda: panel.table.rowCount() == 1 and panel.table.item(0, 1).text() == "Ready", timeout=LONG)
        assert panel.table.item(0, 0).text() == "report.pdf"
        assert window.history.conversation_id is not None  # a conversation of its own
        loaded.wait()  # the model was imported where it lies, and loaded
        assert window.services.models.get(model) is not None
    finally:
        shutdown(session)


@pytest.mark.parametrize("user_dir", ["a", "b"])
def test_socket_names_are_short_enough_for_unix_sockets(tmp_path: Path, user_dir: str) -> None:
    deep = tmp_path / ("x" * 200) / user_dir
    deep.mkdir(parents=True)
    assert len(server_name(deep)) < 40
