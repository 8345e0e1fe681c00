"""Search quality on content like real documents: what a question's words are worth, and when nothing matches.

Each test builds a small collection in a real encrypted store: the generated
island almanac (200 pages) as the bulk of it, plus a few passages that pose
one ranking problem.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from app.core.docs.chunking import SectionText, chunk_sections, count_tokens
from app.core.docs.doc_store import DocumentStore, query_terms
from app.core.docs.retrieval import notes, retrieve
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from tests.core.docs.planted_facts import FACTS, build_pages


@pytest.fixture
def almanac(tmp_path: Path) -> tuple[DocumentStore, int, list[int]]:
    """A conversation with the 200-page almanac attached; returns the store, the conversation and fact pages."""
    conn = open_database(tmp_path / "history.db", secrets.token_bytes(32))
    cid = ConversationStore(conn).create_conversation("Island")
    store = DocumentStore(conn)
    pages, where = build_pages()
    doc = store.add(cid, "/docs/almanac.pdf", "almanac.pdf", "pdf", 1, 1.0)
    store.replace_chunks(doc, chunk_sections([SectionText(text, page=n + 1) for n, text in enumerate(pages)]))
    return store, cid, where


def attach(store: DocumentStore, cid: int, name: str, sections: list[SectionText], size: int = 350) -> int:
    doc = store.add(cid, f"/docs/{name}", name, "markdown", 1, 1.0)
    store.replace_chunks(doc, chunk_sections(sections, size=size, overlap=size // 7))
    return doc


def test_stop_words_do_not_outweigh_the_words_that_matter(almanac: tuple[DocumentStore, int, list[int]]) -> None:
    store, cid, _ = almanac
    attach(
        store,
        cid,
        "letters.md",
        [
            SectionText("If my cousins would come and my neighbours should call, my house would be full.", heading="A"),
            SectionText("A leaking boat needs a bucket of tar and a dry day.", heading="B"),
            SectionText("Le phare de Skerry fut électrifié en 1952, après un long hiver.", heading="C"),
        ],
    )
    assert query_terms("What would I need if my boat should leak?") == ["need", "boat", "leak"]
    hits = store.search(cid, "What would I need if my boat should leak?", 5)
    assert hits and "bucket of tar" in hits[0].text
    hits = store.search(cid, "Quand le phare a-t-il été électrifié ?", 5)  # only English words are dropped
    assert hits and hits[0].heading == "C"


def test_a_heading_that_names_the_subject_ranks_its_passage_up(
    almanac: tuple[DocumentStore, int, list[int]],
) -> None:
    store, cid, _ = almanac
    attach(
        store,
        cid,
        "manual.md",
        [
            SectionText("The router can reset itself.", heading="Modem > Status lights"),
            SectionText(
                "To reset the router, hold the recessed button for ten seconds; every setting returns to its "
                "factory value, the lights blink twice and the unit starts again after a minute.",
                heading="Router > Factory reset",
            ),
        ],
    )
    hits = store.search(cid, "How do I reset the router?", 5)
    assert hits[0].heading == "Router > Factory reset"  # BM25 alone prefers the shorter passage


def test_a_question_that_shares_only_a_common_word_with_the_documents_gets_nothing(
    almanac: tuple[DocumentStore, int, list[int]],
) -> None:
    store, cid, _ = almanac
    question = "What is the price of a ticket to the moon?"  # "price" is on many pages; the rest on none
    assert store.connection.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'price'").fetchone()[0] > 20
    assert store.search(cid, question, 40) == []
    grounding = retrieve(store, cid, question, 2048)
    assert grounding is not None and grounding.mode == "retrieval" and grounding.sources == []
    assert notes(grounding) == "No passage in the attached documents matches this question."


def test_a_paraphrase_that_shares_one_rare_word_is_still_answered(
    almanac: tuple[DocumentStore, int, list[int]],
) -> None:
    """Answerable questions are not refused for sharing few words with the text: a rare one is evidence enough."""
    store, cid, where = almanac
    pages, _ = build_pages()
    text = store.add(cid, "/docs/almanac.txt", "almanac.txt", "text", 1, 1.0)  # the same book in other forms
    store.replace_chunks(text, chunk_sections([SectionText(t, line_start=n + 1) for n, t in enumerate(pages)]))
    chapters = attach(
        store, cid, "almanac.md", [SectionText(t, heading=f"Chapter {n + 1}") for n, t in enumerate(pages)]
    )
    assert chapters and len(store.documents(cid)) == 3
    for _fact, question in FACTS:
        assert store.search(cid, question, 40), question
    hockey = next(i for i, (_fact, question) in enumerate(FACTS) if "hockey team" in question)
    fact, question = FACTS[hockey]
    assert len(set(query_terms(question)) & set(query_terms(fact))) == 1  # "hockey", and nothing else
    assert where[hockey] in [p.page for p in store.search(cid, question, 5)]


def test_the_best_passage_reads_on_into_the_next_chunk(almanac: tuple[DocumentStore, int, list[int]]) -> None:
    """An answer that starts past the end of the chunk the question's words are in still reaches the prompt."""
    store, cid, _ = almanac
    before = [f"The keeper painted railing number {n} with grey paint that summer." for n in range(1, 9)]
    after = [f"The keeper painted railing number {n} with grey paint that summer." for n in range(9, 17)]
    answer = "Inspectors log the compressor pressure and replace the worn diaphragm."
    text = " ".join(["The fog signal has its winter inspection in the first week of January.", *before, answer, *after])
    doc = attach(store, cid, "signal.md", [SectionText(text, heading="Fog signal")], size=120)
    chunks = store.chunks(doc)
    asked = next(c for c in chunks if "winter inspection" in c.text)
    assert "compressor" not in asked.text  # the answer is in the next chunk only
    grounding = retrieve(store, cid, "What does the winter inspection of the fog signal involve?", 2048)
    assert grounding is not None and grounding.mode == "retrieval"
    best = grounding.sources[0]
    assert "winter inspection" in best.text and "compressor pressure" in best.text
    railings = re.findall(r"railing number (\d+) ", best.text)
    assert len(railings) == len(set(railings))  # the chunks' overlap is given once
    assert count_tokens(best.text) < 2 * 120
