"""The live memory meter: samples residency on its own thread, about once a second.

Reading /proc/self/pagemap for a 2.4 GB table takes milliseconds, and the
inference thread is busy generating, so sampling gets a thread of its own and
the GUI thread only receives finished readings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from app.core.engine.options import LoadedModel
from app.core.engine.residency import ProcessMemory, process_memory, resident_bytes
from app.services.worker_host import WorkerHost


@dataclass(frozen=True)
class MemoryReading:
    """One sample."""

    model: LoadedModel | None
    ple_resident: int | None  # bytes of the PLE table present in this process; None: no PLE or n/a
    process: ProcessMemory | None
    thread_id: int  # where it was sampled (never the GUI thread)


class MemoryMonitor(WorkerHost):
    """Samples on the "memory-monitor" thread; readings arrive on the GUI thread."""

    reading = Signal(object)  # MemoryReading
    drain_on_shutdown = False

    def __init__(self, interval_ms: int = 1000, parent: QObject | None = None) -> None:
        super().__init__("memory-monitor", parent)
        self._interval_s = interval_ms / 1000
        self._lock = threading.Lock()
        self._model: LoadedModel | None = None
        self._wake = threading.Event()

    def start(self) -> None:
        """Start sampling."""
        super().start()
        self.submit(self._sample_until_stopped, label="sample memory")

    def set_model(self, model: LoadedModel | None) -> None:
        """Measure this model from now on, and take a reading right away."""
        with self._lock:
            self._model = model
        self._wake.set()

    def about_to_stop(self) -> None:
        """End the sampling loop now rather than at its next tick."""
        self._wake.set()

    def _sample_until_stopped(self) -> None:
        while not self.stopping.is_set():
            self._sample()
            self._wake.wait(self._interval_s)
            self._wake.clear()

    def _sample(self) -> None:
        with self._lock:
            model = self._model
        ple = model.info.ple_tensor if model else None
        resident = resident_bytes(model.info.path, ple.offset, ple.n_bytes) if model and ple else None
        self.reading.emit(MemoryReading(model, resident, process_memory(), threading.get_ident()))
