"""A chat message as the prompt builder sees it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from app.core.docs.grounding import Source

Role = Literal["system", "user", "assistant", "tool"]
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
class ToolCall:
    """A call the model made: a tool's name and its arguments.

    `arguments` is the call's own text where the model wrote it (so the prompt gives back
    exactly what it read), or a mapping for a call made elsewhere (an API client's history).
    """

    name: str
    arguments: Mapping[str, Any] | str
    id: str = ""


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation."""

    role: Role
    content: str
    context: str = ""  # a question's: what goes before it in the prompt (its passages), written out
    given: Given | None = None  # an answer's: the sources it was given
    thinking: str = ""  # an answer's thought, given back only while its tool calls are being answered
    tool_calls: tuple[ToolCall, ...] = ()  # an answer's calls; the "tool" messages after it answer them
    tool_call_id: str = ""  # a tool result's: the call it answers
    name: str = ""  # a tool result's: the tool's name


def fold_context(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Messages with each question's context written into it, for templates that know only role and text."""
    return [
        replace(m, content=f"{m.context}\n\nQuestion: {m.content}", context="") if m.context else m for m in messages
    ]
