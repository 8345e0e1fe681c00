"""The store writer: one thread owns the encrypted history connection.

Every read and write of the history goes through it as a queued request, so
the GUI thread never waits on the disk or on decryption. Results and failures
come back as signals: a store error carries its message for the user; any
other exception is a bug, logged with its traceback, and still answered with
`failed`, so whoever waits on the request (a turn about to start) never hangs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, Signal, Slot
from sqlcipher3 import dbapi2 as sqlite

from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database, translate
from app.core.store.errors import StoreError

UNEXPECTED = "An unexpected error stopped this change to your history; the details are in Tern's log."

log = logging.getLogger("tern.store")

# A request: (tag, function of the store). The result comes back with the tag.
Request = tuple[str, Callable[[ConversationStore], Any]]
# What `open` needs: the key, or a function that fetches it (a keychain call may block, so it runs here too).
KeySource = bytes | Callable[[], bytes]


class _Writer(QObject):
    opened = Signal()
    open_failed = Signal(object)  # the StoreError, so the window can tell a wrong key from a missing one
    done = Signal(str, object)  # tag, result
    failed = Signal(str, str)  # tag, message for the user

    def __init__(self) -> None:
        super().__init__()
        self._store: ConversationStore | None = None

    @Slot(object, object)
    def open(self, path: Path, key_source: KeySource) -> None:
        self.close()
        try:
            key = key_source if isinstance(key_source, bytes) else key_source()
            connection = open_database(path, key)
        except StoreError as exc:
            self.open_failed.emit(exc)
            return
        except Exception:
            log.exception("Opening the history failed")
            self.open_failed.emit(StoreError(UNEXPECTED))
            return
        self._store = ConversationStore(connection)
        self.opened.emit()

    @Slot(object)
    def run(self, request: Request) -> None:
        tag, job = request
        if self._store is None:
            self.failed.emit(tag, "Your history is not open.")
            return
        self._call(tag, job, self._store)

    @Slot(object)
    def run_closed(self, request: Request) -> None:
        """Close the database, then run a file operation on it (restore, delete); reopening is separate."""
        tag, job = request
        self.close()
        self._call(tag, job, None)

    def _call(self, tag: str, job: Callable[[Any], Any], store: ConversationStore | None) -> None:
        try:
            result = job(store)
        except StoreError as exc:
            self.failed.emit(tag, str(exc))
        except sqlite.Error as exc:
            known = translate(exc)
            if known is None:
                log.exception("Store request %s failed", tag)
            else:
                log.warning("Store request %s failed: %s", tag, known)
            self.failed.emit(tag, str(known or UNEXPECTED))
        except Exception:
            log.exception("Store request %s failed", tag)
            self.failed.emit(tag, UNEXPECTED)
        else:
            self.done.emit(tag, result)

    @Slot()
    def flush(self) -> None:
        """Nothing to do: reaching this slot means every earlier request has run."""

    @Slot()
    def close(self) -> None:
        if self._store is not None:
            self._store.connection.close()  # the store's: a key change swaps it
            self._store = None


class StoreWriter(QObject):
    """GUI-side handle: `submit(tag, job)` runs `job(store)` on the writer thread."""

    opened = Signal()
    open_failed = Signal(object)
    done = Signal(str, object)
    failed = Signal(str, str)
    _open_requested = Signal(object, object)
    _run_requested = Signal(object)
    _run_closed_requested = Signal(object)
    _close_requested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("store-writer")
        self._writer = _Writer()
        self._writer.moveToThread(self._thread)
        self._open_requested.connect(self._writer.open)
        self._run_requested.connect(self._writer.run)
        self._run_closed_requested.connect(self._writer.run_closed)
        self._close_requested.connect(self._writer.close)
        self._writer.opened.connect(self.opened)
        self._writer.open_failed.connect(self.open_failed)
        self._writer.done.connect(self.done)
        self._writer.failed.connect(self.failed)
        self._thread.start()

    def open(self, path: Path, key_source: KeySource) -> None:
        """Open the database on the writer thread (closing one already open)."""
        self._open_requested.emit(path, key_source)

    def close(self) -> None:
        """Close the database (lock); queued requests before this still run."""
        self._close_requested.emit()

    def submit(self, tag: str, job: Callable[[ConversationStore], Any]) -> None:
        """Queue `job`; requests run in the order they were submitted."""
        self._run_requested.emit((tag, job))

    def submit_closed(self, tag: str, job: Callable[[None], Any]) -> None:
        """Close the database and queue a file operation `job(None)`; call `open` after it to reopen."""
        self._run_closed_requested.emit((tag, job))

    def shutdown(self) -> None:
        """Finish queued requests, close the database and join the thread."""
        if self._thread.isRunning():
            # Queued requests run first: a blocking call is answered after everything before it.
            QMetaObject.invokeMethod(self._writer, "flush", Qt.ConnectionType.BlockingQueuedConnection)
            self._thread.quit()
            self._thread.wait()
            self._writer.close()  # the thread has ended, so this cannot race it
