"""KV caches put aside in RAM when another conversation takes the model, and put back when it returns.

llama.cpp keeps one KV cache here, so whoever used the model last owns it: an
IDE's request through the local API, then a question in the window, then the
IDE again would each read their whole conversation again. Before a prompt
that would throw away at least `PARK_MIN_TOKENS` of the cache, the engine
copies the cache out (llama.cpp's per-sequence state: the K and V of the tokens
held, ~20 ms per 30 MB here) and keeps the last few such copies within a byte
budget, least recently used out first. A prompt that shares a longer start
with a parked copy than with the cache gets that copy back first, so it reads
only what is new.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.core.engine.generation import common_prefix

PARK_MIN_TOKENS = 128  # a cache shorter than this is quicker to read again than to keep
PARK_MAX_BYTES = 256 << 20  # an E2B-class model's cache of a full 8,192-token context is ~65 MB
PARK_MAX_ENTRIES = 4


@dataclass(frozen=True)
class Parked:
    """One KV cache put aside: the tokens it holds and llama.cpp's bytes for them."""

    tokens: tuple[int, ...]
    data: bytes


class ParkedStates:
    """The last few caches put aside, within a byte budget."""

    def __init__(self, max_bytes: int = PARK_MAX_BYTES, max_entries: int = PARK_MAX_ENTRIES) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._entries: list[Parked] = []  # least recently used first

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held."""
        return sum(len(e.data) for e in self._entries)

    def put(self, tokens: Sequence[int], data: bytes) -> None:
        """Keep a cache; one it extends (or that extends it) is replaced; the oldest go over the budget."""
        if len(data) > self.max_bytes:
            return
        entry = Parked(tuple(tokens), data)
        self._entries = [
            e for e in self._entries if common_prefix(e.tokens, entry.tokens) < min(len(e.tokens), len(entry.tokens))
        ]
        self._entries.append(entry)
        while len(self._entries) > self.max_entries or self.size > self.max_bytes:
            self._entries.pop(0)

    def best(self, tokens: Sequence[int]) -> tuple[Parked | None, int]:
        """The parked cache sharing the longest start with `tokens`, and how long that start is."""
        found, length = None, 0
        for entry in self._entries:
            n = common_prefix(entry.tokens, tokens)
            if n > length:
                found, length = entry, n
        return found, length

    def take(self, entry: Parked) -> None:
        """Remove `entry` (it goes back into the model's cache)."""
        self._entries = [e for e in self._entries if e is not entry]

    def clear(self) -> None:
        """Forget everything (another model, or a measurement that must start cold)."""
        self._entries = []
