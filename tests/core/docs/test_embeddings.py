"""The vector path: embeddings stored as blobs in the encrypted store, nearest chunks, and rank fusion.

This checks the mechanism, not quality: no embedding model can be downloaded
here, so the starter Gemma 3 270M runs in embedding mode (mean-pooled). Its
vectors are real llama.cpp embeddings, just not trained for retrieval.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pytest

from app.core.docs.chunking import SectionText, chunk_sections
from app.core.docs.doc_store import DocumentStore, fuse, nearest
from app.core.docs.embedder import Embedder, to_blob
from app.core.engine.gguf_info import GgufError
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database

TEXTS = [
    "The lighthouse keeper Edda lit the lamp every evening at dusk.",
    "The ferry timetable lists departures from the north pier.",
    "Granite from the quarry was used to build the tower in 1871.",
]


@pytest.fixture(scope="module")
def embedder(starter_model: Path) -> Embedder:
    e = Embedder(starter_model)
    yield e  # type: ignore[misc]
    e.close()


def test_vectors_are_unit_length_and_deterministic(embedder: Embedder) -> None:
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (3, 640) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    alone = embedder.embed(TEXTS[:1])[0]
    assert float(alone @ vectors[0]) > 0.999  # the same text alone or in a batch: the same direction


def test_stored_vectors_find_the_nearest_chunk_and_fuse_with_bm25(embedder: Embedder, tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    conn = open_database(db, secrets.token_bytes(32))
    conversations, docs = ConversationStore(conn), DocumentStore(conn)
    cid = conversations.create_conversation("Vectors")
    chunks = chunk_sections([SectionText(t, page=n + 1) for n, t in enumerate(TEXTS)])
    doc = docs.add(cid, "/a.pdf", "a.pdf", "pdf", 1, 1.0)
    docs.replace_chunks(doc, chunks, [to_blob(v) for v in embedder.embed([c.text for c in chunks])])
    query = embedder.embed([TEXTS[1]])[0]
    by_vector = nearest(docs, cid, query, limit=3)
    assert by_vector[0].page == 2  # a text is nearest to itself: the mechanism works end to end
    assert nearest(docs, conversations.create_conversation("empty"), query) == []
    by_words = docs.search(cid, "granite quarry tower", limit=3)
    fused = fuse(by_words, by_vector, limit=3)
    assert {p.page for p in fused} == {1, 2, 3} and fused[0].page in (2, 3)
    conn.close()
    assert b"Edda" not in db.read_bytes()


def test_a_broken_model_is_refused_before_llama_cpp(tmp_path: Path) -> None:
    broken = tmp_path / "embed.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 100)
    with pytest.raises(GgufError):
        Embedder(broken)
