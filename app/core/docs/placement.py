"""Where sources go in the prompt, so that a follow-up question reuses what the model has already read.

The model's KV cache holds the last prompt; the next one is computed only from
where it first differs. So sources never move once given:

- Whole documents form one block ahead of the conversation (after the system
  prompt). It stays the same, word for word, while the attached documents do.
- Passages (when the documents do not fit whole) go with the question that first
  needed them and stay in that message on later turns. A later question that
  needs one again refers to it by its number; only passages not in the context
  yet are added, with the new question. Numbers are unique in the conversation.

Each earlier question's passages are written out again from the answer's stored
sources (`Given`), with the same style, so the text matches what the model read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from app.core.chat.message import ChatMessage, Given, GivenMode
from app.core.docs.grounding import Grounding, Source


class SourceStyle(Protocol):
    """How sources are written for one kind of prompt (chat turns, or a base model's page)."""

    def documents(self, sources: Sequence[Source], mode: GivenMode) -> str:
        """The block ahead of the conversation: whole documents, or what to expect of passages."""
        ...

    def turn(self, new: Sequence[Source], again: Sequence[int], matched: bool) -> str:
        """What goes with a question: passages new to the context, the numbers of earlier ones that apply."""
        ...


@dataclass(frozen=True)
class Placement:
    """The conversation with its sources in place."""

    history: tuple[ChatMessage, ...]  # questions carry their passages as `context`; the last is the new question
    documents: str  # ahead of the conversation
    given: Given  # what the new answer is given, numbered for the conversation
    left_out: tuple[int, ...] = ()  # numbers of passages given only with left-out messages, not given again


def place(
    history: Sequence[ChatMessage], grounding: Grounding, style: SourceStyle, kept_from: int = 0, notes: str = ""
) -> Placement:
    """Put `grounding`'s sources for the last question of `history` where they stay on later turns.

    `kept_from`: the first message the prompt will keep (older ones are left out to fit the
    context); passages given only in left-out messages are given again with the new question.
    `notes`: about files still being read or unreadable; they go with the new question only.
    """
    *earlier, question = history
    if grounding.mode == "whole":
        given = Given("whole", tuple(grounding.sources))
        bare = [replace(m, context="") for m in earlier]
        return Placement((*bare, replace(question, context=notes)), style.documents(given.sources, "whole"), given)

    numbers: dict[int, int] = {}  # chunk id → its number in this conversation, kept or not
    for m in earlier:
        if m.given is not None and m.given.mode == "retrieval":
            for s in m.given.sources:
                numbers.setdefault(s.chunk_id, s.number)
    in_context: set[int] = set()
    left_behind: dict[int, int] = {}  # chunk id → number, for passages of left-out messages
    rendered: list[ChatMessage] = []
    for i, m in enumerate(earlier):
        answer = earlier[i + 1] if i + 1 < len(earlier) and earlier[i + 1].role == "assistant" else None
        given_then = answer.given if answer is not None else None
        if m.role != "user" or given_then is None or given_then.mode != "retrieval":
            rendered.append(replace(m, context=""))
            continue
        if i < kept_from:
            left_behind.update((s.chunk_id, s.number) for s in given_then.sources)
            rendered.append(replace(m, context=""))
            continue
        rendered.append(replace(m, context=_turn(style, given_then.sources, in_context)))

    next_number = max(numbers.values(), default=0) + 1
    sources: list[Source] = []
    for s in grounding.sources:
        if s.chunk_id not in numbers:
            numbers[s.chunk_id] = next_number
            next_number += 1
        sources.append(replace(s, number=numbers[s.chunk_id]))
    context = "\n\n".join(part for part in (_turn(style, sources, in_context), notes) if part)
    given = Given("retrieval", tuple(sources))
    left_out = tuple(sorted(n for chunk, n in left_behind.items() if chunk not in in_context))
    return Placement((*rendered, replace(question, context=context)), style.documents((), "retrieval"), given, left_out)


def _turn(style: SourceStyle, sources: Sequence[Source], in_context: set[int]) -> str:
    """A question's passages, given what the context already holds (which is updated)."""
    new = [s for s in sources if s.chunk_id not in in_context]
    again = [s.number for s in sources if s.chunk_id in in_context]
    in_context.update(s.chunk_id for s in sources)
    return style.turn(new, again, bool(sources))
