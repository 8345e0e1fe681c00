"""API requests waiting for the model: one at a time, in order, in a bounded line.

The model has one owner, the inference thread, which also answers the chat
window. `ApiQueue` hands that thread at most one API job at a time: the next
waits here, not in the inference thread's own queue, so a question the user
asks in the window goes after the API job that is running, never after every
job an IDE has queued. A full line refuses more (HTTP 429, with a hint of
when to retry). A job whose client has gone before it started is skipped.

A `Job` carries the answer back: the inference thread puts pieces and the end
into it, the request's own thread takes them out and writes them to the socket.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.core.api.protocol import ApiError
from app.core.chat.message import ToolCall
from app.core.engine.generation import GenerationStats
from app.core.turn import TurnCancel

QUEUE_CAPACITY = 8  # API jobs waiting behind the running one


@dataclass(frozen=True)
class Piece:
    """A streamed piece of text."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The generation ended (with tool calls for the client to run, when it made some)."""

    stats: GenerationStats
    calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Failed:
    """The generation could not run; `error` is the answer."""

    error: ApiError


Event = Piece | Finished | Failed


class Job:
    """One API generation: `work(job)` runs on the inference thread and reports through `piece`/`finish`/`fail`."""

    def __init__(self, work: Callable[[Job], None], client: str = "") -> None:
        self.work = work
        self.client = client
        self.cancel = TurnCancel()
        self.on_piece: Callable[[str], None] | None = None  # also hears each piece (on the inference thread)
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()

    # On the inference thread
    def piece(self, text: str) -> None:
        """A streamed piece."""
        if text:
            self._events.put(Piece(text))
            if self.on_piece is not None:
                self.on_piece(text)

    def finish(self, stats: GenerationStats, calls: tuple[ToolCall, ...] = ()) -> None:
        """The end, with the generation's figures and the calls it made."""
        self._events.put(Finished(stats, calls))

    def fail(self, error: ApiError) -> None:
        """No answer, and why."""
        self._events.put(Failed(error))

    # On the request's thread
    def next_event(self, timeout_s: float) -> Event | None:
        """The next event, or None when none came within `timeout_s`."""
        try:
            return self._events.get(timeout=timeout_s)
        except queue.Empty:
            return None


class ApiQueue:
    """Runs jobs one after another through `submit` (which queues a call on the inference thread)."""

    def __init__(
        self,
        submit: Callable[[Callable[[], None]], Any],
        capacity: int = QUEUE_CAPACITY,
        on_busy: Callable[[str], None] = lambda _client: None,
    ) -> None:
        self._submit = submit
        self._capacity = capacity
        self._on_busy = on_busy  # the client being served, "" when none (called on the inference thread)
        self._lock = threading.Lock()
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._recent_s = 30.0  # how long a job took lately, for Retry-After

    def enqueue(self, job: Job) -> None:
        """Put `job` in line, or raise a 429 ApiError when the line is full."""
        with self._lock:
            if len(self._waiting) >= self._capacity:
                wait = max(1, round(self._recent_s * (len(self._waiting) + 1)))
                raise ApiError(
                    429,
                    f"Tern is busy: {len(self._waiting)} requests are waiting for the model. Retry in about {wait} s.",
                    kind="rate_limit_error",
                    code="busy",
                    retry_after_s=wait,
                )
            self._waiting.append(job)
            start = self._running is None
        if start:
            self._next()

    def _next(self) -> None:
        with self._lock:
            if self._running is not None:
                return
            while self._waiting and self._waiting[0].cancel.is_set():
                self._waiting.popleft().fail(ApiError(499, "The client went away before its turn.", code="cancelled"))
            if not self._waiting:
                return
            job = self._running = self._waiting.popleft()
        self._submit(lambda: self._run(job))

    def _run(self, job: Job) -> None:
        started = time.monotonic()
        self._on_busy(job.client or "a client")
        try:
            if job.cancel.is_set():
                job.fail(ApiError(499, "The client went away before its turn.", code="cancelled"))
            else:
                job.work(job)
        except ApiError as exc:
            job.fail(exc)
        except Exception as exc:  # a bug: the client gets a 500, the thread goes on
            job.fail(ApiError(500, f"Unexpected error: {type(exc).__name__}", kind="server_error"))
            raise
        finally:
            took = time.monotonic() - started
            with self._lock:
                self._running = None
                self._recent_s = 0.7 * self._recent_s + 0.3 * took
                more = bool(self._waiting)
            if not more:
                self._on_busy("")
            self._next()

    def cancel_all(self, reason: str) -> None:
        """Stop the running job and refuse the waiting ones (the app is closing)."""
        with self._lock:
            waiting, self._waiting = list(self._waiting), collections.deque()
            running = self._running
        if running is not None:
            running.cancel.stop(reason)
        for job in waiting:
            job.fail(ApiError(503, reason, kind="server_error", code="closing"))
