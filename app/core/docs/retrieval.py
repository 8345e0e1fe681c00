"""Retrieval policy for one question: how much of the context goes to sources, which passages, what to tell the user.

Half the context window goes to sources; the rest holds the conversation and
the answer. When every ready document fits, they go in whole; otherwise words
(BM25) and, with an embedding model, meaning are searched and fused by rank.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from app.core.docs.doc_store import DocumentStore, fuse, nearest
from app.core.docs.grounding import Grounding, fits_whole, ground

CANDIDATES = 40  # passages each search proposes before the budget picks
MIN_BUDGET_TOKENS = 512

# Embeds one question (a unit vector), or None when no embedding model is in use.
EmbedQuestion = Callable[[str], npt.NDArray[np.float32] | None]


def source_budget(n_ctx: int) -> int:
    """Tokens of the context window that sources may use."""
    return max(MIN_BUDGET_TOKENS, n_ctx // 2)


def retrieve(
    docs: DocumentStore, conversation_id: int, question: str, budget_tokens: int, embed: EmbedQuestion | None = None
) -> Grounding | None:
    """The conversation's document context for `question`, or None when it has no documents."""
    documents = docs.documents(conversation_id)
    if not documents:
        return None
    if fits_whole(documents, budget_tokens):  # read every passage, search nothing
        whole = {d.id: docs.chunks(d.id) for d in documents if d.state == "ready"}
        return ground(documents, whole, [], budget_tokens)
    ranked = docs.search(conversation_id, question, CANDIDATES)
    vector = embed(question) if embed is not None else None
    if vector is not None:  # words and meaning, fused by rank
        ranked = fuse(ranked, nearest(docs, conversation_id, vector, CANDIDATES), limit=CANDIDATES)
    return ground(documents, {}, ranked, budget_tokens)


def notes(grounding: Grounding) -> str:
    """What the user should know about the sources under an answer (no match, files not read yet)."""
    parts = []
    if not grounding.sources:
        parts.append("No passage in the attached documents matches this question.")
    if grounding.not_ready:
        parts.append(f"Not read yet: {', '.join(grounding.not_ready)}.")
    return " ".join(parts)
