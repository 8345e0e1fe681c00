"""Untrusted work in a child process that can be killed.

A GGUF file and the chat template inside it come from wherever the user got
them. llama.cpp answers some malformed files with an abort (`GGML_ASSERT`) or
a hang, and a Jinja template can loop for minutes, or compute a number so big
that Python holds its global lock while it does. None of that can be stopped
from a thread. So such work runs in a `Sandbox`: a spawned child process that
serves calls one at a time. A call that runs past its time limit gets the
child killed; a child that dies (an abort, a segfault, the kernel's OOM
killer) is reported with how it died. Either way the next call starts a fresh
child, and the app only ever sees a `SandboxError` with a reason.

The child is started on first use and then kept, so a call costs a pipe round
trip, not a process start. Functions are sent by reference: they must be
importable, module-level functions, with picklable arguments and results.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

log = logging.getLogger("tern.sandbox")
T = TypeVar("T")


class SandboxError(Exception):
    """The call did not return: `kind` is "timeout", "crashed", "memory" or "error" (an exception there)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        known = {"SIGABRT": "it aborted", "SIGSEGV": "it crashed", "SIGKILL": "it was killed (out of memory?)"}
        return known.get(name, f"it died ({name})")
    return f"it exited with status {code}"


def exit_with_parent(parent: int) -> None:
    """In a child process: end it as soon as `parent` (the app's process id) is gone.

    Otherwise a child could linger after a crash, holding a model's memory, or block for
    ever handing a result to nobody. The id comes from the parent: a child still starting
    when the app died would otherwise take its new parent for the app.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _serve(conn: Connection, memory_limit: int | None, parent: int) -> None:
    """The child: run each (function, args) received and send back how it went."""
    exit_with_parent(parent)
    if memory_limit and sys.platform.startswith("linux"):
        import resource  # POSIX only

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        fn, args = item
        try:
            result: tuple[str, Any] = ("ok", fn(*args))
        except MemoryError:
            result = ("memory", "it needed more memory than it may use")
        except RecursionError:
            result = ("error", ("RecursionError", "it recursed too deeply"))
        except Exception as exc:
            result = ("error", (type(exc).__name__, str(exc)[:2000]))
        try:
            conn.send(result)
        except Exception:  # an unpicklable result is the caller's bug; say so rather than hang
            conn.send(("error", ("PicklingError", "the result could not be sent back")))


class Sandbox:
    """A killable child process that runs calls one at a time (thread-safe; callers take turns)."""

    def __init__(self, name: str, memory_limit: int | None = None) -> None:
        self.name = name
        self._memory_limit = memory_limit
        self._lock = threading.Lock()
        self._process: Any = None  # multiprocessing.Process (of the spawn context)
        self._conn: Connection | None = None
        self.restarts = 0  # children replaced after a timeout or a death (for tests and logs)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """`fn(*args)` in the child; raises SandboxError when it fails, hangs past `timeout` s, or dies."""
        with self._lock:
            conn = self._start()
            try:
                conn.send((fn, args))
            except (OSError, ValueError) as exc:
                self._stop(kill=True)
                raise SandboxError("crashed", f"{self.name}: the child process is gone ({exc})") from exc
            if not conn.poll(timeout):
                self._stop(kill=True)
                raise SandboxError("timeout", f"it took longer than {timeout:.0f} s")
            try:
                status, value = conn.recv()
            except (EOFError, OSError):
                code = self._stop(kill=False)
                raise SandboxError("crashed", _describe_exit(code)) from None
        if status == "ok":
            return value  # type: ignore[no-any-return]
        if status == "memory":
            raise SandboxError("memory", value)
        kind, message = value
        raise SandboxError("error", f"{kind}: {message}" if message else kind)

    def close(self) -> None:
        """Stop the child (it is started again by the next call)."""
        with self._lock:
            self._stop(kill=False, ask=True)

    def _start(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        self._stop(kill=True)
        context = multiprocessing.get_context("spawn")  # no inherited threads, locks or Qt state
        parent, child = context.Pipe()
        process = context.Process(
            target=_serve, args=(child, self._memory_limit, os.getpid()), name=f"tern-{self.name}", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        return parent

    def _stop(self, kill: bool, ask: bool = False) -> int | None:
        """End the child; returns its exit code."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is None:
            return None
        if ask and conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
        if kill and process.is_alive():
            process.kill()
            self.restarts += 1
            log.warning("Sandbox %s: killed a child that did not answer in time", self.name)
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
        elif not kill and not ask:
            self.restarts += 1
            log.warning("Sandbox %s: its child died (%s)", self.name, _describe_exit(process.exitcode))
        if conn is not None:
            conn.close()
        return process.exitcode  # type: ignore[no-any-return]
