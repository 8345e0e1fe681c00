"""The images waiting above the composer: a thumbnail each, with a button to take it out, and a line that
says whether the loaded model will see them.

Thumbnails come from memory (the image reader made them); nothing here reads
a file or decodes an untrusted image.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from app.core.chat.image import StoredImage

THUMB = 72  # px, the longest side of a thumbnail in the tray


def thumbnail_pixmap(image: StoredImage, side: int) -> QPixmap:
    """The image's thumbnail, scaled to fit `side` (a grey square when it cannot be shown)."""
    picture = QImage.fromData(image.thumbnail)
    if picture.isNull():
        blank = QPixmap(side, side)
        blank.fill(Qt.GlobalColor.lightGray)
        return blank
    return QPixmap.fromImage(picture).scaled(
        side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


class _Thumb(QWidget):
    """One waiting image: its thumbnail (a click opens it larger) and a remove button."""

    def __init__(self, image: StoredImage, tray: ImageTray) -> None:
        super().__init__(tray)
        self.image = image
        picture = QToolButton(self)
        picture.setIcon(thumbnail_pixmap(image, THUMB))
        picture.setIconSize(QSize(THUMB, THUMB))
        picture.setAutoRaise(True)
        label = image.name or "image"
        picture.setToolTip(f"{label} — {image.width} × {image.height} px. Click to view.")
        picture.setAccessibleName(f"Image {label}")
        picture.setAccessibleDescription("Opens the image larger. It is sent with your next message.")
        picture.clicked.connect(lambda: tray.view_requested.emit(image))
        remove = QToolButton(self)
        remove.setText("✕")
        remove.setToolTip("Remove this image")
        remove.setAccessibleName(f"Remove image {label}")
        remove.setAccessibleDescription("Takes the image out; it is not sent.")
        remove.clicked.connect(lambda: tray.remove(image.key))
        self.remove_button = remove
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(picture)
        layout.addWidget(remove, 0, Qt.AlignmentFlag.AlignTop)


class ImageTray(QWidget):
    """Images to send with the next message; hidden while there are none."""

    changed = Signal()
    view_requested = Signal(object)  # a StoredImage to show larger
    projector_requested = Signal()  # "Get the image projector…"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Images to send")
        self._row = QHBoxLayout()
        self._row.setContentsMargins(0, 0, 0, 0)
        self._row.setSpacing(6)
        self._row.addStretch(1)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.PlainText)
        self.projector_button = QPushButton("Get the image projector…")
        self.projector_button.clicked.connect(self.projector_requested)
        self.projector_button.setAccessibleName("Get the image projector")
        self.projector_button.setAccessibleDescription(
            "Downloads the loaded model's image projector from the repository it came from, so it can see images"
        )
        notes = QHBoxLayout()
        notes.setContentsMargins(0, 0, 0, 0)
        notes.addWidget(self.note, 1)
        notes.addWidget(self.projector_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(self._row)
        layout.addLayout(notes)
        self._thumbs: list[_Thumb] = []
        self._unseen = ""  # why the loaded model will not see images ("" when it will)
        self._offer_projector = False
        self._refresh()

    @property
    def images(self) -> tuple[StoredImage, ...]:
        """The waiting images, in the order they were added."""
        return tuple(t.image for t in self._thumbs)

    def add(self, images: list[StoredImage]) -> None:
        """Add images (one already waiting is not added twice)."""
        waiting = {t.image.key for t in self._thumbs}
        for image in images:
            if image.key in waiting:
                continue
            waiting.add(image.key)
            thumb = _Thumb(image, self)
            self._thumbs.append(thumb)
            self._row.insertWidget(self._row.count() - 1, thumb)
        self._refresh()

    def remove(self, key: str) -> None:
        """Take one image out."""
        for thumb in [t for t in self._thumbs if t.image.key == key]:
            self._thumbs.remove(thumb)
            thumb.deleteLater()
        self._refresh()

    def clear(self) -> None:
        """Take every image out (they were sent)."""
        for thumb in self._thumbs:
            thumb.deleteLater()
        self._thumbs.clear()
        self._refresh()

    def set_unseen(self, why: str, offer_projector: bool) -> None:
        """Say why the loaded model will not see images ("" when it will), and whether a projector can be got."""
        self._unseen, self._offer_projector = why, offer_projector
        self._refresh()

    @property
    def blocked(self) -> str:
        """Why the waiting images cannot be sent now ("" when they can, or there are none)."""
        return self._unseen if self._thumbs else ""

    def _refresh(self) -> None:
        self.note.setText(self._unseen)
        self.note.setVisible(bool(self._thumbs and self._unseen))
        self.projector_button.setVisible(bool(self._thumbs and self._unseen and self._offer_projector))
        self.setVisible(bool(self._thumbs))
        self.changed.emit()
