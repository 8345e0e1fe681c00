"""Which secret opens the history, and changing it without ever locking the user out.

The history is opened by a random key in the system keychain, or by a key
derived from a passphrase and the salt kept beside the file (`history.db.salt`).
Setting, changing or removing the passphrase re-encrypts everything, which
takes seconds on a large history, and the process may die at any moment of it.
So a change never rewrites the file in place:

1. the new secret is made durable first, beside the old one (a new salt as
   `history.db.salt.new`, or a new key in the keychain);
2. the history is exported, under the new key, into `history.db.rekey` and synced;
3. the old connection is closed and `history.db.rekey` replaces `history.db` in
   one atomic rename: the moment the change takes effect;
4. the old secret is retired (`.salt.new` becomes `.salt`, or the salt or the
   keychain entry is removed).

At every instant the file opens with the old secret or the new one, and both
are on disk. `resolve_key` tries them in turn, and finishes a change that a
crash interrupted. Keys are tried on a read-only view of the file
(`immutable=1`), so a wrong one leaves every file, the WAL included, as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from sqlcipher3 import dbapi2 as sqlite

from app.core.store import backup, database, keys
from app.core.store.database import Connection, apply_key, connect, open_database
from app.core.store.errors import KeyringUnavailableError, StoreError, WrongKeyError

log = logging.getLogger("tern.store")


class PassphraseNeededError(StoreError):
    """The history needs the user's passphrase (the window asks for it)."""


def pending_salt_path(db_path: Path) -> Path:
    """Where a new passphrase's salt waits while a change is in progress."""
    return keys.salt_path(db_path).with_name(keys.salt_path(db_path).name + ".new")


def _rekey_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".rekey")


def needs_passphrase(db_path: Path) -> bool:
    """True when a passphrase salt is on disk (the history may still turn out to open from the keychain)."""
    return keys.salt_path(db_path).exists() or pending_salt_path(db_path).exists()


def key_opens(db_path: Path, key: bytes) -> bool:
    """Whether `key` decrypts the history, checked without changing any file."""
    if db_path.stat().st_size == 0:  # nothing written yet (the first transaction is still in the WAL)
        return True
    conn = connect(db_path.resolve().as_uri() + "?immutable=1", uri=True, isolation_level=None)
    try:
        apply_key(conn, key)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return True
    except sqlite.DatabaseError:
        return False
    finally:
        conn.close()


def resolve_key(db_path: Path, passphrase: str | None = None) -> bytes:
    """The key that opens the history at `db_path`; finishes an interrupted key change.

    Raises PassphraseNeededError (ask the user), WrongKeyError, MissingKeyError or
    KeyringUnavailableError, each with a message for the user.
    """
    exists = db_path.exists() and db_path.stat().st_size > 0
    if not db_path.exists() and not _wal_path(db_path).exists():
        _forget_stale_salts(db_path, keep_for=passphrase)
    salts = [p for p in (keys.salt_path(db_path), pending_salt_path(db_path)) if p.exists()]
    stored = keys.stored_key(db_path) if keys.keyring_usable() else None
    if stored is not None and (not exists or key_opens(db_path, stored)):
        for stale in salts:  # a passphrase that was being set, or removed, when Tern stopped
            stale.unlink(missing_ok=True)
        backup.remove_files(_rekey_path(db_path))
        return stored
    if salts or passphrase is not None:
        if passphrase is None:
            raise PassphraseNeededError("Your history is protected by a passphrase.")
        if not salts:  # a new history, protected from the start
            return keys.key_from_passphrase(db_path, passphrase)
        for salt_file in salts:
            key = keys.with_file_salt(keys.derive_key(passphrase, salt_file.read_bytes()), db_path)
            if not exists or key_opens(db_path, key):
                if salt_file != keys.salt_path(db_path):  # the new passphrase had taken effect: finish the change
                    os.replace(salt_file, keys.salt_path(db_path))
                pending_salt_path(db_path).unlink(missing_ok=True)
                backup.remove_files(_rekey_path(db_path))
                if stored is not None:
                    keys.forget_key(db_path)  # a keychain key from before the passphrase
                return key
        hint = " If you were changing it when Tern closed, try the other one." if len(salts) > 1 else ""
        raise WrongKeyError(f"That passphrase does not open your history. Nothing was changed.{hint}")
    if stored is not None:
        raise WrongKeyError("Your history file cannot be decrypted with its key from the system keychain.")
    if not keys.keyring_usable():
        raise KeyringUnavailableError("No system keychain is available, so the history needs a passphrase.")
    return keys.load_or_create_key(db_path)  # a new history, or MissingKeyError for a file whose key is gone


