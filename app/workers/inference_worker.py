"""The inference worker: one long-lived QThread that owns the model.

Requests go in as queued signals and results come out as queued signals, so
the GUI thread never waits on llama.cpp. Cancelling a turn sets that turn's
`threading.Event`, which the generation loop checks before every token;
shutting down also aborts a model load through its progress callback.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.chat.prompt_builder import PromptTooLongError
from app.core.chat.templates import TemplateError
from app.core.engine.gguf_info import GgufError
from app.core.engine.options import EngineError, LoadOptions
from app.core.models.starter import StarterModelError, ensure_starter_model, is_verified_starter
from app.core.redact import log_failure
from app.core.turn import TurnRequest, TurnResult, run_turn

if TYPE_CHECKING:
    from app.core.engine.llama_engine import LlamaEngine

log = logging.getLogger("tern.worker")

# Errors whose message is written for the user; anything else is a bug.
USER_ERRORS = (GgufError, EngineError, StarterModelError, PromptTooLongError, TemplateError)


@dataclass(frozen=True)
class LoadRequest:
    """Load `path`, or the bundled starter model when `path` is None."""

    path: Path | None
    options: LoadOptions = field(default_factory=LoadOptions)


class InferenceWorker(QObject):
    """Lives on the inference thread; every slot runs there."""

    load_progress = Signal(str, float)  # stage, fraction 0..1
    model_loaded = Signal(object)  # LoadedModel
    load_failed = Signal(str, object)  # message, the LoadedModel still in place (or None)
    chunk = Signal(int, str)  # turn_id, text
    turn_finished = Signal(object)  # TurnResult
    turn_failed = Signal(int, str)  # turn_id, message

    def __init__(self, models_dir: Path) -> None:
        super().__init__()
        self._models_dir = models_dir
        self._engine: LlamaEngine | None = None
        self.stopping = threading.Event()

    def _get_engine(self) -> LlamaEngine:
        if self._engine is None:
            from app.core.engine.llama_engine import LlamaEngine  # llama.cpp loads here, on this thread
            from app.core.engine.probe import ModelChecks

            self._engine = LlamaEngine(ModelChecks(self._models_dir.parent / "model-checks.json"))
        return self._engine

    @Slot(object)
    def load_model(self, request: LoadRequest) -> None:
        """Validate and load a model, reporting progress."""
        try:
            path = request.path
            if path is None:
                self.load_progress.emit("Preparing the starter model", 0.0)
                path = ensure_starter_model(
                    self._models_dir, lambda f: self.load_progress.emit("Preparing the starter model", f)
                )
            self.load_progress.emit("Loading", 0.0)

            def progress(fraction: float) -> bool:
                self.load_progress.emit("Loading", fraction)
                return not self.stopping.is_set()

            # The starter is checked by its hash; any other file first loads in a child process.
            loaded = self._get_engine().load(path, request.options, progress, trusted=is_verified_starter(path))
        except USER_ERRORS as exc:
            log.warning("Load failed: %s", exc)
            self.load_failed.emit(str(exc), self._get_engine().loaded)
        except Exception as exc:  # a bug: keep the thread alive, log the trace
            log.exception("Unexpected error while loading a model")
            self.load_failed.emit(f"Unexpected error while loading the model: {exc!r}", self._get_engine().loaded)
        else:
            self.model_loaded.emit(loaded)

    @Slot(object)
    def run_turn(self, request: TurnRequest) -> None:
        """Answer one turn, streaming chunks."""
        if request.cancel.is_set() or self.stopping.is_set():
            self.turn_failed.emit(request.turn_id, "")
            return
        try:
            result = run_turn(self._get_engine(), request, lambda text: self.chunk.emit(request.turn_id, text))
        except USER_ERRORS as exc:
            log_failure(log, logging.WARNING, f"Turn {request.turn_id}", exc)
            self.turn_failed.emit(request.turn_id, str(exc))
        except Exception as exc:
            log_failure(log, logging.ERROR, f"Unexpected error in turn {request.turn_id}", exc)
            self.turn_failed.emit(request.turn_id, f"Unexpected error: {exc!r}")
        else:
            self.turn_finished.emit(result)

    def release(self) -> None:
        """Free the model; call only while the worker thread is not running."""
        if self._engine is not None:
            self._engine.unload()


class InferenceThread(QObject):
    """GUI-side handle: starts the worker thread, sends requests, shuts it down."""

    _load_requested = Signal(object)
    _turn_requested = Signal(object)

    def __init__(self, models_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("inference")
        self.worker = InferenceWorker(models_dir)
        self.worker.moveToThread(self._thread)
        self._load_requested.connect(self.worker.load_model)
        self._turn_requested.connect(self.worker.run_turn)
        self._current: TurnRequest | None = None
        self.worker.turn_finished.connect(self._on_turn_finished)
        self.worker.turn_failed.connect(self._on_turn_failed)

    def start(self) -> None:
        """Start the thread's event loop."""
        self._thread.start()

    def load(self, request: LoadRequest) -> None:
        """Queue a model load (a running turn is cancelled first)."""
        self.cancel()
        self._load_requested.emit(request)

    def submit(self, request: TurnRequest) -> None:
        """Queue a turn; it becomes the one `cancel()` stops."""
        self._current = request
        self._turn_requested.emit(request)

    def cancel(self) -> None:
        """Stop the running turn before its next token."""
        if self._current is not None:
            self._current.cancel.set()

    @Slot(object)
    def _on_turn_finished(self, result: TurnResult) -> None:
        self._forget(result.turn_id)

    @Slot(int, str)
    def _on_turn_failed(self, turn_id: int, _message: str) -> None:
        self._forget(turn_id)

    def _forget(self, turn_id: int) -> None:
        if self._current is not None and self._current.turn_id == turn_id:
            self._current = None

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Cancel work, free the model on its thread, and join the thread."""
        if not self._thread.isRunning():
            return True
        self.worker.stopping.set()
        self.cancel()
        self._thread.quit()
        if not self._thread.wait(timeout_ms):
            log.error("The inference thread did not stop within %d ms", timeout_ms)
            return False
        self.worker.release()  # the thread has ended, so this cannot race it
        return True
