"""Cleaning extracted text: invisible characters, TeX ligature codes, line-end hyphens, running headers and footers.

PDF text needs the most of it: PDFium gives each page's characters as they are drawn, so a page also carries
its header and footer, words hyphenated at line ends, and, from old TeX fonts without a Unicode map, raw
character codes in place of ligatures.
"""

from __future__ import annotations

import math
import re
from collections import Counter

# Zero-width characters and soft hyphens: invisible, but they split words and headings for search.
ZERO_WIDTH = "\u00ad\u200b-\u200d\u2060\ufeff"
# In PDF text: control characters (but U+FFFE, PDFium's line-end hyphen mark), zero-width characters and
# private-use glyphs (symbol-font bullets such as U+F0B7).
_PDF_NOISE = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f\\uffff\\ue000-\\uf8ff{ZERO_WIDTH}]")
# TeX's OT1 font encoding puts ff, fi, fl, ffi and ffl at 0x0B-0x0F (fl is a lone carriage return) and ø at 0x1C.
_OT1 = {"\x0b": "ff", "\x0c": "fi", "\r": "fl", "\x0e": "ffi", "\x0f": "ffl", "\x1c": "\u00f8"}
_PDF_LIGATURE = re.compile(r"(?<=[^\W\d_])[\x0b-\x0f\x1c]|[\x0b-\x0f\x1c](?=[^\W\d_])")
# A table of contents line, "1 OVERVIEW.....6"; the hints find the pages that may have one.
_DOT_LEADER = re.compile(r"(?:[.\u2026\u00b7] ?){4,} *\w{1,6} *$")
_DOT_LEADER_HINTS = ("....", ". . . .", "\u2026\u2026", "\u00b7\u00b7\u00b7\u00b7")
_HYPHEN_BREAK = re.compile(r"([^\W\d_]+)(\ufffe|-\n)(\w+)")
_BROKEN_WORD = re.compile(r"\w*(?:\ufffe|-\n)\w*")
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
_PAGE_NUMBER = re.compile(r"\d+|\b[ivxlcdm]+\b", re.IGNORECASE)
# Running headers and footers: lines this near a page's top or bottom, repeated on this share of the pages.
FURNITURE_LINES = 3
FURNITURE_SHARE = 0.6


def pdf_page_text(raw: str) -> str:
    """PDFium's text of one page, cleaned, with its line-end hyphen marks (U+FFFE) kept for join_line_end_hyphens.

    A TeX font without a Unicode map gives ligatures and some letters as their OT1 codes (_OT1). Next to a letter,
    inside a word, they are read as those letters; elsewhere (a font whose codes mean nothing) they are dropped.
    """
    text = raw.replace("\r\n", "\n")
    if any(code in text for code in _OT1):  # rare: plain string searches keep the common case fast
        text = _PDF_LIGATURE.sub(lambda m: _OT1[m.group()], text)
    text = _PDF_NOISE.sub("", text.replace("\r", "\n"))
    if any(hint in text for hint in _DOT_LEADER_HINTS):
        text = "\n".join(line for line in text.split("\n") if not _DOT_LEADER.search(line))
    return text.strip()


def join_line_end_hyphens(pages: list[str]) -> list[str]:
    """Mend words hyphenated across a line end, keeping the hyphen of real compounds.

    PDFium marks a hyphen it found at a line end with U+FFFE and joins the two lines; a hyphen it missed
    stays as "-" before the line break. Either way the hyphen is kept when the part after it starts with a
    capital or a digit ("Barnes-Jewish", "iodine-131"), when the part before it has a capital after its
    first letter or a digit (an acronym: "FDA-approved", "rhTSH-stimulated"), or when the document has the
    hyphenated word elsewhere, unbroken ("long-term"). Otherwise it is taken for a hyphen that only split
    a word ("speci-fication"): typesetting breaks words far more often than it breaks at a compound's hyphen.
    """
    if not any("\ufffe" in text or "-\n" in text for text in pages):
        return pages
    whole = "\n".join(_BROKEN_WORD.sub(" ", text) for text in pages).casefold()
    words = set(_WORD.findall(whole))  # single and hyphenated words

    def mend(m: re.Match[str]) -> str:
        left, mark, right = m.groups()
        acronym = any(ch.isupper() or ch.isdigit() for ch in left[1:])
        if not right[0].islower() or acronym or f"{left}-{right}".casefold() in words:
            return m.group() if mark == "-\n" else f"{left}-{right}"  # a line really ending in "-" stays as it was
        return left + right

    return [_HYPHEN_BREAK.sub(mend, text).replace("\ufffe", "-") for text in pages]


def drop_page_furniture(pages: list[str]) -> list[str]:
    """Leave out running headers and footers, keeping each only where it first appears.

    A line among the first or last FURNITURE_LINES of a page whose text, page numbers aside, is on at least
    FURNITURE_SHARE of the pages (and on three or more) is a running header, footer or watermark: repeated,
    it adds nothing but makes every page match its words. Its first occurrence is kept, so a title, edition
    or author that only the header names can still be found.
    """
    lines = [text.split("\n") for text in pages]
    keys = [[_furniture_key(line, i, len(page)) for i, line in enumerate(page)] for page in lines]
    counts = Counter(key for page_keys in keys for key in set(page_keys) if key)
    furniture = {key for key, n in counts.items() if n >= max(3, math.ceil(FURNITURE_SHARE * len(pages)))}
    seen: set[str] = set()
    texts = []
    for page, page_keys in zip(lines, keys, strict=True):
        kept = [line for line, key in zip(page, page_keys, strict=True) if key not in furniture or key not in seen]
        seen.update(page_keys)
        texts.append("\n".join(kept).strip())
    return texts


def _furniture_key(line: str, index: int, count: int) -> str:
    """A line near a page's top or bottom as compared across pages, page numbers (digits, roman) left out; else ""."""
    if FURNITURE_LINES <= index < count - FURNITURE_LINES:
        return ""
    key = " ".join(_PAGE_NUMBER.sub("", line).split()).casefold()
    return key if any(ch.isalpha() for ch in key) else ""
