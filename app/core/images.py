"""Images from the user, read in a child process: checked, stripped of metadata, resized.

An image dropped on the chat or sent to the local API is untrusted input fed to
C decoders (libpng's zlib, libjpeg-turbo, libwebp, PDFium for a scanned page).
So the app never decodes one itself: an `ImageReader` sends the bytes to a
`Sandbox` child that runs with a memory limit and a time limit. There the size
is checked from the header before any pixel is decoded, the EXIF orientation
is applied, colours are brought to sRGB, alpha is laid over white, and the
image is written out afresh with no metadata at all (no EXIF or GPS, no XMP,
no ICC profile, no comments or text chunks), at most KEEP_SIDE pixels on its
longest side. What comes back is plain data: `PreparedImage` or `Pixels`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import logging
import re
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app.core import units
from app.core.errors import UserError
from app.core.sandbox import Sandbox, SandboxError

if TYPE_CHECKING:
    from PIL import Image as PILImage

log = logging.getLogger("tern.images")
T = TypeVar("T")

MAX_BYTES = 50_000_000  # an image file; a 50 MB photo is already far past what a camera writes
MAX_PIXELS = 50_000_000  # what the header may claim; 50 MP of RGBA is 200 MB once decoded
MAX_TEXT_CHUNK = 1_000_000  # one PNG text chunk, decompressed (about Pillow's own default)
MAX_TEXT_MEMORY = 16_000_000  # all of a PNG's text chunks together (Pillow allows 64 MiB)
KEEP_SIDE = 2048  # the longest side of the image Tern keeps
THUMB_SIDE = 320  # the longest side of the thumbnail shown in the chat
JPEG_QUALITY = 90
THUMB_QUALITY = 85
MEMORY_LIMIT = 1536 * 1024**2  # the child's address space: a 50 MP image with its copies fits
TIME_LIMIT_S = 10.0  # per call, plus TIME_S_PER_MB for the bytes sent
TIME_S_PER_MB = 0.5
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")  # what Pillow may try; MPO (a phone's JPEG) comes in as JPEG
READABLE = "PNG, JPEG, WebP, GIF, BMP"
MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif", "bmp": "image/bmp"}
_DATA_URL_MIMES = {**{m: m for m in MIME_TYPES.values()}, "image/jpg": "image/jpeg", "image/x-ms-bmp": "image/bmp"}
_WHITE = (255, 255, 255)


class ImageError(UserError):
    """An image that cannot be used, with the reason for the user."""


@dataclass(frozen=True)
class PreparedImage:
    """An image as Tern keeps it: re-encoded without metadata, at most KEEP_SIDE pixels a side."""

    data: bytes  # PNG, or JPEG for photos that came as JPEG
    mime: str  # "image/png" or "image/jpeg"
    width: int
    height: int
    sha256: str  # hex digest of `data`
    thumbnail: bytes  # same format as `data`, at most THUMB_SIDE pixels a side, for display
    name: str = ""  # the file it came from, if any


@dataclass(frozen=True)
class Pixels:
    """Decoded 8-bit RGB, row-major, no padding: what libmtmd's bitmap takes."""

    width: int
    height: int
    rgb: bytes  # width * height * 3 bytes


