"""Whole documents vs retrieved passages, numbered sources with page/section/line citations."""

from __future__ import annotations

import secrets
from pathlib import Path

from app.core.docs.chunking import SectionText, chunk_sections
from app.core.docs.doc_store import DocumentInfo, DocumentStore, Passage
from app.core.docs.grounding import ground
from app.core.docs.retrieval import failure_sentence, notes, retrieve
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from tests.core.docs.planted_facts import FACTS, build_pages


def stores(tmp_path: Path) -> tuple[ConversationStore, DocumentStore]:
    conn = open_database(tmp_path / "history.db", secrets.token_bytes(32))
    return ConversationStore(conn), DocumentStore(conn)


def context(docs: DocumentStore, cid: int, question: str, budget: int):  # type: ignore[no-untyped-def]
    documents = docs.documents(cid)
    whole = {d.id: docs.chunks(d.id) for d in documents if d.state == "ready"}
    return ground(documents, whole, docs.search(cid, question, 40), budget)


def test_small_documents_go_in_whole_with_citations(tmp_path: Path) -> None:
    conversations, docs = stores(tmp_path)
    cid = conversations.create_conversation("Notes")
    a = docs.add(cid, "/a.pdf", "a.pdf", "pdf", 1, 1.0)
    docs.replace_chunks(a, chunk_sections([SectionText("Skerry light was built in 1871.", page=3)]))
    b = docs.add(cid, "/b.md", "b.md", "markdown", 1, 1.0)
    docs.replace_chunks(b, chunk_sections([SectionText("Use a soft cloth on the lens.", heading="Care > Lens")]))
    c = docs.add(cid, "/c.py", "c.py", "code", 1, 1.0)
    docs.replace_chunks(c, chunk_sections([SectionText("lamp = 'paraffin'\nyear = 1871", line_start=10, line_end=11)]))
    waiting = docs.add(cid, "/d.pdf", "d.pdf", "pdf", 1, 1.0)  # still queued
    g = context(docs, cid, "When was it built?", budget=4000)
    assert g.mode == "whole" and g.not_ready == ["d.pdf"]
    assert [s.citation() for s in g.sources] == ["a.pdf, page 3", "b.md, Care > Lens", "c.py, lines 10–11"]
    assert "[1] a.pdf, page 3:\nSkerry light was built in 1871." in g.prompt
    assert "cite the ones you use like [1]" in g.prompt and "d.pdf" in g.prompt
    assert waiting not in {s.document_id for s in g.sources}


def test_large_documents_use_the_best_passages_from_every_file(tmp_path: Path) -> None:
    conversations, docs = stores(tmp_path)
    cid = conversations.create_conversation("Almanac")
    pages, where = build_pages()
    almanac = docs.add(cid, "/almanac.pdf", "almanac.pdf", "pdf", 1, 1.0)
    docs.replace_chunks(almanac, chunk_sections([SectionText(t, page=n + 1) for n, t in enumerate(pages)]))
    note = docs.add(cid, "/note.txt", "note.txt", "text", 1, 1.0)
    docs.replace_chunks(note, chunk_sections([SectionText("Osei also tested the well water for lead.", line_start=1)]))
    question = FACTS[3][1]  # "What did Osei find in the well water?"
    g = context(docs, cid, question, budget=1500)
    assert g.mode == "retrieval" and sum(len(s.text) for s in g.sources) < 1500 * 6
    assert where[3] in [s.page for s in g.sources if s.name == "almanac.pdf"]
    assert "note.txt" in {s.name for s in g.sources}  # the small file is not crowded out
    assert [s.number for s in g.sources] == list(range(1, len(g.sources) + 1))


def test_when_nothing_matches_the_answer_must_say_so(tmp_path: Path) -> None:
    conversations, docs = stores(tmp_path)
    cid = conversations.create_conversation("Almanac")
    pages, _ = build_pages(n_pages=60)
    doc = docs.add(cid, "/almanac.pdf", "almanac.pdf", "pdf", 1, 1.0)
    docs.replace_chunks(doc, chunk_sections([SectionText(t, page=n + 1) for n, t in enumerate(pages)]))
    g = context(docs, cid, "Quantum chromodynamics lattice?", budget=500)
    assert g.sources == [] and "do not answer it" in g.prompt and "do not make an answer up" in g.prompt
    assert ground([], {}, [], 1000).mode == "none"


