"""Document chat speed and retrieval quality: extraction + indexing, retrieval latency, recall@5.

    .venv/bin/python bench/docs.py [--runs 3] [--no-real | --real-only]

Prints one JSON object:
- pages (or sections) per second for PDF, DOCX and text: extraction, chunking
  and BM25 indexing into the encrypted store, median of runs;
- retrieval latency p50/p95 over an index of 10,000 chunks (50 questions);
- recall@5 on the planted-facts set (200 pages, 40 paraphrased questions), BM25
  alone, and fused with vector search when `--embedding PATH` names an
  embedding model (null otherwise);
- "real_docs": recall@1 and recall@5 on real public documents of every
  supported kind (bench/real_docs.json; tools/fetch_real_docs.py fetches them
  when missing), all attached to one conversation, the sources chosen by the
  app's own retrieval policy at the default context (8,192 tokens); recall by
  kind; how many questions the documents do not answer still got sources; and
  bare BM25 recall@40 as a diagnostic.
The baseline in the same run is the extraction alone, so the ratio shows what
chunking and indexing add.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import docx
from PySide6.QtGui import QGuiApplication

from app.core.docs.chunking import SectionText, chunk_sections
from app.core.docs.doc_store import DocumentStore, fuse, nearest
from app.core.docs.embedder import Embedder, to_blob
from app.core.docs.extract import extract
from app.core.docs.retrieval import retrieve, source_budget
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from tests.core.docs.planted_facts import FACTS, build_pages
from tests.fixtures.pdfs import write_pdf
from tools import fetch_real_docs

DEFAULT_N_CTX = 8192  # the context the app loads a model with unless told otherwise


def index(path: Path, store: DocumentStore, conversation: int) -> int:
    """Extract, chunk and index one file; returns its page (or section) count."""
    extracted = extract(path)
    sections = [SectionText(s.text, s.page, s.heading, s.line_start, s.line_end) for s in extracted.sections]
    doc = store.add(conversation, str(path), path.name, extracted.kind, path.stat().st_size, path.stat().st_mtime)
    store.replace_chunks(doc, chunk_sections(sections))
    return extracted.pages or len(extracted.sections)


def _at(where: dict[str, Any], document_id: int, passage: Any) -> bool:
    """Whether a source (or a search result) is at a labelled place: its page, heading, or overlapping lines."""
    if passage.document_id != document_id:
        return False
    if "page" in where:
        return bool(passage.page == where["page"])
    if "heading" in where:
        return bool(passage.heading == where["heading"])
    first, last = where["lines"]
    if passage.line_start is None:
        return False
    end = passage.line_end if passage.line_end is not None else passage.line_start
    return bool(passage.line_start <= last and end >= first)


def _rank(question: dict[str, Any], ids: dict[str, int], passages: list[Any]) -> int | None:
    """The 0-based position of the first passage at one of the question's places, or None."""
    for n, passage in enumerate(passages):
        if any(_at(where, ids[where["document"]], passage) for where in question["where"]):
            return n
    return None


def real_docs(n_ctx: int = DEFAULT_N_CTX) -> dict[str, Any]:
    """Recall on real documents, all attached to one conversation, through the app's own retrieval policy.

    The conversation has a database of its own: BM25 weighs words by the whole index, so chunks
    of other conversations would change its figures.
    """
    with tempfile.TemporaryDirectory(prefix="tern-real-docs-") as tmp:
        conn = open_database(Path(tmp) / "history.db", secrets.token_bytes(32))
        try:
            return _real_docs(DocumentStore(conn), ConversationStore(conn), n_ctx)
        finally:
            conn.close()


def _real_docs(store: DocumentStore, conversations: ConversationStore, n_ctx: int) -> dict[str, Any]:
    try:
        paths = fetch_real_docs.ensure()
    except SystemExit as exc:  # offline, or an archive that changed
        return {"error": str(exc)}
    manifest = fetch_real_docs.load_json(fetch_real_docs.MANIFEST)
    questions: list[dict[str, Any]] = fetch_real_docs.load_json(fetch_real_docs.QUESTIONS)["questions"]
    if bad := fetch_real_docs.check_labels(paths, questions):
        return {"error": "labels that do not match the extracted text", "bad_labels": bad}
    kinds = {d["id"]: d["kind"] for d in manifest["documents"]}
    cid = conversations.create_conversation("real documents")
    t0 = time.perf_counter()
    for d in manifest["documents"]:
        index(paths[d["id"]], store, cid)
    ingest_s = time.perf_counter() - t0
    documents = store.documents(cid)
    by_path = {info.path: info.id for info in documents}
    ids = {doc_id: by_path[str(path)] for doc_id, path in paths.items()}
    budget = source_budget(n_ctx)

    rows = []
    modes: Counter[str] = Counter()
    answered_anyway = 0
    source_counts = []
    for question in questions:
        grounding = retrieve(store, cid, question["question"], budget)
        sources = list(grounding.sources) if grounding is not None else []
        modes[grounding.mode if grounding is not None else "none"] += 1
        if not question["where"]:
            answered_anyway += bool(sources)
            continue
        source_counts.append(len(sources))
        rank = _rank(question, ids, sources)
        bm25 = _rank(question, ids, store.search(cid, question["question"], 40))
        kind = kinds[question["where"][0]["document"]]
        rows.append((question["id"], kind, rank, bm25))

    def recall(selected: list[tuple[str, str, int | None, int | None]], k: int, bm25: bool = False) -> float:
        ranks = [r[3] if bm25 else r[2] for r in selected]
        hits = sum(1 for rank in ranks if rank is not None and rank < k)
        return round(hits / len(selected), 3) if selected else 0.0

    per_kind = {}
    for kind in sorted({r[1] for r in rows}):
        mine = [r for r in rows if r[1] == kind]
        per_kind[kind] = {
            "questions": len(mine),
            "recall_at_1": recall(mine, 1),
            "recall_at_5": recall(mine, 5),
            "bm25_recall_at_40": recall(mine, 40, bm25=True),
        }
    unanswerable = len(questions) - len(rows)
    return {
        "n_ctx": n_ctx,
        "source_budget_tokens": budget,
        "documents": len(documents),
        "chunks": sum(d.chunk_count for d in documents),
        "tokens": sum(d.token_count for d in documents),
        "ingest_s": round(ingest_s, 2),
        "modes": dict(modes),
        "questions": len(rows),
        "recall_at_1": recall(rows, 1),
        "recall_at_5": recall(rows, 5),
        "recall_in_prompt": round(sum(r[2] is not None for r in rows) / len(rows), 3),
        "sources_per_question": round(statistics.mean(source_counts), 1),
        "bm25_recall_at_5": recall(rows, 5, bm25=True),
        "bm25_recall_at_40": recall(rows, 40, bm25=True),
        "per_kind": per_kind,
        "unanswerable": {
            "questions": unanswerable,
            "got_sources": answered_anyway,
            "nothing_matches": unanswerable - answered_anyway,
        },
        "missed_at_5": [r[0] for r in rows if r[2] is None or r[2] >= 5],
    }


