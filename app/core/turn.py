"""One chat turn, start to finish: build the prompt, then stream the answer.

This is the one place that knows the order of the steps. Passages from
attached documents arrive already chosen (`context`), and go before the last
question; the prompt builder itself never retrieves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.core.chat.message import ChatMessage
from app.core.chat.prompt_builder import build_prompt
from app.core.engine.generation import GenerationStats, SamplingParams
from app.core.engine.options import EngineError

if TYPE_CHECKING:
    from app.core.engine.llama_engine import LlamaEngine


@dataclass(frozen=True)
class TurnRequest:
    """Everything the worker needs to answer the last user message."""

    turn_id: int
    history: tuple[ChatMessage, ...]  # user/assistant messages, ending with the user's
    system_prompt: str = ""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    previous_dropped: int = 0  # the cut the last turn made, to keep the cached prefix
    context: str = ""  # sources from attached documents, put before the last question
    cancel: threading.Event = field(default_factory=threading.Event, compare=False, repr=False)


@dataclass(frozen=True)
class TurnResult:
    """How the turn went."""

    turn_id: int
    stats: GenerationStats
    dropped_messages: int  # older messages left out to fit the context window
    notes: tuple[str, ...] = ()  # for the user, e.g. the model's template was set aside during this turn


def run_turn(engine: LlamaEngine, request: TurnRequest, on_text: Callable[[str], None]) -> TurnResult:
    """Answer `request`, streaming text pieces to `on_text`."""
    loaded = engine.loaded
    if loaded is None or engine.template is None:
        raise EngineError("No model is loaded.")
    history = request.history
    if request.context and history:
        question = history[-1]
        history = (*history[:-1], ChatMessage(question.role, f"{request.context}\n\nQuestion: {question.content}"))
    template_note = engine.template.note
    prompt = build_prompt(
        history,
        request.system_prompt,
        engine.template,
        engine.tokenize,
        loaded.n_ctx,
        request.sampling.max_tokens,
        request.previous_dropped,
    )
    stats = engine.generate(prompt.tokens, request.sampling, request.cancel, on_text)
    notes = (engine.template.note,) if engine.template.note != template_note else ()
    return TurnResult(request.turn_id, stats, prompt.dropped, notes)