def sniff_image(raw: bytes) -> str | None:
    """ "png", "jpeg", "webp", "gif" or "bmp" from the first bytes, else None; decodes nothing."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if raw.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "webp"
    if raw[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if raw[:2] == b"BM" and len(raw) >= 26:
        return "bmp"
    return None


_DATA_URL = re.compile(r"data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL | re.IGNORECASE)
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):", re.IGNORECASE)


def read_data_url(url: str) -> tuple[bytes, str]:
    """The bytes and MIME type of a "data:image/...;base64,..." URL; ImageError for anything else.

    The type is the one the bytes' signature shows, or else the one the URL declares; whether the bytes
    really are that image is for prepare() to find out, in the child.
    """
    url = url.strip()
    scheme = _SCHEME.match(url)
    if scheme is None or scheme.group(1).lower() != "data":
        raise ImageError("Tern does not fetch images from the web; send the image itself as a data: URL.")
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise ImageError("The data: URL is malformed: it has no comma before the image data.")
    declared = match["mime"].strip().lower()
    mime = _DATA_URL_MIMES.get(declared)
    if mime is None:
        raise ImageError(f"The data: URL holds {declared or 'text'}, not an image Tern can read ({READABLE}).")
    payload = match["data"]
    if len(payload) > MAX_BYTES * 4 // 3 + 1024:  # refuse before decoding what would be too big anyway
        raise ImageError(f"The image in the data: URL is larger than {units.size(MAX_BYTES)}, the most Tern reads.")
    params = [p.strip().lower() for p in match["params"].split(";") if p.strip()]
    if "base64" in params:
        compact = "".join(payload.split())  # line breaks are allowed in base64 text
        compact = urllib.parse.unquote(compact) if "%" in compact else compact
        try:
            raw = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("The image data in the data: URL is not valid base64.") from None
    else:
        raw = urllib.parse.unquote_to_bytes(payload)
    if not raw:
        raise ImageError("The data: URL holds no image data.")
    if len(raw) > MAX_BYTES:
        raise ImageError(
            f"The image in the data: URL is {units.size(len(raw))}; Tern reads images up to {units.size(MAX_BYTES)}."
        )
    sniffed = sniff_image(raw)
    return raw, MIME_TYPES[sniffed] if sniffed else mime  # the bytes' own type wins over a mislabelled URL


# --- in the child process ------------------------------------------------------------------------------


def _subject(name: str, default: str) -> str:
    return name or default


def _too_many_pixels(size: tuple[int, int] | None, name: str) -> ImageError:
    limit = f"Tern reads images up to {MAX_PIXELS // 1_000_000} megapixels"
    if size is None:
        return ImageError(f"{_subject(name, 'This image')} is too large; {limit}.")
    return ImageError(f"{_subject(name, 'This image')} is {size[0]:,} × {size[1]:,} pixels; {limit}.")


def _damaged(name: str) -> ImageError:
    return ImageError(f"{_subject(name, 'The image')} is damaged or cut short.")


def _text_bomb(name: str) -> ImageError:
    return ImageError(
        f"{_subject(name, 'This image')} carries more embedded text (metadata) than Tern reads "
        f"({units.size(MAX_TEXT_MEMORY)} in all, {units.size(MAX_TEXT_CHUNK)} a block)."
    )


@contextlib.contextmanager
def _pillow_limits() -> Iterator[None]:
    """Pillow's guards set for untrusted input (and put back afterwards, for a caller in the app)."""
    from PIL import Image, ImageFile, PngImagePlugin

    saved = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    saved_text = (PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a cut-short file is refused, never half-read
    PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY = MAX_TEXT_CHUNK, MAX_TEXT_MEMORY
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt EXIF and the like: the metadata is dropped anyway
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved
        PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY = saved_text


def _is_text_limit(exc: BaseException) -> bool:
    message = str(exc)
    return "MAX_TEXT" in message or "text chunks" in message


def _claimed_size(raw: bytes) -> tuple[int, int] | None:
    """The size a header states, read with Pillow's pixel guard off; only for the message."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(io.BytesIO(raw), formats=FORMATS) as im:  # the header only: no pixel is decoded
            return im.size
    except Exception:
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _open(raw: bytes, name: str, draft_side: int) -> PILImage.Image:
    """The first frame, decoded, after the byte, format and pixel-count checks."""
    from PIL import Image, UnidentifiedImageError

    if not raw:
        raise ImageError(f"{_subject(name, 'The image')} is empty.")
    if len(raw) > MAX_BYTES:
        raise ImageError(
            f"{_subject(name, 'This image')} is {units.size(len(raw))}; "
            f"Tern reads images up to {units.size(MAX_BYTES)}."
        )
    try:
        im = Image.open(io.BytesIO(raw), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(_claimed_size(raw), name) from None
    except UnidentifiedImageError:
        if sniff_image(raw) is not None:  # the right signature, a header Pillow cannot parse
            raise _damaged(name) from None
        raise ImageError(f"{_subject(name, 'This file')} is not an image Tern can read ({READABLE}).") from None
    except MemoryError:
        raise
    except ValueError as exc:
        raise (_text_bomb(name) if _is_text_limit(exc) else _damaged(name)) from None
    except Exception:  # malformed headers raise all sorts (struct.error, IndexError, OSError...)
        raise _damaged(name) from None
    width, height = im.size
    if width <= 0 or height <= 0:
        raise _damaged(name)
    if width * height > MAX_PIXELS:
        raise _too_many_pixels(im.size, name)
    im.draft(None, (draft_side, draft_side))  # JPEG: decode at 1/2, 1/4 or 1/8 when that is still big enough
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(im.size, name) from None
    except MemoryError:
        raise
    except ValueError as exc:
        raise (_text_bomb(name) if _is_text_limit(exc) else _damaged(name)) from None
    except Exception:  # truncated data, a broken zlib stream, a bad Huffman table...
        raise _damaged(name) from None
    return im


def _upright(im: PILImage.Image) -> PILImage.Image:
    """The image turned as its EXIF orientation says; a broken EXIF block leaves it as stored."""
    from PIL import ImageOps

    try:
        ImageOps.exif_transpose(im, in_place=True)
    except MemoryError:
        raise
    except Exception:  # the orientation is a nicety; unreadable EXIF is dropped with the rest
        log.debug("Unreadable EXIF orientation ignored")
    return im


def _to_srgb(im: PILImage.Image) -> PILImage.Image:
    """Colours converted from the embedded ICC profile to sRGB, since the profile itself is dropped."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK"):
        return im
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if im.mode != "CMYK" and "srgb" in ImageCms.getProfileDescription(source).lower():
            return im
        target = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        converted = ImageCms.profileToProfile(im, source, target, outputMode="RGBA" if im.mode == "RGBA" else "RGB")
    except MemoryError:
        raise
    except Exception:  # a profile lcms2 rejects: keep the colours as they are
        return im
    return converted if converted is not None else im


