"""Scanned PDF pages: found at extraction, rendered into the encrypted store at indexing, read as images by a model
that sees them, and named (never dropped silently) for one that does not."""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPageSize, QPainter, QPdfWriter

from app.core.chat.image import StoredImage
from app.core.chat.message import IMAGE_PLACEHOLDER, ChatMessage, Given
from app.core.docs.chunking import PAGE_IMAGE_TOKENS, Chunk
from app.core.docs.doc_store import DocumentStore
from app.core.docs.extract import extract
from app.core.docs.grounding import PAGE_LABEL, ChatSources, Source
from app.core.docs.ingest import IngestError, ingest
from app.core.docs.page_images import NOT_SHOWN, earlier_pages, for_model, render_pages
from app.core.docs.retrieval import DocumentGrounding, file_notes, notes, retrieve
from app.core.engine.llama_engine import LlamaEngine
from app.core.engine.vision import PIXELS_SIDE, ImagePixels
from app.core.images import ImageReader
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from app.core.store.ref import Ref
from app.core.turn import TurnEvents, TurnRequest, TurnResult, TurnSaving, run_turn
from tests.core.test_turn import GREEDY, StoreHere

SCAN = None  # a page that is only a picture: no text layer
SHAPE = "<shape>"  # a page that is only a drawn shape (vector art): no text layer either
BLANK = ""  # a page with nothing on it


def write_mixed_pdf(path: Path, pages: list[str | None]) -> Path:
    """A PDF with a page per entry: text drawn as real text, SCAN a picture of words, SHAPE a drawn shape, BLANK
    nothing."""
    writer = QPdfWriter(str(path))
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setResolution(72)
    painter = QPainter(writer)
    for index, text in enumerate(pages):
        if index:
            writer.newPage()
        if text is SCAN:
            image = QImage(400, 200, QImage.Format.Format_RGB32)
            image.fill(QColor("white"))
            image_painter = QPainter(image)
            image_painter.fillRect(QRectF(0, 150, 400, 50), QColor(200, 30, 30))
            image_painter.drawText(QRectF(10, 10, 380, 130), Qt.TextFlag.TextWordWrap, "Invoice 4711: 300 crowns")
            image_painter.end()
            painter.drawImage(QRectF(50, 50, 400, 200), image)
        elif text == SHAPE:
            painter.setBrush(QColor(30, 90, 200))
            painter.drawEllipse(QRectF(100, 100, 300, 200))
        elif text == BLANK:
            continue
        else:
            painter.drawText(QRectF(50, 50, 480, 700), Qt.TextFlag.TextWordWrap, text)
    painter.end()
    return path


FIRST = "The harbour office opens at eight. Ferries to the island leave from the north pier every hour."
THIRD = "The lighthouse keeper's name was Edda; she kept the lamp for forty years."


@pytest.fixture
def mixed(qapp: object, tmp_path: Path) -> Path:
    return write_mixed_pdf(tmp_path / "mixed.pdf", [FIRST, SCAN, THIRD])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreHere]:
    conn = open_database(tmp_path / "h.db", secrets.token_bytes(32))
    yield StoreHere(ConversationStore(conn))
    conn.close()


def attach(store: StoreHere, reader: ImageReader, path: Path, conversation_id: int | None = None) -> tuple[int, int]:
    """Index `path` as the app does (the reader child, then its scanned pages rendered); (conversation, document)."""
    cid = conversation_id or store.store.create_conversation()
    docs = DocumentStore(store.store.connection)
    doc = docs.add(cid, str(path), path.name, "pdf", path.stat().st_size, path.stat().st_mtime)
    ingested = ingest(path)
    rendered = render_pages(reader, path, ingested)
    docs.set_state(doc, "indexing", pages=ingested.pages)
    docs.replace_chunks(doc, rendered.chunks, None, rendered.images)
    return cid, doc


def png(colour: tuple[int, int, int]) -> StoredImage:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(out, "PNG")
    data = out.getvalue()
    return StoredImage(hashlib.sha256(data).hexdigest(), "image/png", 8, 8, data, data)


def test_extraction_lists_pages_without_text_beside_the_text_pages(qapp: object, tmp_path: Path) -> None:
    pdf = write_mixed_pdf(tmp_path / "m.pdf", [FIRST, SCAN, THIRD, SHAPE, BLANK])
    result = extract(pdf)
    assert [s.page for s in result.sections] == [1, 3]
    assert result.scanned == (2, 4)  # the blank last page is neither text nor a scan
    assert result.pages == 5


