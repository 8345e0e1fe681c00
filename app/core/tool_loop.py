"""An answer that may think and call tools: model → call → tool → response → model, until it answers.

Gemma 4 ends its text at `<|tool_response>` after a call. Each call is read
(`tool_calls.parse_call`), allowed or refused (a tool that asks first waits for
the user), run with a time limit (`Toolbox.run`), and its result goes back in
the model's own format; the model then goes on in the same turn. The prompt of
each step is the previous one plus what the model wrote and the results, so
only the results are read again (the KV cache holds the rest).

With no toolbox (the local API), calls are not run: they end the answer and are
returned to the caller, who runs them and sends the results in the next request.

The loop is capped at MAX_STEPS rounds of calls and MAX_TOOLS_S seconds of
tools; when a cap ends it, the user is told why.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from app.core.chat.gemma4 import tool_response
from app.core.chat.message import ChatMessage, ToolCall
from app.core.chat.tool_calls import arguments_of, parse_call
from app.core.engine.channels import Channels
from app.core.engine.generation import GenerationStats, StopReason
from app.core.tools.base import Toolbox, ToolCard, ToolContext

MAX_STEPS = 6
MAX_TOOLS_S = 120.0
REFUSED = "The user did not allow this call."


@dataclass
class LoopResult:
    """What the loop did, besides the streamed answer."""

    stats: GenerationStats
    cards: list[ToolCard] = field(default_factory=list)
    pending: tuple[ToolCall, ...] = ()  # calls for the caller to run (no toolbox)
    thinking: str = ""
    thinking_ms: float = 0.0
    notice: str = ""


@dataclass(frozen=True)
class LoopHooks:
    """How the loop reaches the rest of the turn."""

    generate: Callable[[Sequence[int], Channels | None, int], GenerationStats]  # stream a step's continuation
    build: Callable[[Sequence[ChatMessage]], list[int]]  # the prompt with these messages after the question
    context: Callable[[], list[int]]  # what the model has read and written so far (its KV cache)
    tokenize_more: Callable[[str], list[int]]  # text that follows it
    room: int  # tokens a prompt may hold (the context less what is kept for the answer)
    answer_text: Callable[[], str]  # the answer streamed so far
    add_text: Callable[[str], None]  # stream text into the answer
    thought: Callable[[str], None]  # a streamed piece of thought
    card: Callable[[ToolCard], None]  # a call's card, each time it changes
    allow: Callable[[ToolCard], bool]  # ask the user (blocks until answered or stopped)


def run_loop(
    tokens: Sequence[int],
    hooks: LoopHooks,
    channels_for: Callable[[Callable[[str], None], Callable[[str], None]], Channels | None],
    toolbox: Toolbox | None,
    context: ToolContext,
    clock: Callable[[], float] = time.monotonic,
) -> LoopResult:
    """Generate from `tokens`, running the calls the model makes, until it answers or a cap ends it."""
    thoughts: list[str] = []
    thought_times: list[float] = []
    continuation: list[ChatMessage] = []
    result = LoopResult(GenerationStats(0, 0, 0, 0.0, 0.0, 0.0, StopReason.END_OF_TURN))
    tools_s = 0.0
    for step in range(MAX_STEPS + 1):
        raw_calls: list[str] = []
        step_thought: list[str] = []
        start_of_step = len(hooks.answer_text())

        def thought(piece: str, into: list[str] = step_thought) -> None:
            into.append(piece)
            thought_times.append(clock())
            hooks.thought(piece)

        stats = hooks.generate(tokens, channels_for(thought, raw_calls.append), step)
        result.stats = stats if step == 0 else _combined(result.stats, stats)
        thoughts.append("".join(step_thought))
        if not raw_calls or stats.stop_reason == StopReason.CANCELLED:
            break
        calls = [parse_call(raw, f"call_{secrets.token_hex(8)}") for raw in raw_calls]
        for raw, call in zip(raw_calls, calls, strict=True):
            if call is None:  # written badly: shown as the text it is
                hooks.add_text(f"\n{raw}\n")
        made = [c for c in calls if c is not None]
        if not made:
            break
        if toolbox is None:
            result.pending = tuple(made)
            break
        if step == MAX_STEPS or tools_s >= MAX_TOOLS_S:
            why = f"{MAX_STEPS} rounds of tool calls" if step == MAX_STEPS else f"{MAX_TOOLS_S:.0f} s of tools"
            result.notice = f"The answer stopped after {why}; ask again to go on."
            break
        said = hooks.answer_text()[start_of_step:]
        continuation.append(ChatMessage("assistant", said, thinking="".join(step_thought), tool_calls=tuple(made)))
        started = clock()
        for call in made:
            card = _run_one(call, toolbox, context, hooks)
            result.cards.append(card)
            continuation.append(ChatMessage("tool", card.result, tool_call_id=call.id, name=call.name))
        tools_s += clock() - started
        if context.cancel.is_set():
            break
        tokens = _next_prompt(hooks, continuation, result.cards[-len(made) :])
    result.thinking = "\n\n".join(t for t in thoughts if t.strip())
    if thought_times:
        result.thinking_ms = (thought_times[-1] - thought_times[0]) * 1000
    return result


def _next_prompt(hooks: LoopHooks, continuation: Sequence[ChatMessage], cards: Sequence[ToolCard]) -> list[int]:
    """What the model read and wrote, then the results: only the results are read.

    The model's text is kept as its tokens, not written out again: rendered anew, a call (and the
    empty thought that opened the turn) may tokenize otherwise, and all of it would be read again.
    When that no longer fits the context, the conversation is rendered again and trimmed.
    """
    responses = "".join(tool_response(card.name, card.result) for card in cards)
    tokens = hooks.context() + hooks.tokenize_more(responses)
    return tokens if len(tokens) <= hooks.room else hooks.build(continuation)


def _run_one(call: ToolCall, toolbox: Toolbox, context: ToolContext, hooks: LoopHooks) -> ToolCard:
    spec = toolbox.find(call.name)
    shown = call.arguments if isinstance(call.arguments, str) else str(dict(call.arguments))
    card = ToolCard(call.id, call.name, spec.label if spec else call.name, shown, "running")
    if spec is None:
        known = ", ".join(t.name for t in toolbox.tools) or "none"
        card = replace(card, status="unknown", result=f"There is no tool named {call.name}. Tools: {known}.")
        hooks.card(card)
        return card
    arguments = arguments_of(call)
    if arguments is None:
        card = replace(card, status="malformed", result="The arguments could not be read.")
        hooks.card(card)
        return card
    if spec.name in toolbox.asks_first:
        hooks.card(replace(card, status="asking"))
        if not hooks.allow(replace(card, status="asking")):
            card = replace(card, status="refused", result=REFUSED)
            hooks.card(card)
            return card
    hooks.card(card)
    card = toolbox.run(spec, arguments, context, card)
    hooks.card(card)
    return card


def _combined(first: GenerationStats, later: GenerationStats) -> GenerationStats:
    """One answer's stats over its steps: the first token, every token read and written, and the last prompt
    (which holds the others, and what the model wrote, so what was not read came from the cache)."""
    total_ms = first.total_ms + later.total_ms
    produced = first.completion_tokens + later.completion_tokens
    return replace(
        first,
        prompt_tokens=later.prompt_tokens,
        prompt_evaluated=first.prompt_evaluated + later.prompt_evaluated,
        completion_tokens=produced,
        decode_tok_s=later.decode_tok_s or first.decode_tok_s,
        total_ms=total_ms,
        stop_reason=later.stop_reason,
    )
