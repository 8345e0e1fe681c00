"""A leak scan: after a scripted session, user text is found nowhere but inside the encrypted history.

The session (tests/integration/hostile/leak_child.py) runs the real app with every user
folder and the temporary folder under this test's own directory, and puts one
unique marker in the system prompt, a message, a document and a question.
Afterwards every file there (settings, logs, caches, model check results,
crash files, temporary files) is read raw, and none may hold the marker; the
history's own files hold it only encrypted.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import user_env

ROOT = Path(__file__).resolve().parents[3]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("TERN_TEST_KEYRING") != "1",
        reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
    ),
]


def test_no_user_text_outside_the_encrypted_history(tmp_path: Path, starter_model: Path) -> None:
    marker = f"LEAKCHECK{secrets.token_hex(6)}"
    home, temp, docs = tmp_path / "home", tmp_path / "tmp", tmp_path / "docs"
    for folder in (home, temp, docs):
        folder.mkdir()
    document = docs / "harbour-notes.md"
    document.write_text(
        f"# Harbour notes\n\nThe pilot boat's call sign is {marker}-document.\n\n"
        f"On {marker}-question days the fog horn sounds twice an hour.\n"
    )
    env = {**os.environ, **user_env(home), "QT_QPA_PLATFORM": "offscreen", "TMPDIR": str(temp)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.integration.hostile.leak_child", str(starter_model), str(document), marker],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    steps = result.stdout.split()
    assert result.returncode == 0 and steps[-1] == "done", result.stderr[-3000:]
    assert "found" in steps and steps[steps.index("found") + 1] != "0"  # the history does hold it

    history = {"history.db", "history.db-wal", "history.db-shm"}
    scanned, leaks = 0, []
    for root in (home, temp):
        for path in root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            scanned += 1
            if marker.encode() in data or marker.encode("utf-16-le") in data:
                leaks.append(str(path.relative_to(tmp_path)))
            if path.name in history:
                assert not data.startswith(b"SQLite format 3")  # encrypted from the first byte
    assert not leaks, f"user text found outside the encrypted history: {leaks}"
    log_files = list(home.rglob("tern.log"))
    assert log_files and log_files[0].stat().st_size > 0  # the session did write a log, and it was scanned
    assert scanned >= 5
