"""Real broken PDFs through the document reader: each is read or refused with a plain reason, none hangs it.

The corpus (qpdf's test suite and the test files of pikepdf and pypdf, a few
hundred PDFs, many deliberately damaged) is fetched by
tools/fetch_pdf_corpus.py, which ./test.sh runs first; pdf_corpus.json pins
every file by SHA-256. Each file goes through `ingest`, the same child-process
reader a dropped PDF goes through in the app.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from app.core.docs.ingest import IngestError, ingest
from tools.fetch_pdf_corpus import corpus_dir, load_manifest, problems

# Resolved at import, before the autouse fixture points XDG_CACHE_HOME at a temporary folder.
CORPUS = corpus_dir()
MANIFEST = Path(__file__).with_name("pdf_corpus.json")
TIME_LIMIT_S = 30.0  # the reader's limit for each file here; the app allows more, but no file in the corpus needs it
MARGIN_S = 10.0  # starting, killing and joining the child on top of its limit


def _plain(reason: str, path: Path) -> bool:
    """A reason fit to show the user: one line naming the file, no traceback."""
    text = reason.removeprefix(f"{path.name}: ")
    return text != reason and bool(text.strip()) and "\n" not in reason and "Traceback" not in reason


def test_every_pdf_in_the_corpus_is_read_or_refused_with_a_reason() -> None:
    files: dict[str, str] = load_manifest(MANIFEST)["files"]
    if not CORPUS.is_dir() or not any(CORPUS.iterdir()):
        pytest.skip(f"no PDF corpus in {CORPUS}: run `.venv/bin/python tools/fetch_pdf_corpus.py` first")
    if bad := problems(CORPUS, files):
        pytest.fail(f"the PDF corpus differs from the manifest; run tools/fetch_pdf_corpus.py again: {bad[:10]}")

    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    stopped: list[str] = []  # files whose reader crashed or ran out of time: refused, but worth a look
    failures: list[str] = []
    started = time.monotonic()
    for name in sorted(files):
        path = CORPUS / name
        began = time.monotonic()
        try:
            result = ingest(path, time_limit_s=TIME_LIMIT_S)
        except IngestError as exc:
            reason = str(exc)
            if not _plain(reason, path):
                failures.append(f"{name}: not a plain reason: {reason[:300]!r}")
            counts["refused"] += 1
            reasons[reason.removeprefix(f"{path.name}: ")] += 1
            if "stopped unexpectedly" in reason or "took longer than" in reason:
                stopped.append(f"{name}: {reason}")
        except Exception as exc:  # anything else escaping the reader is a bug
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            if result.kind != "pdf" or result.pages is None:
                failures.append(f"{name}: read as {result.kind!r} with pages={result.pages}")
            has_text = any(chunk.text.strip() for chunk in result.chunks)
            counts["read" if has_text else "read_without_text"] += 1
        if (took := time.monotonic() - began) > TIME_LIMIT_S + MARGIN_S:
            failures.append(f"{name}: took {took:.0f} s, past the reader's limit of {TIME_LIMIT_S:.0f} s")

    summary = {
        "corpus": len(files),
        **{key: counts[key] for key in ("read", "read_without_text", "refused")},
        "reasons": dict(reasons.most_common()),
        "stopped": stopped,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary))
    assert failures == [], "\n".join(failures)
    assert counts["read"] + counts["read_without_text"] + counts["refused"] == len(files)
    assert counts["read"] > 0 and counts["refused"] > 0  # the corpus holds both, so both outcomes must show
