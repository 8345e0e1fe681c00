"""Chunking with references, and the document store inside the encrypted history (real SQLCipher)."""

from __future__ import annotations

import base64
import random
import secrets
import string
from pathlib import Path

import pytest

from app.core.docs.chunking import SectionText, chunk_sections, count_tokens
from app.core.docs.doc_store import DocumentStore, match_query
from app.core.engine.llama_engine import LlamaEngine
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database

PROSE = (
    "The lighthouse on Skerry Point was built in 1871 from granite quarried on the island. "
    "Its lamp burned paraffin until 1952, when it was electrified. "
    "The last keeper, Edda Lindqvist, left the station in 1989 after automation. "
) * 12


def test_token_estimate_tracks_gemmas_tokenizer(engine: LlamaEngine) -> None:
    samples = [PROSE, Path(__file__).read_text(), "Le gardien du phare s'appelait Edda. " * 30]
    for text in samples:
        real = len(engine.tokenize(text))
        assert abs(count_tokens(text) - real) / real < 0.15, (count_tokens(text), real)


def test_dense_runs_are_never_underestimated(engine: LlamaEngine) -> None:
    rng = random.Random(7)
    samples = {
        "DNA on one line": "".join(rng.choice("ACGT") for _ in range(6000)),
        "DNA in FASTA lines": "\n".join("".join(rng.choice("ACGT") for _ in range(60)) for _ in range(80)),
        "random letters": "".join(rng.choice(string.ascii_letters) for _ in range(6000)),
        "base64": base64.b64encode(rng.randbytes(4000)).decode(),
        "hex": rng.randbytes(2000).hex(),
        "rare CJK": "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(1500)),
        "Cyrillic run": "".join(chr(rng.randint(0x430, 0x44F)) for _ in range(2000)),
    }
    for name, text in samples.items():
        real = len(engine.tokenize(text))
        assert count_tokens(text) >= real, (name, count_tokens(text), real)


def test_a_megabyte_line_becomes_chunks_the_prompt_can_hold() -> None:
    line = "".join(random.Random(3).choice("ACGT") for _ in range(1_000_000))
    chunks = chunk_sections([SectionText(line, line_start=1, line_end=1)], size=350, overlap=50)
    assert "".join(c.text for c in chunks if c.text).count("A") >= line.count("A")  # nothing dropped
    assert max(len(c.text) for c in chunks) <= 2000
    assert sum(c.tokens for c in chunks) >= count_tokens(line) >= 1_000_000


def test_chunks_stay_within_sections_and_overlap() -> None:
    sections = [SectionText(PROSE, page=1), SectionText(PROSE.replace("1871", "1872"), page=2)]
    chunks = chunk_sections(sections, size=120, overlap=30)
    assert {c.page for c in chunks} == {1, 2}
    assert all(c.tokens <= 120 for c in chunks)
    page1 = [c for c in chunks if c.page == 1]
    assert len(page1) > 2 and all("1872" not in c.text for c in page1)  # never across a page
    first_sentences = [c.text.split(". ")[0] for c in page1[1:]]
    assert all(s in page1[i].text for i, s in enumerate(first_sentences))  # each starts inside the previous one


def test_line_ranges_follow_the_text() -> None:
    code = "\n".join(f"line_{i} = {i}  # value {i}." for i in range(1, 201))
    chunks = chunk_sections([SectionText(code, line_start=1, line_end=200)], size=200, overlap=0)
    assert chunks[0].line_start == 1 and chunks[-1].line_end == 200
    for c in chunks:
        first = int(c.text.split(" ")[0].removeprefix("line_"))
        assert c.line_start is not None and abs(c.line_start - first) <= 1


@pytest.fixture
def docs(tmp_path: Path) -> tuple[ConversationStore, DocumentStore, Path]:
    db = tmp_path / "history.db"
    conn = open_database(db, secrets.token_bytes(32))
    return ConversationStore(conn), DocumentStore(conn), db


