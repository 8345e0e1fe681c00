"""The real-documents set of bench/docs.py is well formed (read offline: nothing is fetched here)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from app.core.docs.extract import classify

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = json.loads((ROOT / "bench" / "real_docs.json").read_text(encoding="utf-8"))
QUESTIONS: list[dict[str, Any]] = json.loads((ROOT / "bench" / "real_docs_questions.json").read_text(encoding="utf-8"))[
    "questions"
]
DOCUMENTS: list[dict[str, Any]] = MANIFEST["documents"]
SOURCES: list[dict[str, Any]] = MANIFEST["sources"]

SHA256 = re.compile(r"^[0-9a-f]{64}$")
HOSTS = {"pypi": "files.pythonhosted.org", "debian": "deb.debian.org", "npm": "registry.npmjs.org"}
# The held-out set is drawn from these projects; none of their files may be in the development set.
HELD_OUT = ("pymupdf", "fitz", "pdfplumber", "fedramp", "pdf.js", "pdfjs", "asvs", "markitdown")
KINDS = {
    "pdf": "pdf",
    "pdf-multicolumn": "pdf",
    "pdf-ocr": "pdf",
    "pdf-slides": "pdf",
    "docx": "docx",
    "html": "html",
    "markdown": "markdown",
    "rst": "rst",
    "text": "text",
    "code": "code",
}
REQUIRED_KINDS = {"pdf-multicolumn", "pdf-ocr", "pdf-slides", "docx", "html", "markdown", "code"}


def test_sources_are_pinned_registry_archives() -> None:
    assert len({s["name"] for s in SOURCES}) == len(SOURCES)
    for source in SOURCES:
        assert SHA256.match(source["sha256"]), source["name"]
        url = urlparse(source["url"])
        assert url.scheme == "https" and url.hostname == HOSTS[source["registry"]], source["url"]
        assert source["version"] in PurePosixPath(url.path).name, source["url"]


def test_documents_are_pinned_and_readable_by_the_app() -> None:
    names = {s["name"] for s in SOURCES}
    assert len({d["id"] for d in DOCUMENTS}) == len(DOCUMENTS)
    for document in DOCUMENTS:
        assert document["source"] in names, document["id"]
        assert SHA256.match(document["sha256"]), document["id"]
        assert classify(PurePosixPath(document["path"]).name) == KINDS[document["kind"]], document["id"]
    used = {d["source"] for d in DOCUMENTS}
    assert used == names  # no source fetched for nothing


def test_every_supported_kind_is_covered() -> None:
    assert len(DOCUMENTS) >= 12
    assert {d["kind"] for d in DOCUMENTS} >= REQUIRED_KINDS


def test_nothing_from_the_held_out_projects() -> None:
    excluded = {p.lower() for p in MANIFEST["excluded"]["packages"]}
    for source in SOURCES:
        assert source["package"].lower() not in excluded
        for text in (source["package"], source["url"]):
            assert not any(name in text.lower() for name in HELD_OUT), text
    for document in DOCUMENTS:
        assert not any(name in document["path"].lower() for name in HELD_OUT), document["path"]


def _key(where: dict[str, Any]) -> str:
    keys = {"page", "heading", "lines"} & set(where)
    assert len(keys) == 1, where
    return keys.pop()


def test_questions_point_at_real_places() -> None:
    kinds = {d["id"]: d["kind"] for d in DOCUMENTS}
    assert len({q["id"] for q in QUESTIONS}) == len(QUESTIONS)
    assert len({q["question"].casefold() for q in QUESTIONS}) == len(QUESTIONS)
    for question in QUESTIONS:
        if not question["where"]:
            assert "answer" not in question, question["id"]
            continue
        assert question["answer"].strip(), question["id"]
        for where in question["where"]:
            kind = KINDS[kinds[where["document"]]]
            key = _key(where)
            if kind == "pdf":
                assert key == "page" and isinstance(where["page"], int) and where["page"] >= 1, question["id"]
            elif kind in ("docx", "html"):
                assert key == "heading" and where["heading"].strip(), question["id"]
            else:
                assert key == "lines", question["id"]
                first, last = where["lines"]
                assert 1 <= first <= last, question["id"]


def test_question_counts() -> None:
    answerable = [q for q in QUESTIONS if q["where"]]
    assert len(answerable) >= 60
    assert 5 <= len(QUESTIONS) - len(answerable) <= 8
    per_document = Counter(q["where"][0]["document"] for q in answerable)
    for document in DOCUMENTS:
        assert 3 <= per_document[document["id"]] <= 8, document["id"]
