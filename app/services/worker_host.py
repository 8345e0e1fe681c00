"""One thread per service, and one way to give it work and hear back.

A `WorkerHost` owns a thread and a queue. `submit(fn, done, failed)` runs
`fn` there, in order, and delivers the outcome on the GUI thread to that
`Operation`'s own callbacks: results are addressed by object, never by a
string tag. `call(fn)` is for another worker thread that needs the answer
before it goes on (a turn saving its question), and waits.

A failure has one route. A `UserError` keeps its message; a known low-level
error is translated by the host (`translate`); anything else is a bug, logged
with its traceback and reported as a short generic message. The operation's
`failed` gets it, or, when it has none, the host's `failure` signal, which
bootstrap connects to the message bridge.

`shutdown(timeout_s)` asks the thread to stop, waits that long at most, then
abandons it with a log line: closing the window never waits on a parser or a
model without bound. Python threads are daemons, so an abandoned one cannot
keep the process alive; the inference host runs on a QThread, and bootstrap
ends the process itself when that one had to be abandoned.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.errors import UserError

T = TypeVar("T")
UNEXPECTED = "An unexpected error stopped this; the details are in Tern's log."


@dataclass(eq=False)
class Operation(Generic[T]):
    """One piece of work for a host's thread, with where its outcome goes (on the GUI thread)."""

    fn: Callable[[], T]
    done: Callable[[T], None] | None = None
    failed: Callable[[UserError], None] | None = None
    label: str = ""  # for the log
    quiet: bool = False  # without `failed`, a failure is only logged, not shown
    future: Future[T] | None = None  # set for `call`: a worker thread waits on it instead


class _QtThread(QThread):
    """A QThread with the start/is_alive/join of `threading.Thread`."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__()
        self.setObjectName(name)
        self._target = target

    def run(self) -> None:
        """The host's loop."""
        self._target()

    def is_alive(self) -> bool:
        """True while the loop runs."""
        return self.isRunning()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the loop to end (at most `timeout` seconds)."""
        self.wait(-1 if timeout is None else int(timeout * 1000))


class WorkerHost(QObject):
    """A service's thread: operations run there in order; outcomes come back to the GUI thread."""

    failure = Signal(object)  # UserError that no operation handled
    _outcome = Signal(object, bool, object)  # Operation, succeeded, result or UserError

    drain_on_shutdown = True  # run what is queued before stopping (saves); False: drop it (the rest resumes later)

    def __init__(self, name: str, parent: QObject | None = None, qt_thread: bool = False) -> None:
        """`qt_thread`: run on a QThread (the inference host: llama.cpp decodes ~6% faster there, measured with
        bench/decode.py, while a streaming turn emits a signal per token)."""
        super().__init__(parent)
        self.name = name
        self.log = logging.getLogger(f"tern.{name}")
        self.stopping = threading.Event()
        self._queue: queue.SimpleQueue[Operation[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | _QtThread = (
            _QtThread(self._loop, name) if qt_thread else threading.Thread(target=self._loop, name=name, daemon=True)
        )
        self._outcome.connect(self._deliver)  # emitted on the worker thread: queued to this object's thread

    # Lifecycle
    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    @property
    def running(self) -> bool:
        """True while the thread is alive."""
        return self._thread.is_alive()

    def on_thread(self) -> bool:
        """True when called from this host's own thread."""
        if isinstance(self._thread, _QtThread):
            return QThread.currentThread() is self._thread
        return threading.current_thread() is self._thread

    def shutdown(self, timeout_s: float = 3.0) -> bool:
        """Stop the thread (after queued work when `drain_on_shutdown`); False if it had to be abandoned."""
        if not self._thread.is_alive():
            return True
        self.stopping.set()
        self.about_to_stop()
        self._queue.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.log.error("The %s thread did not stop within %.1f s; abandoned", self.name, timeout_s)
            return False
        return True

    def about_to_stop(self) -> None:
        """Called on the GUI thread as shutdown begins: cancel what the thread is doing."""

    def thread_started(self) -> None:
        """Called on the thread before its first operation."""

    def thread_stopping(self) -> None:
        """Called on the thread after its last operation (close what it owns)."""

    # Work
    def submit(
        self,
        fn: Callable[[], T],
        done: Callable[[T], None] | None = None,
        failed: Callable[[UserError], None] | None = None,
        label: str = "",
        quiet: bool = False,
    ) -> Operation[T]:
        """Queue `fn`; then `done(result)` or `failed(error)` on the GUI thread."""
        op = Operation(fn, done, failed, label or getattr(fn, "__name__", ""), quiet)
        self._queue.put(op)
        return op

    def call(self, fn: Callable[[], T], timeout_s: float | None = None) -> T:
        """Run `fn` on this thread and wait for it (from another worker thread); raises its UserError."""
        if self.on_thread():
            return fn()
        future: Future[T] = Future()
        self._queue.put(Operation(fn, label=getattr(fn, "__name__", ""), future=future))
        return future.result(timeout_s)

    def translate(self, exc: BaseException) -> UserError | None:
        """A user-facing error for a known failure that is not a UserError (e.g. SQLite's), or None."""
        return None

    def _loop(self) -> None:
        self.thread_started()
        try:
            while True:
                op = self._queue.get()
                if op is None:
                    break
                if self.stopping.is_set() and not self.drain_on_shutdown:
                    if op.future is not None:
                        op.future.set_exception(UserError("Tern is closing."))
                    continue
                self._run(op)
        finally:
            self.thread_stopping()

    def _run(self, op: Operation[Any]) -> None:
        try:
            result = op.fn()
        except Exception as exc:
            error = self._as_user_error(exc, op.label)
            if op.future is not None:
                op.future.set_exception(error)
            else:
                self._outcome.emit(op, False, error)
        else:
            if op.future is not None:
                op.future.set_result(result)
            elif op.done is not None:
                self._outcome.emit(op, True, result)

    def _as_user_error(self, exc: Exception, label: str) -> UserError:
        if isinstance(exc, UserError):
            self.log.info("%s: %s", label or "operation", exc)
            return exc
        known = self.translate(exc)
        if known is not None:
            self.log.warning("%s failed: %s", label or "operation", known)
            return known
        self.log.exception("%s failed", label or "operation")
        return UserError(UNEXPECTED)

    @Slot(object, bool, object)
    def _deliver(self, op: Operation[Any], succeeded: bool, value: object) -> None:
        if succeeded:
            if op.done is not None:
                op.done(value)
        elif op.failed is not None:
            op.failed(value)  # type: ignore[arg-type]
        elif not op.quiet:
            self.failure.emit(value)