def test_scanned_pages_are_kept_as_images_in_the_encrypted_store_and_nowhere_else(
    mixed: Path, store: StoreHere, reader: ImageReader, tmp_path: Path
) -> None:
    text_only = ingest(mixed).chunks
    cid, doc = attach(store, reader, mixed)
    docs = DocumentStore(store.store.connection)
    chunks = docs.chunks(doc)
    assert [(c.page, c.image_key is not None) for c in chunks] == [(1, False), (2, True), (3, False)]
    assert [c.text for c in chunks if c.image_key is None] == [c.text for c in text_only]  # text pages as before
    page = chunks[1]
    assert page.text == "" and page.image_key is not None
    image = store.store.images.image(page.image_key)
    assert image is not None and image.mime == "image/png" and hashlib.sha256(image.data).hexdigest() == image.key
    assert max(image.width, image.height) == 1536
    with Image.open(io.BytesIO(image.data)) as im:  # the page as drawn: the red band of the picture is there
        assert (200, 30, 30) in {im.convert("RGB").getpixel((x, y)) for x in range(0, im.width, 8) for y in (390, 400)}
    [info] = docs.documents(cid)
    assert info.scanned == (2,) and info.state == "ready" and info.chunk_count == 3
    assert info.token_count == sum(c.tokens for c in text_only) + PAGE_IMAGE_TOKENS
    # The rendered page was never written to a file: not in the clear, not as a temp file.
    store.store.connection.commit()
    pieces = (image.data[64:128], image.thumbnail[64:128])
    for file in (p for p in tmp_path.rglob("*") if p.is_file()):
        held = file.read_bytes()
        assert not any(piece in held for piece in pieces), file

    docs.remove(doc)  # the page's image goes with its document
    assert store.store.images.image(page.image_key) is None


def test_a_fully_scanned_pdf_is_attached_and_one_that_cannot_be_drawn_is_refused_clearly(
    qapp: object, store: StoreHere, reader: ImageReader, tmp_path: Path
) -> None:
    scan = write_mixed_pdf(tmp_path / "scan.pdf", [SCAN, SHAPE])
    cid, _ = attach(store, reader, scan)
    [info] = DocumentStore(store.store.connection).documents(cid)
    assert (info.state, info.scanned, info.chunk_count) == ("ready", (1, 2), 2)

    ingested = ingest(write_mixed_pdf(tmp_path / "gone.pdf", [SCAN]))
    (tmp_path / "gone.pdf").write_bytes(b"%PDF-1.7\n" + b"\0garbage" * 64)  # replaced before its page is drawn
    with pytest.raises(IngestError, match=r"no text layer .* could not be rendered as images"):
        render_pages(reader, tmp_path / "gone.pdf", ingested)


def test_pages_that_do_not_fit_half_the_budget_are_named(store: StoreHere) -> None:
    cid = store.store.create_conversation()
    docs = DocumentStore(store.store.connection)
    book = docs.add(cid, "/book.md", "book.md", "markdown", 1, 1.0)
    words = "The ferry leaves at nine from the north pier. " * 30
    docs.replace_chunks(book, [Chunk(words, None, "Ferry", 1, 2, 400) for _ in range(10)])
    scan = docs.add(cid, "/scan.pdf", "scan.pdf", "pdf", 1, 1.0)
    images = [png((i, i, i)) for i in range(5)]
    pages = [Chunk("", n, None, None, None, PAGE_IMAGE_TOKENS, image_key=im.key) for n, im in enumerate(images, 1)]
    docs.replace_chunks(scan, pages, None, images)

    grounding = retrieve(docs, cid, "When does the ferry leave?", 1200)
    assert grounding is not None and grounding.mode == "retrieval"
    shown = [s for s in grounding.sources if s.image_key is not None]
    assert [s.page for s in shown] == [1, 2] and shown[0].number == 1  # half the budget, in page order
    assert any(s.image_key is None and "ferry" in s.text for s in grounding.sources)  # the words still get room
    assert "Pages 3–5 of scan.pdf (scanned) did not fit." in notes(grounding)

    # A model whose images cost more reads fewer of them; one that sees none reads none, and the user is told.
    dearer = for_model(grounding, 700, 1200)
    assert [s.page for s in dearer.sources if s.image_key] == [1] and "Pages 2–5 of scan.pdf" in notes(dearer)
    blind = for_model(grounding, None, 1200)
    assert not any(s.image_key for s in blind.sources)
    assert [s.number for s in blind.sources] == list(range(1, len(blind.sources) + 1))
    assert "Pages 1–2 of scan.pdf are scans: they need a model that sees images." in notes(blind)
    assert "you cannot see images" in file_notes(blind)


