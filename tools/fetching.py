"""What the fetch scripts share: where a fetched set is kept, and the hash that pins each file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir(variable: str, *parts: str) -> Path:
    """$`variable` when set, else $XDG_CACHE_HOME/`parts`, else ~/.cache/`parts`."""
    if chosen := os.environ.get(variable):
        return Path(chosen)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).joinpath(*parts)


def sha256(path: Path) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
