"""Known store failures. Each message is written for the user; anything else is a bug."""

from __future__ import annotations

from app.core.errors import UserError


class StoreError(UserError):
    """A failure the user can understand and act on."""


class WrongKeyError(StoreError):
    """The key or passphrase does not open the database (the file is left untouched)."""


class MissingKeyError(StoreError):
    """The database exists but its key is gone from the keychain."""


class KeyringUnavailableError(StoreError):
    """No usable OS keychain; a passphrase is needed instead."""


class StoreBusyError(StoreError):
    """Another process holds the database."""


class DiskFullError(StoreError):
    """There is no room left to write."""


class CorruptStoreError(StoreError):
    """The file is damaged."""
