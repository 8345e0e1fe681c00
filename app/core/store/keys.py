"""The history's encryption key: a random 256-bit key in the OS keychain, or one derived from a passphrase.

The key never touches the settings or the disk in the clear. Without a usable
keychain the caller must ask for a passphrase (scrypt, memory-hard); there is
no silent fallback to a weaker scheme or an unencrypted database.
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
# scrypt at n=2**15, r=8: 32 MiB and ~0.1 s per derivation (OWASP's baseline).
_SCRYPT = {"n": 2**15, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": KEY_BYTES}


def _account(db_path: Path) -> str:
    """One keychain entry per history file, so profiles (and tests) never share a key."""
    return f"history:{db_path.resolve()}"


def keyring_usable() -> bool:
    """True when keyring has a real backend (e.g. Secret Service, macOS Keychain, Windows Credential Locker)."""
    backend = keyring.get_keyring()
    return not isinstance(backend, fail.Keyring) and getattr(backend, "priority", 0) > 0


def load_or_create_key(db_path: Path) -> bytes:
    """The key for `db_path` from the keychain, creating it for a new history."""
    if not keyring_usable():
        raise KeyringUnavailableError("No system keychain is available, so the history needs a passphrase.")
    try:
        stored = keyring.get_password(APP_NAME, _account(db_path))
    except keyring.errors.KeyringError as exc:
        raise KeyringUnavailableError(f"The system keychain did not answer: {exc}") from exc
    if stored:
        return bytes.fromhex(stored)
    if db_path.exists() and db_path.stat().st_size > 0:
        raise MissingKeyError(
            "Your conversation history is encrypted, and its key is no longer in the system keychain, "
            "so it cannot be opened. You can start a new history; the old file is kept."
        )
    key = new_key()
    store_key(db_path, key)
    return key


def new_key() -> bytes:
    """A random 256-bit key."""
    return secrets.token_bytes(KEY_BYTES)


def forget_key(db_path: Path) -> None:
    """Remove the keychain entry (when the history is deleted or replaced)."""
    with contextlib.suppress(keyring.errors.KeyringError):  # not there, or no keychain at all
        keyring.delete_password(APP_NAME, _account(db_path))


def store_key(db_path: Path, key: bytes) -> None:
    """Put `key` in the keychain for `db_path` (when a passphrase is removed)."""
    try:
        keyring.set_password(APP_NAME, _account(db_path), key.hex())
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
    return derive_key(passphrase, salt)
