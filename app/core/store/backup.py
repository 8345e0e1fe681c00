"""Encrypted backups of the history, restoring them, re-keying and deleting the history.

A backup is one SQLCipher file that opens with the passphrase alone. Its key is
scrypt(passphrase, salt) with the same parameters as a passphrase-protected
history, and the random salt is handed to SQLCipher as part of a raw key
(`x'<64 hex key><32 hex salt>'`), so SQLCipher stores it as the file's first
16 bytes (its usual, non-secret salt slot). Reading a backup takes the salt
from there, derives the key and opens the file read-only. The backup also
holds a one-row table `tern_backup` with the time it was written; a restore
drops it.

Restoring never deletes the current history: it is renamed to
`<name>.before-restore`, together with any `-wal`/`-shm` files it still has
(renamed to `<name>.before-restore-wal`/`-shm`, so the kept copy stays whole).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlcipher3 import dbapi2 as sqlite

from app.core.store.database import SIDE_SUFFIXES, Connection, apply_key, connect, open_database, translate
from app.core.store.errors import CorruptStoreError, DiskFullError, StoreError, WrongKeyError
from app.core.store.keys import derive_key
from app.core.store.schema import SCHEMA_VERSION

_SALT_BYTES = 16
_PAGE_SIZE = 4096  # SQLCipher 4's default; every backup is written with it
_NOT_OPENED = "This passphrase does not open the backup, or the file is not a Tern backup. Nothing was changed."
_DAMAGED = "This file is not a Tern backup, or it is damaged and cannot be read."


@dataclass(frozen=True)
class BackupInfo:
    """What a backup holds: counts of live conversations and messages, schema version, when it was written."""

    path: Path
    conversations: int
    messages: int
    schema_version: int
    created_at: float | None


def _failure(exc: sqlite.Error | OSError, what: str) -> StoreError:
    """A user-facing error for a failed write."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return DiskFullError(f"The disk is full; {what} failed.")
        return StoreError(f"{what[0].upper()}{what[1:]} failed: {exc.strerror or exc}.")
    return translate(exc) or StoreError(f"{what[0].upper()}{what[1:]} failed: {exc}.")


def remove_files(path: Path) -> None:
    """Delete a database file and its companion files (WAL, shared memory, a journal left by a crash)."""
    for p in (path, *(path.with_name(path.name + s) for s in SIDE_SUFFIXES)):
        p.unlink(missing_ok=True)


def write_backup(conn: Connection, dest: Path, passphrase: str) -> None:
    """Write an encrypted copy of the whole history to `dest`, readable with `passphrase` alone.

    The copy is built in a temporary file beside `dest` and renamed onto it only once complete.
    """
    if not passphrase:
        raise ValueError("a backup needs a passphrase")
    salt = secrets.token_bytes(_SALT_BYTES)
    key = derive_key(passphrase, salt)
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)  # mode 0600
        os.close(fd)
        tmp = Path(name)
        conn.execute(f"ATTACH DATABASE ? AS backup KEY \"x'{key.hex()}{salt.hex()}'\"", (str(tmp),))
        try:
            conn.execute("SELECT sqlcipher_export('backup')")
            conn.execute(f"PRAGMA backup.user_version = {version}")
            conn.execute("CREATE TABLE backup.tern_backup (created_at REAL NOT NULL)")
            conn.execute("INSERT INTO backup.tern_backup VALUES (?)", (time.time(),))
        finally:
            conn.execute("DETACH DATABASE backup")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except (sqlite.Error, OSError) as exc:
        if tmp is not None:
            remove_files(tmp)
        raise _failure(exc, "writing the backup") from exc


def _backup_key(src: Path, passphrase: str) -> bytes:
    """The backup's key, from its salt; CorruptStoreError for a file that cannot be a backup."""
    try:
        with src.open("rb") as f:
            salt = f.read(_SALT_BYTES)
        size = src.stat().st_size
    except OSError as exc:
        raise StoreError(f"The backup could not be read: {exc.strerror or exc}.") from exc
    if size == 0 or size % _PAGE_SIZE or salt == b"SQLite format 3\x00":
        raise CorruptStoreError(_DAMAGED)
    return derive_key(passphrase, salt)


def _table_exists(conn: Connection, schema: str, table: str) -> bool:
    sql = f"SELECT count(*) FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?"
    return bool(conn.execute(sql, (table,)).fetchone()[0])


