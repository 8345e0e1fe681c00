"""The history's encryption key: a random 256-bit key in the OS keychain, or one derived from a passphrase.

The key never touches the settings or the disk in the clear. Without a usable
keychain the caller must ask for a passphrase (scrypt, memory-hard); there is
no silent fallback to a weaker scheme or an unencrypted database.

A key here is SQLCipher's raw key followed by the file's own 16-byte salt
(the first bytes of an encrypted database, in the clear), 48 bytes in all.
The salt names the file's keychain entry, so the entry follows the file when
its folder moves; a new file is created with a salt chosen here, so its entry
can be written before the file exists. A 32-byte key (without a salt) still
opens a file; it just cannot name a keychain entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path

import keyring
import keyring.errors
from keyring.backends import fail

from app import APP_NAME
from app.core.store.errors import KeyringUnavailableError, MissingKeyError

KEY_BYTES = 32
FILE_SALT_BYTES = 16  # SQLCipher's per-file salt, the first bytes of the file
# scrypt at n=2**15, r=8: 32 MiB and ~0.1 s per derivation (OWASP's baseline).
_SCRYPT = {"n": 2**15, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": KEY_BYTES}


def file_salt(db_path: Path) -> bytes | None:
    """The salt SQLCipher keeps at the start of an encrypted file (None before the file is written)."""
    try:
        with db_path.open("rb") as f:
            head = f.read(FILE_SALT_BYTES)
    except OSError:
        return None
    return head if len(head) == FILE_SALT_BYTES else None


def _account(salt: bytes) -> str:
    """The keychain entry of the history file with this salt."""
    return f"history:{salt.hex()}"


def _legacy_account(db_path: Path) -> str:
    """Where earlier versions kept the key: named by the file's path, lost when the folder moved."""
    return f"history:{db_path.resolve()}"


def keyring_usable() -> bool:
    """True when keyring has a real backend (e.g. Secret Service, macOS Keychain, Windows Credential Locker)."""
    backend = keyring.get_keyring()
    return not isinstance(backend, fail.Keyring) and getattr(backend, "priority", 0) > 0


def stored_key(db_path: Path) -> bytes | None:
    """The key of the history file at `db_path` from the keychain, or None when the keychain has none."""
    salt = file_salt(db_path)
    if salt is None:
        return None
    try:
        found = keyring.get_password(APP_NAME, _account(salt))
        if found:
            return bytes.fromhex(found) + salt
        legacy = keyring.get_password(APP_NAME, _legacy_account(db_path))
    except keyring.errors.KeyringError as exc:
        raise KeyringUnavailableError(f"The system keychain did not answer: {exc}") from exc
    if not legacy:
        return None
    key = bytes.fromhex(legacy)[:KEY_BYTES] + salt
    store_key(key)  # under the file's own name from now on
    with contextlib.suppress(keyring.errors.KeyringError):
        keyring.delete_password(APP_NAME, _legacy_account(db_path))
    return key


def load_or_create_key(db_path: Path) -> bytes:
    """The key for `db_path` from the keychain; for a history not yet written, a new one, stored first."""
    if not keyring_usable():
        raise KeyringUnavailableError("No system keychain is available, so the history needs a passphrase.")
    stored = stored_key(db_path)
    if stored is not None:
        return stored
    if db_path.exists() and db_path.stat().st_size > 0:
        raise MissingKeyError(
            "Your conversation history is encrypted, and the system keychain has no key for this file: "
            "the key was removed, or the file is damaged or was replaced, so it cannot be opened."
        )
    key = new_key()
    store_key(key)
    return key


def new_key() -> bytes:
    """A random 256-bit key with a random salt for a new file."""
    return secrets.token_bytes(KEY_BYTES + FILE_SALT_BYTES)


def with_file_salt(key: bytes, db_path: Path) -> bytes:
    """`key` (32 bytes) with the salt of the file at `db_path`, or a new salt for a file not yet written."""
    return key[:KEY_BYTES] + (file_salt(db_path) or secrets.token_bytes(FILE_SALT_BYTES))


def forget_key(db_path: Path) -> None:
    """Remove the keychain entry of the history at `db_path` (when it is deleted or replaced)."""
    salt = file_salt(db_path)
    if salt is not None:
        forget_salt(salt)
    with contextlib.suppress(keyring.errors.KeyringError):  # not there, or no keychain at all
        keyring.delete_password(APP_NAME, _legacy_account(db_path))


def forget_salt(salt: bytes) -> None:
    """Remove the keychain entry of the history file that had this salt."""
    with contextlib.suppress(keyring.errors.KeyringError):
        keyring.delete_password(APP_NAME, _account(salt))


def store_key(key: bytes) -> None:
    """Put `key` (48 bytes: key and file salt) in the keychain, under its file's salt."""
    if len(key) != KEY_BYTES + FILE_SALT_BYTES:
        raise ValueError("a stored key carries its file's salt")
    try:
        keyring.set_password(APP_NAME, _account(key[KEY_BYTES:]), key[:KEY_BYTES].hex())
    except keyring.errors.KeyringError as exc:
        raise KeyringUnavailableError(f"The system keychain refused to store the key: {exc}") from exc


def salt_path(db_path: Path) -> Path:
    """Where the passphrase salt of `db_path` lives (it is not secret)."""
    return db_path.with_name(db_path.name + ".salt")


def derive_key(passphrase: str, salt: bytes) -> bytes:
    """scrypt(passphrase, salt): memory-hard, so guessing costs 32 MiB and ~0.1 s a try."""
    return hashlib.scrypt(passphrase.encode("utf-8"), salt=salt, **_SCRYPT)


def new_salt() -> bytes:
    """A fresh random salt."""
    return secrets.token_bytes(16)


def save_salt(db_path: Path, salt: bytes, suffix: str = "") -> Path:
    """Write the salt beside the database atomically (mode 0600); `suffix` names a pending one."""
    target = salt_path(db_path).with_name(salt_path(db_path).name + suffix)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(salt)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target


def key_from_passphrase(db_path: Path, passphrase: str) -> bytes:
    """The key for `db_path` from a passphrase; the salt file is created with a new history."""
    salt_file = salt_path(db_path)
    if salt_file.exists():
        salt = salt_file.read_bytes()
    else:
        salt = new_salt()
        save_salt(db_path, salt)
    return with_file_salt(derive_key(passphrase, salt), db_path)
