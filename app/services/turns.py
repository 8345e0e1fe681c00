"""The turn service: one long-lived thread that owns the model, loads it, and runs the turn pipeline.

A widget (or, later, a local API request) makes one call, `submit(request)`,
which returns at once; every step of the turn runs on the inference thread
(`app.core.turn.run_turn`) and comes back as signals: `saved`, `sources`,
`chunk`, then `turn_finished` or `turn_failed`. Stop sets the turn's cancel
event, which the generation loop checks before every token; shutting down
also aborts a model load through its progress callback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from app.core.engine.options import EngineError, LoadOptions
from app.core.engine.vision import PIXELS_SIDE, ImagePixels
from app.core.errors import UserError
from app.core.images import ImageReader
from app.core.models.projectors import projector_for
from app.core.models.starter import ensure_starter_model, is_verified_starter
from app.core.redact import log_failure
from app.core.tools.base import ToolCard
from app.core.turn import INTERRUPTED, TurnEvents, TurnRequest, TurnStopped, TurnStore, run_turn
from app.services.worker_host import WorkerHost

if TYPE_CHECKING:
    from app.core.engine.llama_engine import LlamaEngine

log = logging.getLogger("tern.worker")


@dataclass(frozen=True)
class LoadRequest:
    """Load `path`, or the bundled starter model when `path` is None."""

    path: Path | None
    options: LoadOptions = field(default_factory=LoadOptions)


class _InferenceHost(WorkerHost):
    drain_on_shutdown = False  # a queued turn or load is not worth waiting for at exit

    def __init__(self, service: TurnService) -> None:
        super().__init__("inference", service, qt_thread=True)
        self._service = service

    def about_to_stop(self) -> None:
        """Stop the running turn (its text so far is saved, marked as interrupted)."""
        self._service.cancel(INTERRUPTED)


class _Answers:
    """A question the turn's thread asks the user, waiting for the GUI thread's answer (or the turn's Stop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: tuple[int, threading.Event, list[Any]] | None = None

    def ask(self, turn_id: int, cancel: threading.Event, show: Callable[[], None]) -> Any:
        event, box = threading.Event(), [None]
        with self._lock:
            self._waiting = (turn_id, event, box)
        show()
        while not event.wait(0.1):
            if cancel.is_set():
                break
        with self._lock:
            self._waiting = None
        return box[0]

    def answer(self, turn_id: int, value: Any) -> None:
        with self._lock:
            if self._waiting is not None and self._waiting[0] == turn_id:
                self._waiting[2][0] = value
                self._waiting[1].set()


class TurnService(QObject):
    """Loads models and answers turns on the inference thread; every signal arrives on the GUI thread."""

    load_progress = Signal(str, float)  # stage, fraction 0..1
    model_loaded = Signal(object)  # LoadedModel
    load_failed = Signal(str, object)  # message, the LoadedModel still in place (or None)
    saved = Signal(int, object, int, tuple)  # turn id, Ref, its id, ids of its versions
    sources = Signal(int, tuple, str, str)  # turn id, (Source, …), a note about them, "whole" or "retrieval"
    reading = Signal(int, int, int, float)  # turn id, prompt tokens read, of how many, seconds left (-1: not known)
    chunk = Signal(int, str)  # turn id, text
    thought = Signal(int, str)  # turn id, a piece of the model's thought
    tool = Signal(int, object)  # turn id, a tool call's ToolCard (each time it changes)
    permission_asked = Signal(int, object)  # turn id, the ToolCard of a call that asks first: answer_permission()
    file_asked = Signal(int, str)  # turn id, why the model wants a file: answer_file()
    turn_finished = Signal(object)  # TurnResult
    turn_failed = Signal(int, str)  # turn id, message ("" when stopped before the first token)

    def __init__(self, models_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._models_dir = models_dir
        self._engine: LlamaEngine | None = None  # the inference thread's
        self._current: TurnRequest | None = None
        self._answers = _Answers()  # the user's answers to a running turn's questions (allow a call, pick a file)
        self.store: TurnStore | None = None  # where turns with `saving` are saved; set before `start`
        self._images: ImageReader | None = None  # decodes images for the model, in a child process (first use)
        self.host = _InferenceHost(self)
        self.turn_finished.connect(lambda result: self._forget(result.turn_id))
        self.turn_failed.connect(lambda turn_id, _message: self._forget(turn_id))

    def start(self) -> None:
        """Start the inference thread."""
        self.host.start()

    def _get_engine(self) -> LlamaEngine:
        if self._engine is None:
            from app.core.engine.llama_engine import LlamaEngine  # llama.cpp loads here, on this thread
            from app.core.engine.probe import ModelChecks

            self._engine = LlamaEngine(ModelChecks(self._models_dir.parent / "model-checks.json"))
        return self._engine

    def engine_on_thread(self) -> LlamaEngine:
        """The engine, for work queued on the inference thread (an API request); only there."""
        assert self.host.on_thread(), "the engine belongs to the inference thread"
        return self._get_engine()

    def forget_conversations(self) -> None:
        """Drop what the model holds of any conversation (its KV cache, parked ones too): the history is closing."""

        def forget() -> None:
            engine = self._get_engine()
            if engine.loaded is not None:
                engine.forget_cache()

        self.host.submit(forget, label="forget the cached conversations")

    # Loading
    def load(self, request: LoadRequest) -> None:
        """Queue a model load (a running turn is stopped first)."""
        self.cancel()
        self.host.submit(lambda: self._load(request), label="load a model")

    def _load(self, request: LoadRequest) -> None:
        stopping = self.host.stopping
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
                return not stopping.is_set()

            options = request.options
            if options.images and not options.projector:
                found = projector_for(path)
                options = replace(options, projector=str(found) if found is not None else "")
            # The starter is checked by its hash; any other file first loads in a child process.
            loaded = self._get_engine().load(path, options, progress, trusted=is_verified_starter(path))
        except UserError as exc:
            log.warning("Load failed: %s", exc)
            self.load_failed.emit(str(exc), self._get_engine().loaded)
        except Exception as exc:  # a bug: keep the thread alive, log the trace
            log.exception("Unexpected error while loading a model")
            self.load_failed.emit(f"Unexpected error while loading the model: {exc!r}", self._get_engine().loaded)
        else:
            self.model_loaded.emit(loaded)

    # Turns
    def submit(self, request: TurnRequest) -> None:
        """Queue a turn; it becomes the one `cancel()` stops."""
        self._current = request
        self.host.submit(lambda: self._run(request), label=f"turn {request.turn_id}")

    def cancel(self, note: str = "") -> None:
        """Stop the running turn before its next token."""
        if self._current is not None:
            self._current.cancel.stop(note)

    def _forget(self, turn_id: int) -> None:
        if self._current is not None and self._current.turn_id == turn_id:
            self._current = None

    def answer_permission(self, turn_id: int, allowed: bool) -> None:
        """The user's answer to `permission_asked` (GUI thread)."""
        self._answers.answer(turn_id, allowed)

    def answer_file(self, turn_id: int, path: Path | None) -> None:
        """The file the user chose after `file_asked`, or None (GUI thread)."""
        self._answers.answer(turn_id, path)

    def _run(self, request: TurnRequest) -> None:
        turn_id = request.turn_id
        answers = self._answers

        def allow(card: ToolCard) -> bool:
            return bool(answers.ask(turn_id, request.cancel, lambda: self.permission_asked.emit(turn_id, card)))

        def pick_file(purpose: str) -> Path | None:
            chosen = answers.ask(turn_id, request.cancel, lambda: self.file_asked.emit(turn_id, purpose))
            return chosen if isinstance(chosen, Path) else None

        events = TurnEvents(
            text=lambda piece: self.chunk.emit(turn_id, piece),
            saved=lambda ref, message_id, versions: self.saved.emit(turn_id, ref, message_id, versions),
            sources=lambda found, note, mode: self.sources.emit(turn_id, found, note, mode),
            reading=lambda done, total, left: self.reading.emit(turn_id, done, total, -1.0 if left is None else left),
            thought=lambda piece: self.thought.emit(turn_id, piece),
            tool=lambda card: self.tool.emit(turn_id, card),
            allow=allow,
        )
        if request.toolbox is not None:
            request = replace(request, pick_file=pick_file)
        if request.pixels is None:  # a question's images, and scanned pages of its documents
            request = replace(request, pixels=self._pixels_for(request))
        if self.host.stopping.is_set():
            request.cancel.stop(INTERRUPTED)
        try:
            result = run_turn(self._get_engine(), request, events, self.store)
        except TurnStopped:
            self.turn_failed.emit(turn_id, "")
        except UserError as exc:
            log_failure(log, logging.WARNING, f"Turn {turn_id}", exc)
            self.turn_failed.emit(turn_id, str(exc))
        except Exception as exc:
            log_failure(log, logging.ERROR, f"Unexpected error in turn {turn_id}", exc)
            self.turn_failed.emit(turn_id, f"Unexpected error: {exc!r}")
        else:
            self.turn_finished.emit(result)

    def image_reader(self) -> ImageReader:
        """The reader that decodes images for the model, in its child process (on the inference thread)."""
        if self._images is None:
            self._images = ImageReader()
        return self._images

    def _pixels_for(self, request: TurnRequest) -> Callable[[str], ImagePixels]:
        """How the turn's images reach the model: from memory or the history, decoded in the image reader's child."""
        at_hand = {image.key: image for image in request.images}
        store = self.store

        def pixels(key: str) -> ImagePixels:
            image = at_hand.get(key) or (store.image(key) if store is not None else None)
            if image is None or not image.data:
                raise EngineError("An image of this conversation is no longer in your history.")
            return self.image_reader().pixels(image.data, PIXELS_SIDE)

        return pixels

    def shutdown(self, timeout_s: float = 3.0) -> bool:
        """Stop the running turn (saving it), join the thread, and free the model; False if abandoned."""
        if not self.host.shutdown(timeout_s):
            return False
        if self._engine is not None:
            self._engine.unload()  # the thread has ended, so this cannot race it
        if self._images is not None:
            self._images.close()
        return True
