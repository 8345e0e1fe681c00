"""Turn one dropped file into text sections, each with the page, heading path or line range it came from."""

from __future__ import annotations

import codecs
import os
import re
import stat
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.docs.text_cleanup import ZERO_WIDTH, drop_page_furniture, join_line_end_hyphens, pdf_page_text

if TYPE_CHECKING:
    from docx.table import Table

# The parsers (PDFium, python-docx, lexbor, charset detection) are imported where a
# file of their kind is read, in the reader's child process: the app itself only
# classifies files, and its start-up should not pay for them.

StrPath = str | os.PathLike[str]
MB = 1024 * 1024
MAX_BYTES = 200 * MB
MAX_PAGES = 5000  # long manuals and reference books; the reader's time and memory limits bound the rest
DEADLINE_S = 60.0
MAX_FILES = 10_000
# A .docx is a zip: these bound what opening one may unpack, whatever its size on disk.
DOCX_MAX_UNPACKED = 100 * MB
DOCX_MAX_PARTS = 10_000
BOMB_RATIO = 100
BOMB_MIN_PART = 10 * MB
# Sections stay small enough to quote and to chunk later; a single huge line still makes one section.
LINES_PER_SECTION = 80
CHARS_PER_SECTION = 16_000
# A page with fewer visible characters than this and something drawn on it (a scan, a photo, a chart) has no
# text layer worth the name: it is kept as a picture of the page, for a model that sees images.
MIN_CHARS_PER_PAGE = 16

_CONTROL = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f\\ufffe\\uffff{ZERO_WIDTH}]")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16, whose little-endian BOM is a prefix of this one
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_Heading = tuple[int, int, int, str]  # (first line of the heading, first line of its text, level, title)
_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_RST_RULE = re.compile(r"^([=\-`:'\"~^_*+#<>.!$%&,;?@/|])\1{2,}[ \t]*$")
_MYST_TARGET = re.compile(r"^ {0,3}\([\w.:-]+\)=[ \t]*$")  # a MyST label line before a heading: "(edit-wait)="
# Markup inside a heading, reduced to its text: images (badges) dropped, links and roles to their text, code unquoted.
_IMAGE = re.compile(r"!\[[^\]]*\](?:\([^)]*\)|\[[^\]]*\])")
_LINK = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])")
_TAG = re.compile(r"</?(?:a|img|br|b|i|em|strong|code|kbd|span|sup|sub|small|picture|source)\b[^>]*>", re.I)
_ROLE = re.compile(r"(\{[\w:.+-]+\}|:[\w:.+-]+:)?(`+)(.*?)\2(_{0,2})")
_TARGET = re.compile(r"^(.*?)\s*<[^<>]*>$")  # "text <target>" in a role or a reST link
_DOCX_HEADING = re.compile(r"^heading ([1-9])$", re.IGNORECASE)
_HTML_HEADING = re.compile(r"\x01([123])(.+)")
# Besides scripts and styles: site navigation, whether marked as such (<nav>, role="navigation") or laid out
# as DocBook's navigation header and footer, and "Skip to content" links.
_HTML_DROP = (
    "script, style, nav, noscript, template, svg, head, [hidden], [role=navigation], [role=search], "
    ".navheader, .navfooter, .mw-jump-link, .skip-link"
)
_HTML_BLOCKS = (
    "address, article, aside, blockquote, br, caption, dd, details, div, dl, dt, fieldset, figcaption, figure, "
    "footer, form, h4, h5, h6, header, hr, li, main, ol, p, pre, section, summary, table, tr, ul"
)
# PDFium is not thread-safe: one document at a time in the whole process.
_PDFIUM_LOCK = threading.Lock()


@dataclass(frozen=True)
class Section:
    """A piece of a document with its reference: a PDF page (1-based), a heading path, or a line range."""

    text: str
    page: int | None = None
    heading: str | None = None
    line_start: int | None = None
    line_end: int | None = None


@dataclass(frozen=True)
class Extracted:
    """The text of one file, in order."""

    path: Path
    kind: str
    sections: list[Section]
    pages: int | None = None
    title: str | None = None
    scanned: tuple[int, ...] = ()  # a PDF's pages with no text layer but something drawn (1-based, in order)


