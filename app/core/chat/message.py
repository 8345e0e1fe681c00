"""A chat message as the prompt builder sees it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from app.core.docs.grounding import Source

Role = Literal["system", "user", "assistant"]
GivenMode = Literal["whole", "retrieval"]


@dataclass(frozen=True)
class Given:
    """What an answer was given from the conversation's documents, and how.

    "whole": every document, ahead of the conversation; "retrieval": passages, each in
    the message of the question that first needed it. Numbers are the conversation's.
    """

    mode: GivenMode
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation."""

    role: Role
    content: str
    context: str = ""  # a question's: what goes before it in the prompt (its passages), written out
    given: Given | None = None  # an answer's: the sources it was given


def fold_context(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Messages with each question's context written into it, for templates that know only role and text."""
    return [
        replace(m, content=f"{m.context}\n\nQuestion: {m.content}", context="") if m.context else m for m in messages
    ]
