"""Crash safety of the history's secret: SIGKILL during every kind of key change, then start again.

Each run copies a prepared history, starts tests/integration/crash/key_change_child.py to set,
change or remove a passphrase, restore a backup, or reset the history, and kills it
at a random moment of the change (a reset, which takes milliseconds, is cut before each of
its file and keychain operations in turn). The next start must open the history on its own
from the keychain, or with the old or the new passphrase (whichever the user typed
last), and it must hold every message: all of them, or for a restore all of the
backup's, or for a reset none (a new history). A run that cannot open is a lockout.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from app.core.store import backup, key_change, keys
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from app.core.store.errors import WrongKeyError

ROOT = Path(__file__).resolve().parents[3]
RUNS = 50  # per kind of change
OLD, NEW, BACKUP = "old passphrase, kept for years", "a new passphrase after the breach", "backup passphrase"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("TERN_TEST_KEYRING") != "1",
        reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
    ),
]


def fill(store: ConversationStore, conversations: int, rng: random.Random) -> None:
    """Conversations of eight messages of ~1.5 KB each (about 0.15 MB per ten conversations)."""
    for c in range(conversations):
        cid = store.create_conversation(f"Conversation {c}")
        parent = None
        for m in range(8):
            text = f"message {c}.{m} " + " ".join(f"{rng.getrandbits(40):x}" for _ in range(140))
            parent = store.add_message(cid, parent, "user" if m % 2 == 0 else "assistant", text)


def contents(db: Path, key: bytes) -> tuple[str, int]:
    """(digest of every message, message count), after an integrity check."""
    conn = open_database(db, key)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT conversation_id, role, content FROM messages ORDER BY id").fetchall()
    finally:
        conn.close()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest(), len(rows)


class Templates:
    """One history, kept twice (keychain and passphrase), and a backup of an earlier state of it."""

    def __init__(self, root: Path) -> None:
        rng = random.Random(20261201)
        self.keychain = root / "keychain" / "history.db"
        self.passphrase = root / "passphrase" / "history.db"
        self.backup = root / "earlier.ternbackup"
        self.keychain.parent.mkdir(parents=True)
        self.passphrase.parent.mkdir(parents=True)
        self.key = keys.new_key()
        store = ConversationStore(open_database(self.keychain, self.key))
        fill(store, 240, rng)
        backup.write_backup(store.connection, self.backup, BACKUP)
        fill(store, 80, rng)
        store.connection.close()
        shutil.copy2(self.keychain, self.passphrase)
        keys.store_key(self.key)
        conn, pkey = key_change.change_secret(open_database(self.passphrase, self.key), self.passphrase, OLD)
        conn.close()
        self.full = contents(self.keychain, self.key)
        assert contents(self.passphrase, pkey) == self.full
        restored = root / "restored" / "history.db"
        restored.parent.mkdir()
        restored_key = keys.new_key()
        backup.restore_backup(self.backup, BACKUP, restored, restored_key)
        self.earlier = contents(restored, restored_key)
        self.empty = ("", 0)

    def copy(self, kind: str, run_dir: Path) -> Path:
        """A fresh copy of the history this kind of change starts from."""
        in_keychain = kind in ("set", "restore") or (kind == "reset" and int(run_dir.name) % 2 == 0)
        source = self.keychain if in_keychain else self.passphrase
        run_dir.mkdir(parents=True)
        for f in source.parent.iterdir():
            shutil.copy2(f, run_dir / f.name)
        keys.store_key(self.key)  # an earlier run's change may have retired it
        return run_dir / "history.db"


JOBS = {"set": NEW, "change": NEW, "remove": None, "restore": None, "reset": None}  # kind: the new passphrase


def run_child(
    db: Path, kind: str, templates: Templates, kill_after: float | None = None, kill_at_op: int | None = None
) -> tuple[bool, float, int]:
    """Run one change, killed `kill_after` s after it began or just before operation `kill_at_op`.

    Returns whether it finished, how long it ran, and how many operations it made (when it finished).
    """
    old = OLD if keys.salt_path(db).exists() else None
    job = {
        "kind": kind,
        "db": str(db),
        "old": old,
        "new": JOBS[kind],
        "backup": str(templates.backup),
        "backup_passphrase": BACKUP,
        "kill_at_op": kill_at_op,
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.crash.key_change_child", json.dumps(job)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready", "the child did not open the history"
    began = time.monotonic()
    if kill_after is not None:
        time.sleep(kill_after)
        child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=120)
    duration = time.monotonic() - began
    lines = rest.split()
    if "done" not in lines:
        assert child.returncode == -signal.SIGKILL
        return False, duration, 0
    return True, duration, int(lines[lines.index("ops") + 1])


def next_start(db: Path) -> tuple[str, bytes]:
    """Open as the app does: the keychain on its own, else each passphrase the user might type."""
    try:
        return "keychain", key_change.resolve_key(db)
    except key_change.PassphraseNeededError:
        pass
    for label, passphrase in (("old passphrase", OLD), ("new passphrase", NEW)):
        try:
            return label, key_change.resolve_key(db, passphrase)
        except WrongKeyError:
            continue
    raise AssertionError("locked out: neither the keychain nor either passphrase opens the history")


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    return Templates(tmp_path_factory.mktemp("templates"))


@pytest.mark.parametrize("kind", list(JOBS))
def test_a_kill_during_a_key_change_never_locks_the_user_out(kind: str, templates: Templates, tmp_path: Path) -> None:
    rng = random.Random(f"kill-{kind}")
    # How long an uninterrupted change takes here (the median of three); the kills are spread over
    # it and a little after, one in each of RUNS equal slices at a random point, so every stage is hit.
    durations = []
    for n in range(3):
        finished, duration, operations = run_child(
            templates.copy(kind, tmp_path / "calibration" / str(n)), kind, templates
        )
        assert finished
        durations.append(duration)
    window = sorted(durations)[1] * 1.3
    allowed = {
        "set": [templates.full],
        "change": [templates.full],
        "remove": [templates.full],
        "restore": [templates.full, templates.earlier],
        "reset": [templates.full, templates.empty],
    }[kind]
    outcomes: Counter[str] = Counter()
    lockouts = []
    for run in range(RUNS):
        db = templates.copy(kind, tmp_path / str(run))
        if kind == "reset":  # over in milliseconds: cut it before each of its steps in turn, and after the last
            finished, _, _ = run_child(db, kind, templates, kill_at_op=run % (operations + 1))
        else:
            finished, _, _ = run_child(db, kind, templates, window * (run + rng.random()) / RUNS)
        try:
            opened_with, key = next_start(db)
        except AssertionError as exc:
            lockouts.append((run, str(exc), sorted(p.name for p in db.parent.iterdir())))
            continue
        found = contents(db, key) if db.exists() and db.stat().st_size else templates.empty
        assert found in allowed, f"run {run}: the history holds {found[1]} messages"
        state = "before" if found == templates.full else "after"
        if kind in ("set", "change", "remove"):
            state = (
                "after"
                if opened_with == {"set": "new passphrase", "change": "new passphrase", "remove": "keychain"}[kind]
                else "before"
            )
        if finished:
            assert state == "after", f"run {run}: the change had finished but did not hold"
        outcomes[state] += 1
        # Nothing of the interrupted change is left, above all no journal SQLite would replay later.
        assert not [p.name for p in db.parent.iterdir() if ".rekey" in p.name], run
        key_change.delete_history_and_keys(db)
    print(json.dumps({"kind": kind, "runs": RUNS, "lockouts": len(lockouts), **outcomes}))  # shown with -s
    assert not lockouts, lockouts
    # Kills fell both before and after the change took effect, so both sides were tested.
    assert outcomes["before"] and outcomes["after"], outcomes
