"""Tern: a private, offline desktop assistant for Gemma models."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

APP_NAME = "Tern"
APP_ID = "tern"  # folder and executable names
DESKTOP_ID = "app.tern.Tern"  # the desktop entry, icon and AppStream id (reverse DNS, as desktops expect)


def _version() -> str:
    """pyproject.toml's version: from the installed metadata, or the source tree when not installed."""
    try:
        return metadata.version(APP_ID)
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.MULTILINE)
        except OSError:
            found = None
        return found.group(1) if found else "0+unknown"


__version__ = _version()
