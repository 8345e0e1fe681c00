"""Keys in the real Secret Service (started by ./test.sh), and the passphrase fallback."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import keyring
import pytest

from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from app.core.store.errors import KeyringUnavailableError, MissingKeyError, WrongKeyError
from app.core.store.key_change import resolve_key
from app.core.store.keys import (
    file_salt,
    forget_key,
    key_from_passphrase,
    keyring_usable,
    load_or_create_key,
    new_key,
    store_key,
)

secret_service = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


@secret_service
def test_key_lives_in_the_secret_service(tmp_path: Path) -> None:
    assert type(keyring.get_keyring()).__module__ == "keyring.backends.SecretService"
    db = tmp_path / "history.db"
    key = load_or_create_key(db)
    assert len(key) == 48  # the key, and the salt the new file is created with (which names its entry)
    conn = open_database(db, key)
    ConversationStore(conn).create_conversation("hello")
    conn.close()
    assert load_or_create_key(db) == key  # read back from the daemon, not regenerated
    assert key.hex() not in db.read_bytes().hex()
    forget_key(db)
    with pytest.raises(MissingKeyError, match="cannot be opened"):
        load_or_create_key(db)
    assert db.exists()  # the old file is kept


def test_without_a_keyring_a_passphrase_is_required(tmp_path: Path, no_keyring: None) -> None:
    db = tmp_path / "history.db"
    assert not keyring_usable()
    with pytest.raises(KeyringUnavailableError, match="passphrase"):
        load_or_create_key(db)
    assert not db.exists()  # never an unencrypted fallback
    conn = open_database(db, key_from_passphrase(db, "correct horse battery staple"))
    ConversationStore(conn).create_conversation("private")
    conn.close()
    salt = db.with_name("history.db.salt")
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(WrongKeyError):
        open_database(db, key_from_passphrase(db, "wrong passphrase"))
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    again = open_database(db, key_from_passphrase(db, "correct horse battery staple"))
    assert ConversationStore(again).conversations()[0].title == "private"
    again.close()


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def crashed_history(folder: Path, key: bytes) -> Path:
    """A history as a crash leaves it: the last writes still in its -wal (the file is copied while open)."""
    live = folder / "live"
    live.mkdir(parents=True)
    conn = open_database(live / "history.db", key)
    store = ConversationStore(conn)
    store.add_message(store.create_conversation("before the crash"), None, "user", "still in the WAL")
    copy = folder / "after-crash"
    copy.mkdir()
    for f in live.iterdir():
        copy.joinpath(f.name).write_bytes(f.read_bytes())
    conn.close()
    assert (copy / "history.db-wal").stat().st_size > 0
    return copy / "history.db"


def test_a_wrong_passphrase_leaves_every_file_byte_identical_wal_included(tmp_path: Path, no_keyring: None) -> None:
    salted = tmp_path / "make"
    salted.mkdir()
    key = key_from_passphrase(salted / "history.db", "the right one")
    db = crashed_history(tmp_path / "case", key)
    db.with_name("history.db.salt").write_bytes((salted / "history.db.salt").read_bytes())
    before = digests(db.parent)
    with pytest.raises(WrongKeyError, match="Nothing was changed"):
        resolve_key(db, "the wrong one")
    assert digests(db.parent) == before
    opened = open_database(db, resolve_key(db, "the right one"))
    assert [c.title for c in ConversationStore(opened).conversations()] == ["before the crash"]
    opened.close()


@secret_service
def test_a_wrong_keychain_key_leaves_every_file_byte_identical(tmp_path: Path) -> None:
    db = crashed_history(tmp_path, new_key())
    store_key(new_key()[:32] + file_salt(db))  # the keychain holds some other key under this file's name
    before = digests(db.parent)
    with pytest.raises(WrongKeyError):
        resolve_key(db)
    assert digests(db.parent) == before


@secret_service
def test_the_keychain_entry_follows_a_moved_data_folder(tmp_path: Path) -> None:
    db = tmp_path / "old-place" / "tern" / "history.db"
    db.parent.mkdir(parents=True)
    conn = open_database(db, resolve_key(db))
    ConversationStore(conn).create_conversation("moved with its folder")
    conn.close()
    moved = tmp_path / "new-place"
    (tmp_path / "old-place").rename(moved)
    conn = open_database(moved / "tern" / "history.db", resolve_key(moved / "tern" / "history.db"))
    assert [c.title for c in ConversationStore(conn).conversations()] == ["moved with its folder"]
    conn.close()


@secret_service
def test_an_entry_named_by_the_old_path_moves_to_the_files_own_name(tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    key = new_key()
    conn = open_database(db, key)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    conn.close()
    keyring.set_password("Tern", f"history:{db.resolve()}", key[:32].hex())  # as earlier versions stored it
    assert resolve_key(db) == key
    assert keyring.get_password("Tern", f"history:{db.resolve()}") is None
    assert keyring.get_password("Tern", f"history:{file_salt(db).hex()}") == key[:32].hex()
