"""Tools the model can call: what each is, how a call is allowed, run and reported.

A tool runs on a thread of its own with a time limit, and its result is cut to
MAX_RESULT_CHARS before the model reads it. Each tool is on or off, and runs
freely or asks first; a call that is refused, fails or runs too long is told to
the model in plain words, and the answer goes on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from app.core.errors import UserError

if TYPE_CHECKING:
    from app.core.turn import TurnStore

MAX_RESULT_CHARS = 6000
TOOL_TIMEOUT_S = 20.0
CardStatus = Literal["asking", "running", "done", "refused", "failed", "timed out", "unknown", "malformed"]


class ToolError(UserError):
    """A tool could not do what was asked; the message is for the model (and shown on the card)."""


@dataclass(frozen=True)
class ToolContext:
    """What a tool may use: the conversation, the history, and a way to ask the user for a file."""

    conversation_id: int | None = None
    store: TurnStore | None = None
    pick_file: Callable[[str], Path | None] | None = None  # asks the user (a dialog); None: cancelled
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name and description for the model, its parameters (JSON Schema) and what it does."""

    name: str
    label: str  # for people: "Calculator"
    description: str
    parameters: Mapping[str, Any]
    run: Callable[[dict[str, Any], ToolContext], str]
    asks_first: bool = False  # the default: run freely, or ask the user before each call

    def declaration(self) -> dict[str, Any]:
        """The OpenAI-style declaration the prompt lists."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }


@dataclass(frozen=True)
class ToolCard:
    """One call as the chat shows it: tool, arguments, result and time."""

    id: str
    name: str
    label: str
    arguments: str  # as the model wrote them
    status: CardStatus
    result: str = ""
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "label": self.label,
            "arguments": self.arguments,
            "status": self.status,
            "result": self.result,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCard:
        return cls(
            str(data.get("id", "")),
            str(data.get("name", "")),
            str(data.get("label", "")),
            str(data.get("arguments", "")),
            data.get("status", "done"),
            str(data.get("result", "")),
            float(data.get("elapsed_ms", 0.0)),
        )


@dataclass(frozen=True)
class Toolbox:
    """The tools a turn offers, and for each whether it asks first."""

    tools: tuple[ToolSpec, ...]
    asks_first: frozenset[str] = frozenset()  # names of the tools that ask before each call
    timeout_s: float = TOOL_TIMEOUT_S

    @classmethod
    def of(cls, tools: Sequence[ToolSpec], ask: Mapping[str, bool] | None = None) -> Toolbox:
        """`tools`, each asking first as `ask` says (default: the tool's own default)."""
        ask = ask or {}
        return cls(tuple(tools), frozenset(t.name for t in tools if ask.get(t.name, t.asks_first)))

    def declarations(self) -> tuple[dict[str, Any], ...]:
        return tuple(t.declaration() for t in self.tools)

    def find(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)

    def run(self, spec: ToolSpec, arguments: dict[str, Any], context: ToolContext, card: ToolCard) -> ToolCard:
        """Run one call on a thread of its own, within the time limit; the card that reports it."""
        answers: queue.Queue[tuple[bool, str]] = queue.Queue()

        def work() -> None:
            try:
                answers.put((True, spec.run(arguments, context)))
            except UserError as exc:
                answers.put((False, str(exc)))
            except Exception as exc:  # a tool's bug is reported to the model, not raised into the turn
                answers.put((False, f"The tool failed ({type(exc).__name__})."))

        started = time.monotonic()
        threading.Thread(target=work, name=f"tool-{spec.name}", daemon=True).start()
        deadline = started + self.timeout_s
        while True:
            try:
                ok, text = answers.get(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
                break
            except queue.Empty:
                if context.cancel.is_set():
                    return replace(card, status="failed", result="Stopped.", elapsed_ms=_ms(started))
                if time.monotonic() >= deadline:
                    note = f"The tool did not finish within {self.timeout_s:.0f} s."
                    return replace(card, status="timed out", result=note, elapsed_ms=_ms(started))
        return replace(card, status="done" if ok else "failed", result=cap(text), elapsed_ms=_ms(started))


def cap(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    """`text`, cut to `limit` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[… {len(text) - limit:,} more characters left out]"


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000
