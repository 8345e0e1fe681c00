"""The model service: the installed-models list, imports, deletions, and other short file work for widgets.

Its "files" thread owns the registry file (read, fsynced on every change) and
does what may block on the disk: checking a GGUF header before import,
deleting multi-gigabyte files, reading package metadata for About. The GUI
thread keeps a copy of the list (`installed`), refreshed by `changed`. The
built-in starter joins the list as soon as it has been assembled in the
models folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import QObject, Signal

from app.core.errors import UserError
from app.core.models.registry import AlreadyInstalledError, InstalledModel, ModelRegistry, import_error, inspect
from app.core.models.starter import STARTER_FILE_NAME
from app.services.worker_host import WorkerHost

T = TypeVar("T")


class ModelService(QObject):
    """Installed models, kept by the files thread; the GUI sees a copy."""

    changed = Signal(list)  # [InstalledModel], most recently used first

    def __init__(self, registry_file: Path, parent: QObject | None = None, models_dir: Path | None = None) -> None:
        """`models_dir`: where the starter is assembled (default: "models" next to the registry file, as AppPaths)."""
        super().__init__(parent)
        self.host = WorkerHost("files", self)
        self._registry_file = registry_file
        self._starter = (models_dir or registry_file.with_name("models")) / STARTER_FILE_NAME
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
            registry.add_builtin(self._starter)  # assembled on first use, by the inference thread
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

    def attach_projector(self, path: str, projector: Path) -> None:
        """Count an image projector Tern downloaded for a listed model among its files (the list then says "vision")."""
        self._change(lambda r: r.attach_projector(path, projector), label="add an image projector")

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

    def import_file(
        self,
        path: Path,
        then: Callable[[InstalledModel], None],
        refused: Callable[[str], None],
        already: Callable[[InstalledModel, str], None] | None = None,
    ) -> None:
        """Check a local GGUF's header and register it where it lies; `refused` gets the reason when it is not.

        A copy of a model already listed is not added twice: `already` gets the listed entry and a sentence
        saying so (without `already`, `refused` gets the sentence).
        """

        def check(registry: ModelRegistry) -> InstalledModel:
            try:
                return registry.import_file(path)
            except Exception as exc:  # every reason is put in words by import_error
                raise _refusal(path, exc) from exc

        self._change(check, then, failed=self._refusal_route(refused, already), label="import a model")

    def check_import(
        self,
        path: Path,
        then: Callable[[], None],
        refused: Callable[[str], None],
        already: Callable[[InstalledModel, str], None] | None = None,
    ) -> None:
        """Check, before copying it in, that a local GGUF is a model and not one already listed."""

        def check() -> None:
            try:
                model = inspect(path)
                existing = self._registry_here().copy_of(model)
            except Exception as exc:
                raise _refusal(path, exc) from exc
            if existing is not None:
                raise AlreadyInstalledError(path, existing)

        self.host.submit(check, lambda _r: then(), self._refusal_route(refused, already), label="check a model")

    @staticmethod
    def _refusal_route(
        refused: Callable[[str], None], already: Callable[[InstalledModel, str], None] | None
    ) -> Callable[[UserError], None]:
        def route(exc: UserError) -> None:
            if isinstance(exc, AlreadyInstalledError) and already is not None:
                already(exc.existing, str(exc))
            else:
                refused(str(exc))

        return route

    def run(
        self, fn: Callable[[], T], done: Callable[[T], None], failed: Callable[[UserError], None] | None = None
    ) -> None:
        """Any other short blocking call a widget needs (reading package metadata for About)."""
        self.host.submit(fn, done, failed)


def _refusal(path: Path, exc: Exception) -> UserError:
    """The error an import is refused with, in words for the user (a duplicate keeps the listed entry)."""
    return exc if isinstance(exc, AlreadyInstalledError) else UserError(import_error(path, exc))
