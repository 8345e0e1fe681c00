"""What an answer may draw on: whole documents when they fit, else the best passages; numbered sources.

Gemma's long context makes "put the whole document in" the best answer for a
few files. When the attached documents outgrow the budget, the search picks
passages, best first, until the budget is spent; consecutive chunks of a section
are joined into one passage, and the chunks around the best hits come along with
them, so an answer that runs past a chunk's end is not cut off. Either way the
model is told to answer from the numbered sources and cite them as [1], [2]; and
the sources list is kept with the answer, whatever the model writes.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from app.core.chat.message import image_placeholder
from app.core.docs.chunking import PAGE_IMAGE_TOKENS, count_tokens
from app.core.docs.doc_store import DocumentInfo, Passage

Mode = Literal["whole", "retrieval", "none"]
# [2], [1][3], [1, 3] or [1; 3]; not an index such as items[1] (a word character right before it).
_CITATION = re.compile(r"(?<!\w)\[\s*(\d{1,4}(?:\s*[,;]\s*\d{1,4})*)\s*\]")
PAGE_LABEL = "The scanned page, as an image:"  # a page read as an image: its text, before the image itself
SOURCE_HEADER_TOKENS = 12  # "[3] report.pdf, page 2:" before a passage of its own


@dataclass(frozen=True)
class Source:
    """A numbered source of a grounded answer."""

    number: int
    document_id: int
    chunk_id: int
    name: str
    page: int | None
    heading: str | None
    line_start: int | None
    line_end: int | None
    text: str
    image_key: str | None = None  # a scanned page given as an image (the key of the page's picture)

    def citation(self) -> str:
        """Where the passage is: "report.pdf, page 2", "guide.md, Install > Linux", "main.py, lines 10–40"."""
        if self.image_key is not None:
            return f"{self.name}, page {self.page} (read as an image)"
        if self.page is not None:
            return f"{self.name}, page {self.page}"
        if self.heading:
            return f"{self.name}, {self.heading}"
        if self.line_start is not None:
            end = self.line_end if self.line_end is not None else self.line_start
            return (
                f"{self.name}, line {self.line_start}"
                if end == self.line_start
                else f"{self.name}, lines {self.line_start}–{end}"
            )
        return self.name

    def body(self) -> str:
        """What the model reads of the passage: its text, or for a scanned page a label and the page's image."""
        if self.image_key is None:
            return self.text
        return f"{self.text}\n{image_placeholder(self.image_key)}"


@dataclass(frozen=True)
class Grounding:
    """The context for one question."""

    mode: Mode
    sources: list[Source]
    not_ready: list[str]  # attached files still being indexed (or failed), by name
    prompt: str  # goes before the question in the user's turn ("" when nothing is attached)


def _sources(passages: list[Passage]) -> list[Source]:
    return [
        Source(
            n, p.document_id, p.chunk_id, p.name, p.page, p.heading, p.line_start, p.line_end,
            PAGE_LABEL if p.image_key is not None else p.text, p.image_key,
        )
        for n, p in enumerate(passages, start=1)
    ]  # fmt: skip