def test_a_whole_grounding_of_scans_only_tells_a_blind_model_why_it_has_nothing() -> None:
    page = Source(1, 1, 7, "scan.pdf", 3, None, None, None, PAGE_LABEL, "a" * 64)
    grounding = DocumentGrounding("whole", [page], [], "")
    blind = for_model(grounding, None, 4000)
    assert (blind.mode, blind.sources, blind.unseen) == ("retrieval", [], (("scan.pdf", (3,)),))
    assert notes(blind) == "Page 3 of scan.pdf is a scan: it needs a model that sees images."
    assert page.citation() == "scan.pdf, page 3 (read as an image)"
    listed = ChatSources().documents([page], "whole")
    assert f"{PAGE_LABEL}\n<__image:{'a' * 64}__>" in listed and IMAGE_PLACEHOLDER.search(listed)


def test_earlier_answers_pages_become_a_note_where_they_cannot_be_shown() -> None:
    page = Source(1, 1, 7, "scan.pdf", 3, None, None, None, PAGE_LABEL, "b" * 64)
    text = Source(2, 1, 8, "scan.pdf", 4, None, None, None, "Words.")
    answer = ChatMessage("assistant", "It says 300 [1].", given=Given("retrieval", (page, text)))
    history = (ChatMessage("user", "What does it say?"), answer, ChatMessage("user", "And then?"))
    assert earlier_pages(history, lambda key: True) == history
    [_, kept, _] = earlier_pages(history, lambda key: False)
    assert kept.given is not None and kept.given.sources == (replace(page, image_key=None, text=NOT_SHOWN), text)


def pixels_from(store: StoreHere, reader: ImageReader, key: str) -> ImagePixels:
    image = store.image(key)
    assert image is not None
    return reader.pixels(image.data, PIXELS_SIDE)


def ask(
    engine: LlamaEngine, store: StoreHere, reader: ImageReader, cid: int, history: tuple[ChatMessage, ...]
) -> tuple[TurnResult, TurnSaving, list[str]]:
    saving = TurnSaving(Ref(cid), (), Ref(), question=Ref(), conversation_id=cid)
    notices: list[str] = []
    request = TurnRequest(1, history, sampling=GREEDY, saving=saving, pixels=partial(pixels_from, store, reader))
    events = TurnEvents(sources=lambda sources, note, mode: notices.append(note))
    return run_turn(engine, request, events, store), saving, notices


def test_a_model_that_sees_reads_the_scanned_page_and_the_source_says_so(
    seeing: LlamaEngine, mixed: Path, store: StoreHere, reader: ImageReader
) -> None:
    cid, doc = attach(store, reader, mixed)
    key = DocumentStore(store.store.connection).chunks(doc)[1].image_key
    vision = seeing.vision
    assert vision is not None and key is not None
    seeing.forget_cache()
    encoded = vision.encoded
    question = ChatMessage("user", "How much is the invoice?")
    result, _, _ = ask(seeing, store, reader, cid, (question,))
    assert vision.encoded == encoded + 1  # the page, read as an image
    assert vision.last_read is not None and result.stats.prompt_evaluated > vision.last_read.tokens > 0
    stored = store.store.current_path(cid)
    assert stored[1].stats is not None
    sources = [Source(**s) for s in stored[1].stats["sources"]]
    assert [s.citation() for s in sources] == [
        "mixed.pdf, page 1",
        "mixed.pdf, page 2 (read as an image)",
        "mixed.pdf, page 3",
    ]
    assert sources[1].image_key == key and "need a model" not in result.notice

    # The follow-up finds the page in the model's cache: not encoded again.
    history = (question, ChatMessage("assistant", stored[1].content), ChatMessage("user", "Who kept the lamp?"))
    again, _, _ = ask(seeing, store, reader, cid, history)
    assert vision.encoded == encoded + 1
    assert again.stats.prompt_evaluated < result.stats.prompt_evaluated / 2


def test_a_model_that_cannot_see_names_the_scanned_pages_and_answers_from_the_rest(
    engine: LlamaEngine, mixed: Path, store: StoreHere, reader: ImageReader, qapp: object, tmp_path: Path
) -> None:
    cid, _ = attach(store, reader, mixed)
    result, _, notices = ask(engine, store, reader, cid, (ChatMessage("user", "Who kept the lamp?"),))
    assert "Page 2 of mixed.pdf is a scan: it needs a model that sees images." in result.notice
    assert notices == [result.notice]
    stored = store.store.current_path(cid)
    assert stored[1].stats is not None
    assert [Source(**s).citation() for s in stored[1].stats["sources"]] == ["mixed.pdf, page 1", "mixed.pdf, page 3"]
    assert result.stats.completion_tokens > 0

    # Only scans: nothing to give, and the note says why rather than "no passage matches".
    scans, _ = attach(store, reader, write_mixed_pdf(tmp_path / "scan.pdf", [SCAN, SCAN, SHAPE]))
    only, _, _ = ask(engine, store, reader, scans, (ChatMessage("user", "What is the total?"),))
    assert only.notice == "Pages 1–3 of scan.pdf are scans: they need a model that sees images."
    assert only.stats.completion_tokens > 0