class ExtractError(Exception):
    """A file that can't be turned into text; the message names the file and says why, for the user."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


def _each(value: str, extensions: str) -> dict[str, str]:
    return dict.fromkeys(extensions.split(), value)


_CODE = (
    "py pyi js mjs cjs ts tsx jsx java c h cpp hpp cc hh cxx cs go rs rb php swift kt kts scala sh bash zsh fish ps1 "
    "bat sql yaml yml toml ini cfg conf json jsonl xml css scss sass less lua r m pl pm dart vue svelte hs ex exs erl "
    "clj jl tex cmake gradle proto graphql tf zig nim diff patch"
)
_TYPES = "pdf:pdf docx:docx text:txt,text,log markdown:md,markdown rst:rst html:html,htm,xhtml csv:csv,tsv"
SUPPORTED: dict[str, str] = {
    **{ext: kind for kind, exts in (t.split(":") for t in _TYPES.split()) for ext in exts.split(",")},
    **_each("code", _CODE),
}
# Common extensionless files that are plain text.
_NAMES = {"makefile": "code", "dockerfile": "code", "readme": "text", "license": "text", "changelog": "text"}
_UNSUPPORTED = {
    **_each("images are not supported: no OCR", "png jpg jpeg gif bmp tif tiff webp heic heif ico svg"),
    **_each("audio and video are not supported", "mp3 wav flac ogg m4a aac mp4 mkv mov avi webm"),
    **_each("programs are not supported", "exe dll so dylib bin o a class jar pyc whl apk msi dmg iso"),
    **_each("spreadsheets (.{}) are not supported yet", "xlsx xlsm xls ods numbers"),
    **_each("presentations (.{}) are not supported yet", "pptx ppt odp key"),
    **_each("e-books (.{}) are not supported yet", "epub mobi azw3"),
    **_each(".{} documents are not supported; save as .docx or PDF", "doc odt rtf pages wpd"),
    **_each("archives (.{}) are not supported; unpack it first", "zip tar gz tgz bz2 xz 7z rar zst"),
}


def classify(path: StrPath) -> str | None:
    """The kind of document a path names by its extension, or None when it isn't supported."""
    p = Path(path)
    return SUPPORTED.get(p.suffix.lower()[1:]) if p.suffix else _NAMES.get(p.name.lower())


def explain_unsupported(path: StrPath) -> str:
    """Why a file of this type can't be used, in words for the user."""
    ext = Path(path).suffix.lower()[1:]
    if ext in _UNSUPPORTED:
        return _UNSUPPORTED[ext].format(ext)
    return f".{ext} files are not supported" if ext else "files without an extension are not supported"


