"""The store's one write transaction: committed whole, or rolled back whole and the error passed on."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.store.transaction import transaction


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)  # autocommit, as the store opens it
    db.execute("CREATE TABLE t (x INTEGER)")
    yield db
    db.close()


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


def test_commits_when_the_block_ends(conn: sqlite3.Connection) -> None:
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("INSERT INTO t VALUES (2)")
    assert count(conn) == 2 and not conn.in_transaction


@pytest.mark.parametrize("error", [ValueError("bad row"), KeyboardInterrupt()])
def test_rolls_back_and_re_raises(conn: sqlite3.Connection, error: BaseException) -> None:
    with pytest.raises(type(error)), transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        raise error
    assert count(conn) == 0 and not conn.in_transaction


def test_takes_the_write_lock_at_the_start(conn: sqlite3.Connection, tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "t.db", isolation_level=None, timeout=0)
    with transaction(conn), pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")  # before `conn` has written anything
    other.close()
