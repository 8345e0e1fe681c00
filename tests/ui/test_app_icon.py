"""Tern's icon: drawn from the SVG for the window, and packed for the installers at build time."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from PySide6.QtGui import QImage
from pytestqt.qtbot import QtBot

from app.ui.app_icon import app_icon, render

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import render_icons


def test_the_icon_is_drawn_at_every_size(qtbot: QtBot) -> None:
    image = render(64)
    assert image.width() == image.height() == 64
    assert image.pixelColor(0, 0).alpha() == 0  # rounded corners are transparent
    centre = image.pixelColor(20, 40)
    assert centre.alpha() == 255 and centre.blue() > centre.red()  # the blue tile
    assert {s.width() for s in app_icon().availableSizes()} >= {16, 32, 48, 256}


def test_ico_and_icns_hold_every_image(qtbot: QtBot, tmp_path: Path) -> None:
    images = {size: render_icons.png(size) for size in (16, 32, 256)}
    ico = render_icons.ico(images)
    reserved, kind, count = struct.unpack_from("<HHH", ico)
    assert (reserved, kind, count) == (0, 1, 3)
    for index in range(count):
        width, _h, _c, _r, _planes, bpp, size, offset = struct.unpack_from("<BBBBHHII", ico, 6 + 16 * index)
        assert bpp == 32 and ico[offset : offset + 8] == b"\x89PNG\r\n\x1a\n"
        assert QImage.fromData(ico[offset : offset + size]).width() == (width or 256)
    all_sizes = {size: render_icons.png(size) for _kind, size in render_icons.ICNS_TYPES}
    icns = render_icons.icns(all_sizes)
    assert icns[:4] == b"icns" and struct.unpack_from(">I", icns, 4)[0] == len(icns)
    position, kinds = 8, []
    while position < len(icns):
        kinds.append(icns[position : position + 4])
        position += struct.unpack_from(">I", icns, position + 4)[0]
    assert position == len(icns) and kinds == [kind for kind, _size in render_icons.ICNS_TYPES]
