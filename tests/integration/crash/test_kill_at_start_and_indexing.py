"""Crash safety at start-up and while indexing: SIGKILL the real app at random moments, start it again.

The same user folder lives through every kill, as a user's would. After each one
the history must open on its own (its key from the keychain), pass SQLite's and
the full-text index's integrity checks, and hold every message the app had
reported saved. Documents are either fully indexed (every chunk there) or still
waiting, and a last, uninterrupted start finishes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from app.core.paths import AppPaths
from app.core.store import key_change
from app.core.store.database import open_database
from tests.conftest import user_env
from tests.fixtures.pdfs import write_pdf

ROOT = Path(__file__).resolve().parents[3]
START_RUNS = 15
INDEX_RUNS = 12

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("TERN_TEST_KEYRING") != "1",
        reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
    ),
]


def run(home: Path, args: list[str], kill_after: float | None, until: str | None = None) -> list[dict[str, Any]]:
    """Start the app; SIGKILL it `kill_after` s after launch, or once `until` is printed (60 s at most).

    Only the app's own process is killed, as a crash would end it: its child processes (a
    document reader, a model check) must then end by themselves, which closes the output.
    """
    env = {**os.environ, **user_env(home), "QT_QPA_PLATFORM": "offscreen"}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.crash.session_child", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert child.stdout is not None
    lingered = threading.Event()
    lingering: list[str] = []

    def kill_group() -> None:  # only if a child outlived the app
        lingered.set()
        ps = subprocess.run(["ps", "-o", "pid,etime,args", "-s", str(child.pid)], capture_output=True, text=True)
        lingering.append(ps.stdout)
        os.killpg(child.pid, signal.SIGKILL)

    group_killer = threading.Timer(20, kill_group)

    def kill_app() -> None:
        child.kill()
        if not group_killer.is_alive() and not lingered.is_set():
            with contextlib.suppress(RuntimeError):  # started already
                group_killer.start()

    killer = threading.Timer(60 if kill_after is None else kill_after, kill_app)
    killer.start()
    events: list[dict[str, Any]] = []
    for line in child.stdout:
        events.append(json.loads(line))
        assert events[-1]["event"] not in ("store-error", "model-failed"), events[-1]
        if until is not None and until in line:
            killer.cancel()
            kill_app()
    killer.cancel()
    group_killer.cancel()
    child.stdout.close()
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not lingered.is_set(), f"a child process of the app lived on after the app was killed: {lingering}"
    return events


def paths_of(home: Path) -> AppPaths:
    return AppPaths(
        data=home / "xdg_data_home" / "tern",
        config=home / "xdg_config_home" / "tern",
        logs=home / "xdg_state_home" / "tern" / "log",
        cache=home / "xdg_cache_home" / "tern",
    )


def query(home: Path, sql: str) -> list[tuple[Any, ...]]:
    """Open the history as the next start does (the keychain's key, found on its own) and run checks."""
    db = paths_of(home).history_db
    conn = open_database(db, key_change.resolve_key(db))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for fts in ("messages_fts", "chunks_fts", "conversations_fts"):
            conn.execute(f"INSERT INTO {fts}({fts}) VALUES ('integrity-check')")
        return [tuple(row) for row in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def test_a_kill_during_start_up_loses_no_saved_message(tmp_path: Path, starter_model: Path) -> None:
    rng = random.Random(20261201)
    saved: list[str] = []
    for _ in range(START_RUNS):
        events = run(tmp_path, ["start", str(starter_model)], rng.uniform(0.3, 5.0))
        saved += [e["text"] for e in events if e["event"] == "saved"]
        stored = {row[0] for row in query(tmp_path, "SELECT content FROM messages WHERE role = 'user'")}
        assert set(saved) <= stored, sorted(set(saved) - stored)
    assert saved, "no run lasted long enough to save a message"
    # A start after all those kills opens the history on its own and saves the first question.
    events = run(tmp_path, ["start", str(starter_model)], None, until='"saved"')
    kinds = [e["event"] for e in events]
    assert "ready" in kinds and kinds[-1] == "saved", kinds


@pytest.fixture
def documents(tmp_path: Path, qapp: object) -> Path:
    folder = tmp_path / "documents"
    folder.mkdir()
    rng = random.Random(5)
    words = [
        "lighthouse",
        "keeper",
        "granite",
        "paraffin",
        "island",
        "tide",
        "lamp",
        "station",
        "harbour",
        "beacon",
        "fog",
    ]
    for n in range(8):
        paragraphs = [" ".join(rng.choice(words) for _ in range(120)) + "." for _ in range(250)]
        (folder / f"notes-{n}.md").write_text(f"# Notes {n}\n\n" + "\n\n".join(paragraphs))
    write_pdf(folder / "log.pdf", [f"Page {i}: the keeper logged the fog." for i in range(40)])
    return folder


def test_a_kill_during_indexing_leaves_documents_whole_or_waiting(
    tmp_path: Path, starter_model: Path, documents: Path
) -> None:
    home = tmp_path / "home"
    rng = random.Random(20261202)
    reported_ready: set[int] = set()
    for _ in range(INDEX_RUNS):
        events = run(home, ["index", str(starter_model), str(documents)], rng.uniform(0.5, 6.0))
        reported_ready |= {e["id"] for e in events if e["event"] == "doc" and e["state"] == "ready"}
        rows = query(
            home,
            "SELECT d.id, d.state, d.chunk_count, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) "
            "FROM documents d",
        )
        for doc, state, chunk_count, chunks in rows:
            if state == "ready":
                assert chunks == chunk_count > 0, (doc, chunk_count, chunks)  # whole, never half
        ready_now = {doc for doc, state, *_ in rows if state == "ready"}
        assert reported_ready <= ready_now  # what the user saw finish stays finished
    # Left alone, the next start finishes what the kills interrupted.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        states = {state for _, state in query(home, "SELECT id, state FROM documents")}
        if states == {"ready"}:
            break
        run(home, ["index", str(starter_model), str(documents)], 30.0)
    rows = query(home, "SELECT state, count(*) FROM documents GROUP BY state")
    assert rows == [("ready", 9)], rows