class _Deadline:
    """A cooperative per-file time limit, checked between pages and sections."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.path, self.seconds, self.end = path, seconds, time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise ExtractError(self.path, f"took too long (over {self.seconds:g} s); it may be damaged or very complex")


def _mb(size: int) -> str:
    return f"{size / MB:.1f}".removesuffix(".0")


def _unreadable(path: Path, error: OSError) -> ExtractError:
    if isinstance(error, FileNotFoundError):
        return ExtractError(path, "was not found; it may have been moved or deleted")
    if isinstance(error, PermissionError):
        return ExtractError(path, "can't be read: permission denied")
    return ExtractError(path, f"can't be read ({error.strerror or error})")


def extract(
    path: StrPath, *, max_bytes: int = MAX_BYTES, max_pages: int = MAX_PAGES, deadline_s: float = DEADLINE_S
) -> Extracted:
    """Read one file into sections with references, or raise ExtractError saying why it can't be."""
    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISREG(st.st_mode):
            # Opening first, because PDFium reports an unreadable file only as a vague "file access error".
            with p.open("rb"):
                pass
    except OSError as e:
        raise _unreadable(p, e) from e
    if stat.S_ISDIR(st.st_mode):
        raise ExtractError(p, "is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):  # reading a pipe or a device could block or never end
        raise ExtractError(p, "is not a regular file")
    kind = classify(p)
    if kind is None:
        raise ExtractError(p, explain_unsupported(p))
    if st.st_size == 0:
        raise ExtractError(p, "is empty")
    too_large = ExtractError(p, f"is too large ({_mb(st.st_size)} MB; the limit is {_mb(max_bytes)} MB)")
    if st.st_size > max_bytes:
        raise too_large
    clock = _Deadline(p, deadline_s)
    if kind == "pdf":
        return _pdf(p, max_pages, clock)
    if kind == "docx":
        return _docx(p, clock)
    try:
        with p.open("rb") as f:
            data = f.read(max_bytes + 1)  # the file may have grown since stat
    except OSError as e:
        raise _unreadable(p, e) from e
    if len(data) > max_bytes:
        raise too_large
    text = _decode(p, data)
    del data
    if not text.strip():
        raise ExtractError(p, "has no text")
    if kind == "html":
        return _html(p, text, clock)
    lines, text = text.split("\n"), ""  # drop the whole text: a 200 MB file is big enough held once as lines
    if kind in ("markdown", "rst"):
        headings = _markdown_headings(lines) if kind == "markdown" else _rst_headings(lines)
        return _headed_lines(p, kind, lines, headings, clock)
    return Extracted(p, kind, list(_line_sections(lines, 0, len(lines), None, clock)))


def _decode(path: Path, data: bytes) -> str:
    """Bytes to text with Unix newlines: a BOM, else UTF-8, else a guess; binaries are refused."""
    import charset_normalizer

    binary = ExtractError(path, "looks like a binary file, not text")
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), None)
    if encoding is None and b"\x00" in data:  # text without a BOM never holds NUL bytes
        raise binary
    try:
        text = data.decode(encoding or "utf-8")
    except UnicodeDecodeError:
        guess = None if encoding else charset_normalizer.from_bytes(data).best()
        if guess is None:
            raise binary from None
        text = str(guess)
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def _line_sections(lines: list[str], start: int, end: int, heading: str | None, clock: _Deadline) -> Iterator[Section]:
    """Lines [start, end) as sections of up to LINES_PER_SECTION lines, with 1-based line numbers."""
    i = start
    while i < end:
        clock.check()
        j, size = i, 0
        while j < end and j - i < LINES_PER_SECTION and (j == i or size + len(lines[j]) < CHARS_PER_SECTION):
            size += len(lines[j]) + 1
            j += 1
        first, last = i, j
        while first < last and not lines[first].strip():
            first += 1
        while last > first and not lines[last - 1].strip():
            last -= 1
        if first < last:
            yield Section("\n".join(lines[first:last]), heading=heading, line_start=first + 1, line_end=last)
        i = j


def _headed_lines(path: Path, kind: str, lines: list[str], headings: list[_Heading], clock: _Deadline) -> Extracted:
    """Sections that run from each heading to the next, under the heading path ("Install > Linux")."""
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    blocks = [(0, 0, 0, ""), *headings]  # level 0, untitled: the text before the first heading
    ends = [h[0] for h in headings] + [len(lines)]
    for (start, body, level, title), end in zip(blocks, ends, strict=True):
        while trail and trail[-1][0] >= level:
            trail.pop()
        trail.append((level, title))
        if any(line.strip() for line in lines[body:end]):  # a heading followed straight by another has no text
            path_text = " > ".join(t for _, t in trail if t) or None
            sections.extend(_line_sections(lines, start, end, path_text, clock))
    first = next((t for _, _, level, t in headings if level == 1 and t), None)
    return Extracted(path, kind, sections, title=first)


def _markdown_headings(lines: list[str]) -> list[_Heading]:
    """ATX headings ("## Title"), ignoring lines inside fenced code, where "#" is usually a comment.

    MyST label lines ("(edit-wait)=") are markup, not text: they are blanked in `lines`, keeping line numbers.
    """
    found: list[_Heading] = []
    fence: str | None = None
    for i, line in enumerate(lines):
        if m := _FENCE.match(line):
            if fence is None:
                fence = m.group(1)[0] * 3
            elif m.group(1).startswith(fence):
                fence = None
        elif fence is None and (m := _ATX.match(line)):
            found.append((i, i + 1, len(m.group(1)), _plain_heading(m.group(2))))
        elif fence is None and _MYST_TARGET.match(line):
            lines[i] = ""
    return found


