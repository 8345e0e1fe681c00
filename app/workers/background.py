"""Run one short blocking call (reading a file, a header check) on Qt's thread pool, answer on the GUI thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class _Relay(QObject):
    """Lives on the GUI thread; its signals carry the outcome back there."""

    done = Signal(object)
    failed = Signal(object)


class _Call(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self._fn = fn
        self._relay = relay

    def run(self) -> None:
        try:
            result = self._fn()
        except Exception as exc:  # handed to the caller, which decides what the user sees
            self._relay.failed.emit(exc)
        else:
            self._relay.done.emit(result)


def in_background(
    fn: Callable[[], Any],
    done: Callable[[Any], None],
    failed: Callable[[Exception], None],
    parent: QObject,
) -> None:
    """Call `fn` off the GUI thread; then `done(result)` or `failed(exception)` on the GUI thread.

    Nothing is delivered once `parent` is gone.
    """
    relay = _Relay(parent)
    relay.done.connect(done)
    relay.failed.connect(failed)
    relay.done.connect(relay.deleteLater)
    relay.failed.connect(relay.deleteLater)
    QThreadPool.globalInstance().start(_Call(fn, relay))
