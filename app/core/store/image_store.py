"""Images in the encrypted history: kept once each by their SHA-256, tied to the questions that sent them.

What is stored is the image as Tern prepared it (app/core/images.py): decoded
in a child process, stripped of every metadata block (EXIF and its GPS
position included) and re-encoded. The thumbnail shown in the chat is stored
beside it, so nothing about an image is ever written outside the database:
no temp file, no thumbnail cache.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from app.core.chat.image import StoredImage
from app.core.store.database import Connection


class ImageStore:
    """Repository of images over the history's connection."""

    def __init__(self, conn: Connection) -> None:
        self._db = conn

    def use(self, conn: Connection) -> None:
        """Go on with another connection to the same history."""
        self._db = conn

    def attach(self, message_id: int, images: Sequence[StoredImage]) -> None:
        """Keep `images` (once each) and tie them, in order, to a message: inside the caller's transaction,
        which adds the message."""
        self.keep(images)
        for ord_, image in enumerate(images):
            self._db.execute(
                "INSERT INTO message_images (message_id, ord, key) VALUES (?, ?, ?)", (message_id, ord_, image.key)
            )

    def keep(self, images: Iterable[StoredImage]) -> None:
        """Keep `images` once each, for the caller to tie to a message or a document's chunk in the same
        transaction: an image nothing holds goes when the last thing holding it does (schema triggers)."""
        now = time.time()
        for image in images:
            if image.data:  # without data: an image already kept (a new version of a question keeps its images)
                row = (image.key, image.mime, image.width, image.height, image.name, image.data, image.thumbnail)
                self._db.execute(
                    "INSERT OR IGNORE INTO images (key, mime, width, height, name, data, thumbnail, added_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*row, now),
                )

    def keys_of(self, message_ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
        """The images of each message that has some, by key, in the order they were sent."""
        ids = list(message_ids)
        found: dict[int, list[str]] = {}
        for start in range(0, len(ids), 500):  # SQLite's limit on bound parameters
            part = ids[start : start + 500]
            rows = self._db.execute(
                f"SELECT message_id, key FROM message_images WHERE message_id IN ({','.join('?' * len(part))}) "
                "ORDER BY message_id, ord",
                part,
            ).fetchall()
            for message_id, key in rows:
                found.setdefault(int(message_id), []).append(str(key))
        return {message_id: tuple(keys) for message_id, keys in found.items()}

    def image(self, key: str) -> StoredImage | None:
        """One image, with its data; None when no message or document holds it any more."""
        row = self._db.execute(
            "SELECT key, mime, width, height, data, thumbnail, name FROM images WHERE key = ?", (key,)
        ).fetchone()
        return StoredImage(row[0], row[1], row[2], row[3], bytes(row[4]), bytes(row[5]), row[6]) if row else None

    def thumbnails(self, keys: Iterable[str]) -> dict[str, StoredImage]:
        """The images found among `keys`, for display: each with its thumbnail, without its data."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, StoredImage] = {}
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            rows = self._db.execute(
                "SELECT key, mime, width, height, thumbnail, name FROM images "
                f"WHERE key IN ({','.join('?' * len(part))})",
                part,
            ).fetchall()
            for key, mime, width, height, thumb, name in rows:
                found[str(key)] = StoredImage(
                    str(key), str(mime), int(width), int(height), b"", bytes(thumb), str(name)
                )
        return found