def read_backup(src: Path, passphrase: str) -> BackupInfo:
    """Check that `passphrase` opens the backup at `src` and that it is whole; describe its contents.

    The file is opened read-only and never changed.
    """
    key = _backup_key(src, passphrase)
    conn = connect(src.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
    try:
        apply_key(conn, key)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite.DatabaseError as exc:
            # A wrong key reads as "file is not a database"; a cut-short file with the right key as "malformed".
            if "malformed" in str(exc):
                raise CorruptStoreError(_DAMAGED) from exc
            raise WrongKeyError(_NOT_OPENED) from exc
        try:
            if conn.execute("PRAGMA cipher_integrity_check").fetchall():  # a page whose HMAC fails
                raise CorruptStoreError(_DAMAGED)
            if [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()] != ["ok"]:
                raise CorruptStoreError(_DAMAGED)
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError("This backup was written by a newer version of Tern; update Tern to restore it.")
            conversations = messages = 0
            if _table_exists(conn, "main", "conversations"):
                live = "SELECT id FROM conversations WHERE deleted_at IS NULL"
                conversations = int(conn.execute(f"SELECT count(*) FROM ({live})").fetchone()[0])
                sql = f"SELECT count(*) FROM messages WHERE conversation_id IN ({live})"
                messages = int(conn.execute(sql).fetchone()[0])
            created_at = None
            if _table_exists(conn, "main", "tern_backup"):
                row = conn.execute("SELECT max(created_at) FROM tern_backup").fetchone()
                created_at = None if row[0] is None else float(row[0])
        except sqlite.DatabaseError as exc:
            raise CorruptStoreError(_DAMAGED) from exc
        return BackupInfo(src, conversations, messages, version, created_at)
    finally:
        conn.close()


def restore_backup(src: Path, passphrase: str, db_path: Path, key: bytes) -> Path | None:
    """Replace the (closed) history at `db_path` with the backup, re-encrypted under `key`.

    Older backups are migrated to the current schema. The previous history is kept, never deleted:
    returns where it now is (`<name>.before-restore`), or None if there was none.
    """
    info = read_backup(src, passphrase)
    backup_key = _backup_key(src, passphrase)
    tmp = db_path.with_name(db_path.name + ".restoring")
    kept = db_path.with_name(db_path.name + ".before-restore")
    try:
        remove_files(tmp)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = connect(str(tmp), uri=True, check_same_thread=False, isolation_level=None)
        try:
            apply_key(conn, key)
            ro = src.resolve().as_uri() + "?mode=ro"
            conn.execute(f"ATTACH DATABASE ? AS backup KEY \"x'{backup_key.hex()}'\"", (ro,))
            try:
                conn.execute("SELECT sqlcipher_export('main', 'backup')")
            finally:
                conn.execute("DETACH DATABASE backup")
            conn.execute(f"PRAGMA main.user_version = {info.schema_version}")
            conn.execute("DROP TABLE IF EXISTS main.tern_backup")
        finally:
            conn.close()
        open_database(tmp, key).close()  # migrates an older schema
        old: Path | None = None
        if db_path.exists():
            # Fold the current history's WAL into it, so the swap below leaves no stale side file.
            current = open_database(db_path, key)
            current.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            current.close()
            if db_path.with_name(db_path.name + "-wal").exists():
                raise StoreError("Your history is still in use; close other Tern windows and try again.")
            old = kept
            remove_files(kept)
            try:
                os.link(db_path, kept)  # the previous history stays reachable at every instant
            except OSError:
                shutil.copy2(db_path, kept)
        os.replace(tmp, db_path)  # the restore takes effect here, in one step
    except (sqlite.Error, OSError, StoreError) as exc:
        remove_files(tmp)
        if isinstance(exc, StoreError):
            raise
        raise _failure(exc, "restoring the backup") from exc
    return old


def history_files(db_path: Path) -> list[Path]:
    """The history and the copies kept by restores and set-asides."""
    copies = [db_path.with_name(db_path.name + ".before-restore")]
    copies += db_path.parent.glob(f"{db_path.stem}-unopened-*{db_path.suffix}")
    return [db_path, *copies]


def delete_history(db_path: Path) -> None:
    """Remove the (closed) history with its side files, and the copies kept by restores and set-asides."""
    try:
        for path in history_files(db_path):
            remove_files(path)
            path.with_name(path.name + ".salt").unlink(missing_ok=True)
    except OSError as exc:
        raise StoreError(f"The history could not be deleted: {exc.strerror or exc}.") from exc
