"""Retrieval policy for one question: how much of the context goes to sources, which passages, what to tell the user.

Half the context window goes to sources; the rest holds the conversation and
the answer. When every ready document fits, they go in whole; otherwise words
(BM25) and, with an embedding model, meaning are searched and fused by rank.
Attached files that could not be read are told apart from those still being
read, with their reason, both in the prompt and in the note under the answer;
so are scanned pages the model cannot see, or that did not fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.core.docs.doc_store import DocumentInfo, DocumentStore, fuse, nearest
from app.core.docs.grounding import Grounding, Source, fits_whole, ground, prompt_for

CANDIDATES = 40  # passages each search proposes before the budget picks
NEIGHBOURS_OF = 3  # the best passages whose neighbouring chunks (same section) come along, before weaker hits
MIN_BUDGET_TOKENS = 512

# Embeds one question (a unit vector), or None when no embedding model is in use.
EmbedQuestion = Callable[[str], npt.NDArray[np.float32] | None]
# Scanned pages, by file: (file name, page numbers).
PagesOf = tuple[tuple[str, tuple[int, ...]], ...]


def source_budget(n_ctx: int) -> int:
    """Tokens of the context window that sources may use."""
    return max(MIN_BUDGET_TOKENS, n_ctx // 2)


@dataclass(frozen=True)
class DocumentGrounding(Grounding):
    """A grounding that also knows which attached files failed to be read, and why."""

    failed: tuple[tuple[str, str], ...] = ()  # (file name, reason as stored: "is empty")
    readable: bool = True  # at least one attached file has been read
    unseen: PagesOf = ()  # scanned pages left out: the model does not see images
    unfit: PagesOf = ()  # scanned pages left out: they did not fit the budget


def pages_of(sources: list[Source] | list[tuple[str, int | None]]) -> PagesOf:
    """Page numbers grouped by file name, in the order the files first appear."""
    found: dict[str, list[int]] = {}
    for item in sources:
        name, page = (item.name, item.page) if isinstance(item, Source) else item
        if page is not None:
            found.setdefault(name, []).append(page)
    return tuple((name, tuple(pages)) for name, pages in found.items())


def page_ranges(pages: tuple[int, ...]) -> str:
    """Page numbers as a reader writes them: "page 3", "pages 3–5", "pages 1, 3 and 5–7"."""
    runs: list[list[int]] = []
    for page in sorted(set(pages)):
        if runs and page == runs[-1][-1] + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    parts = [f"{r[0]}" if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{'page' if len(parts) == 1 and len(runs[0]) == 1 else 'pages'} {listed}"


def retrieve(
    docs: DocumentStore, conversation_id: int, question: str, budget_tokens: int, embed: EmbedQuestion | None = None
) -> Grounding | None:
    """The conversation's document context for `question`, or None when it has no documents."""
    documents = docs.documents(conversation_id)
    if not documents:
        return None
    if fits_whole(documents, budget_tokens):  # read every passage, search nothing
        whole = {d.id: docs.chunks(d.id) for d in documents if d.state == "ready"}
        return _with_failures(ground(documents, whole, [], budget_tokens), documents)
    ranked = docs.search(conversation_id, question, CANDIDATES)
    vector = embed(question) if embed is not None else None
    if vector is not None:  # words and meaning, fused by rank
        ranked = fuse(ranked, nearest(docs, conversation_id, vector, CANDIDATES), limit=CANDIDATES)
    neighbours = docs.adjacent(ranked[:NEIGHBOURS_OF])
    pages = docs.page_images(conversation_id)
    grounding = ground(documents, {}, ranked, budget_tokens, neighbours, pages)
    given = {s.chunk_id for s in grounding.sources}
    unfit = pages_of([(p.name, p.page) for p in pages if p.chunk_id not in given])
    return _with_failures(grounding, documents, unfit)


