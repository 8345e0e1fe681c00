"""Fit a conversation into the context window.

The newest user message always stays. Older turns are left out in
user/assistant pairs, so roles keep alternating as Gemma's templates require.
When trimming is needed it trims to 3/4 of the budget, and the next turn first
tries the same cut: the prompt's prefix then stays the same for several turns
and the KV cache keeps being reused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.core.chat.message import ChatMessage
from app.core.chat.templates import ChatTemplate
from app.core.errors import UserError

Tokenize = Callable[[str], list[int]]
_TRIM_TARGET = 0.75
# No vocabulary packs more bytes into one token (Gemma's longest is 31), so a text of
# n bytes needs at least n / 64 tokens: megabytes are refused without tokenizing them.
MAX_TOKEN_BYTES = 64


class PromptTooLongError(UserError, ValueError):
    """Even the newest message alone does not fit; the message is for the user."""


@dataclass(frozen=True)
class BuiltPrompt:
    """The prompt handed to the engine."""

    text: str
    tokens: list[int]  # empty when the text is too long to be worth tokenizing
    dropped: int  # how many older messages were left out
    n_tokens: int  # len(tokens), or a lower bound when they were not counted


def answer_reserve(n_ctx: int, max_tokens: int) -> int:
    """Tokens kept free for the answer: the max-tokens setting, at most a quarter of the window."""
    return max(16, min(max_tokens, n_ctx // 4))


def build_prompt(
    history: Sequence[ChatMessage],
    system_prompt: str,
    template: ChatTemplate,
    tokenize: Tokenize,
    n_ctx: int,
    max_tokens: int,
    previous_dropped: int = 0,
) -> BuiltPrompt:
    """Render `history` within `n_ctx` minus the answer reserve.

    `history` ends with the user's message, or with the tool results the answer goes on from; the
    newest user message and everything after it always stay.
    """
    if not history or history[-1].role not in ("user", "tool"):
        raise ValueError("history must end with a user message or a tool result")
    budget = n_ctx - answer_reserve(n_ctx, max_tokens)
    system = [ChatMessage("system", system_prompt)] if system_prompt.strip() else []
    older = max((i for i, m in enumerate(history) if m.role == "user"), default=0)  # messages that may go

    def attempt(dropped: int) -> BuiltPrompt:
        text = template.render([*system, *history[dropped:]])
        at_least = len(text.encode("utf-8")) // MAX_TOKEN_BYTES
        if at_least > budget:  # cannot fit, whatever the tokenizer makes of it
            return BuiltPrompt(text, [], dropped, at_least)
        tokens = tokenize(text)
        return BuiltPrompt(text, tokens, dropped, len(tokens))

    whole = attempt(0)
    if whole.n_tokens <= budget:
        return whole
    # Keep the last cut if it still fits, so the cached prefix stays valid.
    if 0 < previous_dropped <= older and previous_dropped % 2 == 0:
        kept = attempt(previous_dropped)
        if kept.n_tokens <= budget:
            return kept
    # Smallest even number of dropped messages that fits the trim target.
    target = int(budget * _TRIM_TARGET)
    lo, hi = 1, older // 2  # counted in pairs
    best = attempt(older)
    if best.n_tokens > budget:
        needs = f"at least {best.n_tokens}" if not best.tokens else str(best.n_tokens)
        raise PromptTooLongError(
            f"Your message needs {needs} tokens, but the context window holds {n_ctx} "
            f"with {n_ctx - budget} kept for the answer. Shorten it or raise the context size in Settings."
        )
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = attempt(2 * mid)
        if candidate.n_tokens <= target:
            best, hi = candidate, mid - 1
        else:
            lo = mid + 1
    return best