def _plain_heading(title: str) -> str:
    """A heading as the words a reader sees: "Setup [![npm](badge.svg)](url)" is "Setup", {kbd}`Ctrl+C` is Ctrl+C."""
    title = _LINK.sub(r"\1", _IMAGE.sub("", _TAG.sub("", title)))
    title = _ROLE.sub(lambda m: _role_text(m.group(3)) if m.group(1) or m.group(4) else m.group(3), title)
    return " ".join(title.split())


def _role_text(text: str) -> str:
    """A role's or reST link's shown text: "text <target>" shows text, "~pkg.mod.name" shows name."""
    text = m.group(1) if (m := _TARGET.match(text)) else text
    return text.rpartition(".")[2] if text.startswith("~") else text


def _rst_headings(lines: list[str]) -> list[_Heading]:
    """Underlined (optionally also overlined) titles; as in docutils, levels follow the order styles first appear.

    The underlines and overlines are blanked in `lines`, keeping line numbers.
    """
    found: list[_Heading] = []
    styles: list[tuple[str, bool]] = []
    for i in range(len(lines) - 1):
        text, under = lines[i], lines[i + 1].strip()
        if not text.strip() or text[0].isspace() or _RST_RULE.match(text) or not _RST_RULE.match(under):
            continue
        style = (under[0], i > 0 and lines[i - 1].strip() == under)
        if style not in styles:
            styles.append(style)
        found.append((i - 1 if style[1] else i, i + 2, styles.index(style) + 1, _plain_heading(text)))
        lines[i + 1] = ""
        if style[1]:
            lines[i - 1] = ""
    return found


def _drawn(page: object) -> bool:
    """Whether a PDF page holds anything besides text: an image, a path, a shading or a form."""
    import pypdfium2.raw as pdfium_c

    raw = page.raw  # type: ignore[attr-defined]
    for i in range(pdfium_c.FPDFPage_CountObjects(raw)):
        if pdfium_c.FPDFPageObj_GetType(pdfium_c.FPDFPage_GetObject(raw, i)) != pdfium_c.FPDF_PAGEOBJ_TEXT:
            return True
    return False


