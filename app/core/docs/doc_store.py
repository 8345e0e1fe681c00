"""Documents attached to conversations, and their chunks, in the encrypted history database.

Everything derived from a document (its text, chunks, full-text index and
vectors) lives here, inside SQLCipher: nothing lands on disk in the clear.
Not thread-safe: the store writer owns the connection.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.core.docs.chunking import Chunk
from app.core.store.database import Connection
from app.core.store.transaction import transaction

STATES = ("queued", "extracting", "indexing", "ready", "failed")
# Words too common to help ranking; a question's remaining words are OR-ed, and BM25 sorts it out.
_STOPWORDS = frozenset(
    re.split(
        r"\s+",
        "a an and are as at be by can did do does for from had has have how i in is it its of on or so that the "
        "their then there these they this to was were what when where which who why will with you your",
    )
)


@dataclass(frozen=True)
class DocumentInfo:
    """A row of the documents panel."""

    id: int
    conversation_id: int
    path: str
    name: str
    kind: str
    size: int
    mtime: float
    state: str
    error: str
    pages: int | None
    chunk_count: int
    token_count: int


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its citation."""

    chunk_id: int
    document_id: int
    name: str
    text: str
    page: int | None
    heading: str | None
    line_start: int | None
    line_end: int | None
    score: float  # BM25: lower is better


_DOC_COLUMNS = "id, conversation_id, path, name, kind, size, mtime, state, error, pages, chunk_count, token_count"


def match_query(text: str) -> str:
    """A question as an FTS5 query: its meaningful words, any of which may match."""
    words = [w for w in re.findall(r"\w+", text.lower(), flags=re.UNICODE) if w not in _STOPWORDS and len(w) > 1]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