def _to_rgb(im: PILImage.Image) -> PILImage.Image:
    """8-bit RGB: 16-bit scaled (not clipped), CMYK and palettes converted, alpha laid over white."""
    from PIL import Image

    if im.mode.startswith("I"):  # 16-bit grey: Pillow's own conversion would clip at 255
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    im = _to_srgb(im)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return im if im.mode == "RGB" else im.convert("RGB")


def _fit(im: PILImage.Image, side: int) -> PILImage.Image:
    """Downsized so the longest side is at most `side`, with Lanczos; never enlarged."""
    from PIL import Image

    width, height = im.size
    if max(width, height) <= side:
        return im
    scale = side / max(width, height)
    size = (max(1, min(side, round(width * scale))), max(1, min(side, round(height * scale))))
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _bare(im: PILImage.Image) -> PILImage.Image:
    """A fresh image holding only the pixels: Pillow copies `info` (EXIF, ICC, comments) along otherwise."""
    from PIL import Image

    bare = Image.new("RGB", im.size)
    bare.paste(im)
    return bare


def _encode(im: PILImage.Image, jpeg: bool, quality: int) -> bytes:
    out = io.BytesIO()
    if jpeg:
        im.save(out, "JPEG", quality=quality, optimize=True)
    else:
        im.save(out, "PNG", optimize=False, compress_level=6)
    return out.getvalue()


def _prepared(im: PILImage.Image, jpeg: bool, name: str) -> PreparedImage:
    kept = _bare(_fit(im, KEEP_SIDE))
    data = _encode(kept, jpeg, JPEG_QUALITY)
    thumbnail = _encode(_bare(_fit(kept, THUMB_SIDE)), jpeg, THUMB_QUALITY)
    return PreparedImage(
        data=data,
        mime="image/jpeg" if jpeg else "image/png",
        width=kept.width,
        height=kept.height,
        sha256=hashlib.sha256(data).hexdigest(),
        thumbnail=thumbnail,
        name=name,
    )


def prepare_image(raw: bytes, name: str = "") -> PreparedImage:
    """Decode, check, turn upright, strip and resize one image (run it in the child: it decodes)."""
    with _pillow_limits():
        im = _open(raw, name, KEEP_SIDE)
        source = im.format
        rgb = _to_rgb(_upright(im))
        return _prepared(rgb, source in ("JPEG", "MPO"), name)


def image_pixels(data: bytes, max_side: int) -> Pixels:
    """Decode an image to RGB bytes, the longest side at most `max_side` (run it in the child)."""
    if max_side < 1:
        raise ValueError(f"max_side must be positive, not {max_side}")
    with _pillow_limits():
        im = _fit(_to_rgb(_upright(_open(data, "", max_side))), max_side)
        return Pixels(im.width, im.height, im.tobytes())


