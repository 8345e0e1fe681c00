"""An image sent with a question, as the history keeps it and the chat shows it: plain data.

It is the image as Tern prepared it (app/core/images.py): decoded in a child
process, stripped of every metadata block and re-encoded; `key` is the SHA-256
of those bytes. The encrypted history stores it (app/core/store/image_store.py).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.core.images import PreparedImage


@dataclass(frozen=True)
class StoredImage:
    """An image as the history keeps it."""

    key: str  # SHA-256 of `data`, hex
    mime: str
    width: int
    height: int
    data: bytes
    thumbnail: bytes
    name: str = ""

    @classmethod
    def of(cls, image: PreparedImage) -> StoredImage:
        """A prepared image (app/core/images.py) as the history keeps it."""
        return cls(image.sha256, image.mime, image.width, image.height, image.data, image.thumbnail, image.name)

    def as_json(self) -> dict[str, Any]:
        """Plain data for an export (the image's bytes in base64)."""
        return {
            "key": self.key,
            "mime": self.mime,
            "width": self.width,
            "height": self.height,
            "name": self.name,
            "data": base64.b64encode(self.data).decode("ascii"),
            "thumbnail": base64.b64encode(self.thumbnail).decode("ascii"),
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> StoredImage:
        """Read back `as_json`; ValueError when the data is not the image it says it is."""
        data = base64.b64decode(str(item["data"]), validate=True)
        key = hashlib.sha256(data).hexdigest()
        if key != item.get("key", key):
            raise ValueError("an exported image does not match its key")
        return cls(
            key, str(item["mime"]), int(item["width"]), int(item["height"]), data,
            base64.b64decode(str(item.get("thumbnail", "")), validate=True), str(item.get("name", "")),
        )  # fmt: skip
