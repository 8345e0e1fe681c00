"""Saved model states, so that reopening a conversation with documents does not read them again.

A state is the model's KV cache after a turn: computed from the conversation's
documents and messages, so it is private text in another form. It is kept in a
SQLCipher database of its own beside the history (`states.db`), under the
history's key: encrypted at rest like the history, yet apart from it, so backups
and exports of the history stay small. One state per conversation (its latest),
at most `cap_bytes` in all, the least recently used dropped first; deleted with
its conversation, and the whole file with a new or restored history.

It is only a cache: a file that another key does not open, or that is damaged,
is deleted and started afresh, and a state made by another model file, context
size or prompt format (`model`) is never restored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlcipher3 import dbapi2 as sqlite

from app.core.store.database import SIDE_SUFFIXES, Connection, apply_key, connect
from app.core.store.transaction import transaction

log = logging.getLogger("tern.store")
T = TypeVar("T")

STATES_FILE = "states.db"
DEFAULT_CAP_BYTES = 2 * 1024**3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS states (
    conversation_id INTEGER PRIMARY KEY,
    model TEXT NOT NULL,
    tokens BLOB NOT NULL,
    state BLOB NOT NULL,
    size INTEGER NOT NULL,
    used REAL NOT NULL
)
"""


@dataclass(frozen=True)
class SavedState:
    """The model's cache after reading `tokens`, and what it was computed with."""

    model: str  # model file, context size and prompt format, as `state_identity` writes them
    tokens: tuple[int, ...]
    data: bytes


def state_identity(model_fingerprint: str, n_ctx: int, template: str) -> str:
    """What a state depends on besides its tokens: a state for anything else is never restored."""
    return f"{model_fingerprint}|ctx={n_ctx}|template={template}"


def states_path(history_path: Path) -> Path:
    """Where the states of the history at `history_path` are kept."""
    return history_path.with_name(STATES_FILE)


def drop_all(path: Path) -> None:
    """Delete the states file and its companions (a new, restored or re-keyed history)."""
    for name in (path.name, *(path.name + s for s in SIDE_SUFFIXES)):
        with contextlib.suppress(FileNotFoundError):
            (path.with_name(name)).unlink()


class StateCache:
    """The states database, opened with the history's key; use from one thread at a time."""

    def __init__(self, path: Path, key: bytes, cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        self.path = path
        self.cap_bytes = cap_bytes
        try:
            self._conn = self._open(key)
        except sqlite.DatabaseError as exc:  # another key (a re-keyed history) or a damaged file: start afresh
            log.info("Starting the saved model states afresh: %s", exc)
            drop_all(path)
            self._conn = self._open(key)

    def _open(self, key: bytes) -> Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            apply_key(conn, key)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a new file: space is given back
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA secure_delete = ON")  # a dropped state is overwritten, not just unlinked
            conn.execute("PRAGMA busy_timeout = 3000")
            conn.execute(_SCHEMA)
        except sqlite.Error:
            conn.close()
            raise
        return conn

    def get(self, conversation_id: int, model: str) -> SavedState | None:
        """The conversation's state, if one was saved with `model`; marks it as just used."""
        row = self._conn.execute(
            "SELECT tokens, state FROM states WHERE conversation_id = ? AND model = ?", (conversation_id, model)
        ).fetchone()
        if row is None:
            return None
        self._conn.execute("UPDATE states SET used = ? WHERE conversation_id = ?", (time.time(), conversation_id))
        return SavedState(model, tuple(array("i", row[0])), bytes(row[1]))

    def tokens(self, conversation_id: int, model: str) -> tuple[int, ...] | None:
        """The tokens a saved state covers (without reading the state itself)."""
        row = self._conn.execute(
            "SELECT tokens FROM states WHERE conversation_id = ? AND model = ?", (conversation_id, model)
        ).fetchone()
        return tuple(array("i", row[0])) if row is not None else None

    def put(self, conversation_id: int, state: SavedState) -> None:
        """Keep `state` as the conversation's, then drop the least recently used beyond the cap."""
        if len(state.data) > self.cap_bytes:
            return
        with transaction(self._conn):
            self._conn.execute(
                "INSERT OR REPLACE INTO states VALUES (?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    state.model,
                    array("i", state.tokens).tobytes(),
                    state.data,
                    len(state.data),
                    time.time(),
                ),
            )
            total = 0
            for cid, size in self._conn.execute("SELECT conversation_id, size FROM states ORDER BY used DESC"):
                total += size
                if total > self.cap_bytes:
                    self._conn.execute("DELETE FROM states WHERE conversation_id = ?", (cid,))
        self._reclaim()

    def drop(self, conversation_ids: Iterable[int]) -> None:
        """Delete these conversations' states."""
        ids = list(conversation_ids)
        if ids:
            self._conn.executemany("DELETE FROM states WHERE conversation_id = ?", [(i,) for i in ids])
            self._reclaim()

    def keep_only(self, conversation_ids: Sequence[int]) -> None:
        """Delete the states of conversations not in `conversation_ids` (those deleted meanwhile)."""
        held = [row[0] for row in self._conn.execute("SELECT conversation_id FROM states")]
        self.drop(set(held) - set(conversation_ids))

    def size(self) -> int:
        """Bytes of state held."""
        row = self._conn.execute("SELECT coalesce(sum(size), 0) FROM states").fetchone()
        return int(row[0])

    def _reclaim(self) -> None:
        self._conn.execute("PRAGMA incremental_vacuum")

    def close(self) -> None:
        self._conn.close()


def use_states(history_path: Path, key: bytes, use: Callable[[StateCache], T]) -> T | None:
    """Run `use` on the saved model states of the history at `history_path`; None when they cannot be used."""
    try:
        cache = StateCache(states_path(history_path), key)
    except (sqlite.Error, OSError) as exc:
        log.warning("The saved model states cannot be used: %s", exc)
        return None
    try:
        return use(cache)
    except (sqlite.Error, OSError) as exc:  # a full disk, say: the state is only a cache
        log.warning("The saved model states cannot be used: %s", exc)
        return None
    finally:
        cache.close()
