"""Tern's icon, drawn from resources/icons/tern.svg at the sizes window managers ask for."""

from __future__ import annotations

import functools
from importlib import resources

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 24, 32, 48, 64, 128, 256)


@functools.cache
def _svg() -> bytes:
    return resources.files("resources").joinpath("icons", "tern.svg").read_bytes()


def render(size: int) -> QImage:
    """The icon as a square ARGB image of `size` pixels (also used to make the PNGs at build time)."""
    renderer = QSvgRenderer(QByteArray(_svg()))
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


@functools.cache
def app_icon() -> QIcon:
    """The window and dialog icon (rendered without Qt's SVG plugins, which a bundle may leave out)."""
    icon = QIcon()
    for size in SIZES:
        icon.addPixmap(QPixmap.fromImage(render(size)))
    return icon
