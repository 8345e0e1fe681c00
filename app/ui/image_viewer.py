"""A question's image, larger, in a window of its own."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QScrollArea, QVBoxLayout, QWidget

from app.core.chat.image import StoredImage


class ImageViewer(QDialog):
    """Shows an image as Tern keeps it (metadata stripped), scaled down to fit the screen, never up."""

    def __init__(self, image: StoredImage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        name = image.name or "Image"
        self.setWindowTitle(f"{name} — {image.width} × {image.height}")
        picture = QImage.fromData(image.data or image.thumbnail)
        self.label = QLabel()
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setAccessibleName(name)
        screen = self.screen().availableGeometry() if self.screen() else None
        fit_w, fit_h = (int(screen.width() * 0.8), int(screen.height() * 0.8)) if screen else (1200, 900)
        pixmap = QPixmap.fromImage(picture)
        if pixmap.width() > fit_w or pixmap.height() > fit_h:
            pixmap = pixmap.scaled(
                fit_w, fit_h, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        self.label.setPixmap(pixmap)
        scroll = QScrollArea()
        scroll.setWidget(self.label)
        scroll.setWidgetResizable(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(buttons)
        self.resize(min(fit_w, pixmap.width() + 40), min(fit_h, pixmap.height() + 80))
