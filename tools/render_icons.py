"""Render resources/icons/tern.svg into the icon files installers need.

    python tools/render_icons.py OUT_DIR

writes OUT_DIR/<n>x<n>.png (hicolor sizes), tern.ico (Windows) and tern.icns
(macOS), each from the same SVG the window icon is drawn from.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QGuiApplication

from app.desktop_entry import ICON_SIZES
from app.ui.app_icon import render

ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS element types and the pixel size each holds (PNG data; "@2x" types double the point size).
ICNS_TYPES = (
    (b"icp4", 16), (b"icp5", 32), (b"icp6", 64), (b"ic07", 128), (b"ic08", 256), (b"ic09", 512),
    (b"ic10", 1024), (b"ic11", 32), (b"ic12", 64), (b"ic13", 256), (b"ic14", 512),
)  # fmt: skip


def png(size: int) -> bytes:
    """The icon at `size` pixels, as PNG bytes."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not render(size).save(buffer, "PNG"):
        raise RuntimeError(f"could not encode the {size}px icon")
    return bytes(data.data())


def ico(images: dict[int, bytes]) -> bytes:
    """A Windows .ico holding PNG images (Windows Vista and later read these)."""
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = len(header) + 16 * len(images)
    entries, blobs = b"", b""
    for size, data in sorted(images.items()):
        side = 0 if size >= 256 else size  # 0 means 256 in an ICONDIRENTRY
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(data), offset + len(blobs))
        blobs += data
    return header + entries + blobs


def icns(images: dict[int, bytes]) -> bytes:
    """A macOS .icns of PNG elements."""
    body = b"".join(kind + struct.pack(">I", len(images[size]) + 8) + images[size] for kind, size in ICNS_TYPES)
    return b"icns" + struct.pack(">I", len(body) + 8) + body


def main() -> None:
    """Write every icon file into the folder given on the command line."""
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    app = QGuiApplication.instance() or QGuiApplication([])
    sizes = sorted({*ICON_SIZES, *ICO_SIZES, *(size for _kind, size in ICNS_TYPES)})
    images = {size: png(size) for size in sizes}
    for size in ICON_SIZES:
        (out / f"{size}x{size}.png").write_bytes(images[size])
    (out / "tern.ico").write_bytes(ico({s: images[s] for s in ICO_SIZES}))
    (out / "tern.icns").write_bytes(icns(images))
    del app
    print(f"icons written to {out}")


if __name__ == "__main__":
    main()
