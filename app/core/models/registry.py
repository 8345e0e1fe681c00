"""The installed models: the built-in starter, downloads into Tern's models folder, and imports where they lie.

A small JSON file, rewritten atomically. Every entry was validated (and
inspected: family, effective and PLE parameters) when it was added, so the
list can show it without opening the file again. Each also carries a
fingerprint of its content (size, first and last MiB), so a copy of a model
already installed is recognised however it is named.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.core.engine.gguf_info import GgufError, read_gguf_info
from app.core.errors import UserError
from app.core.models.projectors import projector_for
from app.core.models.starter import STARTER_DISPLAY_NAME, is_verified_starter

log = logging.getLogger("tern.models")


@dataclass
class InstalledModel:
    """One model the user can load."""

    path: str  # the GGUF llama.cpp opens (the first part of a split model)
    name: str
    family: str
    size: int  # bytes of all its files
    effective_parameters: int
    ple_parameters: int
    files: list[str] = field(default_factory=list)  # every file, for deleting
    repo_id: str = ""  # where it was downloaded from ("" when imported)
    label: str = ""  # quantization
    imported: bool = False  # registered in place: deleting it from Tern leaves the file alone
    added: float = field(default_factory=time.time)
    last_used: float | None = None
    builtin: bool = False  # the starter that ships with Tern: listed, never deleted
    fingerprint: str = ""  # `fingerprint(path)`; "" in entries written before it existed
    # The image projector beside it (`projector_for`), looked for each time the list is read, never saved:
    # the user may add or delete one behind Tern's back.
    projector: str = ""

    @property
    def display_name(self) -> str:
        """The name the user knows it by."""
        return STARTER_DISPLAY_NAME if self.builtin else self.name

    @property
    def sees_images(self) -> bool:
        """True when a usable image projector lies beside it."""
        return bool(self.projector)


_FINGERPRINT_SPAN = 1 << 20
_NOT_SAVED = frozenset({"projector"})  # found again each time the list is read


def fingerprint(path: Path) -> str:
    """Identity of a model file's content: its size, and a hash of its first and last MiB.

    The start holds the whole GGUF header (names, shapes and types of every tensor) and the end the last
    weights, so two different models never share it, while hashing a multi-GB file whole would take a minute.
    """
    digest = hashlib.sha256()
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest.update(str(size).encode())
        digest.update(f.read(_FINGERPRINT_SPAN))
        f.seek(max(size - _FINGERPRINT_SPAN, 0))
        digest.update(f.read(_FINGERPRINT_SPAN))
    return digest.hexdigest()


def inspect(path: Path, files: list[Path] | None = None, **extra: Any) -> InstalledModel:
    """Validate a GGUF and describe it; raises GgufError with a message for the user."""
    info = read_gguf_info(path)
    parts = files or [path]
    return InstalledModel(
        path=str(path),
        name=info.name,
        family=info.family,
        size=sum(p.stat().st_size for p in parts),
        effective_parameters=info.effective_parameters,
        ple_parameters=info.ple_parameters,
        files=[str(p) for p in parts],
        fingerprint=fingerprint(path),
        **extra,
    )


class AlreadyInstalledError(UserError):
    """The file is a copy of a model already in the list; `existing` is that entry."""

    def __init__(self, path: Path, existing: InstalledModel) -> None:
        if existing.builtin:
            text = f"{path.name} is a copy of the starter model, which is built into Tern; it was not added again."
        else:
            text = (
                f"{path.name} is already installed as {existing.display_name} "
                f"({Path(existing.path).name}); it was not added again."
            )
        super().__init__(text)
        self.existing = existing


def copy_model(source: Path, folder: Path) -> InstalledModel:
    """Validate a GGUF, copy it into `folder` (atomically), and describe the copy."""
    inspect(source)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    tmp = target.with_name(target.name + ".part")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return inspect(target)


def import_error(path: Path, exc: Exception) -> str:
    """What the user reads when a file could not be added as a model."""
    if isinstance(exc, AlreadyInstalledError):
        return str(exc)
    if isinstance(exc, GgufError):
        reason = str(exc)
        named = f"'{path.name}' "  # the header check names the file; here the sentence already has
        if reason.startswith(named):
            reason = "it " + reason[len(named) :]
        return f"{path.name} is not a model Tern can load: {reason}"
    if isinstance(exc, OSError):
        return f"{path.name} could not be read: {exc.strerror or exc}."
    log.error("Checking %s failed", path.name, exc_info=exc)
    return f"{path.name} could not be checked, so it was not added. The details are in Tern's log."


class ModelRegistry:
    """The installed-models file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._models: dict[str, InstalledModel] = {}
        self._load()

    def _load(self) -> None:
        known = {f.name for f in dataclasses.fields(InstalledModel)}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._models = {  # keys a newer Tern may have added are left out, not fatal
                m["path"]: InstalledModel(**{k: v for k, v in m.items() if k in known}) for m in data.get("models", [])
            }
        except FileNotFoundError:
            self._models = {}
        except (ValueError, TypeError, KeyError, AttributeError):
            broken = self.path.with_name(self.path.name + ".unreadable")
            os.replace(self.path, broken)  # kept for inspection; the models themselves are untouched
            self._models = {}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".models-", suffix=".json")
        saved = [{k: v for k, v in asdict(m).items() if k not in _NOT_SAVED} for m in self._models.values()]
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"models": saved}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def models(self) -> list[InstalledModel]:
        """Installed models whose file still exists, most recently used first, each with its image projector."""
        live = [m for m in self._models.values() if Path(m.path).exists()]
        for m in live:
            found = None if m.builtin else projector_for(Path(m.path))  # the starter is text-only
            m.projector = str(found) if found is not None else ""
        return sorted(live, key=lambda m: (m.last_used or 0, m.added), reverse=True)

    def get(self, path: Path | str) -> InstalledModel | None:
        """The entry for a model file."""
        return self._models.get(str(path))

    def add(self, model: InstalledModel) -> InstalledModel:
        """Register (or refresh) a model."""
        old = self._models.get(model.path)
        if old is not None:
            model.last_used = old.last_used
        self._models[model.path] = model
        self._save()
        return model

    def import_file(self, path: Path) -> InstalledModel:
        """Register a local GGUF where it lies (validated first); deleting it from Tern leaves the file.

        Raises AlreadyInstalledError when the list holds the same model under another path.
        """
        model = inspect(path, imported=True)
        existing = self.copy_of(model)
        if existing is not None:
            raise AlreadyInstalledError(path, existing)
        return self.add(model)

    def copy_of(self, model: InstalledModel) -> InstalledModel | None:
        """The installed entry with the same content as `model` at another path, if any."""
        for other in self.models():
            if other.path == model.path or other.size != model.size:
                continue
            if not other.fingerprint:  # listed before fingerprints: taken now, once
                try:
                    other.fingerprint = fingerprint(Path(other.path))
                except OSError:
                    continue
                self._save()
            if other.fingerprint == model.fingerprint:
                return other
        return None

    def add_builtin(self, path: Path) -> None:
        """List the starter model once it is assembled and verified (it is never deleted)."""
        old = self._models.get(str(path))
        if (old is not None and old.builtin) or not is_verified_starter(path):
            return
        model = inspect(path, builtin=True)
        if old is not None:  # it was imported by hand before it was marked
            model.last_used, model.added = old.last_used, old.added
        self._models[model.path] = model
        self._save()

    def attach_projector(self, path: Path | str, projector: Path) -> InstalledModel | None:
        """Count a projector Tern downloaded for a model among its files (so deleting the model deletes it)."""
        model = self._models.get(str(path))
        if model is None:
            return None
        if str(projector) not in model.files:
            model.files.append(str(projector))
            model.size += projector.stat().st_size
            self._save()
        return model

    def touch(self, path: Path | str) -> None:
        """Record that a model was just loaded."""
        model = self._models.get(str(path))
        if model is not None:
            model.last_used = time.time()
            self._save()

    def remove(self, path: Path | str) -> list[Path]:
        """Delete a model's files (unless imported in place), then forget it; returns what was deleted.

        A file another listed model also counts as its own (an image projector two quantizations of a
        model share) stays. Raises OSError when a file cannot be deleted, and UserError for the built-in
        starter; the entry then stays.
        """
        model = self._models.get(str(path))
        if model is None:
            return []
        if model.builtin:
            raise UserError(f"{STARTER_DISPLAY_NAME} is built into Tern and cannot be deleted.")
        deleted = []
        if not model.imported:
            shared = {f for other in self._models.values() if other is not model for f in other.files}
            for name in model.files:
                file = Path(name)
                if name not in shared and file.exists():
                    file.unlink()
                    deleted.append(file)
        del self._models[str(path)]
        self._save()
        return deleted
