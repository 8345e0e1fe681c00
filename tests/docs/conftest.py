"""Real documents for the extraction tests: PDFs drawn with Qt, and an encrypted PDF written byte by byte."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPageSize, QPainter, QPdfWriter

MakePdf = Callable[..., Path]


def write_pdf(path: Path, pages: list[str], *, title: str = "", scanned: bool = False) -> Path:
    """A PDF with one page per string, drawn as real text; `scanned` draws each page as an image instead."""
    writer = QPdfWriter(str(path))
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setResolution(72)  # so painter units are PDF points
    writer.setTitle(title)
    painter = QPainter(writer)
    for index, text in enumerate(pages):
        if index:
            writer.newPage()
        if scanned:
            image = QImage(400, 200, QImage.Format.Format_RGB32)
            image.fill(QColor("white"))
            image_painter = QPainter(image)
            image_painter.drawText(QRectF(10, 10, 380, 180), Qt.TextFlag.TextWordWrap, text)
            image_painter.end()
            painter.drawImage(QRectF(50, 50, 400, 200), image)
        else:
            painter.drawText(QRectF(50, 50, 480, 700), Qt.TextFlag.TextWordWrap, text)
    painter.end()
    return path


@pytest.fixture
def make_pdf(qapp: object) -> MakePdf:
    """write_pdf, once a QApplication exists for QPdfWriter and its fonts."""
    return write_pdf


# The standard security handler, revision 2 (40-bit RC4), as in the PDF 1.7 spec, section 7.6.3.
_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def _padded(password: str) -> bytes:
    return (password.encode("latin-1") + _PAD)[:32]


def write_encrypted_pdf(path: Path, text: str, *, user_password: str, owner_password: str = "owner") -> Path:
    """A one-page PDF whose content is RC4-encrypted; an empty user password opens without asking (owner-only)."""
    permissions = -4  # everything allowed
    doc_id = hashlib.md5(path.name.encode()).digest()
    owner = _rc4(hashlib.md5(_padded(owner_password)).digest()[:5], _padded(user_password))
    key = hashlib.md5(_padded(user_password) + owner + struct.pack("<i", permissions) + doc_id).digest()[:5]
    user = _rc4(key, _PAD)
    content_obj = 5
    object_key = hashlib.md5(key + content_obj.to_bytes(3, "little") + (0).to_bytes(2, "little")).digest()[:10]
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = _rc4(object_key, f"BT /F1 18 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1"))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >>"
        b" /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>"
        % (owner.hex().encode(), user.hex().encode(), permissions),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 6 0 R /ID [<%s> <%s>] >>\n" % (
        len(objects) + 1,
        doc_id.hex().encode(),
        doc_id.hex().encode(),
    )
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    path.write_bytes(bytes(out))
    return path
