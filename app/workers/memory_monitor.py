"""The live memory meter: samples residency on its own thread, about once a second.

Reading /proc/self/pagemap for a 2.4 GB table takes milliseconds, and the
inference thread is busy generating, so sampling gets a thread of its own and
the GUI thread only receives finished readings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, QTimer, Signal, Slot

from app.core.engine.options import LoadedModel
from app.core.engine.residency import ProcessMemory, process_memory, resident_bytes


@dataclass(frozen=True)
class MemoryReading:
    """One sample."""

    model: LoadedModel | None
    ple_resident: int | None  # bytes of the PLE table present in this process; None: no PLE or n/a
    process: ProcessMemory | None
    thread_id: int  # where it was sampled (never the GUI thread)


class _Sampler(QObject):
    reading = Signal(object)

    def __init__(self, interval_ms: int) -> None:
        super().__init__()
        self._interval_ms = interval_ms
        self._lock = threading.Lock()
        self._model: LoadedModel | None = None
        self._timer: QTimer | None = None

    def set_model(self, model: LoadedModel | None) -> None:
        with self._lock:
            self._model = model

    @Slot()
    def start(self) -> None:
        self._timer = QTimer(self)  # created here, so it fires on this thread
        self._timer.setInterval(self._interval_ms)
        self._timer.timeout.connect(self.sample)
        self._timer.start()
        self.sample()

    @Slot()
    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()

    @Slot()
    def sample(self) -> None:
        with self._lock:
            model = self._model
        ple = model.info.ple_tensor if model else None
        resident = resident_bytes(model.info.path, ple.offset, ple.n_bytes) if model and ple else None
        self.reading.emit(MemoryReading(model, resident, process_memory(), threading.get_ident()))


class MemoryMonitor(QObject):
    """GUI-side handle of the sampling thread."""

    reading = Signal(object)  # MemoryReading, delivered on the GUI thread
    _sample_requested = Signal()

    def __init__(self, interval_ms: int = 1000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("memory-monitor")
        self._sampler = _Sampler(interval_ms)
        self._sampler.moveToThread(self._thread)
        self._thread.started.connect(self._sampler.start)
        self._sample_requested.connect(self._sampler.sample)
        self._sampler.reading.connect(self.reading)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def set_model(self, model: LoadedModel | None) -> None:
        """Measure this model from now on, and take a reading right away."""
        self._sampler.set_model(model)
        self._sample_requested.emit()

    def shutdown(self) -> None:
        """Stop the timer and join the thread."""
        if self._thread.isRunning():
            # The timer lives on the sampling thread, so it is stopped there, before the thread ends.
            QMetaObject.invokeMethod(self._sampler, "stop", Qt.ConnectionType.BlockingQueuedConnection)
            self._thread.quit()
            self._thread.wait(5000)
