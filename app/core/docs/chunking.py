"""Splitting extracted text into overlapping chunks that keep their page or section reference.

Chunks never cross a section (a PDF page, a heading's section, a range of
lines), so every chunk can be cited precisely. Sizes are in tokens, counted
with a fast approximation calibrated against Gemma's tokenizer: about 1.17
tokens per word, digit or punctuation mark (Gemma spells numbers digit by
digit), within 13 % on English prose, Markdown, Python and French, so indexing
never needs the model loaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

TOKENS_PER_PIECE = 1.17
# What a scanned page, read as an image, is counted as until a model is chosen: Gemma 4's own image
# budget. The turn counts it again at the loaded model's real cost (page_images.for_model).
PAGE_IMAGE_TOKENS = 280
_PIECE = re.compile(r"\d|[^\W\d]+|[^\w\s]", re.UNICODE)
# Runs the calibration does not hold for: letters with no break (a DNA sequence, a language
# written without spaces) and base64 or hex. Each is counted at one token per UTF-8 byte,
# which no tokenizer exceeds (a rare character falls back to one token per byte).
_DENSE_RUN = re.compile(r"[A-Za-z0-9+/=]{32,}|[^\W\d_]{16,}")
_MAX_UNIT_CHARS = 2000  # a longer stretch with no sentence end is cut
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n{2,}")


def count_tokens(text: str) -> int:
    """Approximate Gemma token count of `text`; dense runs are bounded from above, never underestimated."""
    count = len(_PIECE.findall(text)) * TOKENS_PER_PIECE
    for run in _DENSE_RUN.findall(text):
        count += len(run.encode("utf-8")) - len(_PIECE.findall(run)) * TOKENS_PER_PIECE
    return math.ceil(count)


@dataclass(frozen=True)
class Chunk:
    """A passage to index and cite."""

    text: str
    page: int | None
    heading: str | None
    line_start: int | None
    line_end: int | None
    tokens: int
    overlap: int = 0  # of `tokens`, those repeated from the chunk before (the same section's)
    image_key: str | None = None  # a scanned page read as an image (its text is empty): the image's key


@dataclass(frozen=True)
class SectionText:
    """What chunking needs of an extracted section."""

    text: str
    page: int | None = None
    heading: str | None = None
    line_start: int | None = None
    line_end: int | None = None


def _units(text: str) -> list[str]:
    """Sentences (or paragraphs), the pieces a chunk is built from; very long ones are cut by words."""
    units: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        words = sentence.split(" ")
        while len(words) > 200:  # a "sentence" of a table or a minified file: cut it
            units.append(" ".join(words[:200]))
            words = words[200:]
        units.extend(_cut(" ".join(words)))
    return units


def _cut(unit: str) -> Iterable[str]:
    """`unit` in stretches of at most _MAX_UNIT_CHARS, cut at a space where there is one."""
    while len(unit) > _MAX_UNIT_CHARS:
        at = unit.rfind(" ", 0, _MAX_UNIT_CHARS)
        at = at if at > 0 else _MAX_UNIT_CHARS // 4  # one unbroken run: cut it smaller, it counts per byte
        yield unit[:at]
        unit = unit[at:].lstrip(" ")
    yield unit


def chunk_sections(sections: Iterable[SectionText], size: int = 350, overlap: int = 50) -> list[Chunk]:
    """Chunks of about `size` tokens, overlapping by about `overlap`, each within one section."""
    chunks: list[Chunk] = []
    for section in sections:
        units = _units(section.text)
        lines = section.text.count("\n") + 1
        start, repeated = 0, 0
        while start < len(units):
            end, tokens = start, 0
            while end < len(units) and (tokens == 0 or tokens + count_tokens(units[end]) <= size):
                tokens += count_tokens(units[end])
                end += 1
            text = " ".join(units[start:end])
            line_start, line_end = section.line_start, section.line_end
            if section.line_start is not None and len(units) > 1:
                before = section.text.find(units[start][:40])
                line_start = section.line_start + section.text.count("\n", 0, max(before, 0))
                last = section.text.find(units[end - 1][:40], max(before, 0))
                line_end = min(section.line_start + lines - 1, section.line_start + section.text.count("\n", 0, last))
                line_end = max(line_end, line_start)
            chunks.append(Chunk(text, section.page, section.heading, line_start, line_end, tokens, repeated))
            if end >= len(units):
                break
            back, kept = end, 0  # step back far enough to overlap by about `overlap` tokens
            while back - 1 > start and kept < overlap:
                back -= 1
                kept += count_tokens(units[back])
            start, repeated = (back, kept) if back > start else (end, 0)
    return chunks
