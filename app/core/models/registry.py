"""The installed models: downloaded into Tern's models folder, or imported where they lie.

A small JSON file, rewritten atomically. Every entry was validated (and
inspected: family, effective and PLE parameters) when it was added, so the
list can show it without opening the file again.
"""

from __future__ import annotations

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
        **extra,
    )


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
    if isinstance(exc, GgufError):
        return f"{path.name} is not a model Tern can load: {exc}"
    if isinstance(exc, OSError):
        return f"{path.name} could not be read: {exc.strerror or exc}."
    log.error("Checking %s failed", path.name, exc_info=exc)
    return f"{path.name} could not be checked ({type(exc).__name__}); it was not added."


class ModelRegistry:
    """The installed-models file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._models: dict[str, InstalledModel] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._models = {m["path"]: InstalledModel(**m) for m in data.get("models", [])}
        except FileNotFoundError:
            self._models = {}
        except (ValueError, TypeError, KeyError, AttributeError):
            broken = self.path.with_name(self.path.name + ".unreadable")
            os.replace(self.path, broken)  # kept for inspection; the models themselves are untouched
            self._models = {}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".models-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"models": [asdict(m) for m in self._models.values()]}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def models(self) -> list[InstalledModel]:
        """Installed models whose file still exists, most recently used first."""
        live = [m for m in self._models.values() if Path(m.path).exists()]
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
        """Register a local GGUF where it lies (validated first); deleting it from Tern leaves the file."""
        return self.add(inspect(path, imported=True))

    def touch(self, path: Path | str) -> None:
        """Record that a model was just loaded."""
        model = self._models.get(str(path))
        if model is not None:
            model.last_used = time.time()
            self._save()

    def remove(self, path: Path | str) -> list[Path]:
        """Delete a model's files (unless imported in place), then forget it; returns what was deleted.

        Raises OSError when a file cannot be deleted; the entry then stays.
        """
        model = self._models.get(str(path))
        if model is None:
            return []
        deleted = []
        if not model.imported:
            for name in model.files:
                file = Path(name)
                if file.exists():
                    file.unlink()
                    deleted.append(file)
        del self._models[str(path)]
        self._save()
        return deleted