def _wal_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + "-wal")


def _forget_stale_salts(db_path: Path, keep_for: str | None) -> None:
    """With no history file at all, a salt beside it protects nothing: a reset, or a first start, was cut short.

    The salt is kept only when a passphrase comes with this open and no keychain can hold a
    key (the user is creating a passphrase history); otherwise the new history starts clean.
    """
    if keep_for is not None and not keys.keyring_usable():
        pending_salt_path(db_path).unlink(missing_ok=True)
        return
    keys.salt_path(db_path).unlink(missing_ok=True)
    pending_salt_path(db_path).unlink(missing_ok=True)
    backup.remove_files(_rekey_path(db_path))


def change_secret(conn: Connection, db_path: Path, passphrase: str | None) -> tuple[Connection, bytes]:
    """Re-encrypt the open history under a new passphrase, or (None) under a new keychain key.

    `conn` is closed on success; the returned connection is open under the returned key. A
    failure before the swap leaves `conn` open and the history as it was.
    """
    rekey = _rekey_path(db_path)
    old_salt = keys.file_salt(db_path)
    new_key = keys.new_key()  # a new file salt (and, for the keychain, a new key)
    if passphrase:
        salt = keys.new_salt()
        new_key = keys.derive_key(passphrase, salt) + new_key[keys.KEY_BYTES :]
        keys.save_salt(db_path, salt, suffix=".new")  # synced; a full disk fails here, before anything changed
    else:
        keys.store_key(new_key)  # named by the new file's salt: it opens nothing until the swap
    try:
        _export(conn, rekey, new_key)
    except (sqlite.Error, OSError) as exc:
        backup.remove_files(rekey)
        pending_salt_path(db_path).unlink(missing_ok=True)
        raise StoreError(f"Your history's key could not be changed ({exc}); nothing was changed.") from exc
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    os.replace(rekey, db_path)  # the change takes effect here, in one step
    _sync_folder(db_path.parent)
    if passphrase:
        os.replace(pending_salt_path(db_path), keys.salt_path(db_path))
    else:
        keys.salt_path(db_path).unlink(missing_ok=True)
    if old_salt is not None:
        keys.forget_salt(old_salt)  # the old file's keychain entry, if it had one
    _sync_folder(db_path.parent)
    return open_database(db_path, new_key), new_key


def _export(conn: Connection, target: Path, key: bytes) -> None:
    """Copy the whole database into a new file at `target`, encrypted under `key`, and sync it."""
    backup.remove_files(target)  # with any journal a crash left, which SQLite would replay into it
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute(f"ATTACH DATABASE ? AS rekeyed KEY \"x'{key.hex()}'\"", (str(target),))
    try:
        conn.execute("SELECT sqlcipher_export('rekeyed')")
        conn.execute(f"PRAGMA rekeyed.user_version = {int(version)}")
    finally:
        conn.execute("DETACH DATABASE rekeyed")
    with target.open("rb+") as f:
        os.fsync(f.fileno())


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can sync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def delete_history_and_keys(db_path: Path) -> None:
    """Delete the (closed) history and its copies, then their keys.

    Its companion files go first (a clean close leaves none, and a stale WAL must never meet a
    new file), then the file itself in one unlink: until then the old history opens as it was;
    after it, whatever is left (salts, copies, keychain entries) protects nothing and a new
    history starts.
    """
    salts = {salt for path in backup.history_files(db_path) if (salt := keys.file_salt(path)) is not None}
    for side in database.SIDE_SUFFIXES:  # empty after a clean close; never left to outlive the file
        db_path.with_name(db_path.name + side).unlink(missing_ok=True)
    db_path.unlink(missing_ok=True)
    _sync_folder(db_path.parent)
    backup.delete_history(db_path)
    keys.salt_path(db_path).unlink(missing_ok=True)
    pending_salt_path(db_path).unlink(missing_ok=True)
    backup.remove_files(_rekey_path(db_path))
    keys.forget_key(db_path)  # the entry of an earlier version, named by the path
    for salt in salts:
        keys.forget_salt(salt)
