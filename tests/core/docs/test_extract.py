"""Text extraction from real files: PDFs drawn with Qt, Word files made with python-docx, and plain files on disk."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import docx
import pypdfium2 as pdfium
import pytest

from app.core.docs import extract as ex
from app.core.docs.extract import ExtractError, Section, classify, explain_unsupported, extract, iter_files
from app.core.docs.text_cleanup import join_line_end_hyphens, pdf_page_text
from tests.fixtures.pdfs import MakePdf, write_encrypted_pdf

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"


def refusal(path: Path, **limits: float) -> str:
    """The reason extract gives for refusing `path`."""
    with pytest.raises(ExtractError) as caught:
        extract(path, **limits)
    assert str(caught.value).startswith(f"{path.name}: ")
    return caught.value.reason


def page_of(sections: list[Section], sentence: str) -> int | None:
    return next(s.page for s in sections if sentence in s.text)


# --- PDF ---------------------------------------------------------------------------------------------------------


def test_pdf_text_keeps_its_page_numbers(tmp_path: Path, make_pdf: MakePdf) -> None:
    pages = [
        "Chapter one. The ship left the harbour at dawn.",
        "The lighthouse keeper's name was Edda.",
        "",  # a blank page: no section, but the numbering after it still holds
        "In the end the storm passed and the lamp stayed lit.",
    ]
    result = extract(make_pdf(tmp_path / "story.pdf", pages, title="The Lighthouse"))
    assert (result.kind, result.pages, result.title) == ("pdf", 4, "The Lighthouse")
    assert page_of(result.sections, "The ship left the harbour at dawn.") == 1
    assert page_of(result.sections, "The lighthouse keeper's name was Edda.") == 2
    assert page_of(result.sections, "the lamp stayed lit.") == 4
    assert [s.page for s in result.sections] == [1, 2, 4]


def test_password_protected_pdf_is_refused(tmp_path: Path) -> None:
    locked = write_encrypted_pdf(tmp_path / "locked.pdf", "The vault code is 4711.", user_password="secret")
    assert refusal(locked) == "is password-protected"
    # The file really is encrypted, not just broken: the password opens it.
    doc = pdfium.PdfDocument(str(locked), password="secret")
    try:
        page = doc[0]
        assert "vault code is 4711" in page.get_textpage().get_text_range()
    finally:
        doc.close()


def test_pdf_encrypted_with_only_an_owner_password_opens(tmp_path: Path) -> None:
    text = "Printing is restricted, but anyone may read that the vault code is 4711."
    result = extract(write_encrypted_pdf(tmp_path / "owner.pdf", text, user_password=""))
    assert result.sections == [Section(text, page=1)]


def test_scanned_pdf_lists_its_pages_to_be_read_as_images(tmp_path: Path, make_pdf: MakePdf) -> None:
    scan = make_pdf(tmp_path / "scan.pdf", ["An invoice, as pixels only.", "Page two, also pixels."], scanned=True)
    result = extract(scan)
    assert (result.sections, result.scanned, result.pages) == ([], (1, 2), 2)


def test_pdf_of_blank_pages_is_refused(tmp_path: Path, make_pdf: MakePdf) -> None:
    assert refusal(make_pdf(tmp_path / "blank.pdf", ["", ""])) == "has no text and nothing drawn on its pages"


def test_pdf_over_the_page_limit_is_refused_quickly(tmp_path: Path, make_pdf: MakePdf) -> None:
    big = make_pdf(tmp_path / "big.pdf", ["x"] * 6000)
    start = time.monotonic()
    assert refusal(big) == "has 6000 pages; the limit is 5000"
    assert time.monotonic() - start < 2
    assert refusal(make_pdf(tmp_path / "four.pdf", ["a"] * 4), max_pages=3) == "has 4 pages; the limit is 3"


def test_damaged_pdfs_are_refused(tmp_path: Path, make_pdf: MakePdf) -> None:
    noise = tmp_path / "noise.pdf"
    noise.write_bytes(b"%PDF-1.7\n" + os.urandom(4096))
    assert refusal(noise) == "is damaged or not a PDF"
    whole = make_pdf(tmp_path / "whole.pdf", ["Some text that will be cut off."]).read_bytes()
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(whole[:400])
    assert refusal(truncated) == "is damaged or not a PDF"
    renamed = tmp_path / "notes.pdf"
    renamed.write_text("just some notes, saved with the wrong extension\n")
    assert refusal(renamed) == "is damaged or not a PDF"


def test_a_slow_file_hits_the_deadline(tmp_path: Path, make_pdf: MakePdf) -> None:
    pdf = make_pdf(tmp_path / "slow.pdf", ["one", "two"])
    assert refusal(pdf, deadline_s=0).startswith("took too long")


def test_pdf_ligature_codes_of_tex_fonts_become_letters() -> None:
    # PDFium's text for a TeX font without a Unicode map: OT1 codes for ff, fi, fl (a lone CR), ffi, ffl and \u00f8.
    raw = "Work\rows:\r\nspeci\x0ccation of di\x0berent a\x0eliations, ba\x0fing Arne S\x1clvberg\r\n\row"
    assert pdf_page_text(raw) == (
        "Workflows:\nspecification of different affiliations, baffling Arne S\u00f8lvberg\nflow"
    )
    # Codes with no letter beside them are a font's private numbering, not ligatures: dropped as before.
    assert pdf_page_text("\x04\x05\x0c\r\x06\x0b\x07 \uf0b7 Bullet\r\nText") == "Bullet\nText"


def test_line_end_hyphens_are_joined_unless_the_word_is_a_compound() -> None:
    # U+FFFE is PDFium's mark for a hyphen at a line end; "-\n" is one it did not recognise.
    pages = [
        "the speci\ufffefication of FDA\ufffeapproved drugs in Barnes\ufffeJewish Hospital",
        "long\ufffeterm results; dosage by rhTSH\ufffestimulated uptake of iodine\ufffe131",
        "a long-term plan, an exam-\nple, a Well-\nDifferentiated tumour, pages 333-\n340",
    ]
    assert join_line_end_hyphens(pages) == [
        "the specification of FDA-approved drugs in Barnes-Jewish Hospital",
        "long-term results; dosage by rhTSH-stimulated uptake of iodine-131",
        "a long-term plan, an example, a Well-\nDifferentiated tumour, pages 333-\n340",
    ]


def test_pdf_running_headers_and_footers_are_kept_once(tmp_path: Path, make_pdf: MakePdf) -> None:
    days = ["Monday", "Tuesday", "Wednesday", "Thursday"]
    pages = [
        f"Harbour Almanac \u2013 Edition 2\nThe {day} log.\nWind from the west.\nTide table:\n"
        f"High water on {day}.\nLow water after dusk.\nPage {n} of 4"
        for n, day in enumerate(days, 1)
    ]
    pages[1] = pages[1].replace("Page 2 of 4", "Page ii of 4")  # page numbers may differ in kind too
    result = extract(make_pdf(tmp_path / "almanac.pdf", pages))
    texts = [s.text for s in result.sections]
    assert texts[0] == pages[0]  # the first occurrence stays: the header may be the only place naming the edition
    for text, day in zip(texts[1:], days[1:], strict=True):
        # A line repeated on every page but away from its top and bottom is text, not furniture.
        assert text == f"The {day} log.\nTide table:\nHigh water on {day}."


# --- Word --------------------------------------------------------------------------------------------------------


def test_docx_sections_carry_their_heading_path(tmp_path: Path) -> None:
    document = docx.Document()
    document.core_properties.title = "Setup guide"
    document.add_paragraph("Read this before installing.")
    document.add_heading("Install", level=1)
    document.add_paragraph("Download the installer.")
    document.add_heading("Linux", level=2)
    document.add_paragraph("Run the AppImage.")
    table = document.add_table(rows=2, cols=2)
    for row, cells in zip(table.rows, [("Distro", "Package"), ("Debian", "tern.deb")], strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    document.add_heading("Windows", level=2)
    document.add_paragraph("Run the .exe.")
    document.add_heading("Usage", level=1)
    document.add_paragraph("Drop a file on the window.")
    path = tmp_path / "guide.docx"
    document.save(str(path))

    result = extract(path)
    assert (result.kind, result.title, result.pages) == ("docx", "Setup guide", None)
    by_heading = {s.heading: s.text for s in result.sections}
    assert by_heading[None] == "Read this before installing."
    assert by_heading["Install"] == "Install\nDownload the installer."
    assert by_heading["Install > Linux"] == "Linux\nRun the AppImage.\nDistro | Package\nDebian | tern.deb"
    assert by_heading["Install > Windows"] == "Windows\nRun the .exe."
    assert by_heading["Usage"] == "Usage\nDrop a file on the window."


def test_docx_table_merges_are_cells_not_equal_texts(tmp_path: Path) -> None:
    document = docx.Document()
    table = document.add_table(rows=4, cols=4)
    texts_by_row = [
        ("Plan", "Sync", "Backup", "Share"),
        ("Free", "✓", "✓", "✓"),
        ("Team", "", "", ""),
        ("Pro", "", "", ""),
    ]
    for row, texts in zip(table.rows, texts_by_row, strict=True):
        for cell, text in zip(row.cells, texts, strict=True):
            cell.text = text
    table.cell(2, 1).merge(table.cell(2, 2)).text = "Shared drive"  # across two columns
    down = table.cell(2, 3).merge(table.cell(3, 3))  # down two rows, with two paragraphs
    down.text = "Links"
    down.add_paragraph("Folders")
    table.cell(3, 1).text = "✓"
    table.cell(3, 2).text = "✓"
    path = tmp_path / "plans.docx"
    document.save(str(path))

    assert extract(path).sections[0].text.split("\n") == [
        "Plan | Sync | Backup | Share",
        "Free | ✓ | ✓ | ✓",  # three cells that say the same, not one merged cell
        "Team | Shared drive |  | Links / Folders",
        "Pro | ✓ | ✓ |",  # the merged cell from the row above is not said again
    ]


def test_docx_zip_bomb_is_refused_without_unpacking(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        with zf.open("word/document.xml", "w", force_zip64=True) as member:
            chunk = bytes(1024 * 1024)
            for _ in range(200):  # 200 MB of zeros, written a megabyte at a time
                member.write(chunk)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    start = time.monotonic()
    assert "zip bomb" in refusal(bomb)
    assert time.monotonic() - start < 1


def test_docx_unpacking_past_the_total_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plain.docx"
    document = docx.Document()
    document.add_paragraph("An ordinary document.")
    document.save(str(path))
    monkeypatch.setattr(ex, "DOCX_MAX_UNPACKED", 1024)  # a real 100 MB package would take seconds to write
    assert refusal(path).startswith("unpacks to")


def test_not_a_word_document(tmp_path: Path) -> None:
    text = tmp_path / "letter.docx"
    text.write_text("Dear reader,\n")
    assert refusal(text) == "is damaged or not a Word document"
    other_zip = tmp_path / "photos.docx"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("photo.txt", "not a Word part")
    assert refusal(other_zip) == "is damaged or not a Word document"
    ole = tmp_path / "protected.docx"
    ole.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096))
    assert "password-protected" in refusal(ole)


# --- HTML, Markdown, reStructuredText, plain text, code ----------------------------------------------------------


def test_html_drops_scripts_and_splits_at_headings(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>Tern  help</title><style>body { color: red }</style></head><body>"
        "<nav><a href='/'>Home</a> <a href='/x'>Menu</a></nav>"
        "<p>Welcome to <b>Tern</b>.</p>"
        "<h1>Install</h1><p>Download it.</p><script>alert('never shown')</script>"
        "<h2>Linux</h2><ul><li>Unpack</li><li>Run</li></ul>"
        "<table><tr><th>Key</th><th>Action</th></tr><tr><td>Ctrl+N</td><td>New chat</td></tr></table>"
        "<h1>FAQ</h1><p>Ask &amp; answer.</p></body></html>",
        encoding="utf-8",
    )
    result = extract(page)
    assert result.title == "Tern help"
    assert [(s.heading, s.text) for s in result.sections] == [
        (None, "Welcome to Tern."),
        ("Install", "Install\nDownload it."),
        ("Install > Linux", "Linux\nUnpack\nRun\nKey | Action\nCtrl+N | New chat"),
        ("FAQ", "FAQ\nAsk & answer."),
    ]
    everything = "\n".join(s.text for s in result.sections)
    assert "alert" not in everything and "color" not in everything and "Menu" not in everything


def test_html_navigation_is_dropped_and_table_rows_stay_whole(tmp_path: Path) -> None:
    page = tmp_path / "chapter.html"
    page.write_text(
        "<html><body><a class='mw-jump-link' href='#content'>Jump to content</a>"
        "<div class='navheader'><table><tr><th>Chapter 5</th></tr><tr><td><a href='4.html'>Prev</a></td></tr>"
        "</table></div><div role='navigation'><ul><li>Deutsch</li><li>Fran\u00e7ais</li></ul></div>"
        "<h1>Chapter\u200b 5. Network\u00ad setup</h1><p>Ad\u200bdresses for a LAN:</p>\n"
        "<table>\n <tr>\n  <th> Class </th>\n  <th> network addresses </th>\n </tr>\n"
        " <tr>\n  <td>\n   <p>A</p>\n  </td>\n  <td>10.x.x.x</td>\n </tr>\n</table>\n"
        "<div class='navfooter'><a href='6.html'>Next</a></div></body></html>",
        encoding="utf-8",
    )
    result = extract(page)
    assert [(s.heading, s.text) for s in result.sections] == [
        (
            "Chapter 5. Network setup",
            "Chapter 5. Network setup\nAddresses for a LAN:\nClass | network addresses\nA | 10.x.x.x",
        ),
    ]


def test_markdown_headings_are_plain_text(tmp_path: Path) -> None:
    lines = [
        "# tern [![npm](https://img.shields.io/npm/v/tern.svg)](https://npm.im/tern) [![ci][badge]][ci]",
        "Intro.",
        "(stop-pager)=",
        "## {kbd}`Ctrl+C` stops the `less` pager, see {func}`~click.echo_via_pager` and [the docs](https://x.y/z)",
        "Press q.",
        "### <img src='logo.png'> `Map<K, V>` and List<String>",
        "```",
        "(kept-in-code)=",
        "```",
    ]
    path = tmp_path / "faq.md"
    path.write_text("\n".join(lines) + "\n")
    result = extract(path)
    assert result.title == "tern"
    assert [(s.heading, s.line_start, s.line_end) for s in result.sections] == [
        ("tern", 1, 2),
        ("tern > Ctrl+C stops the less pager, see echo_via_pager and the docs", 4, 5),
        ("tern > Ctrl+C stops the less pager, see echo_via_pager and the docs > Map<K, V> and List<String>", 6, 9),
    ]
    assert "(kept-in-code)=" in result.sections[2].text


def test_markdown_headings_give_paths_and_line_ranges(tmp_path: Path) -> None:
    lines = [
        "Intro line.",  # 1
        "",
        "# Install",  # 3
        "Get it.",
        "## Linux ##",  # 5
        "```sh",
        "# not a heading, a shell comment",
        "./tern",
        "```",
        "",
        "## Windows",  # 11
        "",
        "# Usage",  # 13
        "Drop files.",
    ]
    path = tmp_path / "README.md"
    path.write_text("\n".join(lines) + "\n")
    result = extract(path)
    assert result.title == "Install"
    assert [(s.heading, s.line_start, s.line_end) for s in result.sections] == [
        (None, 1, 1),
        ("Install", 3, 4),
        ("Install > Linux", 5, 9),
        ("Usage", 13, 14),  # "Windows" has no text of its own
    ]
    assert result.sections[2].text.splitlines()[0] == "## Linux ##"


def test_rst_titles_give_paths_and_line_ranges(tmp_path: Path) -> None:
    path = tmp_path / "guide.rst"
    path.write_text("=====\nGuide\n=====\n\nHello.\n\nSetup\n-----\n\nSteps.\n\nDetails\n~~~~~~~\n\nMore.\n")
    result = extract(path)
    assert result.title == "Guide"
    assert [(s.heading, s.line_start, s.line_end) for s in result.sections] == [
        ("Guide", 2, 5),  # the overline is markup, not text
        ("Guide > Setup", 7, 10),
        ("Guide > Setup > Details", 12, 15),
    ]
    assert [s.text for s in result.sections] == ["Guide\n\n\nHello.", "Setup\n\n\nSteps.", "Details\n\n\nMore."]


def test_code_is_split_into_line_ranges(tmp_path: Path) -> None:
    path = tmp_path / "tool.py"
    path.write_text("".join(f"value_{n} = {n}\n" for n in range(1, 201)))
    result = extract(path)
    assert result.kind == "code"
    assert [(s.line_start, s.line_end) for s in result.sections] == [(1, 80), (81, 160), (161, 200)]
    assert result.sections[1].text.splitlines()[0] == "value_81 = 81"


def test_csv_keeps_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text("name,score\r\nEdda,7\r\nOlaf,9\r\n")
    result = extract(path)
    assert (result.kind, result.sections) == ("csv", [Section("name,score\nEdda,7\nOlaf,9", line_start=1, line_end=3)])


def test_legacy_encodings_are_detected(tmp_path: Path) -> None:
    french = "Le café du coin ouvre à sept heures. Les élèves y prennent un thé glacé, déjà prêts pour l'école.\n"
    path = tmp_path / "menu.txt"
    path.write_bytes((french * 3).encode("cp1252"))
    assert "café du coin" in extract(path).sections[0].text
    utf16 = tmp_path / "notes.txt"
    utf16.write_bytes("Größe: 42 — naïve façade\n".encode("utf-16"))  # with a BOM, as Windows tools write it
    assert extract(utf16).sections[0].text == "Größe: 42 — naïve façade"


def test_binary_renamed_to_txt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.txt"
    path.write_bytes(PNG + os.urandom(2048))
    assert refusal(path) == "looks like a binary file, not text"


# --- Files that can't be read ------------------------------------------------------------------------------------


def test_unusable_paths_say_why(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.touch()
    assert refusal(empty) == "is empty"
    blank = tmp_path / "blank.md"
    blank.write_text("\n   \n\t\n")
    assert refusal(blank) == "has no text"
    # Tests run as root, where chmod 000 still reads, so a missing file and a folder stand in for unreadable paths.
    assert refusal(tmp_path / "gone.txt").startswith("was not found")
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    assert refusal(folder) == "is a folder, not a file"
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    assert refusal(fifo) == "is not a regular file"  # and it returns at once instead of blocking on the read
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    assert refusal(image) == "images are not supported: no OCR"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_says_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("hidden")
    path.chmod(0)
    assert refusal(path) == "can't be read: permission denied"


def test_too_large_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.log"
    with path.open("wb") as f:
        f.truncate(3 * 1024 * 1024)  # sparse: 3 MB on paper, nothing read or written
    assert refusal(path, max_bytes=1024 * 1024) == "is too large (3 MB; the limit is 1 MB)"


def test_classify_and_explain() -> None:
    assert [classify(n) for n in ("a.PDF", "b.docx", "c.log", "d.markdown", "e.htm", "f.tsv", "g.tsx", "Makefile")] == [
        "pdf",
        "docx",
        "text",
        "markdown",
        "html",
        "csv",
        "code",
        "code",
    ]
    assert classify("photo.jpg") is None and classify("noext") is None
    assert explain_unsupported("budget.xlsx") == "spreadsheets (.xlsx) are not supported yet"
    assert explain_unsupported("scan.TIFF") == "images are not supported: no OCR"
    assert explain_unsupported("thing.xyz") == ".xyz files are not supported"


# --- Dropped folders ---------------------------------------------------------------------------------------------


def test_folder_drop_lists_files_and_says_what_it_left_out(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "docs" / "deep").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    for name in ("notes.md", "docs/guide.txt", "docs/deep/main.py", "docs/photo.png", ".env"):
        (root / name).write_text("x\n")
    (root / "docs" / "deep" / "loop").symlink_to(root, target_is_directory=True)
    (root / "docs" / "link.md").symlink_to(root / "notes.md")
    (root / "docs" / "dangling.txt").symlink_to(root / "nowhere.txt")
    loose = tmp_path / "loose.txt"
    loose.write_text("dropped alongside the folder\n")

    files, skipped = iter_files([root, loose, loose])
    # notes.md comes once, through the link met first; loose.txt once although dropped twice.
    assert files == [root / "docs/deep/main.py", root / "docs/guide.txt", root / "docs/link.md", loose]
    reasons = {path.relative_to(tmp_path).as_posix(): reason for path, reason in skipped}
    assert reasons == {
        "project/.env": "is hidden",
        "project/.git": "is hidden",
        "project/docs/dangling.txt": "is a broken link",
        "project/docs/deep/loop": "is a folder already included",
        "project/docs/photo.png": "images are not supported: no OCR",
    }


def test_links_that_leave_a_dropped_folder_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not part of the drop\n")
    root = tmp_path / "project"
    (root / "sub").mkdir(parents=True)
    (root / "readme.md").write_text("inside\n")
    (root / "passwd.txt").symlink_to("/etc/passwd")
    (root / "sub" / "escape.txt").symlink_to("../../outside/secret.txt")
    (root / "sub" / "elsewhere").symlink_to(outside, target_is_directory=True)
    (root / "sub" / "alias.md").symlink_to("../readme.md")  # stays inside: followed (and counted once)

    files, skipped = iter_files([root])
    assert files == [root / "readme.md"]
    reasons = {path.relative_to(root).as_posix(): reason for path, reason in skipped}
    leaving = "is a link to somewhere outside the dropped folder"
    assert reasons == {"passwd.txt": leaving, "sub/escape.txt": leaving, "sub/elsewhere": leaving}
    # A link dropped on its own is the user's choice, and is read where it points.
    assert iter_files([root / "sub" / "escape.txt"])[0] == [root / "sub" / "escape.txt"]


def test_folder_drop_stops_at_the_file_limit(tmp_path: Path) -> None:
    for n in range(5):
        (tmp_path / f"{n}.txt").write_text("x\n")
    files, skipped = iter_files([tmp_path], max_files=3)
    assert [f.name for f in files] == ["0.txt", "1.txt", "2.txt"]
    assert skipped == [(tmp_path / "3.txt", "and the files after it were left out: at most 3 at a time")]
