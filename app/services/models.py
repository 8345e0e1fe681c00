"""The model service: the installed-models list, imports, deletions, and other short file work for widgets.

Its "files" thread owns the registry file (read, fsynced on every change) and
does what may block on the disk: checking a GGUF header before import,
deleting multi-gigabyte files, reading package metadata for About. The GUI
thread keeps a copy of the list (`installed`), refreshed by `changed`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import QObject, Signal

from app.core.errors import UserError
from app.core.models.registry import InstalledModel, ModelRegistry, import_error, inspect
from app.services.worker_host import WorkerHost

T = TypeVar("T")


class ModelService(QObject):
    """Installed models, kept by the files thread; the GUI sees a copy."""

    changed = Signal(list)  # [InstalledModel], most recently used first

    def __init__(self, registry_file: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = WorkerHost("files", self)
        self._registry_file = registry_file
        self._registry: ModelRegistry | None = None  # the files thread's; read there on first use
        self.installed: list[InstalledModel] = []  # the GUI thread's copy
        self.changed.connect(self._keep)

    def start(self) -> None:
        """Start the files thread and read the list."""
        self.host.start()
        self.refresh()

    def shutdown(self, timeout_s: float = 3.0) -> bool:
        """Finish queued changes and join the thread."""
        return self.host.shutdown(timeout_s)

    def _keep(self, models: list[InstalledModel]) -> None:
        self.installed = models

    def _registry_here(self) -> ModelRegistry:
        if self._registry is None:
            self._registry = ModelRegistry(self._registry_file)
        return self._registry

    def _change(self, fn: Callable[[ModelRegistry], T], done: Callable[[T], None] | None = None, **kw: object) -> None:
        def job() -> tuple[T, list[InstalledModel]]:
            registry = self._registry_here()
            result = fn(registry)
            return result, registry.models()

        def changed(outcome: tuple[T, list[InstalledModel]]) -> None:
            result, models = outcome
            self.changed.emit(models)
            if done is not None:
                done(result)

        self.host.submit(job, changed, **kw)  # type: ignore[arg-type]

    def refresh(self) -> None:
        """Read the list again (files deleted behind Tern's back drop out)."""
        self._change(lambda _r: None)

    def get(self, path: Path | str) -> InstalledModel | None:
        """The GUI thread's copy of one entry."""
        return next((m for m in self.installed if m.path == str(path)), None)

    def add(self, model: InstalledModel, then: Callable[[InstalledModel], None] | None = None) -> None:
        """Register (or refresh) a model."""
        self._change(lambda r: r.add(model), then, label="add a model")

    def touch(self, path: Path) -> None:
        """Record that a model was just loaded."""
        self._change(lambda r: r.touch(path), label="note a model's use")

    def remove(self, path: str, then: Callable[[list[Path]], None], failed: Callable[[UserError], None]) -> None:
        """Forget a model, deleting its files unless it was imported in place; `then` gets what was deleted."""

        def remove(registry: ModelRegistry) -> list[Path]:
            try:
                return registry.remove(path)
            except OSError as exc:
                raise UserError(f"{Path(path).name} could not be deleted: {exc.strerror or exc}.") from exc

        self._change(remove, then, failed=failed, label="delete a model")

    def import_file(self, path: Path, then: Callable[[InstalledModel], None], refused: Callable[[str], None]) -> None:
        """Check a local GGUF's header and register it where it lies; `refused` gets the reason when it is not."""

        def check(registry: ModelRegistry) -> InstalledModel:
            try:
                model = inspect(path, imported=True)
            except Exception as exc:  # every reason is put in words by import_error
                raise UserError(import_error(path, exc)) from exc
            return registry.add(model)

        self._change(check, then, failed=lambda exc: refused(str(exc)), label="import a model")

    def run(
        self, fn: Callable[[], T], done: Callable[[T], None], failed: Callable[[UserError], None] | None = None
    ) -> None:
        """Any other short blocking call a widget needs (reading package metadata for About)."""
        self.host.submit(fn, done, failed)
