"""Crash handling: uncaught exceptions are logged (and shown), hard crashes leave a faulthandler trace.

A marker file exists while the app runs; if it is still there at the next
start, the previous run did not exit cleanly and the window says so.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import TextIO

from app.core.redact import failure

log = logging.getLogger("tern.crash")


class CrashHandler:
    """Installs the hooks; call `clean_exit()` at a normal shutdown."""

    def __init__(self, log_dir: Path, show_dialogs: bool = True) -> None:
        self.crash_log = log_dir / "crash.log"
        self._marker = log_dir / "running.pid"
        self._show_dialogs = show_dialogs
        self._fault_file: TextIO | None = None
        self.previous_run_crashed = False

    def install(self) -> None:
        """Hook exceptions and fatal signals, and note that a run is in progress."""
        self.previous_run_crashed = self._marker.exists()
        self._marker.write_text(str(os.getpid()))
        self._fault_file = self.crash_log.open("a", encoding="utf-8")
        faulthandler.enable(self._fault_file, all_threads=True)
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_excepthook

    def _excepthook(self, kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        text = failure(value.with_traceback(tb))  # no message: it may quote the user
        log.critical("Uncaught exception: %s", text)
        log.debug("Uncaught exception", exc_info=(kind, value, tb))
        if self._fault_file is not None:
            self._fault_file.write(text)
            self._fault_file.flush()
        # Widgets live on the GUI thread; from another thread the log entry is all there is.
        if self._show_dialogs and threading.current_thread() is threading.main_thread():
            from PySide6.QtWidgets import QApplication, QMessageBox

            if QApplication.instance() is not None:
                QMessageBox.critical(
                    None, "Tern hit a bug", f"{kind.__name__}: {value}\n\nThe details were saved to {self.crash_log}."
                )

    def _thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        self._excepthook(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)

    def clean_exit(self) -> None:
        """Remove the run marker and restore the default hooks."""
        self._marker.unlink(missing_ok=True)
        faulthandler.disable()
        if self._fault_file is not None:
            self._fault_file.close()
            self._fault_file = None
        sys.excepthook = sys.__excepthook__
        threading.excepthook = threading.__excepthook__
