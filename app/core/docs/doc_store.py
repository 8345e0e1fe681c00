"""Documents attached to conversations, and their chunks, in the encrypted history database.

Everything derived from a document (its text, chunks, full-text index and
vectors) lives here, inside SQLCipher: nothing lands on disk in the clear.
Not thread-safe: the store writer owns the connection.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from app.core.chat.image import StoredImage
from app.core.docs.chunking import Chunk
from app.core.store.database import Connection
from app.core.store.image_store import ImageStore
from app.core.store.index_words import index_words
from app.core.store.transaction import transaction

STATES = ("queued", "extracting", "indexing", "ready", "failed")
# English function words: too common to say what a question is about. Words of other languages pass through.
_STOPWORDS = frozenset(
    re.split(
        r"\s+",
        "a about all also am an and any are as at be because been being both but by can could did do does doing each "
        "for from get had has have having he her hers him his how i if in into is it its itself just may me might "
        "much many must my myself of on or other our ours own same shall she should so some such than that the their "
        "theirs them themselves then there these they this those to too us very was we were what when where which who "
        "whom why will with would you your yours yourself",
    )
)
_WORD = re.compile(r"\w+", re.UNICODE)

# Ranking: BM25 proposes candidates; each is then scored on how much of the question it holds (by
# word weight), in its text, in its heading path and file name, and within a few words of each other.
RERANK_POOL = 40  # BM25's best candidates that the finer score re-orders
COVERAGE_WEIGHT = 1.0  # share of the question's weight found in the passage
HEADING_WEIGHT = 0.5  # share found in its heading path or the document's name
PROXIMITY_WEIGHT = 0.5  # share found together, within PROXIMITY_CHARS (about ten words)
PROXIMITY_CHARS = 60
# Nothing matches when the documents share only an incidental word with the question: no passage
# holds two of its words, the one held is common (in more than COMMON_SHARE of all passages and more
# than COMMON_MIN of them: a name that a small collection repeats is not), and it carries less than
# MIN_COVERAGE of the question's weight. Kept strict on purpose: refusing an answerable question is
# worse than offering weak sources.
MIN_COVERAGE = 0.2
COMMON_SHARE = 0.01
COMMON_MIN = 5


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
    scanned: tuple[int, ...] = ()  # pages with no text layer, kept as images (1-based, in order)


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
    score: float  # lower is better: negated relevance from `search`, negated similarity from `nearest`
    position: int | None = None  # the chunk's place in its document: 0, 1, … (None when not known)
    image_key: str | None = None  # a scanned page kept as an image (its text is empty)


_DOC_COLUMNS = (
    "id, conversation_id, path, name, kind, size, mtime, state, error, pages, chunk_count, token_count, "
    "(SELECT group_concat(page) FROM (SELECT page FROM chunks "
    "WHERE document_id = documents.id AND image_key IS NOT NULL ORDER BY ord))"
)
_PASSAGE_COLUMNS = "c.id, d.id, d.name, c.text, c.page, c.heading, c.line_start, c.line_end"


def query_terms(text: str) -> list[str]:
    """A question's content words, lowercased, in order, each once (no stop-words, no single letters)."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 1]
    return list(dict.fromkeys(words))