def _pdf(path: Path, max_pages: int, clock: _Deadline) -> Extracted:
    """One section per page that has text; pages with no text layer but something drawn are listed as scanned."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    pages: list[tuple[int, str]] = []
    scanned: list[int] = []
    broken = 0
    with _PDFIUM_LOCK:
        try:
            doc = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as e:
            if e.err_code == pdfium_c.FPDF_ERR_PASSWORD:
                raise ExtractError(path, "is password-protected") from e
            if e.err_code == pdfium_c.FPDF_ERR_SECURITY:
                raise ExtractError(path, "is encrypted in a way that isn't supported") from e
            raise ExtractError(path, "is damaged or not a PDF") from e
        try:
            count = len(doc)
            if count > max_pages:
                raise ExtractError(path, f"has {count} pages; the limit is {max_pages}")
            title = str(doc.get_metadata_value("Title")).strip() or None
            for index in range(count):
                clock.check()
                try:
                    page = doc[index]
                    try:
                        raw = str(page.get_textpage().get_text_range())
                        text = pdf_page_text(raw)
                        # A scan's stray characters (a page number, an OCR fragment) are dropped with it.
                        bare = len("".join(text.split())) < MIN_CHARS_PER_PAGE and _drawn(page)
                    finally:
                        page.close()  # also closes its text page; open pages would pile up until the document closes
                except pdfium.PdfiumError:
                    broken += 1  # a damaged page loses only itself
                    continue
                if bare:
                    scanned.append(index + 1)
                elif text:
                    pages.append((index + 1, text))
        finally:
            doc.close()  # now, not whenever the garbage collector gets to it: PDFium must stay behind the lock
    if count == 0 or broken == count:
        raise ExtractError(path, "has no pages" if count == 0 else "is damaged or not a PDF")
    if not pages and not scanned:
        raise ExtractError(path, "has no text and nothing drawn on its pages")
    clock.check()
    texts = drop_page_furniture(join_line_end_hyphens([text for _, text in pages]))
    sections = [Section(text, page=number) for (number, _), text in zip(pages, texts, strict=True) if text]
    return Extracted(path, "pdf", sections, pages=count, title=title, scanned=tuple(scanned))


class _Blocks:
    """Paragraphs gathered under the current heading path; long runs split so no section grows without bound."""

    def __init__(self, clock: _Deadline) -> None:
        self.clock = clock
        self.sections: list[Section] = []
        self.trail: list[tuple[int, str]] = []
        self.parts: list[str] = []
        self.size = 0
        self.title: str | None = None

    def heading(self, level: int, title: str) -> None:
        self.flush()
        while self.trail and self.trail[-1][0] >= level:
            self.trail.pop()
        self.trail.append((level, title))
        if level == 1 and self.title is None:
            self.title = title

    def add(self, text: str) -> None:
        if text := text.strip():
            self.parts.append(text)
            self.size += len(text) + 1
            if self.size >= CHARS_PER_SECTION:
                self.flush()

    def flush(self) -> None:
        self.clock.check()
        if self.parts:
            heading = " > ".join(title for _, title in self.trail) or None
            body = "\n".join(self.parts)
            self.sections.append(Section(f"{self.trail[-1][1]}\n{body}" if self.trail else body, heading=heading))
        self.parts, self.size = [], 0


def _check_zip(path: Path) -> None:
    """Refuse zips that would unpack to far more than any real document, before anything decompresses them."""
    not_word = ExtractError(path, "is damaged or not a Word document")
    try:
        with zipfile.ZipFile(path) as zf:
            parts = zf.infolist()
    except OSError as e:
        raise _unreadable(path, e) from e
    except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as e:
        # Word saves a password-protected .docx as an encrypted OLE container, which starts like this.
        with path.open("rb") as f:
            if f.read(8) == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
                raise ExtractError(path, "is password-protected or an old-format Word file") from e
        raise not_word from e
    if len(parts) > DOCX_MAX_PARTS:
        raise ExtractError(path, f"holds {len(parts)} parts; no real Word document has that many")
    # zipfile never yields more than a part's declared size, so checking declared sizes bounds the real work.
    for part in parts:
        if part.file_size > BOMB_MIN_PART and part.file_size > BOMB_RATIO * max(part.compress_size, 1):
            raise ExtractError(path, f"unpacks to {_mb(part.file_size)} MB from a tiny part; it looks like a zip bomb")
    if (total := sum(part.file_size for part in parts)) > DOCX_MAX_UNPACKED:
        raise ExtractError(path, f"unpacks to {_mb(total)} MB; the limit is {_mb(DOCX_MAX_UNPACKED)} MB")
    if "[Content_Types].xml" not in {part.filename for part in parts}:
        raise not_word


def _docx(path: Path, clock: _Deadline) -> Extracted:
    """Paragraphs and tables in document order, sectioned by the Heading 1-9 styles."""
    import docx
    from docx.table import Table

    _check_zip(path)
    try:
        document = docx.Document(str(path))
    except Exception as e:
        # python-docx reports a broken package as KeyError, ValueError, lxml or its own errors alike.
        raise ExtractError(path, "is damaged or not a Word document") from e
    blocks = _Blocks(clock)
    for block in document.iter_inner_content():
        clock.check()
        if isinstance(block, Table):
            blocks.add("\n".join(_docx_rows(block)))
            continue
        text = _CONTROL.sub("", block.text)
        style = (block.style.name if block.style is not None else "") or ""
        if m := _DOCX_HEADING.match(style):
            if heading := _SPACES.sub(" ", text).strip():
                blocks.heading(int(m.group(1)), heading)
        else:
            if style == "Title" and blocks.title is None:
                blocks.title = _SPACES.sub(" ", text).strip() or None
            blocks.add(text)
    blocks.flush()
    title = (document.core_properties.title or "").strip() or blocks.title
    return Extracted(path, "docx", blocks.sections, title=title)


def _docx_rows(table: Table) -> Iterator[str]:
    """A table's rows as lines of " | "-separated cells, one per grid column, so every row keeps the header's columns.

    A merged cell is one <w:tc> element: its text goes in the first grid column it spans and the first row it
    covers, and the columns and rows it also covers stay empty. Cells that merely hold the same text ("yes",
    "yes") are separate cells and are all kept. A cell's paragraphs are joined with " / ", keeping the row on one
    line.
    """
    from docx.table import _Cell

    for tr in table._tbl.tr_lst:
        cells = [""] * tr.grid_before
        for tc in tr.tc_lst:
            paragraphs = () if tc.vMerge == "continue" else _Cell(tc, table).paragraphs
            text = " / ".join(t for t in (_SPACES.sub(" ", _CONTROL.sub("", p.text)).strip() for p in paragraphs) if t)
            cells += [text] + [""] * (tc.grid_span - 1)
        if any(cells):
            yield " | ".join(cells)


def _html(path: Path, text: str, clock: _Deadline) -> Extracted:
    """Visible text in order, with h1-h3 starting sections; scripts, styles and navigation are dropped."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(text)
    title_node = tree.css_first("title")
    title = " ".join(title_node.text().split()) if title_node is not None else ""
    for node in tree.css(_HTML_DROP):
        node.decompose()
    root = tree.body or tree.root
    blocks = _Blocks(clock)
    if root is not None:
        # Each table row becomes one line of its cells' text, whatever the source's line breaks: innermost first,
        # so a table inside a cell is already text when its row is read.
        for row in reversed(root.css("tr")):
            cells = (" ".join(_CONTROL.sub("", c.text()).split()) for c in row.iter() if c.tag in ("td", "th"))
            row.replace_with(f"\n{' | '.join(cells)}\n")
        # Mark blocks and headings ("\x01<level><title>" lines) in the text itself, then read it line by line.
        for node in root.css(_HTML_BLOCKS):
            node.insert_before("\n")
            node.insert_after("\n")
        for node in root.css("h1, h2, h3"):
            heading = " ".join(_CONTROL.sub("", node.text()).split())
            node.replace_with(f"\n\x01{(node.tag or 'h1')[1]}{heading}\n" if heading else "\n")
        for line in root.text().split("\n"):
            if m := _HTML_HEADING.fullmatch(line):
                blocks.heading(int(m.group(1)), m.group(2))
            else:  # any other \x01 came from a character reference in the page
                blocks.add(_SPACES.sub(" ", _CONTROL.sub("", line)).strip(" |"))
    blocks.flush()
    if not blocks.sections:
        raise ExtractError(path, "has no visible text")
    return Extracted(path, "html", blocks.sections, title=title or blocks.title)


