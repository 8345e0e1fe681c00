"""How files reach the running Tern: one Tern per profile, and macOS's file-open events.

Two processes on one encrypted history and two copies of a model in memory
would both be wrong, so a second launch hands its files to the running window
and exits. The first Tern holds a lock file in its data folder and
listens on a local socket (a Unix socket, or a named pipe on Windows) named
after that folder. A later launch (a second double-click, or a file manager's
"Open with") finds the lock taken, connects, sends its file arguments as one
line of JSON and waits for the reply before it exits. QLockFile notices a lock
left by a process that died, so a crash never blocks the next start.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import shiboken6
from PySide6.QtCore import QEvent, QLockFile, QObject, Signal
from PySide6.QtGui import QFileOpenEvent
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from app import APP_ID, APP_NAME

log = logging.getLogger("tern.instance")

CONNECT_TIMEOUT_S = 10.0  # the running Tern may be busy starting up
REPLY = b"ok\n"
MAX_MESSAGE = 1 << 20  # a file list, not a payload


def server_name(data_dir: Path) -> str:
    """The socket name: per user and per data folder, so separate profiles never meet."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    digest = hashlib.sha256(f"{user}\0{data_dir.resolve()}".encode()).hexdigest()[:16]
    return f"{APP_ID}-{digest}"


class SingleInstance(QObject):
    """Claim the profile, or pass the work to the instance that has it."""

    files_received = Signal(list)  # list[Path] from a later launch (may be empty: just come forward)

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = server_name(data_dir)
        self._lock = QLockFile(str(data_dir / f"{APP_ID}.lock"))
        self._lock.setStaleLockTime(0)  # stale only when its process is gone, never by age
        self._server: QLocalServer | None = None
        self._buffers: dict[QLocalSocket, bytearray] = {}

    def claim(self) -> bool:
        """True when this process is now the one Tern for the profile; then call `listen` once Qt runs."""
        return bool(self._lock.tryLock(0))

    def listen(self) -> None:
        """Accept later launches (needs the QApplication, for its event loop)."""
        QLocalServer.removeServer(self.name)  # a socket file left by a crash
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            # Still the only Tern (the lock says so); a later launch will say this one does not answer.
            log.warning("Cannot listen for later launches on %s: %s", self.name, server.errorString())
            return
        server.newConnection.connect(self._accept)
        self._server = server
        log.info("Listening for later launches on %s", server.fullServerName())

    def holder_pid(self) -> int | None:
        """The process that holds the profile, when another one does."""
        pid = self._lock.getLockInfo()[0]
        return int(pid) if pid else None

    def send(self, files: list[Path], timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
        """Hand `files` to the running instance; True once it has acknowledged them.

        Needs a QCoreApplication. The running Tern may have taken the lock a moment
        ago and not be listening yet, so connecting is retried until `timeout_s`.
        """
        if sys.platform == "win32":  # let the running Tern bring its window to the front
            import ctypes

            ctypes.windll.user32.AllowSetForegroundWindow(-1)  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout_s
        socket = QLocalSocket()
        while True:
            socket.connectToServer(self.name)
            if socket.waitForConnected(max(1, int((deadline - time.monotonic()) * 1000))):
                break
            if time.monotonic() >= deadline:
                log.warning("The running %s did not answer on %s: %s", APP_NAME, self.name, socket.errorString())
                return False
            time.sleep(0.1)
        message = json.dumps({"files": [str(p.absolute()) for p in files]}).encode() + b"\n"
        socket.write(message)
        reply = bytearray()
        wait_ms = max(1, int((deadline - time.monotonic()) * 1000))
        if socket.waitForBytesWritten(wait_ms):
            while not reply.endswith(b"\n") and socket.waitForReadyRead(wait_ms):
                reply += bytes(socket.readAll().data())
        socket.disconnectFromServer()
        return bytes(reply) == REPLY

    def release(self) -> None:
        """Stop listening and give up the profile (at shutdown)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._lock.unlock()

    def _accept(self) -> None:
        assert self._server is not None
        while (socket := self._server.nextPendingConnection()) is not None:
            self._buffers[socket] = bytearray()
            socket.readyRead.connect(lambda s=socket: self._read(s))
            socket.disconnected.connect(lambda s=socket: self._forget(s))

    def _read(self, socket: QLocalSocket) -> None:
        buffer = self._buffers.get(socket)
        if buffer is None:
            return
        buffer += bytes(socket.readAll().data())
        if len(buffer) > MAX_MESSAGE:
            log.warning("Dropped an oversized message from a later launch")
            socket.abort()
            return
        if not buffer.endswith(b"\n"):
            return
        try:
            files = [Path(f) for f in json.loads(bytes(buffer))["files"] if isinstance(f, str)]
        except (ValueError, KeyError, TypeError):
            log.warning("Ignored a malformed message from a later launch")
            socket.abort()
            return
        socket.write(REPLY)
        socket.flush()
        log.info("A later launch handed over %d file(s)", len(files))
        self.files_received.emit(files)

    def _forget(self, socket: QLocalSocket) -> None:
        self._buffers.pop(socket, None)
        if shiboken6.isValid(socket):  # not when the server is being torn down with it
            socket.deleteLater()


class FileOpenEvents(QObject):
    """macOS hands "Open with" and Dock drops to the running app as events, not as arguments."""

    files_received = Signal(list)  # list[Path]

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        """Turn each QFileOpenEvent into `files_received`."""
        if event.type() == QEvent.Type.FileOpen and isinstance(event, QFileOpenEvent) and event.file():
            self.files_received.emit([Path(event.file())])
            return True
        return False