def test_failed_files_are_said_to_have_failed_with_their_reason(tmp_path: Path) -> None:
    conversations, docs = stores(tmp_path)
    cid = conversations.create_conversation("Notes")
    good = docs.add(cid, "/a.md", "a.md", "markdown", 1, 1.0)
    docs.replace_chunks(good, chunk_sections([SectionText("The ferry leaves at nine.", heading="Ferry")]))
    docs.add(cid, "/later.pdf", "later.pdf", "pdf", 1, 1.0)  # still queued
    empty = docs.add(cid, "/empty.pdf", "empty.pdf", "pdf", 0, 1.0)
    docs.set_state(empty, "failed", "is empty")
    damaged = docs.add(cid, "/scan.pdf", "scan.pdf", "pdf", 9, 1.0)
    docs.set_state(damaged, "failed", "is damaged or not a PDF")

    g = retrieve(docs, cid, "When does the ferry leave?", 4000)
    assert g is not None and [s.name for s in g.sources] == ["a.md"]
    assert g.not_ready == ["later.pdf"]  # failed files are not "still being read"
    assert notes(g) == (
        "Still being read: later.pdf. Could not read empty.pdf: it is empty. "
        "Could not read scan.pdf: it is damaged or not a PDF."
    )
    assert "Still being read, not available yet: later.pdf." in g.prompt and "yet: later.pdf, " not in g.prompt
    assert "could not be read, so nothing from them is available: empty.pdf, scan.pdf" in g.prompt

    only = conversations.create_conversation("Nothing readable")
    broken = docs.add(only, "/empty.pdf", "empty.pdf", "pdf", 0, 1.0)
    docs.set_state(broken, "failed", "is empty")
    g = retrieve(docs, only, "Anything?", 4000)
    assert g is not None and notes(g) == "Could not read empty.pdf: it is empty."  # no "no passage matches"


def test_a_failure_reads_as_a_sentence() -> None:
    assert failure_sentence("empty.pdf", "is empty") == "Could not read empty.pdf: it is empty"
    assert failure_sentence("a.pdf", "can't be read: permission denied") == "Could not read a.pdf: permission denied"
    assert failure_sentence("b.pdf", "the reader stopped unexpectedly (exit -9)") == (
        "Could not read b.pdf: the reader stopped unexpectedly (exit -9)"
    )
    assert failure_sentence("c.pdf", "") == "Could not read c.pdf: the reason was not recorded"


def test_passages_fill_the_budget_by_rank_so_a_strong_one_is_never_pushed_out(tmp_path: Path) -> None:
    """Five strong passages from one file, then weak ones from others: the fifth strong one goes in first."""

    def passage(chunk: int, doc: int, score: float) -> Passage:
        return Passage(chunk, doc, f"{doc}.pdf", "word " * 40, chunk, None, None, None, score)

    ranked = [passage(n, 1, -10.0 + n) for n in range(1, 6)] + [passage(10 + n, 1 + n, -1.0) for n in range(1, 4)]
    documents = [
        DocumentInfo(d, 1, f"/{d}.pdf", f"{d}.pdf", "pdf", 1, 1.0, "ready", "", 1, 9, 9000) for d in (1, 2, 3, 4)
    ]
    g = ground(documents, {}, ranked, 5 * 60)
    assert g.mode == "retrieval"
    assert [s.chunk_id for s in g.sources] == [1, 2, 3, 4, 5]


def test_consecutive_chunks_become_one_source_with_their_overlap_once() -> None:
    def passage(chunk: int, position: int, text: str, page: int | None = None) -> Passage:
        return Passage(chunk, 1, "guide.md", text, page, "Setup", 40 + 4 * position, 44 + 4 * position, -1.0, position)

    first = passage(10, 0, "Open the lid. Lift the tray. Press the red button.")
    second = passage(11, 1, "Press the red button. The lamp turns green.")
    elsewhere = passage(30, 9, "Wipe the tray with a dry cloth.")
    documents = [DocumentInfo(1, 1, "/guide.md", "guide.md", "markdown", 1, 1.0, "ready", "", None, 12, 9000)]
    merged = "Open the lid. Lift the tray. Press the red button. The lamp turns green."

    g = ground(documents, {}, [first, elsewhere, second], 4000)  # both chunks found: one source
    assert [s.chunk_id for s in g.sources] == [10, 30] and g.sources[0].text == merged
    assert (g.sources[0].line_start, g.sources[0].line_end) == (40, 48)

    g = ground(documents, {}, [second, elsewhere], 4000, neighbours=[first])  # the best hit's neighbour joins it
    assert [s.chunk_id for s in g.sources] == [11, 30] and g.sources[0].text == merged

    other_page = passage(12, 1, "Press the red button. The lamp turns green.", page=2)
    g = ground(documents, {}, [first, other_page], 4000)  # a chunk of another section stays apart
    assert [s.chunk_id for s in g.sources] == [10, 12]


def test_whole_documents_give_each_section_once_without_the_overlap_of_its_chunks(tmp_path: Path) -> None:
    conversations, docs = stores(tmp_path)
    cid = conversations.create_conversation("Almanac")
    sentences = [f"Sentence number {n} tells of harbour {n} and its {n * 3} boats." for n in range(1, 120)]
    chunks = chunk_sections([SectionText(" ".join(sentences), page=4)], size=350, overlap=50)
    assert len(chunks) >= 3 and all(c.overlap > 0 for c in chunks[1:])  # consecutive chunks repeat a little
    doc = docs.add(cid, "/a.pdf", "a.pdf", "pdf", 1, 1.0)
    docs.replace_chunks(doc, chunks)
    (info,) = docs.documents(cid)
    assert info.token_count == sum(c.tokens for c in chunks) - sum(c.overlap for c in chunks)
    g = context(docs, cid, "harbour 7", budget=8000)
    assert g.mode == "whole"
    (source,) = g.sources  # one section, one source
    assert source.citation() == "a.pdf, page 4"
    assert all(source.text.count(s) == 1 for s in sentences)  # every sentence once, none lost
