"""Plain data that goes into and comes out of a generation, and the stop-sequence filter for streamed text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is picked. temperature 0 means greedy."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 64
    min_p: float = 0.0
    repeat_penalty: float = 1.1
    max_tokens: int = 1024
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    # DRY ("don't repeat yourself"): penalises a token that would extend a sequence already seen
    # by multiplier * base ** (length - allowed_length). 0 turns it off.
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    # Text the answer should not copy (a completion prompt's worked examples); DRY reads it as history.
    dry_history: str = ""
    # The answer ends where one of these begins; none of it reaches the user. A completion prompt's
    # stop sequences also make a control token (such as Gemma's <start_of_turn>) end the answer.
    stop: tuple[str, ...] = ()
    # With stop sequences, the answer loses its leading whitespace and the whitespace before the stop
    # (a chat answer); False keeps the text exactly as generated (code completion through the local API).
    strip: bool = True
    # A llama.cpp grammar (GBNF) the answer must follow, e.g. a tool call when one is required.
    grammar: str = ""


# Repetition control for base models. DRY at llama.cpp's suggested strength: after two tokens that
# repeat earlier text, each further token of the repeat costs 1.75× more; with the prompt's worked
# examples as its history, it also keeps the answer from copying them. DRY stops comparing at a line
# break or a colon, so a cycle of short "Question: …" lines slips past it; a mild presence penalty
# (a word already in the answer is a little less likely) catches those. bench/starter.py --repetition
# measures each alone.
BASE_DRY_MULTIPLIER = 0.8
BASE_DRY_BASE = 1.75
BASE_DRY_ALLOWED_LENGTH = 2
BASE_PRESENCE_PENALTY = 0.3


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common start of two token lists."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def base_model_sampling(
    chosen: SamplingParams, stop: Sequence[str], max_tokens: int, not_to_copy: str
) -> SamplingParams:
    """`chosen` adjusted for a base model: stop sequences, an answer cap, and repetition control."""
    return replace(
        chosen,
        max_tokens=min(chosen.max_tokens, max_tokens),
        stop=tuple(dict.fromkeys((*chosen.stop, *stop))),
        presence_penalty=chosen.presence_penalty or BASE_PRESENCE_PENALTY,
        dry_multiplier=chosen.dry_multiplier or BASE_DRY_MULTIPLIER,
        dry_base=BASE_DRY_BASE,
        dry_allowed_length=BASE_DRY_ALLOWED_LENGTH,
        dry_history=not_to_copy,
    )


class StopReason(str, Enum):
    """Why a generation ended."""

    END_OF_TURN = "end_of_turn"  # an end-of-turn token, or a stop sequence (the next turn began)
    MAX_TOKENS = "max_tokens"
    CONTEXT_FULL = "context_full"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class GenerationStats:
    """What one generation cost, as llama.cpp and the clock measured it."""

    prompt_tokens: int  # tokens in the whole prompt
    prompt_evaluated: int  # of those, how many were computed (the rest came from the KV cache)
    completion_tokens: int  # tokens of the answer (not those that only spelled a stop sequence)
    ttft_ms: float  # request to first token, prompt evaluation included
    decode_tok_s: float  # tokens after the first, per second
    total_ms: float
    stop_reason: StopReason

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        d = asdict(self)
        d["stop_reason"] = self.stop_reason.value
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationStats | None:
        """Read back `as_dict`'s form; None when it is missing or from an incompatible version."""
        try:
            values = {f.name: data[f.name] for f in fields(cls)}
            values["stop_reason"] = StopReason(values["stop_reason"])
            return cls(**values)
        except (KeyError, ValueError, TypeError):
            return None


class StopSequenceFilter:
    """Passes streamed text on, holding back any tail that could be the start of a stop sequence.

    Text is fed one token's piece at a time. Whatever can no longer become part of a stop
    sequence is passed on at once, one piece per token: the held-back rest of a token rides
    along with the next token's piece, so streaming stays one chunk per token. With `strip`,
    the answer also loses its leading whitespace and the whitespace before a stop sequence.
    """

    def __init__(self, stops: Sequence[str], emit: Callable[[str], None], strip: bool = False) -> None:
        self._stops = tuple(s for s in stops if s)
        self._emit = emit
        self._strip = strip
        self._held: list[tuple[str, int]] = []  # (text, number of the token it came from), oldest first
        self._head_passed = False  # the first held text is the rest of a token already passed on
        self._fed = 0
        self._skipped = 0  # leading tokens that were only whitespace
        self._passed_any = False
        self.tokens = 0  # tokens up to the last one whose text (in whole or part) was passed on
        self.stopped = False  # a stop sequence was completed

    def feed(self, piece: str) -> bool:
        """Take one token's text (may be "" mid-character); True once a stop sequence is complete."""
        if self.stopped:
            return True
        self._fed += 1
        if self._strip and not self._passed_any and not self._held and piece and not piece.strip():
            self._skipped += 1  # leading whitespace: no part of the answer
            return False
        if self._strip and not self._passed_any and not self._held:
            piece = piece.lstrip()
        if not piece:
            return False
        self._held.append((piece, self._fed))
        held = "".join(text for text, _ in self._held)
        found = [i for i in (held.find(s) for s in self._stops) if i >= 0]
        if found:
            end = min(found)
            self._pass_on(len(held[:end].rstrip()) if self._strip else end, final=True)
            self._held.clear()
            self.stopped = True
            return True
        self._pass_on(self._safe_length(held), final=False)
        return False

    def finish(self, tail: str = "") -> None:
        """Pass on what is held, and `tail` (the decoder's last characters): no stop sequence was completed."""
        if self.stopped:
            return
        if tail:
            self._held.append((tail, self._fed))
        held = "".join(text for text, _ in self._held)
        self._pass_on(len(held.rstrip()) if self._strip else len(held), final=True)
        self._held.clear()

    def _safe_length(self, held: str) -> int:
        """How much of `held` cannot be the beginning of a stop sequence (nor, with strip, trailing space)."""
        keep = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(held)), keep, -1):
                if held.endswith(stop[:k]):
                    keep = k
                    break
        end = len(held) - keep
        return len(held[:end].rstrip()) if self._strip else end

    def _pass_on(self, n_chars: int, final: bool) -> None:
        """Emit the first `n_chars` held characters, one piece per token."""
        carry = ""
        while n_chars > 0 and self._held:
            text, number = self._held[0]
            taken, rest = text[:n_chars], text[n_chars:]
            n_chars -= len(taken)
            if rest:
                self._held[0] = (rest, number)
            else:
                self._held.pop(0)
            if self._head_passed:
                carry += taken  # its token was counted when its first part went out
            else:
                self._emit(carry + taken)
                carry = ""
                self.tokens = number - self._skipped
                self._passed_any = True
            self._head_passed = bool(rest)
        if carry and final:
            self._emit(carry)
        elif carry:
            self._held.insert(0, (carry, 0))  # goes out with the next token's piece
            self._head_passed = True