def _pages_within(pages: Sequence[Passage], budget: int) -> list[Passage]:
    """The first scanned pages, in document order, that fit `budget` tokens at PAGE_IMAGE_TOKENS each."""
    return list(pages[: max(0, budget) // (PAGE_IMAGE_TOKENS + SOURCE_HEADER_TOKENS)])


def _by_rank(ranked: list[Passage], budget: int, neighbours: Sequence[Passage] = ()) -> list[Passage]:
    """The best passages that fit `budget` tokens, in rank order: a strong passage is never pushed out
    by a weaker one from another file (measured on real documents: a per-file quota did exactly that).

    A chunk next to one already chosen (the next part of the same section) joins it as one passage,
    so an answer that runs on past a chunk's end reads on. `neighbours` (the chunks around the best
    hits) come right after the hit they neighbour, before weaker hits.
    """
    groups: list[list[Passage]] = []
    used = 0
    seen: set[int] = set()
    for p in _with_neighbours(ranked, neighbours):
        if p.chunk_id in seen:
            continue
        seen.add(p.chunk_id)
        group = next((g for g in groups if _next_to(g, p)), None)
        cost = count_tokens(p.text) + (0 if group else SOURCE_HEADER_TOKENS)  # a passage of its own has a header
        if used + cost > budget:
            continue
        used += cost
        if group is None:
            groups.append([p])
        else:
            group.append(p)
    return [_merged(g) for g in groups]


def _sections(chunks: list[Passage]) -> list[list[Passage]]:
    """A document's chunks, in order, grouped into runs of the same section: each run is given once, whole,
    without the text that consecutive chunks repeat."""
    runs: list[list[Passage]] = []
    for p in chunks:
        if runs and _next_to(runs[-1], p):
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def _with_neighbours(ranked: list[Passage], neighbours: Sequence[Passage]) -> list[Passage]:
    """`ranked` with each neighbour placed right after the first hit it neighbours (the others dropped)."""
    order: list[Passage] = []
    placed: set[int] = set()
    for p in ranked:
        order.append(p)
        for n in neighbours:
            if n.chunk_id not in placed and _next_to([p], n):
                order.append(n)
                placed.add(n.chunk_id)
    return order


def _next_to(group: list[Passage], p: Passage) -> bool:
    """Whether `p` is the chunk just before or just after `group`, in the same section of the same document."""
    positions = [g.position for g in group if g.position is not None]
    first = group[0]
    return (
        p.position is not None
        and len(positions) == len(group)
        and (p.document_id, p.page, p.heading) == (first.document_id, first.page, first.heading)
        and p.position in (min(positions) - 1, max(positions) + 1)
    )


def _merged(group: list[Passage]) -> Passage:
    """Consecutive chunks as one passage, cited as the best-ranked one's section with every line they cover."""
    best = group[0]
    if len(group) == 1:
        return best
    ordered = sorted(group, key=lambda p: p.position or 0)
    text = ordered[0].text
    for p in ordered[1:]:
        text = _joined(text, p.text)
    lines = [(p.line_start, p.line_end or p.line_start) for p in group if p.line_start is not None]
    if not lines:
        return replace(best, text=text)
    return replace(best, text=text, line_start=min(a for a, _ in lines), line_end=max(b for _, b in lines))


def _joined(first: str, then: str) -> str:
    """Two consecutive chunks as one text: chunks overlap, and the overlap is kept once."""
    word = then.split(" ", 1)[0]
    at = first.find(word) if word else -1
    while at >= 0:  # the earliest place where the rest of `first` begins `then`: the longest overlap
        if then.startswith(first[at:]):
            return first + then[len(first) - at :]
        at = first.find(word, at + 1)
    return f"{first}\n{then}"


def prompt_for(sources: list[Source], not_ready: list[str]) -> str:
    """The instructions and numbered sources that precede the question."""
    waiting = (
        f"\nStill being read, not available yet: {', '.join(not_ready)}. Mention this if it matters.\n"
        if not_ready
        else ""
    )
    if not sources:
        return (
            "The user attached documents, but no passage in them matches this question. "
            "Say plainly that the attached documents do not answer it; do not make an answer up." + waiting
        )
    body = "\n\n".join(f"[{s.number}] {s.citation()}:\n{s.body()}" for s in sources)
    return (
        "Answer using only the sources below, and cite the ones you use like [1] or [2]. "
        "If they do not contain the answer, say so instead of guessing.\n\n"
        f"Sources:\n{body}\n{waiting}"
    )


_ANSWER_FROM_SOURCES = (
    "Answer using only the sources, and cite the ones you use like [1] or [2]. "
    "If they do not contain the answer, say so instead of guessing."
)
NO_MATCH = (
    "No passage in the attached documents matches this question. "
    "Say plainly that the attached documents do not answer it; do not make an answer up."
)


def _listed(sources: Sequence[Source]) -> str:
    return "\n\n".join(f"[{s.number}] {s.citation()}:\n{s.body()}" for s in sources)


class ChatSources:
    """Sources as an instruction-tuned model reads them: told once what to do, then numbered passages."""

    def documents(self, sources: Sequence[Source], mode: str) -> str:
        """Whole documents with the instructions, or the instructions for passages to come."""
        if mode == "whole":
            return f"The user attached the documents below, as numbered sources. {_ANSWER_FROM_SOURCES}\n\n" + (
                f"Sources:\n{_listed(sources)}"
            )
        return (
            "The user attached documents. Passages from them come with the questions, as numbered sources; "
            f"a passage keeps its number for the whole conversation. {_ANSWER_FROM_SOURCES}"
        )

    def turn(self, new: Sequence[Source], again: Sequence[int], matched: bool) -> str:
        """A question's new passages, and the numbers of those given earlier that apply to it too."""
        if not matched:
            return NO_MATCH
        earlier = ", ".join(f"[{n}]" for n in again)
        if not new:
            return f"Sources given earlier that apply: {earlier}."
        listed = f"Sources:\n{_listed(new)}"
        return f"{listed}\n\nSources given earlier that also apply: {earlier}." if again else listed


def fits_whole(documents: list[DocumentInfo], budget_tokens: int) -> bool:
    """True when the ready documents can go into the prompt whole."""
    ready = [d for d in documents if d.state == "ready"]
    return bool(ready) and sum(d.token_count for d in ready) <= budget_tokens


def ground(
    documents: list[DocumentInfo],
    whole: dict[int, list[Passage]],
    ranked: list[Passage],
    budget_tokens: int,
    neighbours: Sequence[Passage] = (),
    pages: Sequence[Passage] = (),
) -> Grounding:
    """Choose whole documents (when all ready ones fit `budget_tokens`) or ranked passages, and number them.

    `whole` holds every chunk of each ready document (the store's `chunks`; needed only when
    `fits_whole`), `ranked` the store's search results for the question, best first, and
    `neighbours` the chunks around the best of them (the store's `adjacent`; both needed only
    when not). `pages`: the scanned pages of the ready documents (the store's `page_images`),
    which words cannot find: as many as fit half the budget come first, in document order.
    """
    not_ready = [d.name for d in documents if d.state != "ready"]
    if not documents:
        return Grounding("none", [], [], "")
    if fits_whole(documents, budget_tokens):
        ready = [d for d in documents if d.state == "ready"]
        passages = [_merged(g) for d in ready for g in _sections(whole.get(d.id, []))]
        sources = _sources(passages)
        return Grounding("whole", sources, not_ready, prompt_for(sources, not_ready))
    shown = _pages_within(pages, budget_tokens // 2)
    rest = budget_tokens - len(shown) * (PAGE_IMAGE_TOKENS + SOURCE_HEADER_TOKENS)
    sources = _sources([*shown, *_by_rank(ranked, rest, neighbours)])
    return Grounding("retrieval", sources, not_ready, prompt_for(sources, not_ready))


def cited_sources(answer: str, numbers: Collection[int]) -> tuple[int, ...]:
    """The source numbers `answer` cites ([2], [1][3], [1, 3]), in order of first appearance, each one of `numbers`."""
    cited: dict[int, None] = {}
    for match in _CITATION.finditer(answer):
        for number in re.split(r"\s*[,;]\s*", match.group(1)):
            if int(number) in numbers:
                cited.setdefault(int(number), None)
    return tuple(cited)