def timed(fn: object, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--embedding", type=Path, help="an embedding GGUF: also measure hybrid recall@5")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--no-real", action="store_true", help="skip the real documents (they may need fetching)")
    which.add_argument("--real-only", action="store_true", help="measure only the real documents")
    args = parser.parse_args()
    if args.real_only:
        print(json.dumps({"real_docs": real_docs()}))
        return
    _app = QGuiApplication([])  # QPdfWriter needs it
    pages, where = build_pages()
    with tempfile.TemporaryDirectory(prefix="tern-docs-") as tmp:
        folder = Path(tmp)
        write_pdf(folder / "almanac.pdf", pages)
        word = docx.Document()
        for n, text in enumerate(pages):
            word.add_heading(f"Chapter {n + 1}", level=1)
            word.add_paragraph(text)
        word.save(str(folder / "almanac.docx"))
        (folder / "almanac.txt").write_text("\n".join(pages), encoding="utf-8")

        conn = open_database(folder / "history.db", secrets.token_bytes(32))
        conversations, store = ConversationStore(conn), DocumentStore(conn)
        cid = conversations.create_conversation("bench")
        rates = {}
        baseline = {}
        for name in ("almanac.pdf", "almanac.docx", "almanac.txt"):
            path = folder / name
            units = index(path, store, cid)
            rates[name] = units / timed(lambda p=path: index(p, store, cid), args.runs)
            baseline[name] = units / timed(lambda p=path: extract(p), args.runs)

        recall = 0
        pdf_doc = store.documents(cid)[0].id
        assert store.documents(cid)[0].name == "almanac.pdf"
        for i, (_fact, question) in enumerate(FACTS):
            hits = [p.page for p in store.search(cid, question, 5) if p.document_id == pdf_doc]
            recall += where[i] in hits
        hybrid = None
        if args.embedding:
            embedder = Embedder(args.embedding)
            solo = conversations.create_conversation("hybrid")
            chunks = chunk_sections([SectionText(t, page=n + 1) for n, t in enumerate(pages)])
            doc = store.add(solo, "/almanac.pdf", "almanac.pdf", "pdf", 1, 1.0)
            vectors = [to_blob(v) for start in range(0, len(chunks), 16)
                       for v in embedder.embed([c.text for c in chunks[start:start + 16]])]  # fmt: skip
            store.replace_chunks(doc, chunks, vectors)
            found = 0
            for i, (_fact, question) in enumerate(FACTS):
                fused = fuse(
                    store.search(solo, question, 40), nearest(store, solo, embedder.embed([question])[0], 40), limit=5
                )
                found += where[i] in [p.page for p in fused]
            hybrid = round(found / len(FACTS), 3)

        # 10,000 chunks in one conversation: the planted pages again, fifty times over.
        big = conversations.create_conversation("ten thousand chunks")
        chunks = chunk_sections([SectionText(t, page=n + 1) for n, t in enumerate(pages)])
        for copy in range(10_000 // len(chunks) + 1):
            doc = store.add(big, f"/copies/{copy}.pdf", f"{copy}.pdf", "pdf", 1, 1.0)
            store.replace_chunks(doc, chunks)
        total = conn.execute(
            "SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.conversation_id = ?", (big,)
        ).fetchone()[0]
        latencies = []
        for _fact, question in FACTS + FACTS[:10]:
            t0 = time.perf_counter()
            store.search(big, question, 8)
            latencies.append((time.perf_counter() - t0) * 1000)
        latencies.sort()
        conn.close()
    real = None if args.no_real else real_docs()
    print(
        json.dumps(
            {
                "pdf_pages_per_s": round(rates["almanac.pdf"], 1),
                "docx_sections_per_s": round(rates["almanac.docx"], 1),
                "text_sections_per_s": round(rates["almanac.txt"], 1),
                "extraction_only_per_s": {k: round(v, 1) for k, v in baseline.items()},
                "indexing_cost_ratio": {k: round(baseline[k] / rates[k], 2) for k in rates},
                "retrieval_chunks": total,
                "retrieval_p50_ms": round(statistics.median(latencies), 2),
                "retrieval_p95_ms": round(latencies[int(0.95 * len(latencies)) - 1], 2),
                "recall_at_5_bm25": round(recall / len(FACTS), 3),
                "recall_at_5_hybrid": hybrid,  # null without --embedding
                "real_docs": real,  # null with --no-real
            }
        )
    )


if __name__ == "__main__":
    main()
