"""Plain data that goes into and comes out of a generation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
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


class StopReason(str, Enum):
    """Why a generation ended."""

    END_OF_TURN = "end_of_turn"
    MAX_TOKENS = "max_tokens"
    CONTEXT_FULL = "context_full"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class GenerationStats:
    """What one generation cost, as llama.cpp and the clock measured it."""

    prompt_tokens: int  # tokens in the whole prompt
    prompt_evaluated: int  # of those, how many were computed (the rest came from the KV cache)
    completion_tokens: int
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
