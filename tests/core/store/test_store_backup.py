"""Backups, restore, re-keying and deleting the history, on real SQLCipher."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from sqlcipher3 import dbapi2 as sqlcipher

from app.core.store.backup import BackupInfo, delete_history, read_backup, restore_backup, write_backup
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import connect, open_database
from app.core.store.errors import CorruptStoreError, StoreError, WrongKeyError
from app.core.store.key_change import change_secret, resolve_key
from app.core.store.keys import _SCRYPT, file_salt
from app.core.store.schema import SCHEMA_VERSION, migrate

SECRET_SENTENCES = [
    "The quarterly merger with Halvorsen Shipping closes on the ninth of March.",
    "My allergy medication is cetirizine, ten milligrams each morning.",
]
SECRET_WORDS = ["Halvorsen", "cetirizine", *SECRET_SENTENCES, "Secret title about lighthouses"]
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


def fill(db: Path, key: bytes) -> ConversationStore:
    """A history with two live conversations (three messages) and one deleted one."""
    store = ConversationStore(open_database(db, key))
    a = store.create_conversation("Secret title about lighthouses")
    parent = None
    for sentence in SECRET_SENTENCES:
        parent = store.add_message(a, parent, "user", sentence)
    b = store.create_conversation("Second")
    store.add_message(b, None, "user", "Hello there")
    gone = store.create_conversation("Deleted one")
    store.add_message(gone, None, "user", "Not counted")
    store.delete(gone)
    return store


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_no_plaintext(*paths: Path) -> None:
    raw = b"".join(p.read_bytes() for p in paths if p.exists())
    assert raw
    for word in SECRET_WORDS:
        assert word.encode() not in raw


def test_backup_is_encrypted_and_describes_its_contents(tmp_path: Path, key: bytes) -> None:
    store = fill(tmp_path / "history.db", key)
    dest = tmp_path / "out" / "tern.backup"
    dest.parent.mkdir()
    before = time.time()
    write_backup(store._db, dest, PASSPHRASE)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["tern.backup"]  # no temp or side files left
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert_no_plaintext(dest)
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(dest).execute("SELECT * FROM sqlite_master").fetchall()
    info = read_backup(dest, PASSPHRASE)
    assert info == BackupInfo(dest, 2, 3, SCHEMA_VERSION, info.created_at)
    assert info.created_at is not None and before <= info.created_at <= time.time()


def test_backup_salt_is_the_file_header(tmp_path: Path, key: bytes) -> None:
    """The backup opens with the scrypt key alone: SQLCipher keeps the salt in the first 16 bytes."""
    store = fill(tmp_path / "history.db", key)
    dest = tmp_path / "tern.backup"
    write_backup(store._db, dest, PASSPHRASE)
    salt = dest.read_bytes()[:16]
    derived = hashlib.scrypt(PASSPHRASE.encode(), salt=salt, **_SCRYPT)
    for raw_key in (derived.hex(), derived.hex() + salt.hex()):
        conn = sqlcipher.connect(str(dest))
        conn.execute(f"PRAGMA key = \"x'{raw_key}'\"")
        assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 3
        conn.close()


def test_wrong_passphrase_leaves_the_backup_byte_identical(tmp_path: Path, key: bytes) -> None:
    store = fill(tmp_path / "history.db", key)
    dest = tmp_path / "tern.backup"
    write_backup(store._db, dest, PASSPHRASE)
    before = digest(dest)
    with pytest.raises(WrongKeyError, match="This passphrase does not open the backup"):
        read_backup(dest, "wrong horse")
    with pytest.raises(WrongKeyError):
        restore_backup(dest, "wrong horse", tmp_path / "other.db", key)
    assert digest(dest) == before
    assert not list(tmp_path.glob("other.db*"))  # nothing restored, nothing left half-done


def test_damaged_files_are_refused(tmp_path: Path, key: bytes) -> None:
    store = fill(tmp_path / "history.db", key)
    dest = tmp_path / "tern.backup"
    write_backup(store._db, dest, PASSPHRASE)
    whole = dest.read_bytes()
    assert len(whole) >= 3 * 4096

    cases = {
        "empty": b"",
        "odd-sized garbage": secrets.token_bytes(5000),
        "cut mid-page": whole[: len(whole) - 100],
        "cut at a page boundary": whole[: len(whole) - 4096],
        "a damaged page": whole[:8192] + bytes(4096) + whole[12288:],
    }
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    cases["unencrypted SQLite"] = plain.read_bytes()
    for name, data in cases.items():
        bad = tmp_path / f"{name}.backup"
        bad.write_bytes(data)
        with pytest.raises(CorruptStoreError, match="damaged"):
            read_backup(bad, PASSPHRASE)
        assert bad.read_bytes() == data, name

    # Page-sized random bytes look exactly like a backup under another passphrase.
    bad = tmp_path / "garbage.backup"
    bad.write_bytes(secrets.token_bytes(8192))
    with pytest.raises(WrongKeyError, match="or the file is not a Tern backup"):
        read_backup(bad, PASSPHRASE)


def test_a_newer_backup_is_refused(tmp_path: Path, key: bytes) -> None:
    store = fill(tmp_path / "history.db", key)
    store._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    dest = tmp_path / "tern.backup"
    write_backup(store._db, dest, PASSPHRASE)
    with pytest.raises(StoreError, match="newer version"):
        read_backup(dest, PASSPHRASE)


def test_a_failed_backup_leaves_nothing_behind(tmp_path: Path, key: bytes) -> None:
    store = fill(tmp_path / "history.db", key)
    with pytest.raises(StoreError, match="Writing the backup failed"):
        write_backup(store._db, tmp_path / "missing" / "tern.backup", PASSPHRASE)
    dest = tmp_path / "tern.backup"
    dest.write_bytes(b"previous backup")
    store._db.execute("ATTACH DATABASE ':memory:' AS backup")  # the export cannot attach
    with pytest.raises(StoreError):
        write_backup(store._db, dest, PASSPHRASE)
    assert sorted(p.name for p in tmp_path.glob("*backup*")) == ["tern.backup"]
    assert dest.read_bytes() == b"previous backup"


def test_restore_round_trip_keeps_the_old_history(tmp_path: Path, key: bytes) -> None:
    a_store = fill(tmp_path / "a.db", key)
    backup = tmp_path / "tern.backup"
    write_backup(a_store._db, backup, PASSPHRASE)
    expected = [(c.title, [m.content for m in a_store.current_path(c.id)]) for c in a_store.conversations()]
    a_store._db.close()

    b_path, b_key = tmp_path / "b.db", secrets.token_bytes(32)
    b_conn = open_database(b_path, b_key)
    ConversationStore(b_conn).create_conversation("Only in B")
    b_conn.close()
    kept = restore_backup(backup, PASSPHRASE, b_path, b_key)

    assert kept == tmp_path / "b.db.before-restore"
    assert sorted(p.name for p in tmp_path.glob("b.db*")) == ["b.db", "b.db.before-restore"]
    assert stat.S_IMODE(b_path.stat().st_mode) == 0o600
    restored = ConversationStore(open_database(b_path, b_key))
    assert [(c.title, [m.content for m in restored.current_path(c.id)]) for c in restored.conversations()] == expected
    assert restored.search("Halvorsen")  # the full-text index came along
    assert not restored._db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'tern_backup'").fetchone()[0]
    restored._db.close()
    assert_no_plaintext(b_path)
    old = open_database(kept, b_key)
    assert [c.title for c in ConversationStore(old).conversations()] == ["Only in B"]
    old.close()


def test_restore_folds_an_unclosed_wal_into_the_old_history_it_keeps(tmp_path: Path, key: bytes) -> None:
    a_store = fill(tmp_path / "a.db", key)
    backup = tmp_path / "tern.backup"
    write_backup(a_store._db, backup, PASSPHRASE)
    b_path = tmp_path / "b.db"
    b_store = ConversationStore(open_database(b_path, key))
    b_store.create_conversation("Written to the WAL")
    # Simulate a crash: copy the files while the connection still has its WAL.
    crashed = tmp_path / "crashed.db"
    for suffix in ("", "-wal", "-shm"):
        crashed.with_name(crashed.name + suffix).write_bytes(b_path.with_name(b_path.name + suffix).read_bytes())
    kept = restore_backup(backup, PASSPHRASE, crashed, key)
    assert kept is not None and not crashed.with_name("crashed.db-wal").exists()  # no stale WAL beside the new file
    old = open_database(kept, key)
    assert [c.title for c in ConversationStore(old).conversations()] == ["Written to the WAL"]
    old.close()


def test_restore_into_a_new_place_and_from_older_schemas(tmp_path: Path, key: bytes) -> None:
    for version in range(SCHEMA_VERSION):
        old = tmp_path / f"v{version}.db"
        conn = connect(str(old), isolation_level=None)  # with the SQL functions the triggers call
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
        migrate(conn, target=version)
        backup = tmp_path / f"v{version}.backup"
        write_backup(conn, backup, PASSPHRASE)
        conn.close()
        assert read_backup(backup, PASSPHRASE).schema_version == version
        target = tmp_path / "fresh" / f"restored-v{version}.db"
        target.parent.mkdir(exist_ok=True)
        assert restore_backup(backup, PASSPHRASE, target, key) is None
        latest = open_database(target, key)
        assert latest.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        ConversationStore(latest).create_conversation("after migration")
        latest.close()


def test_a_key_change_re_encrypts_into_a_new_file_and_swaps_it_in(tmp_path: Path, key: bytes) -> None:
    db = tmp_path / "history.db"
    store = fill(db, key)
    assert (tmp_path / "history.db-wal").stat().st_size > 0  # a live WAL goes into the new file too
    old_salt = file_salt(db)
    connection, new_key = change_secret(store.connection, db, "a long new passphrase")
    store.use(connection)
    store.add_message(store.conversations()[0].id, None, "user", "Written after the change")
    assert file_salt(db) != old_salt and new_key[32:] == file_salt(db)  # a new file, with its own salt
    assert not (tmp_path / "history.db.rekey").exists() and not (tmp_path / "history.db.salt.new").exists()
    assert (tmp_path / "history.db.salt").exists()
    assert_no_plaintext(*tmp_path.glob("history.db*"))
    store.connection.close()
    before = digest(db)
    with pytest.raises(WrongKeyError):
        open_database(db, key)
    assert digest(db) == before
    assert resolve_key(db, "a long new passphrase") == new_key
    reopened = ConversationStore(open_database(db, new_key))
    assert reopened.connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(reopened.conversations()) == 2
    assert reopened.search("cetirizine")
    reopened.connection.close()


def test_delete_history_removes_every_file(tmp_path: Path, key: bytes) -> None:
    tmp_path = tmp_path / "profile"
    tmp_path.mkdir()
    db = tmp_path / "history.db"
    store = fill(db, key)
    (tmp_path / "history.db.salt").write_bytes(secrets.token_bytes(16))
    (tmp_path / "unrelated.txt").write_text("kept")
    assert (tmp_path / "history.db-wal").exists()
    store._db.close()
    for suffix in ("-wal", "-shm"):  # closed cleanly these are gone; recreate them to check they are removed
        (tmp_path / f"history.db{suffix}").write_bytes(b"x")
    delete_history(db)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unrelated.txt"]
    delete_history(db)  # nothing left to remove is fine