def test_documents_chunks_and_search(docs: tuple[ConversationStore, DocumentStore, Path]) -> None:
    conversations, store, db = docs
    cid = conversations.create_conversation("Reading")
    other = conversations.create_conversation("Elsewhere")
    doc = store.add(cid, "/docs/skerry.pdf", "skerry.pdf", "pdf", 1000, 1.0)
    assert store.documents(cid)[0].state == "queued" and [d.id for d in store.unfinished()] == [doc]
    store.set_state(doc, "indexing", pages=2)
    store.replace_chunks(doc, chunk_sections([SectionText(PROSE, page=1), SectionText("Nothing here.", page=2)]))
    info = store.documents(cid)[0]
    assert (info.state, info.pages) == ("ready", 2) and info.chunk_count >= 2 and not store.unfinished()
    hits = store.search(cid, "When were the lighthouses electrified?")  # stemmed: lighthouses -> lighthouse
    assert hits and hits[0].page == 1 and "electrified" in hits[0].text and hits[0].name == "skerry.pdf"
    assert store.search(other, "lighthouse") == []  # only this conversation's documents
    assert match_query("What is the?") == ""

    assert store.add(cid, "/docs/skerry.pdf", "skerry.pdf", "pdf", 1000, 1.0) == doc  # unchanged: stays ready
    assert store.documents(cid)[0].state == "ready"
    store.add(cid, "/docs/skerry.pdf", "skerry.pdf", "pdf", 1200, 2.0)  # changed on disk: index again
    assert store.documents(cid)[0].state == "queued"

    conversations.connection.close()
    assert b"Lindqvist" not in db.read_bytes() and b"electrified" not in db.read_bytes()


def test_deleting_a_conversation_removes_its_documents_everywhere(
    docs: tuple[ConversationStore, DocumentStore, Path],
) -> None:
    conversations, store, _ = docs
    cid = conversations.create_conversation("Temporary")
    doc = store.add(cid, "/docs/a.txt", "a.txt", "text", 10, 1.0)
    store.replace_chunks(doc, chunk_sections([SectionText(PROSE, line_start=1, line_end=1)]))
    conversations.delete(cid)
    conversations.purge_deleted()
    db = conversations.connection
    assert db.execute("SELECT count(*) FROM documents").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'lighthouse'").fetchone()[0] == 0


CODE = """void QPDFWriter::closeObject(int objid)
{
    // Write a newline before endobj as it makes the file easier to repair.
    writeString("\\nendobj\\n");
}

void QPDFWriter::unparseObject(QPDFObjectHandle object)
{
    if (object.isArray()) {
        // Acrobat requires a space after the opening bracket.
        writeString("[ ");
    }
}
"""


def test_code_is_found_by_the_words_inside_its_names_and_escaped_strings(
    docs: tuple[ConversationStore, DocumentStore, Path],
) -> None:
    conversations, store, _ = docs
    cid = conversations.create_conversation("Reading code")
    doc = store.add(cid, "/src/writer.cc", "writer.cc", "code", 10, 1.0)
    store.replace_chunks(doc, chunk_sections([SectionText(CODE, line_start=1, line_end=14)]))
    db = conversations.connection
    for word in ("endobj", "unparse", "arrays", "writer", "QPDFWriter", "isarray"):  # parts and whole names
        assert db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (word,)).fetchone()[0] == 1
    assert store.search(cid, "Why is there a blank after the bracket of arrays?")[0].document_id == doc
    assert db.execute("SELECT text FROM chunks").fetchone()[0].startswith("void QPDFWriter::closeObject")  # as is
    store.remove(doc)  # the index entries go with the chunk, word for word as they were added
    assert db.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'unparse OR endobj'").fetchone()[0] == 0
    db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_bm25_finds_the_page_of_a_paraphrased_question(docs: tuple[ConversationStore, DocumentStore, Path]) -> None:
    """Retrieval quality with BM25 alone: 200 pages, 40 planted facts, questions that paraphrase them."""
    from tests.core.docs.planted_facts import FACTS, build_pages

    conversations, store, _ = docs
    cid = conversations.create_conversation("Island almanac")
    pages, where = build_pages()
    doc = store.add(cid, "/docs/almanac.pdf", "almanac.pdf", "pdf", 1, 1.0)
    store.replace_chunks(doc, chunk_sections([SectionText(text, page=n + 1) for n, text in enumerate(pages)]))
    found = 0
    for i, (_fact, question) in enumerate(FACTS):
        top = [p.page for p in store.search(cid, question, limit=5)]
        found += where[i] in top
    assert found / len(FACTS) >= 0.9, f"recall@5 = {found}/{len(FACTS)}"


def test_search_looks_deeper_when_other_conversations_crowd_the_index(
    docs: tuple[ConversationStore, DocumentStore, Path],
) -> None:
    conversations, store, _ = docs
    crowded = conversations.create_conversation("Many copies")
    for copy in range(40):
        doc = store.add(crowded, f"/copies/{copy}.txt", f"{copy}.txt", "text", 1, 1.0)
        store.replace_chunks(doc, chunk_sections([SectionText(PROSE, line_start=1, line_end=1)]))
    mine = conversations.create_conversation("Mine")
    doc = store.add(mine, "/docs/note.txt", "note.txt", "text", 1, 1.0)
    store.replace_chunks(doc, chunk_sections([SectionText("A short note: the lighthouse lamp was electrified.")]))
    hits = store.search(mine, "electrified lighthouse lamp", limit=3)
    assert [h.name for h in hits] == ["note.txt"]  # found beyond the top hundred of the shared index
