"""Reading images in the child process: formats, metadata stripped, orientation, sizes, hostile files, crashes."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from app.core.images import (
    KEEP_SIDE,
    MAX_BYTES,
    THUMB_SIDE,
    ImageError,
    ImageReader,
    PreparedImage,
    read_data_url,
    sniff_image,
)
from tests.fixtures import images as fx
from tests.fixtures.pdfs import MakePdf, write_encrypted_pdf


def _abort() -> None:
    os.abort()  # what a decoder's failed assertion does


@pytest.fixture(scope="module")
def reader() -> Iterator[ImageReader]:
    box = ImageReader()
    yield box
    box.close()


def _open(data: bytes) -> Image.Image:
    """The app's own output, decoded here to check it (it is trusted by then)."""
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def _near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], colour, strict=True))


def _quarters_ok(im: Image.Image, corners: tuple[tuple[int, int, int], ...]) -> bool:
    """Top-left, top-right, bottom-left, bottom-right quarter centres have these colours."""
    w, h = im.size
    points = [(w // 4, h // 4), (3 * w // 4, h // 4), (w // 4, 3 * h // 4), (3 * w // 4, 3 * h // 4)]
    return all(_near(im.getpixel(p), c) for p, c in zip(points, corners, strict=True))  # type: ignore[arg-type]


QUARTERS = (fx.RED, fx.GREEN, fx.BLUE, fx.WHITE)


# --- sniffing and data: URLs (in the app's process; nothing is decoded) -----------------------------


@pytest.mark.parametrize(
    ("fmt", "expected"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp"), ("GIF", "gif"), ("BMP", "bmp")]
)
def test_sniff_names_each_format_from_its_magic_bytes(fmt: str, expected: str) -> None:
    assert sniff_image(fx.encode(fx.quadrants(), fmt)) == expected


def test_sniff_refuses_other_bytes() -> None:
    assert sniff_image(b"") is None
    assert sniff_image(b"hello, world") is None
    assert sniff_image(fx.encode(fx.quadrants(), "TIFF")) is None
    assert sniff_image(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


def test_a_data_url_round_trips() -> None:
    raw = fx.encode(fx.quadrants(), "PNG")
    text = base64.b64encode(raw).decode()
    assert read_data_url("data:image/png;base64," + text) == (raw, "image/png")
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))  # as MIME tools break base64
    assert read_data_url(f"  DATA:Image/PNG;base64,{wrapped}\n") == (raw, "image/png")
    assert read_data_url("data:image/jpg;charset=x;base64,aGVsbG8=") == (b"hello", "image/jpeg")  # alias kept
    assert read_data_url("data:image/gif," + "%47%49%46%38%39%61") == (b"GIF89a", "image/gif")  # percent-encoded


def test_a_data_url_reports_the_type_its_bytes_show() -> None:
    jpeg = fx.encode(fx.quadrants(), "JPEG")
    assert read_data_url("data:image/png;base64," + base64.b64encode(jpeg).decode()) == (jpeg, "image/jpeg")


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/cat.png",
        "https://example.com/cat.png",
        "HTTPS://example.com/cat.png",
        "file:///home/someone/cat.png",
        "ftp://example.com/cat.png",
    ],
)
def test_urls_that_would_fetch_something_are_refused(url: str) -> None:
    with pytest.raises(ImageError, match="does not fetch images from the web; send the image itself as a data: URL"):
        read_data_url(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("data:image/png;base64,iVBORw0KGgo*&^%", "not valid base64"),
        ("data:image/png;base64,iVBORw0KGgoAB", "not valid base64"),  # bad padding
        ("data:image/png;base64,", "no image data"),
        ("data:image/png;base64", "malformed"),
        ("data:text/html;base64,PGI+aGk8L2I+", "holds text/html, not an image"),
        ("data:;base64,aGVsbG8=", "holds text, not an image"),
        ("cat.png", "does not fetch images"),
    ],
)
def test_malformed_data_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(ImageError, match=reason):
        read_data_url(url)


