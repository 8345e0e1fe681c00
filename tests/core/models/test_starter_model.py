"""The bundled starter model is assembled once, verified, and never left half-written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from app.core.models.starter import STARTER_FILE_NAME, STARTER_SHA256, ensure_starter_model


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def test_assembles_verifies_and_reuses(tmp_path: Path) -> None:
    seen: list[float] = []
    path = ensure_starter_model(tmp_path, seen.append)
    assert path == tmp_path / STARTER_FILE_NAME
    assert sha256(path) == STARTER_SHA256
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert not list(tmp_path.glob("*.part"))
    mtime = path.stat().st_mtime_ns
    again: list[float] = []
    assert ensure_starter_model(tmp_path, again.append) == path
    assert again == []  # verified before: not copied or hashed again
    assert path.stat().st_mtime_ns == mtime


def test_a_damaged_copy_is_replaced(tmp_path: Path) -> None:
    path = ensure_starter_model(tmp_path)
    with path.open("r+b") as f:
        f.seek(1_000_000)
        f.write(b"\xff" * 16)
    os.utime(path, ns=(1, 1))  # a different stamp, as any later write gives
    assert ensure_starter_model(tmp_path) == path
    assert sha256(path) == STARTER_SHA256


def test_a_leftover_partial_file_does_not_matter(tmp_path: Path) -> None:
    stale = tmp_path / (STARTER_FILE_NAME + ".abc123.part")
    stale.write_bytes(b"half written by a killed run")
    os.utime(stale, (1, 1))  # long ago
    path = ensure_starter_model(tmp_path)
    assert sha256(path) == STARTER_SHA256
    assert not stale.exists()
    assert not list(tmp_path.glob("*.part"))