class DocumentStore:
    """Repository over the open history connection."""

    def __init__(self, conn: Connection) -> None:
        self._db = conn

    @property
    def connection(self) -> Connection:
        """The open database."""
        return self._db

    def add(self, conversation_id: int, path: str, name: str, kind: str, size: int, mtime: float) -> int:
        """Attach a file (again: a changed file is queued for re-indexing); returns the document id."""
        row = self._db.execute(
            "SELECT id, size, mtime, state FROM documents WHERE conversation_id = ? AND path = ?",
            (conversation_id, path),
        ).fetchone()
        if row is not None:
            changed = (row[1], row[2]) != (size, mtime)
            if changed or row[3] == "failed":
                self._db.execute(
                    "UPDATE documents SET size = ?, mtime = ?, state = 'queued', error = '' WHERE id = ?",
                    (size, mtime, row[0]),
                )
            return int(row[0])
        cur = self._db.execute(
            "INSERT INTO documents (conversation_id, path, name, kind, size, mtime, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (conversation_id, path, name, kind, size, mtime, time.time()),
        )
        return int(cur.lastrowid or 0)

    def set_state(self, document_id: int, state: str, error: str = "", pages: int | None = None) -> None:
        """Record progress (queued, extracting, indexing, ready, failed) and why it failed."""
        if state not in STATES:
            raise ValueError(state)
        self._db.execute(
            "UPDATE documents SET state = ?, error = ?, pages = COALESCE(?, pages) WHERE id = ?",
            (state, error, pages, document_id),
        )

    def replace_chunks(
        self, document_id: int, chunks: Sequence[Chunk], vectors: Sequence[bytes | None] | None = None
    ) -> None:
        """Store a document's chunks (replacing older ones) and mark it ready, in one transaction."""
        with transaction(self._db):
            self._db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            self._db.executemany(
                "INSERT INTO chunks (document_id, ord, text, page, heading, line_start, line_end, token_count, vector) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (document_id, i, c.text, c.page, c.heading, c.line_start, c.line_end, c.tokens, vector)
                    for i, (c, vector) in enumerate(zip(chunks, vectors or [None] * len(chunks), strict=True))
                ],
            )
            self._db.execute(
                "UPDATE documents SET state = 'ready', error = '', chunk_count = ?, token_count = ? WHERE id = ?",
                (len(chunks), sum(c.tokens for c in chunks), document_id),
            )

    def documents(self, conversation_id: int) -> list[DocumentInfo]:
        """A conversation's documents, in the order they were attached."""
        rows = self._db.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        ).fetchall()
        return [DocumentInfo(*r) for r in rows]

    def unfinished(self) -> list[DocumentInfo]:
        """Documents whose indexing had not finished (to resume after a restart)."""
        rows = self._db.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE state IN ('queued', 'extracting', 'indexing') ORDER BY id"
        ).fetchall()
        return [DocumentInfo(*r) for r in rows]

    def remove(self, document_id: int) -> None:
        """Detach a document; its chunks and index entries go with it."""
        self._db.execute("DELETE FROM documents WHERE id = ?", (document_id,))

    def chunks(self, document_id: int) -> list[Passage]:
        """All chunks of a document, in order (whole-document answers)."""
        rows = self._db.execute(
            "SELECT c.id, d.id, d.name, c.text, c.page, c.heading, c.line_start, c.line_end, 0.0 "
            "FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.id = ? ORDER BY c.ord",
            (document_id,),
        ).fetchall()
        return [Passage(*r) for r in rows]

    def search(self, conversation_id: int, question: str, limit: int = 20) -> list[Passage]:
        """The conversation's chunks that best match `question` (BM25 over the stemmed index), best first."""
        query = match_query(question)
        if not query:
            return []
        # Rank inside the index first (fast), then keep this conversation's chunks; if too few of the
        # best ones are ours, look deeper. Filtering inside the index query instead is 1,000x slower.
        depth = max(limit * 10, 100)
        while True:
            ranked = self._db.execute(
                "SELECT rowid, bm25(chunks_fts) AS score FROM chunks_fts WHERE chunks_fts MATCH ? "
                "ORDER BY score LIMIT ?",
                (query, depth),
            ).fetchall()
            scores = dict(ranked)
            rows: list[Any] = self._db.execute(
                "SELECT c.id, d.id, d.name, c.text, c.page, c.heading, c.line_start, c.line_end, 0.0 "
                "FROM chunks c JOIN documents d ON d.id = c.document_id "
                "WHERE c.id IN (SELECT value FROM json_each(?)) AND d.conversation_id = ?",
                (json.dumps(list(scores)), conversation_id),
            ).fetchall()
            if len(rows) >= limit or len(ranked) < depth:
                break
            depth *= 8
        rows = sorted(((*r[:8], scores[r[0]]) for r in rows), key=lambda r: r[8])[:limit]
        return [Passage(*r) for r in rows]


RRF_K = 60  # reciprocal-rank fusion's usual constant: ranks matter, raw scores from two scales do not


def fuse(*rankings: list[Passage], limit: int) -> list[Passage]:
    """Reciprocal-rank fusion of several best-first lists (BM25, vectors): sum of 1 / (k + rank)."""
    scores: dict[int, float] = {}
    passages: dict[int, Passage] = {}
    for ranking in rankings:
        for rank, p in enumerate(ranking, start=1):
            scores[p.chunk_id] = scores.get(p.chunk_id, 0.0) + 1.0 / (RRF_K + rank)
            passages.setdefault(p.chunk_id, p)
    best = sorted(scores, key=lambda c: -scores[c])[:limit]
    return [passages[c] for c in best]


def nearest(store: DocumentStore, conversation_id: int, query: Any, limit: int = 20) -> list[Passage]:
    """The conversation's chunks whose vectors are closest to `query` (a unit vector), best first."""
    from app.core.docs.embedder import from_blobs

    rows = store.connection.execute(
        "SELECT c.id, d.id, d.name, c.text, c.page, c.heading, c.line_start, c.line_end, c.vector "
        "FROM chunks c JOIN documents d ON d.id = c.document_id "
        "WHERE d.conversation_id = ? AND c.vector IS NOT NULL",
        (conversation_id,),
    ).fetchall()
    if not rows:
        return []
    similarity = from_blobs([r[8] for r in rows]) @ query
    order = similarity.argsort()[::-1][:limit]
    return [_passage(rows[i], float(-similarity[i])) for i in order]


def _passage(row: Any, score: float) -> Passage:
    return Passage(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], score)