def test_an_oversized_data_url_is_refused_before_decoding() -> None:
    with pytest.raises(ImageError, match=r"larger than 50\.0 MB, the most Tern reads"):
        read_data_url("data:image/png;base64," + "A" * (MAX_BYTES * 4 // 3 + 4096))


# --- good images ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params", "mime"),
    [
        ("PNG", {}, "image/png"),
        ("JPEG", {"quality": 95}, "image/jpeg"),
        ("WEBP", {"lossless": True}, "image/png"),
        ("WEBP", {"quality": 90}, "image/png"),
        ("GIF", {}, "image/png"),
        ("BMP", {}, "image/png"),
    ],
)
def test_each_format_round_trips(reader: ImageReader, fmt: str, params: dict[str, object], mime: str) -> None:
    prepared = reader.prepare(fx.encode(fx.quadrants(), fmt, **params), name=f"quarters.{fmt.lower()}")
    assert (prepared.mime, prepared.width, prepared.height) == (mime, 120, 80)
    assert prepared.name == f"quarters.{fmt.lower()}"
    assert prepared.sha256 == hashlib.sha256(prepared.data).hexdigest()
    kept = _open(prepared.data)
    assert kept.format == ("JPEG" if mime == "image/jpeg" else "PNG") and kept.mode == "RGB"
    assert kept.size == (120, 80) and _quarters_ok(kept, QUARTERS)
    thumb = _open(prepared.thumbnail)
    assert thumb.format == kept.format and thumb.size == (120, 80)  # small images are not enlarged


def test_an_animation_gives_its_first_frame(reader: ImageReader) -> None:
    prepared = reader.prepare(fx.animated_gif())
    assert (prepared.width, prepared.height) == (40, 30)
    assert _near(_open(prepared.data).getpixel((20, 15)), fx.RED, 0)  # type: ignore[arg-type]


def test_a_big_image_is_kept_at_keep_side_and_its_thumbnail_at_thumb_side(reader: ImageReader) -> None:
    prepared = reader.prepare(fx.encode(fx.quadrants(3000, 1000), "PNG"))
    assert (prepared.width, prepared.height) == (KEEP_SIDE, 683)
    kept = _open(prepared.data)
    assert kept.size == (KEEP_SIDE, 683) and _quarters_ok(kept, QUARTERS)
    thumb = _open(prepared.thumbnail)
    assert thumb.size == (THUMB_SIDE, 107) and _quarters_ok(thumb, QUARTERS)


def test_a_tall_jpeg_is_shrunk_by_its_long_side(reader: ImageReader) -> None:
    prepared = reader.prepare(fx.encode(fx.quadrants(1500, 6000), "JPEG", quality=90))
    assert prepared.mime == "image/jpeg" and (prepared.width, prepared.height) == (512, KEEP_SIDE)
    assert max(_open(prepared.thumbnail).size) == THUMB_SIDE
    assert _quarters_ok(_open(prepared.data), QUARTERS)


def test_the_exif_orientation_is_applied(reader: ImageReader) -> None:
    # Orientation 6: the camera was turned a quarter clockwise; the stored top-left belongs at the top right.
    prepared = reader.prepare(fx.jpeg_with_metadata(fx.quadrants(120, 80), orientation=6))
    assert (prepared.width, prepared.height) == (80, 120)
    assert _quarters_ok(_open(prepared.data), (fx.BLUE, fx.RED, fx.WHITE, fx.GREEN))
    assert _open(prepared.thumbnail).size == (80, 120)


def _assert_no_metadata(source: bytes, prepared: PreparedImage) -> None:
    gps_rational = [struct.pack(order + "II", 77, 2) for order in "<>"]  # 38.5 seconds of latitude, as written
    assert any(r in source for r in gps_rational) and fx.CAMERA.encode() in source  # the check can fail
    for data in (prepared.data, prepared.thumbnail):
        im = _open(data)
        assert not im.getexif() and not im.getexif().get_ifd(0x8825)
        assert not {"exif", "xmp", "icc_profile", "comment", "XML:com.adobe.xmp", "Comment"} & set(im.info)
        assert not getattr(im, "text", {})
        for secret in (b"Exif", fx.CAMERA.encode(), b"private-xmp", b"adobe:ns:meta", fx.COMMENT, b"acsp"):
            assert secret not in data
        assert fx.TEXT.encode() not in data and not any(r in data for r in gps_rational)


def test_jpeg_exif_gps_xmp_comment_and_icc_are_gone(reader: ImageReader) -> None:
    source = fx.jpeg_with_metadata()
    assert b"Exif" in source and b"private-xmp" in source and fx.COMMENT in source and b"acsp" in source
    _assert_no_metadata(source, reader.prepare(source))


def test_png_exif_text_chunks_xmp_and_icc_are_gone(reader: ImageReader) -> None:
    source = fx.png_with_metadata()
    assert b"eXIf" in source and b"iCCP" in source and fx.TEXT.encode() in source
    prepared = reader.prepare(source)
    _assert_no_metadata(source, prepared)
    assert _quarters_ok(_open(prepared.data), QUARTERS)


def test_webp_exif_xmp_and_icc_are_gone(reader: ImageReader) -> None:
    source = fx.webp_with_metadata()
    assert b"EXIF" in source and b"XMP " in source and b"ICCP" in source
    _assert_no_metadata(source, reader.prepare(source))


def test_colours_are_converted_from_the_embedded_profile_to_srgb(reader: ImageReader) -> None:
    # The profile says the first channel is sRGB's green: dropping it without converting would leave red.
    for fmt in ("PNG", "JPEG"):
        source = fx.encode(fx.quadrants(), fmt, icc_profile=fx.red_green_swapped_profile())
        kept = _open(reader.prepare(source).data)
        assert "icc_profile" not in kept.info
        assert _quarters_ok(kept, (fx.GREEN, fx.RED, fx.BLUE, fx.WHITE))


def test_alpha_is_laid_over_white(reader: ImageReader) -> None:
    im = Image.new("RGBA", (40, 20), (0, 0, 0, 0))  # transparent black: must come out white, not black
    im.paste((200, 0, 0, 255), (0, 0, 20, 20))
    im.paste((0, 0, 0, 128), (20, 0, 30, 20))  # half-transparent black: mid grey
    for raw in (fx.encode(im, "PNG"), fx.encode(im, "WEBP", lossless=True)):
        kept = _open(reader.prepare(raw).data)
        assert kept.mode == "RGB"
        assert kept.getpixel((5, 5)) == (200, 0, 0) and kept.getpixel((35, 5)) == (255, 255, 255)
        assert _near(kept.getpixel((25, 5)), (127, 127, 127), 3)  # type: ignore[arg-type]


def test_grey_with_alpha_and_a_transparent_palette_are_flattened(reader: ImageReader) -> None:
    la = Image.new("LA", (10, 10), (0, 0))
    la.paste((50, 255), (0, 0, 5, 10))
    kept = _open(reader.prepare(fx.encode(la, "PNG")).data)
    assert kept.getpixel((2, 2)) == (50, 50, 50) and kept.getpixel((7, 2)) == (255, 255, 255)
    palette = Image.new("P", (10, 10), 1)
    palette.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    palette.paste(0, (0, 0, 5, 10))
    kept = _open(reader.prepare(fx.encode(palette, "GIF", transparency=0)).data)
    assert kept.getpixel((2, 2)) == (255, 255, 255) and kept.getpixel((7, 2)) == (10, 200, 10)


def test_16_bit_grey_is_scaled_not_clipped(reader: ImageReader) -> None:
    im = Image.new("I;16", (4, 1))
    im.frombytes(struct.pack("<4H", 0, 256 * 64, 256 * 128, 65535))
    kept = _open(reader.prepare(fx.encode(im, "PNG")).data)
    assert [kept.getpixel((x, 0)) for x in range(4)] == [(0, 0, 0), (64, 64, 64), (128, 128, 128), (255, 255, 255)]


def test_cmyk_one_bit_and_palette_images_become_rgb(reader: ImageReader) -> None:
    cmyk = fx.quadrants().convert("CMYK")
    kept = _open(reader.prepare(fx.encode(cmyk, "JPEG", quality=95)).data)
    assert kept.mode == "RGB" and _quarters_ok(kept, QUARTERS)
    bilevel = Image.new("1", (16, 8), 0)
    bilevel.paste(1, (8, 0, 16, 8))
    kept = _open(reader.prepare(fx.encode(bilevel, "BMP")).data)
    assert kept.getpixel((2, 2)) == (0, 0, 0) and kept.getpixel((12, 2)) == (255, 255, 255)
    kept = _open(reader.prepare(fx.encode(fx.quadrants().convert("P"), "BMP")).data)
    assert _quarters_ok(kept, QUARTERS)


# --- pixels for the vision model --------------------------------------------------------------------


def test_pixels_are_packed_rgb_within_max_side(reader: ImageReader) -> None:
    prepared = reader.prepare(fx.encode(fx.quadrants(1200, 800), "PNG"))
    pixels = reader.pixels(prepared.data, 300)
    assert (pixels.width, pixels.height) == (300, 200) and len(pixels.rgb) == 300 * 200 * 3
    first_row = pixels.rgb[: 300 * 3]
    assert _near(tuple(first_row[75 * 3 : 75 * 3 + 3]), fx.RED) and _near(
        tuple(first_row[225 * 3 : 225 * 3 + 3]), fx.GREEN
    )
    whole = reader.pixels(prepared.data, 5000)  # never enlarged
    assert (whole.width, whole.height) == (1200, 800) and len(whole.rgb) == 1200 * 800 * 3
    tall = reader.pixels(fx.encode(fx.quadrants(30, 90), "JPEG"), 45)
    assert (tall.width, tall.height) == (15, 45) and len(tall.rgb) == 15 * 45 * 3
    with pytest.raises(ValueError, match="positive"):
        reader.pixels(prepared.data, 0)


def test_pixels_of_something_that_is_not_an_image_are_refused(reader: ImageReader) -> None:
    with pytest.raises(ImageError, match="not an image Tern can read"):
        reader.pixels(b"\x00" * 100, 64)


# --- hostile and broken input -----------------------------------------------------------------------

GOOD = fx.encode(fx.quadrants(), "PNG")


def _cut(raw: bytes) -> bytes:
    return raw[: len(raw) * 2 // 3]


BAD_INPUTS = {
    "truncated png": (lambda: _cut(fx.encode(fx.quadrants(400, 300), "PNG", compress_level=0)), "damaged or cut short"),
    "truncated jpeg": (lambda: _cut(fx.encode(fx.quadrants(400, 300), "JPEG")), "damaged or cut short"),
    "truncated webp": (lambda: _cut(fx.encode(fx.quadrants(400, 300), "WEBP")), "damaged or cut short"),
    "png header only": (lambda: GOOD[:40], "damaged or cut short"),
    "broken header crc": (lambda: GOOD[:29] + b"\x00\x00\x00\x00" + GOOD[33:], "damaged or cut short"),
    "garbage": (lambda: os.urandom(4096).replace(b"\x89PNG", b"xxxx"), r"not an image Tern can read \(PNG, JPEG, WebP"),
    "text file": (lambda: b"just some words, not a picture\n" * 20, "not an image Tern can read"),
    "tiff": (lambda: fx.encode(fx.quadrants(), "TIFF"), "not an image Tern can read"),
    "empty": (lambda: b"", "is empty"),
    "bomb": (
        lambda: fx.png_of_zeros(10_000, 10_000),
        "is 10,000 × 10,000 pixels; Tern reads images up to 50 megapixels",
    ),
    "huge header": (lambda: fx.png_claiming(20_000, 20_000), "is 20,000 × 20,000 pixels"),
    "just over": (lambda: fx.png_claiming(7072, 7072), "is 7,072 × 7,072 pixels"),
    "text chunk bomb": (fx.text_chunk_bomb, "more embedded text"),
    "many text chunks": (fx.many_text_chunks, "more embedded text"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_refused_and_the_reader_goes_on(reader: ImageReader, case: str) -> None:
    build, reason = BAD_INPUTS[case]
    raw = build()
    with pytest.raises(ImageError, match=reason):
        reader.prepare(raw, name="")
    assert reader.prepare(GOOD).width == 120  # the same reader, still answering


def test_the_bombs_are_small_files() -> None:
    assert len(fx.png_of_zeros(10_000, 10_000)) < 200_000
    assert len(fx.text_chunk_bomb()) < 100_000


def test_messages_name_the_file(reader: ImageReader) -> None:
    with pytest.raises(ImageError) as caught:
        reader.prepare(fx.png_claiming(20_000, 20_000))
    assert str(caught.value) == "This image is 20,000 × 20,000 pixels; Tern reads images up to 50 megapixels."
    with pytest.raises(ImageError, match=r"^holiday\.png is damaged or cut short\.$"):
        reader.prepare(GOOD[:-30], name="holiday.png")


def test_a_legal_image_near_the_pixel_limit_is_read(reader: ImageReader) -> None:
    prepared = reader.prepare(fx.png_of_zeros(7000, 7000, colour_type=6))  # 49 MP of RGBA, fully transparent
    assert (prepared.width, prepared.height) == (KEEP_SIDE, KEEP_SIDE)
    assert _open(prepared.data).getpixel((100, 100)) == (255, 255, 255)


def test_oversized_bytes_are_refused_without_reaching_the_child(reader: ImageReader) -> None:
    restarts = reader.restarts
    with pytest.raises(ImageError, match=r"is 50.0 MB; Tern reads images up to 50.0 MB"):
        reader.prepare(GOOD + b"\x00" * (MAX_BYTES - len(GOOD) + 1))
    assert reader.restarts == restarts


# --- files -------------------------------------------------------------------------------------------


def test_prepare_file_reads_a_file_and_names_it(reader: ImageReader, tmp_path: Path) -> None:
    path = tmp_path / "beach.jpg"
    path.write_bytes(fx.jpeg_with_metadata())
    prepared = reader.prepare_file(path)
    assert prepared.name == "beach.jpg" and prepared.mime == "image/jpeg" and prepared.width == 120


def test_prepare_file_refuses_a_huge_file_by_its_size(reader: ImageReader, tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with path.open("wb") as f:
        f.truncate(60_000_000)  # sparse: nothing is written, and nothing may be read
    with pytest.raises(ImageError, match=r"^huge\.png is 60.0 MB; Tern reads images up to 50.0 MB\.$"):
        reader.prepare_file(path)


def test_prepare_file_reports_a_missing_file_or_a_folder(reader: ImageReader, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"Could not read gone\.png"):
        reader.prepare_file(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="is not a file"):
        reader.prepare_file(tmp_path)


# --- the child process --------------------------------------------------------------------------------


def test_images_are_decoded_in_a_separate_process(reader: ImageReader) -> None:
    child = reader._run(os.getpid, timeout=30, name="")
    assert child != os.getpid()


def test_a_crashing_reader_is_reported_and_replaced() -> None:
    box = ImageReader()
    try:
        first = box._run(os.getpid, timeout=30, name="")
        with pytest.raises(ImageError, match=r"^Reading cat\.png failed: it made the reader crash \(it aborted\)\.$"):
            box._run(_abort, timeout=30, name="cat.png")
        assert box.restarts == 1
        assert box.prepare(GOOD).width == 120  # the app goes on, with a fresh child
        assert box._run(os.getpid, timeout=30, name="") not in (first, os.getpid())
    finally:
        box.close()


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="the memory cap is Linux's RLIMIT_AS")
def test_an_image_needing_more_memory_than_the_cap_is_refused() -> None:
    box = ImageReader(memory_limit=400 * 1024**2)
    try:
        with pytest.raises(ImageError, match="needs more memory than Tern lets an image use"):
            box.prepare(fx.png_of_zeros(7000, 7000, colour_type=6))
        assert box.prepare(GOOD).width == 120
    finally:
        box.close()


def test_a_slow_image_is_stopped_at_the_time_limit() -> None:
    box = ImageReader(time_limit_s=0.01)
    try:
        first = box._run(os.getpid, timeout=30, name="")  # started, so the limit times the work alone
        with pytest.raises(ImageError, match=r"took longer than 0 s, so it was stopped"):
            box.prepare(fx.png_of_zeros(7000, 7000, colour_type=6))
        assert box.restarts == 1 and box._run(os.getpid, timeout=30, name="") != first
    finally:
        box.close()


# --- PDF pages ----------------------------------------------------------------------------------------


def test_a_pdf_page_is_rendered_to_max_side(reader: ImageReader, make_pdf: MakePdf, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "scan.pdf", ["First page", "Second page"], scanned=True)
    page = reader.pdf_page(pdf, 1, 600)
    assert page.mime == "image/png" and page.name == "scan.pdf, page 2"
    assert (page.width, page.height) == (424, 600)  # A4 is 595 × 842 pt
    kept = _open(page.data)
    assert kept.size == (424, 600) and kept.getpixel((5, 5)) == (255, 255, 255)
    assert kept.getextrema() != ((255, 255),) * 3  # the scanned text is drawn
    assert max(_open(page.thumbnail).size) == THUMB_SIDE
    capped = reader.pdf_page(pdf, 0, 10_000)
    assert (capped.width, capped.height) == (1448, KEEP_SIDE)


def test_pdf_page_failures_are_explained(reader: ImageReader, make_pdf: MakePdf, tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "one.pdf", ["Only page"])
    with pytest.raises(ImageError, match=r"one\.pdf has 1 page; there is no page 3"):
        reader.pdf_page(pdf, 2, 512)
    locked = write_encrypted_pdf(tmp_path / "locked.pdf", "secret", user_password="pw")
    with pytest.raises(ImageError, match=r"locked\.pdf is password-protected"):
        reader.pdf_page(locked, 0, 512)
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"%PDF-1.4\n" + os.urandom(2000))
    with pytest.raises(ImageError, match=r"junk\.pdf is damaged or not a PDF"):
        reader.pdf_page(junk, 0, 512)
    with pytest.raises(ImageError, match=r"Could not read absent\.pdf"):
        reader.pdf_page(tmp_path / "absent.pdf", 0, 512)