def pdf_page_image(path: str, page_index: int, max_side: int) -> PreparedImage:
    """One PDF page rendered so its longest side is `max_side` (at most KEEP_SIDE), as a PNG (run it in the child)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    side = max(1, min(max_side, KEEP_SIDE))
    file_name = Path(path).name
    try:
        doc = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        if exc.err_code == pdfium_c.FPDF_ERR_PASSWORD:
            raise ImageError(f"{file_name} is password-protected.") from None
        if exc.err_code == pdfium_c.FPDF_ERR_SECURITY:
            raise ImageError(f"{file_name} is encrypted in a way that isn't supported.") from None
        raise ImageError(f"{file_name} is damaged or not a PDF.") from None
    try:
        count = len(doc)
        if not 0 <= page_index < count:
            raise ImageError(
                f"{file_name} has {count} page{'s' if count != 1 else ''}; there is no page {page_index + 1}."
            )
        try:
            page = doc[page_index]
            try:
                width, height = page.get_size()
                if not (width > 0 and height > 0):
                    raise ImageError(f"Page {page_index + 1} of {file_name} has no area to draw.")
                bitmap = page.render(scale=side / max(width, height), fill_color=(255, 255, 255, 255))
                im = bitmap.to_pil()
            finally:
                page.close()
        except pdfium.PdfiumError:
            raise ImageError(f"Page {page_index + 1} of {file_name} is damaged.") from None
    finally:
        doc.close()
    name = f"{file_name}, page {page_index + 1}"
    with _pillow_limits():
        return _prepared(_to_rgb(_fit(im, side)), jpeg=False, name=name)


@dataclass(frozen=True)
class _Refused:
    """An ImageError raised in the child, carried back as data (the sandbox reports other errors by type)."""

    message: str


def _answer(fn: Callable[..., T], *args: Any) -> T | _Refused:
    """Run `fn` in the child; a refusal comes back with its message intact."""
    try:
        return fn(*args)
    except ImageError as exc:
        return _Refused(str(exc))


# --- in the app --------------------------------------------------------------------------------------


class ImageReader:
    """Reads images in one long-lived child process (thread-safe; calls take turns)."""

    def __init__(self, memory_limit: int = MEMORY_LIMIT, time_limit_s: float = TIME_LIMIT_S) -> None:
        self._sandbox = Sandbox("images", memory_limit=memory_limit)
        self._time_limit_s = time_limit_s

    def prepare(self, raw: bytes, name: str = "") -> PreparedImage:
        """The image as Tern keeps it (see PreparedImage); raises ImageError with the reason."""
        if len(raw) > MAX_BYTES:  # not even worth sending to the child
            raise ImageError(
                f"{_subject(name, 'This image')} is {units.size(len(raw))}; "
                f"Tern reads images up to {units.size(MAX_BYTES)}."
            )
        return self._run(prepare_image, raw, name, timeout=self._timeout(len(raw)), name=name)

    def prepare_file(self, path: Path) -> PreparedImage:
        """prepare() for a file, refused by its size before it is read."""
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise ImageError(f"{path.name} is not a file.")
            if size > MAX_BYTES:
                raise ImageError(f"{path.name} is {units.size(size)}; Tern reads images up to {units.size(MAX_BYTES)}.")
            with path.open("rb") as f:
                raw = f.read(MAX_BYTES + 1)  # the file may have grown since stat
        except OSError as exc:
            raise ImageError(f"Could not read {path.name}: {exc.strerror or exc}.") from None
        return self.prepare(raw, path.name)

    def pixels(self, data: bytes, max_side: int) -> Pixels:
        """RGB pixels of an image (normally a PreparedImage's data), the longest side at most `max_side`."""
        if max_side < 1:
            raise ValueError(f"max_side must be positive, not {max_side}")
        if len(data) > MAX_BYTES:
            raise ImageError(f"This image is {units.size(len(data))}; Tern reads images up to {units.size(MAX_BYTES)}.")
        return self._run(image_pixels, data, max_side, timeout=self._timeout(len(data)), name="")

    def pdf_page(self, path: Path, page_index: int, max_side: int) -> PreparedImage:
        """One page of a PDF as an image whose longest side is `max_side` (for a scan given to a vision model)."""
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImageError(f"Could not read {path.name}: {exc.strerror or exc}.") from None
        timeout = self._timeout(size) + 2 * self._time_limit_s  # PDFium draws the page: vector art takes a while
        return self._run(pdf_page_image, str(path), page_index, max_side, timeout=timeout, name=path.name)

    def close(self) -> None:
        """Stop the child process (the next call starts a new one)."""
        self._sandbox.close()

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def restarts(self) -> int:
        """Children replaced after a crash or a time-out."""
        return self._sandbox.restarts

    def _timeout(self, size: int) -> float:
        return self._time_limit_s + TIME_S_PER_MB * size / 1e6

    def _run(self, fn: Callable[..., T], *args: Any, timeout: float, name: str) -> T:
        """fn(*args) in the child; every way it can fail becomes an ImageError."""
        try:
            result: T | _Refused = self._sandbox.call(_answer, fn, *args, timeout=timeout)
        except SandboxError as exc:
            raise ImageError(_failure(exc, name, timeout)) from None
        if isinstance(result, _Refused):
            raise ImageError(result.message)
        return result


def _failure(exc: SandboxError, name: str, timeout: float) -> str:
    """Why the child did not answer, for the user."""
    subject = f"Reading {name}" if name else "Reading the image"
    if exc.kind == "timeout":
        return f"{subject} took longer than {timeout:.0f} s, so it was stopped; the image may be damaged."
    if exc.kind == "memory":
        return f"{subject} failed: it needs more memory than Tern lets an image use."
    if exc.kind == "crashed":
        log.warning("The image reader's child process died: %s", exc.detail)
        return f"{subject} failed: it made the reader crash ({exc.detail})."
    log.warning("The image reader failed: %s", exc.detail)
    kind = exc.detail.split(":", 1)[0]
    return f"{subject} failed: the reader could not handle it ({kind})."
