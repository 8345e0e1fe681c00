"""A chat message as the prompt builder sees it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from app.core.docs.grounding import Source

Role = Literal["system", "user", "assistant", "tool"]
# Where an image goes in a prompt's text. The engine replaces it with the image's tokens (engine/vision.py);
# the key is the SHA-256 of the image as Tern keeps it.
IMAGE_PLACEHOLDER = re.compile(r"<__image:([0-9a-f]{64})__>")
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
    images: tuple[str, ...] = ()  # a question's images, by key (SHA-256), in the order the user gave them


def image_placeholder(key: str) -> str:
    """The text that stands for image `key` in a prompt until the engine puts the image's tokens there."""
    return f"<__image:{key}__>"


def place_images(messages: Sequence[ChatMessage], seen: bool) -> list[ChatMessage]:
    """Messages with each question's images written into its text: as placeholders the model will see
    when `seen`, else as a note that an image was there (a model without a projector)."""
    placed = []
    for m in messages:
        if not m.images:
            placed.append(m)
            continue
        if seen:
            marks = "".join(image_placeholder(key) for key in m.images)
        else:
            marks = "[an image the current model cannot see]\n" * len(m.images)
        placed.append(replace(m, content=marks + m.content, images=()))
    return placed


def fold_context(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """Messages with each question's context written into it, for templates that know only role and text."""
    return [
        replace(m, content=f"{m.context}\n\nQuestion: {m.content}", context="") if m.context else m for m in messages
    ]
