"""The local API's key: random, one per install, kept in the OS keychain (never in the settings).

Without a usable keychain the key lives only as long as the app runs, and
`ApiKey.remembered` says so, so the settings can tell the user why their IDE
needs a new key after a restart.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import keyring
import keyring.errors
from keyring.backends import fail

from app import APP_NAME

ACCOUNT = "local-api-key"
PREFIX = "tern-"
log = logging.getLogger("tern.api")


@dataclass(frozen=True)
class ApiKey:
    """The key, and whether the keychain keeps it across restarts."""

    value: str
    remembered: bool


def _new() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _keychain_usable() -> bool:
    return not isinstance(keyring.get_keyring(), fail.Keyring)


def load_or_create() -> ApiKey:
    """The install's key, made and stored the first time (blocks on the keychain: not for the GUI thread)."""
    if _keychain_usable():
        try:
            found = keyring.get_password(APP_NAME, ACCOUNT)
            if found and found.startswith(PREFIX):
                return ApiKey(found, True)
            return _store(_new())
        except keyring.errors.KeyringError as exc:
            log.warning("The keychain could not keep the local API key: %s", exc)
    return ApiKey(_new(), False)


def regenerate() -> ApiKey:
    """A new key in place of the old one (clients with the old key get 401 from now on)."""
    if _keychain_usable():
        try:
            return _store(_new())
        except keyring.errors.KeyringError as exc:
            log.warning("The keychain could not keep the local API key: %s", exc)
    return ApiKey(_new(), False)


def _store(value: str) -> ApiKey:
    keyring.set_password(APP_NAME, ACCOUNT, value)
    return ApiKey(value, True)
