"""A question-and-answer page for base models, which continue text rather than follow chat turns.

A base model (the starter, Gemma 3 270M, among them) was never taught Gemma's turn
markers: given chat turns it repeats the question, drifts into other languages and
runs on to the token limit. Given the start of a plain page of questions and short
answers it writes the next answer, then starts the next question; the answer ends
there (`STOP_SEQUENCES`). The page's worked examples show the length and tone wanted
and are never sent as instructions, which a base model would copy instead of follow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from app.core.chat.message import ChatMessage
from app.core.docs.grounding import Source

# Words in a model's name or fine-tune label that say it was taught to follow instructions.
_INSTRUCT_WORDS = re.compile(r"(?:^|[^a-z0-9])(it|instruct|chat|sft|dpo|rlhf|assistant)(?:[^a-z0-9]|$)", re.IGNORECASE)

HEADER = "Short, correct answers to everyday questions, in the language of the question."
EXAMPLES = (
    (
        "What is the largest planet in our solar system?",
        "Jupiter. It is more than twice as heavy as all the other planets together.",
    ),
    (
        "How can I keep cut flowers fresh longer?",
        "Trim the stems at an angle, change the water every two days and keep the vase out of direct sun.",
    ),
    (
        "Write a short story about a fox.",
        "A young fox found a lost glove in the snow. She carried it home, curled up inside it and slept warm "
        "all night. In the morning a child came looking for it, and the fox pushed it back out into the light.",
    ),
)
# Shown only when the question comes with sources. Answers that open with "According to [n]," are
# the form the starter copies most reliably (measured: all of five grounded answers cited a source,
# against none with the citation at the end), and the only one where it answers from the sources.
EXAMPLE_SOURCES = (
    "[1] trip.txt: The night train to Vienna leaves at 21:40 from platform 4.\n[2] menu.txt: The soup today is lentil."
)
SOURCES_EXAMPLES = (
    ("When does the train to Vienna leave?", "According to [1], it leaves at 21:40 from platform 4."),
    ("What soup is there today?", "According to [2], it is lentil."),
)
QUESTION, ANSWER, SOURCES = "Question:", "Answer:", "Sources:"
# The answer ends where the page moves on: a new question, a new source list, or a chat turn
# (and, when sources are listed, a new "[n]" line: the model inventing one more source; see `stop`).
STOP_SEQUENCES = (
    "\n" + QUESTION,
    "\n" + ANSWER,
    "\n" + SOURCES,
    "\nUser:",
    "\nQ:",
    "<start_of_turn>",
    "<end_of_turn>",
)
# A 270M base model says what it knows in its first sentences and then drifts. On this page its
# answers end by themselves at the next question, the longest of bench/starter.py's at about 60
# tokens; the cap only ends a runaway answer, after a paragraph (160 tokens, some 120 English words).
MAX_ANSWER_TOKENS = 160


def is_base_model_file(chat_template: str | None, names: Iterable[str]) -> bool:
    """True for a model file with no chat template whose names (name, fine-tune label, file name)
    do not say it was instruction-tuned: a model that continues text rather than chats."""
    return not chat_template and not any(_INSTRUCT_WORDS.search(name) for name in names)


def _block(question: str, answer: str | None) -> str:
    answered = f" {answer.strip()}".rstrip() + "\n\n" if answer is not None else ""
    return f"{QUESTION} {question.strip()}\n{ANSWER}{answered}"


def _sources_block(sources: Sequence[Source]) -> str:
    lines = [f"[{s.number}] {s.citation()}: {' '.join(s.body().split())}" for s in sources]
    return f"{SOURCES}\n" + "\n".join(lines) + "\n\n"


class CompletionFrame:
    """Renders a conversation as a page of questions and answers that ends where the next answer begins.

    With documents, the page shows worked examples that cite sources; whole documents
    are listed after them, ahead of the conversation, and a question's passages just
    before it (see app/core/docs/placement.py: neither moves on later turns).
    """

    name = "base-completion"
    note = ""

    def __init__(self, documents: str = "", citing: bool = False) -> None:
        self.documents = documents
        self.citing = citing or bool(documents)

    def with_documents(self, documents: str) -> CompletionFrame:
        """The page for a conversation with documents: citing examples, then `documents` (may be empty)."""
        return CompletionFrame(documents, citing=True)

    def preamble(self, system_prompt: str = "") -> str:
        """The page's opening, worked examples and whole documents: everything before the conversation."""
        parts = [HEADER + "\n"]
        if system_prompt.strip():
            parts.append(f"The answers follow this request: {' '.join(system_prompt.split())}\n")
        parts.append("\n")
        parts.extend(_block(q, a) for q, a in EXAMPLES)
        if self.citing:
            parts.extend(f"{SOURCES}\n{EXAMPLE_SOURCES}\n\n{_block(q, a)}" for q, a in SOURCES_EXAMPLES)
        parts.append(self.documents)
        return "".join(parts)

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The page: opening, examples, the conversation as questions and answers, then `Answer:`."""
        system = "\n".join(m.content for m in messages if m.role == "system" and m.content.strip())
        turns = [m for m in messages if m.role != "system"]
        parts = [self.preamble(system)]
        for i, m in enumerate(turns):
            if m.role == "assistant":
                continue
            reply = turns[i + 1].content if i + 1 < len(turns) and turns[i + 1].role == "assistant" else None
            parts.append(m.context + _block(m.content, reply))
        return "".join(parts)

    @property
    def stop(self) -> tuple[str, ...]:
        """Where the answer ends: the page moving on to a new question, turn or source."""
        return (*STOP_SEQUENCES, "\n[") if self.citing else STOP_SEQUENCES

    @staticmethod
    def not_to_copy(system_prompt: str = "") -> str:
        """Text the answer should not repeat: the page's opening and examples (not the citing ones,
        whose "According to [n]," is the form to copy)."""
        return CompletionFrame().preamble(system_prompt)


class PageSources:
    """Sources as a base model's page lists them: one line each, no written instructions (it would copy them)."""

    def documents(self, sources: Sequence[Source], mode: str) -> str:
        """Whole documents, after the worked examples; nothing for passages to come."""
        return _sources_block(sources) if mode == "whole" and sources else ""

    def turn(self, new: Sequence[Source], again: Sequence[int], matched: bool) -> str:
        """A question's new passages, just before it; earlier ones are already on the page."""
        return _sources_block(new) if new else ""
