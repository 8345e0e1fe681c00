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
from app.core.store.keys import forget_key, key_from_passphrase, keyring_usable, load_or_create_key

secret_service = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


@secret_service
def test_key_lives_in_the_secret_service(tmp_path: Path) -> None:
    assert type(keyring.get_keyring()).__module__ == "keyring.backends.SecretService"
    db = tmp_path / "history.db"
    key = load_or_create_key(db)
    assert len(key) == 32
    assert load_or_create_key(db) == key  # read back from the daemon, not regenerated
    conn = open_database(db, key)
    ConversationStore(conn).create_conversation("hello")
    conn.close()
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