def _inside(link: Path, root: Path) -> bool:
    """Whether the link resolves to a place within `root` (a resolved folder)."""
    try:
        return link.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a loop of links
        return False


def iter_files(paths: Iterable[StrPath], *, max_files: int = MAX_FILES) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand dropped files and folders into supported files, and (path, reason) for everything left out."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[tuple[int, int]] = set()
    # Depth-first with an explicit stack, in name order; dropped paths are taken as given, even if hidden.
    # Each entry carries the folder it was dropped in: a link may not lead out of it.
    stack: list[tuple[Path, Path | None]] = [(Path(p), None) for p in reversed(list(paths))]
    while stack:
        path, root = stack.pop()
        if root is not None and path.name.startswith("."):
            skipped.append((path, "is hidden"))
            continue
        if root is not None and path.is_symlink() and not _inside(path, root):
            skipped.append((path, "is a link to somewhere outside the dropped folder"))
            continue
        try:
            st = path.stat()
        except OSError as e:
            broken = isinstance(e, FileNotFoundError) and path.is_symlink()
            skipped.append((path, "is a broken link" if broken else _unreadable(path, e).reason))
            continue
        key = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            if key in seen:  # a link back up the tree, or a folder dropped twice
                skipped.append((path, "is a folder already included"))
                continue
            seen.add(key)
            try:
                with os.scandir(path) as entries:
                    names = sorted(entry.name for entry in entries)
            except OSError as e:
                skipped.append((path, _unreadable(path, e).reason))
                continue
            inner = root or path.resolve()
            stack.extend((path / name, inner) for name in reversed(names))
        elif not stat.S_ISREG(st.st_mode):
            skipped.append((path, "is not a regular file"))
        elif classify(path) is None:
            skipped.append((path, explain_unsupported(path)))
        elif key not in seen:  # the same file reached twice, through a link or a repeated drop, counts once
            if len(files) >= max_files:
                skipped.append((path, f"and the files after it were left out: at most {max_files} at a time"))
                break
            seen.add(key)
            files.append(path)
    return files, skipped
