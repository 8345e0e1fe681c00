"""Document chat speed and retrieval quality: extraction + indexing, retrieval latency, recall@5.

    .venv/bin/python bench/docs.py [--runs 3]

Prints one JSON object:
- pages (or sections) per second for PDF, DOCX and text: extraction, chunking
  and BM25 indexing into the encrypted store, median of runs;
- retrieval latency p50/p95 over an index of 10,000 chunks (50 questions);
- recall@5 on the planted-facts set (200 pages, 40 paraphrased questions), BM25
  alone, and fused with vector search when `--embedding PATH` names an
  embedding model (null otherwise).
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import docx
from PySide6.QtGui import QGuiApplication

from app.core.docs.chunking import SectionText, chunk_sections
from app.core.docs.doc_store import DocumentStore, fuse, nearest
from app.core.docs.embedder import Embedder, to_blob
from app.core.docs.extract import extract
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from tests.core.docs.planted_facts import FACTS, build_pages
from tests.fixtures.pdfs import write_pdf


def index(path: Path, store: DocumentStore, conversation: int) -> int:
    """Extract, chunk and index one file; returns its page (or section) count."""
    extracted = extract(path)
    sections = [SectionText(s.text, s.page, s.heading, s.line_start, s.line_end) for s in extracted.sections]
    doc = store.add(conversation, str(path), path.name, extracted.kind, path.stat().st_size, path.stat().st_mtime)
    store.replace_chunks(doc, chunk_sections(sections))
    return extracted.pages or len(extracted.sections)


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
    args = parser.parse_args()
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
            }
        )
    )


if __name__ == "__main__":
    main()
