"""Images the user gives the chat: read off the GUI thread, in the image reader's child process.

A dropped, pasted or attached image is untrusted bytes. This service's thread
hands them to `ImageReader` (app/core/images.py), which decodes, checks,
strips and re-encodes them in a child process, and delivers what came of each
on the GUI thread: the images to show and send, and a sentence for each one
that could not be read. Nothing is written to disk on the way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject

from app.core.chat.image import StoredImage
from app.core.images import ImageError, ImageReader, PreparedImage
from app.services.history import HistoryService
from app.services.worker_host import WorkerHost

log = logging.getLogger("tern.images")
Source = Path | tuple[bytes, str]  # a file, or bytes with a name (pasted: "Pasted image")


class ImageService(QObject):
    """Prepares images for the chat on its own thread; opens a stored image whole for viewing."""

    def __init__(self, history: HistoryService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = WorkerHost("images", parent)
        self._history = history
        self._reader: ImageReader | None = None  # its child starts on first use

    def start(self) -> None:
        """Start the thread."""
        self.host.start()

    def _read(self, source: Source) -> PreparedImage:
        if self._reader is None:
            self._reader = ImageReader()
        if isinstance(source, Path):
            return self._reader.prepare_file(source)
        raw, name = source
        return self._reader.prepare(raw, name)

    def prepare(self, sources: Sequence[Source], done: Callable[[list[StoredImage], list[str]], None]) -> None:
        """Read each source; `done(images, problems)` on the GUI thread, a problem per image that failed."""
        items = list(sources)

        def job() -> tuple[list[StoredImage], list[str]]:
            images: list[StoredImage] = []
            problems: list[str] = []
            for source in items:
                name = source.name if isinstance(source, Path) else source[1]
                try:
                    images.append(StoredImage.of(self._read(source)))
                except ImageError as exc:
                    log.info("Image %s not read: %s", name, exc)
                    problems.append(f"{name}: {exc}")
            return images, problems

        self.host.submit(job, lambda outcome: done(*outcome), label="read images")

    def whole(self, image: StoredImage, done: Callable[[StoredImage | None], None]) -> None:
        """`image` with its data (read from the history when only its thumbnail is at hand)."""
        if image.data:
            done(image)
            return
        self._history.query(lambda store: store.images.image(image.key), done)

    def shutdown(self, timeout_s: float = 3.0) -> bool:
        """Stop the thread, then the reader's child."""
        stopped = self.host.shutdown(timeout_s)
        if self._reader is not None and stopped:
            self._reader.close()
        return stopped
