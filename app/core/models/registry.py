"""The installed models: downloaded into Tern's models folder, or imported where they lie.

A small JSON file, rewritten atomically. Every entry was validated (and
inspected: family, effective and PLE parameters) when it was added, so the
list can show it without opening the file again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.core.engine.gguf_info import read_gguf_info


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
        except (ValueError, TypeError, KeyError):
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

    def import_file(self, path: Path, copy_to: Path | None = None) -> InstalledModel:
        """Register a local GGUF in place, or copied into `copy_to` (validated first, either way)."""
        model = inspect(path, imported=copy_to is None)
        if copy_to is not None:
            copy_to.mkdir(parents=True, exist_ok=True)
            target = copy_to / path.name
            tmp = target.with_name(target.name + ".part")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
            model = inspect(target)
        return self.add(model)

    def touch(self, path: Path | str) -> None:
        """Record that a model was just loaded."""
        model = self._models.get(str(path))
        if model is not None:
            model.last_used = time.time()
            self._save()

    def remove(self, path: Path | str) -> list[Path]:
        """Forget a model and delete its files unless it was imported in place; returns what was deleted."""
        model = self._models.pop(str(path), None)
        self._save()
        if model is None or model.imported:
            return []
        deleted = []
        for name in model.files:
            file = Path(name)
            if file.exists():
                file.unlink()
                deleted.append(file)
        return deleted
