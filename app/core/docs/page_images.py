"""Scanned PDF pages: kept as pictures of the page, and given to a model that sees images.

A page with no text layer (a scan, a photo, a chart drawn without words) can't
be searched or read as text. At indexing, each is rendered in the image
reader's child process and kept, encrypted, in the history's images table,
held by a chunk of its document that has empty text and the image's key. Words
can't find such a page, so a question is given the scanned pages whole, as far
as they fit. At a turn the loaded model decides: one that sees images reads
each page at its real cost in tokens; for one that does not, the pages are left
out and the user is told which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.chat.image import StoredImage
from app.core.docs.chunking import PAGE_IMAGE_TOKENS, Chunk, count_tokens
from app.core.docs.grounding import SOURCE_HEADER_TOKENS, Grounding, Source, prompt_for
from app.core.docs.ingest import IngestCancelledError, Ingested, IngestError
from app.core.docs.retrieval import DocumentGrounding, PagesOf, pages_of

if TYPE_CHECKING:
    from app.core.chat.message import ChatMessage
    from app.core.images import ImageReader

PAGE_SIDE = 1536  # the longest side a page is rendered at: small print stays legible, and libmtmd scales it down
MAX_PAGE_IMAGES = 200  # scanned pages kept per document; the others are left out (a book of scans is too much)
NOT_SHOWN = "[A scanned page that the current model cannot see.]"


@dataclass(frozen=True)
class RenderedPages:
    """A document's chunks with its scanned pages in page order, and the pages' pictures."""

    chunks: list[Chunk]
    images: list[StoredImage]
    left_out: tuple[int, ...]  # scanned pages that could not be rendered, or were over MAX_PAGE_IMAGES


def render_pages(
    reader: ImageReader, path: Path, ingested: Ingested, stopping: Callable[[], bool] = lambda: False
) -> RenderedPages:
    """Render `ingested`'s scanned pages (in the reader's child) and put a chunk for each among its text chunks.

    Raises IngestError when the file has neither text nor a page that could be rendered.
    """
    from app.core.images import ImageError

    pages: list[Chunk] = []
    images: list[StoredImage] = []
    left_out: list[int] = []
    for page in ingested.scanned:
        if stopping():
            raise IngestCancelledError(f"{path.name}: reading was stopped")
        if len(pages) >= MAX_PAGE_IMAGES:
            left_out.append(page)
            continue
        try:
            image = StoredImage.of(reader.pdf_page(path, page - 1, PAGE_SIDE))
        except ImageError:
            left_out.append(page)  # a page that can't be drawn loses only itself
            continue
        images.append(image)
        pages.append(Chunk("", page, None, None, None, PAGE_IMAGE_TOKENS, image_key=image.key))
    if not ingested.chunks and not pages:
        raise IngestError(
            f"{path.name}: has no text layer (it looks scanned), and its pages could not be rendered as images"
        )
    # Stable: a page's text chunks keep their order, and a scanned page takes its place among them.
    chunks = sorted([*ingested.chunks, *pages], key=lambda c: c.page or 0)
    return RenderedPages(chunks, images, tuple(left_out))


def for_model(grounding: Grounding, image_tokens: int | None, budget_tokens: int) -> DocumentGrounding:
    """`grounding` as the loaded model can take it: with `image_tokens` None (it sees no images) its scanned
    pages are left out and named; else they are counted at `image_tokens` each, and those past
    `budget_tokens` are left out from the last."""
    fields = {f.name: getattr(grounding, f.name) for f in dataclasses.fields(grounding)}
    found = grounding if isinstance(grounding, DocumentGrounding) else DocumentGrounding(**fields)
    pages = [s for s in grounding.sources if s.image_key is not None]
    if not pages:
        return found
    if image_tokens is None:
        dropped = pages
    else:
        text = sum(count_tokens(s.text) + SOURCE_HEADER_TOKENS for s in grounding.sources if s.image_key is None)
        estimated = text + len(pages) * (PAGE_IMAGE_TOKENS + SOURCE_HEADER_TOKENS)
        room = max(budget_tokens, estimated) - text  # only the real cost over the estimate may push pages out
        fit = max(0, room) // (image_tokens + SOURCE_HEADER_TOKENS)
        dropped = pages[fit:]
    if not dropped:
        return found
    gone = {s.chunk_id for s in dropped}
    kept = [s for s in grounding.sources if s.chunk_id not in gone]
    sources = [replace(s, number=n) for n, s in enumerate(kept, start=1)]
    # Whole documents with nothing left to give: the model is told that nothing matches, and why (notes).
    mode = "retrieval" if grounding.mode == "whole" and not sources else grounding.mode
    left = pages_of(dropped)
    unseen, unfit = (left, found.unfit) if image_tokens is None else (found.unseen, _joined(found.unfit, left))
    return replace(
        found, mode=mode, sources=sources, prompt=prompt_for(sources, found.not_ready), unseen=unseen, unfit=unfit
    )


def _joined(first: PagesOf, then: PagesOf) -> PagesOf:
    merged: dict[str, tuple[int, ...]] = dict(first)
    for name, pages in then:
        merged[name] = tuple(sorted({*merged.get(name, ()), *pages}))
    return tuple(merged.items())


def page_keys(sources: Sequence[Source]) -> list[str]:
    """The keys of the scanned pages among `sources`, in order."""
    return [s.image_key for s in sources if s.image_key is not None]


def earlier_pages(history: Sequence[ChatMessage], shown: Callable[[str], bool]) -> tuple[ChatMessage, ...]:
    """The history with the scanned pages earlier answers were given that `shown` refuses (the model sees no
    images, or the page is no longer kept) written as a note instead of the page."""
    placed = []
    for m in history:
        given = m.given
        if given is not None and any(s.image_key is not None and not shown(s.image_key) for s in given.sources):
            sources = tuple(
                replace(s, image_key=None, text=NOT_SHOWN) if s.image_key is not None and not shown(s.image_key) else s
                for s in given.sources
            )
            m = replace(m, given=replace(given, sources=sources))
        placed.append(m)
    return tuple(placed)
