"""Opening the SQLCipher database: key check, pragmas, schema migrations.

A wrong key is detected by the first read, before anything is written, so the
file stays byte-identical. The file is created with mode 0600.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from sqlcipher3 import dbapi2 as sqlite

from app.core.store import index_words
from app.core.store.errors import CorruptStoreError, DiskFullError, StoreBusyError, StoreError, WrongKeyError
from app.core.store.schema import migrate

Connection = sqlite.Connection


SIDE_SUFFIXES = ("-wal", "-shm", "-journal")  # SQLite's companion files: its WAL, and a journal a crash left


def connect(target: str, **kwargs: object) -> Connection:
    """`sqlcipher3.connect`, announced to audit hooks as the standard library's sqlite3 does (it does not),
    with the SQL functions the schema's triggers call."""
    sys.audit("sqlite3.connect", target)
    conn = sqlite.connect(target, **kwargs)  # type: ignore[arg-type]
    conn.create_function(index_words.SQL_NAME, 1, index_words.index_words, deterministic=True)
    return conn


def translate(exc: sqlite.Error) -> StoreError | None:
    """The user-facing error for a known SQLite failure, or None for a bug."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR")):
        return DiskFullError("The disk is full; the last change to your history was not saved.")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return StoreBusyError("Another program is using your history file; close other Tern windows and retry.")
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return CorruptStoreError("Your history file is damaged and cannot be read.")
    return None


def apply_key(conn: Connection, key: bytes) -> None:
    """Give SQLCipher the raw key (no KDF: it is random or already derived), quietly."""
    conn.execute("PRAGMA cipher_log_level = NONE")
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")


def cipher_version() -> str:
    """SQLCipher's version, e.g. "4.12.0 community" (for About)."""
    conn = connect(":memory:")
    try:
        row = conn.execute("PRAGMA cipher_version").fetchone()
        return str(row[0]) if row else "unknown"
    finally:
        conn.close()


def open_database(path: Path, key: bytes) -> Connection:
    """Open (or create) the encrypted database at `path` and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    new = not path.exists()
    if new:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    conn = connect(str(path), check_same_thread=False, isolation_level=None)
    try:
        apply_key(conn, key)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite.DatabaseError as exc:
            raise WrongKeyError(
                "This key or passphrase does not open your history. Nothing was changed; try again."
            ) from exc
        conn.execute("PRAGMA busy_timeout = 3000")  # another Tern writing: wait briefly before "busy"
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Decrypting a page costs far more than reading it, so keep more of them (64 MiB).
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("PRAGMA temp_store = MEMORY")
        migrate(conn)
    except sqlite.Error as exc:
        conn.close()
        known = translate(exc)
        if known is None:
            raise
        raise known from exc
    except StoreError:
        conn.close()
        raise
    for suffix in SIDE_SUFFIXES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.chmod(side, 0o600)
    return conn


def open_reader(path: Path, key: bytes) -> Connection:
    """A read-only connection to an existing history (no migrations), for searches beside the writer."""
    conn = connect(str(path), check_same_thread=False, isolation_level=None)
    try:
        apply_key(conn, key)
        conn.execute("PRAGMA busy_timeout = 3000")
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA cache_size = -16384")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite.Error as exc:
        conn.close()
        raise translate(exc) or StoreError("Your history could not be read.") from exc
    return conn


def set_aside(path: Path) -> Path:
    """Rename a history that cannot be opened (and its side files) out of the way; returns its new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.stem}-unopened-{stamp}{path.suffix}")
    for suffix in ("", *SIDE_SUFFIXES, ".salt"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    return target