def match_query(text: str) -> str:
    """A question as an FTS5 query: its meaningful words, any of which may match."""
    return " OR ".join(f'"{w}"' for w in query_terms(text))


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """A rough stem, enough to match a question's word to the text's (lamps, lamp; electrified, electrify)."""
    for suffix in ("ingly", "edly", "ings", "ing", "ies", "ied", "ed", "es", "s", "ly", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
            if stem[-1] == stem[-2] and stem[-1] not in "lsz" and suffix in ("ing", "ings", "ed"):
                stem = stem[:-1]  # putting, put; stopped, stop
            return stem
    return word


@dataclass(frozen=True)
class _Question:
    """A question's content words as the re-ranking weighs them."""

    weights: dict[str, float]  # stem → its share of the question (words rare in the index weigh more)
    common: set[str]  # stems of common words (see COMMON_SHARE)
    words: re.Pattern[str]  # finds the words of a text that may share a stem with the question's

    @staticmethod
    def of(weights: dict[str, float], common: set[str]) -> _Question:
        # A stem keeps its word's first three letters, so only words that start like one can match it.
        starts = sorted({re.escape(stem[:3]) for stem in weights})
        return _Question(weights, common, re.compile(rf"\b(?:{'|'.join(starts)})\w*"))

    def found(self, text: str) -> list[tuple[int, str]]:
        """Where the question's stems occur in `text`: (character offset, stem), in order."""
        hits = ((m.start(), _stem(m.group())) for m in self.words.finditer(text.lower()))
        return [(at, stem) for at, stem in hits if stem in self.weights]

    def share(self, stems: set[str]) -> float:
        return sum(self.weights[s] for s in stems)


@dataclass(frozen=True)
class _Evidence:
    """How much of a question one passage holds, as shares of the question's word weight."""

    text: float  # in the passage's text
    label: float  # in its heading path or its document's name
    either: float  # in one or the other
    held: frozenset[str]  # the question's (stemmed) words it holds, in one or the other
    together: float  # within PROXIMITY_CHARS of each other in the text (two words at least)


def _evidence(text: str, heading: str | None, name: str, question: _Question) -> _Evidence:
    """Which of the question's words a passage holds, where, and how close together."""
    hits = question.found(index_words(text))
    found = {stem for _, stem in hits}
    labels = {stem for _, stem in question.found(index_words(f"{heading or ''} {name}"))}
    together = 0.0
    for a, (start, _) in enumerate(hits):
        near = set()
        for at, stem in hits[a:]:
            if at - start > PROXIMITY_CHARS:
                break
            near.add(stem)
        if len(near) > 1:
            together = max(together, question.share(near))
    held = found | labels
    return _Evidence(question.share(found), question.share(labels), question.share(held), frozenset(held), together)


def _incidental(found: list[_Evidence], common: set[str]) -> bool:
    """Whether candidates share only an incidental word with the question: none holds two of its words,
    those held are common words, and none holds MIN_COVERAGE of the question's weight."""
    return (
        all(len(e.held) < 2 and e.held <= common for e in found)
        and max((e.either for e in found), default=0.0) < MIN_COVERAGE
    )


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
        self,
        document_id: int,
        chunks: Sequence[Chunk],
        vectors: Sequence[bytes | None] | None = None,
        images: Sequence[StoredImage] = (),
    ) -> None:
        """Store a document's chunks (replacing older ones) and mark it ready, in one transaction.

        `images`: the scanned pages that chunks hold by `image_key`, kept in the encrypted store with them.
        """
        with transaction(self._db):
            self._db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))  # their images may go
            ImageStore(self._db).keep(images)
            self._db.executemany(
                "INSERT INTO chunks (document_id, ord, text, page, heading, line_start, line_end, token_count, vector, "
                "image_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (document_id, i, c.text, c.page, c.heading, c.line_start, c.line_end, c.tokens, vector, c.image_key)
                    for i, (c, vector) in enumerate(zip(chunks, vectors or [None] * len(chunks), strict=True))
                ],
            )
            self._db.execute(
                "UPDATE documents SET state = 'ready', error = '', chunk_count = ?, token_count = ? WHERE id = ?",
                (len(chunks), sum(c.tokens - c.overlap for c in chunks), document_id),  # the text once, as whole
            )

    def documents(self, conversation_id: int) -> list[DocumentInfo]:
        """A conversation's documents, in the order they were attached."""
        rows = self._db.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        ).fetchall()
        return [_info(r) for r in rows]

    def unfinished(self) -> list[DocumentInfo]:
        """Documents whose indexing had not finished (to resume after a restart)."""
        rows = self._db.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE state IN ('queued', 'extracting', 'indexing') ORDER BY id"
        ).fetchall()
        return [_info(r) for r in rows]

    def remove(self, document_id: int) -> None:
        """Detach a document; its chunks and index entries go with it."""
        self._db.execute("DELETE FROM documents WHERE id = ?", (document_id,))

    def chunks(self, document_id: int) -> list[Passage]:
        """All chunks of a document, in order (whole-document answers)."""
        rows = self._db.execute(
            f"SELECT {_PASSAGE_COLUMNS}, 0.0, c.ord, c.image_key "
            "FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.id = ? ORDER BY c.ord",
            (document_id,),
        ).fetchall()
        return [Passage(*r) for r in rows]

    def page_images(self, conversation_id: int) -> list[Passage]:
        """The scanned pages of the conversation's ready documents, in document and page order: words can't
        find them, so they are given whole when they fit."""
        rows = self._db.execute(
            f"SELECT {_PASSAGE_COLUMNS}, 0.0, c.ord, c.image_key "
            "FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE d.conversation_id = ? AND d.state = 'ready' AND c.image_key IS NOT NULL ORDER BY d.id, c.ord",
            (conversation_id,),
        ).fetchall()
        return [Passage(*r) for r in rows]

    def adjacent(self, passages: Sequence[Passage]) -> list[Passage]:
        """The chunks right before and after each of `passages` in its document, in the same section
        (page and heading), that are not among `passages`: where an answer runs on past a chunk's end."""
        given = {p.chunk_id for p in passages}
        wanted = [(p.document_id, p.position + step) for p in passages if p.position is not None for step in (-1, 1)]
        if not wanted:
            return []
        rows = self._db.execute(
            f"SELECT {_PASSAGE_COLUMNS}, 0.0, c.ord, c.image_key FROM chunks c JOIN documents d "
            "ON d.id = c.document_id WHERE (c.document_id, c.ord) IN "
            "(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
            (json.dumps(wanted),),
        ).fetchall()
        sections = {(p.document_id, p.page, p.heading, p.position) for p in passages}
        neighbours = []
        for r in rows:  # r: passage columns, score, ord
            same_section = any((r[1], r[4], r[5], r[9] + step) in sections for step in (-1, 1))
            if same_section and r[0] not in given:
                neighbours.append(Passage(*r))
        return neighbours

    def search(self, conversation_id: int, question: str, limit: int = 20) -> list[Passage]:
        """The conversation's chunks that best match `question`, best first; none when the match is weak.

        BM25 over the stemmed index proposes candidates; they are re-ordered by how much of the
        question each holds (rare words weigh more), in its text, in its heading path or its
        document's name, and close together. When the candidates share only an incidental word
        with the question (see MIN_COVERAGE), nothing matches.
        """
        terms = query_terms(question)
        if not terms:
            return []
        query = " OR ".join(f'"{w}"' for w in terms)
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
                f"SELECT {_PASSAGE_COLUMNS}, 0.0, c.ord "
                "FROM chunks c JOIN documents d ON d.id = c.document_id "
                "WHERE c.id IN (SELECT value FROM json_each(?)) AND d.conversation_id = ?",
                (json.dumps(list(scores)), conversation_id),
            ).fetchall()
            if len(rows) >= limit or len(ranked) < depth:
                break
            depth *= 8
        rows = sorted(rows, key=lambda r: scores[r[0]])[: max(limit, RERANK_POOL)]
        if not rows:
            return []
        asked = _Question.of(*self._weights(terms))
        strongest = max(-scores[rows[0][0]], 1e-9)  # BM25 scores are negative: lower is better
        relevance: dict[int, float] = {}
        held: list[_Evidence] = []
        for r in rows:
            found = _evidence(r[3], r[5], r[2], asked)
            held.append(found)
            relevance[r[0]] = (
                -scores[r[0]] / strongest
                + COVERAGE_WEIGHT * found.text
                + HEADING_WEIGHT * found.label
                + PROXIMITY_WEIGHT * found.together
            )
        if _incidental(held, asked.common):
            return []
        rows = sorted(rows, key=lambda r: -relevance[r[0]])[:limit]
        return [_passage(r, -relevance[r[0]]) for r in rows]

    def _weights(self, terms: list[str]) -> tuple[dict[str, float], set[str]]:
        """Each question word's share of the question, by its stem (words rare in the index weigh more,
        as in BM25), and the stems of the words that are common (see COMMON_SHARE)."""
        total = self._db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        weights: dict[str, float] = {}
        common: set[str] = set()
        for term in terms:
            df = self._db.execute(
                "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (f'"{term}"',)
            ).fetchone()[0]
            stem = _stem(term)
            weights[stem] = weights.get(stem, 0.0) + math.log(1 + (total - df + 0.5) / (df + 0.5))
            if df > max(COMMON_SHARE * total, COMMON_MIN):
                common.add(stem)
        whole = sum(weights.values())
        return {stem: w / whole for stem, w in weights.items()}, common


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
        f"SELECT {_PASSAGE_COLUMNS}, c.vector, c.ord "
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
    return Passage(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], score, row[9])


def _info(row: Any) -> DocumentInfo:
    """A documents row, with its scanned pages ("3,4,7") as numbers."""
    pages = tuple(int(p) for p in str(row[12]).split(",")) if row[12] else ()
    return replace(DocumentInfo(*row[:12]), scanned=pages)