def _with_failures(grounding: Grounding, documents: list[DocumentInfo], unfit: PagesOf = ()) -> DocumentGrounding:
    """Take failed files out of "still being read", in the prompt too, and keep their reasons."""
    failed = tuple((d.name, d.error) for d in documents if d.state == "failed")
    waiting = [d.name for d in documents if d.state not in ("ready", "failed")]
    prompt = grounding.prompt
    if failed and prompt:  # `ground` said every file not ready is still being read; only `waiting` are
        unreadable = ", ".join(name for name, _ in failed)
        prompt = prompt_for(grounding.sources, waiting)
        prompt += f"\nThese attached files could not be read, so nothing from them is available: {unreadable}.\n"
    fields = {f.name: getattr(grounding, f.name) for f in dataclasses.fields(grounding)}
    readable = any(d.state == "ready" for d in documents)
    return DocumentGrounding(
        **{**fields, "not_ready": waiting, "prompt": prompt, "failed": failed, "readable": readable, "unfit": unfit}
    )


def file_notes(grounding: Grounding) -> str:
    """What the model should know of attached files it cannot see: still being read, or unreadable."""
    parts = []
    if grounding.not_ready:
        waiting = ", ".join(grounding.not_ready)
        parts.append(f"Still being read, not available yet: {waiting}. Mention this if it matters.")
    failed = grounding.failed if isinstance(grounding, DocumentGrounding) else ()
    if failed:
        unreadable = ", ".join(name for name, _ in failed)
        parts.append(f"These attached files could not be read, so nothing from them is available: {unreadable}.")
    if isinstance(grounding, DocumentGrounding):
        parts += [
            f"{page_ranges(pages).capitalize()} of {name} {_are(pages)} scanned, and you cannot see images. "
            "Mention this if it matters."
            for name, pages in grounding.unseen
        ]
        parts += [
            f"{page_ranges(pages).capitalize()} of {name} {_are(pages)} scanned, and left out to fit the context."
            for name, pages in grounding.unfit
        ]
    return "\n".join(parts)


def notes(grounding: Grounding) -> str:
    """What the user should know about the sources under an answer (no match, files still being read or failed)."""
    parts = []
    failed = grounding.failed if isinstance(grounding, DocumentGrounding) else ()
    readable = grounding.readable if isinstance(grounding, DocumentGrounding) else True
    unseen = grounding.unseen if isinstance(grounding, DocumentGrounding) else ()
    unfit = grounding.unfit if isinstance(grounding, DocumentGrounding) else ()
    if not grounding.sources and readable and not unseen:  # with nothing read yet, there was nothing to match
        parts.append("No passage in the attached documents matches this question.")
    if grounding.not_ready:
        parts.append(f"Still being read: {', '.join(grounding.not_ready)}.")
    parts += [f"{failure_sentence(name, reason)}." for name, reason in failed]
    parts += [
        f"{page_ranges(pages).capitalize()} of {name} "
        + ("is a scan: it needs" if len(pages) == 1 else "are scans: they need")
        + " a model that sees images."
        for name, pages in unseen
    ]
    parts += [f"{page_ranges(pages).capitalize()} of {name} (scanned) did not fit." for name, pages in unfit]
    return " ".join(parts)


def _are(pages: tuple[int, ...]) -> str:
    return "is" if len(pages) == 1 else "are"


# Reasons that already name their subject ("the reader stopped …"); the others continue the file's name.
_OWN_SUBJECT = ("the ", "reading ", "a ", "an ")


def as_clause(reason: str) -> str:
    """A stored failure reason ("is empty", "the reader stopped …") as a clause that stands alone ("it is empty")."""
    reason = reason.strip().rstrip(".")
    if not reason:
        return "the reason was not recorded"
    return reason if reason.lower().startswith(_OWN_SUBJECT) else f"it {reason}"


def failure_sentence(name: str, reason: str) -> str:
    """What the user reads about a file that could not be read: "Could not read empty.pdf: it is empty"."""
    for said in ("can't be read", "could not be read"):  # "can't be read: permission denied" says it twice
        if reason.startswith(said) and len(reason) > len(said):
            return f"Could not read {name}{reason[len(said) :].rstrip('.')}"
    return f"Could not read {name}: {as_clause(reason)}"
