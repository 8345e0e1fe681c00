"""Crash safety: SIGKILL the app at a random moment while it streams, then check the history.

Each run starts the real app in a subprocess (tests/integration/crash/chat_child.py), lets
it chat, and kills it without warning. Afterwards the database must pass
`PRAGMA integrity_check`, hold every question whose answer had started, and
hold each answer up to at least what was on screen one second before the kill.
"""

from __future__ import annotations

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
from app.core.store.database import open_database
from app.core.store.keys import load_or_create_key
from tests.conftest import user_env

ROOT = Path(__file__).resolve().parents[3]
RUNS = 20
LOSS_WINDOW_S = 1.0

pytestmark = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


def run_and_kill(home: Path, model: Path, delay: float) -> tuple[list[dict[str, Any]], float]:
    """Start the chat, wait for its first answer text, then `delay` seconds, then SIGKILL it."""
    env = {**os.environ, **user_env(home), "QT_QPA_PLATFORM": "offscreen"}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.crash.chat_child", str(model)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    events: list[dict[str, Any]] = []
    watchdog = threading.Timer(120, child.kill)  # a child that never answers fails the run, not the suite
    watchdog.start()
    for line in child.stdout:  # until the first answer text is on screen
        events.append(json.loads(line))
        assert events[-1]["event"] not in ("model-failed", "store-error"), events[-1]
        if events[-1]["event"] == "text":
            break
    watchdog.cancel()
    assert events and events[-1]["event"] == "text", f"no answer began within 120 s: {events}"
    time.sleep(delay)
    killed_at = time.time()
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    events += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert child.returncode == -signal.SIGKILL
    return events, killed_at


def stored(paths: AppPaths) -> tuple[str, list[tuple[str, str]]]:
    db = paths.history_db
    conn = open_database(db, load_or_create_key(db))
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        messages = conn.execute("SELECT role, content FROM messages ORDER BY id").fetchall()
    finally:
        conn.close()
    return check, [(r[0], r[1]) for r in messages]


@pytest.mark.slow
def test_a_kill_loses_at_most_a_second_of_the_answer(tmp_path: Path, starter_model: Path) -> None:
    rng = random.Random(20261128)
    failures = []
    for run in range(RUNS):
        home = tmp_path / f"run{run}"
        events, killed_at = run_and_kill(home, starter_model, rng.uniform(0.0, 3.0))
        paths = AppPaths(
            data=home / "xdg_data_home" / "tern",
            config=home / "xdg_config_home" / "tern",
            logs=home / "xdg_state_home" / "tern" / "log",
            cache=home / "xdg_cache_home" / "tern",
        )
        check, messages = stored(paths)
        assert check == "ok", f"run {run}: {check}"
        assert not [e for e in events if e["event"] == "store-error"]
        questions = [content for role, content in messages if role == "user"]
        answers = [content for role, content in messages if role == "assistant"]

        texts: dict[int, list[dict[str, Any]]] = {}
        for e in events:
            if e["event"] == "text":
                texts.setdefault(e["question"], []).append(e)
        sent = [e["text"] for e in events if e["event"] == "sent"]
        # A question's answer starts only after the question is committed, so each one
        # whose answer began must be stored, in order.
        assert questions[: len(texts)] == sent[: len(texts)], f"run {run}"
        for q, shown in texts.items():
            answer = answers[q]
            final = shown[-1]["text"]
            # The turn's own thread saves the stream, so at a kill it may hold a few tokens the screen had not
            # shown yet: where the two overlap they must agree.
            assert final.startswith(answer) or answer.startswith(final), f"run {run}: stored text is not what was shown"
            before = [e["text"] for e in shown if e["t"] <= killed_at - LOSS_WINDOW_S]
            required = len(before[-1]) if before else 0
            if len(answer) < required:
                failures.append((run, q, len(answer), required))
    assert not failures, f"(run, question, stored chars, chars on screen 1 s before the kill): {failures}"
