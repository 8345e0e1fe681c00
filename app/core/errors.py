"""The one base class for errors whose message is written for the user.

Anything raised that is not a `UserError` is a bug: the services log its
traceback and show a short, generic message instead.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can read and act on (a damaged file, a full disk, a wrong passphrase)."""
