"""Parked KV caches: a conversation that comes back after another used the model reads only what is new."""

from __future__ import annotations

import threading

from app.core.engine.generation import SamplingParams
from app.core.engine.llama_engine import LlamaEngine
from app.core.engine.parked import PARK_MIN_TOKENS, ParkedStates

GREEDY = SamplingParams(temperature=0.0, repeat_penalty=1.0, max_tokens=12)


def test_the_longest_shared_start_wins_and_the_budget_holds() -> None:
    parked = ParkedStates(max_bytes=100, max_entries=3)
    parked.put([1, 2, 3], b"a" * 10)
    parked.put([1, 2, 9, 9], b"b" * 10)
    entry, shared = parked.best([1, 2, 9, 9, 5])
    assert entry is not None and entry.data == b"b" * 10 and shared == 4
    parked.put([1, 2, 3, 4], b"c" * 10)  # extends the first: replaces it
    assert len(parked) == 2 and parked.best([1, 2, 3, 4])[0].data == b"c" * 10  # type: ignore[union-attr]
    parked.put([7], b"d" * 10)
    parked.put([8], b"e" * 10)  # a fourth entry: the least recently kept goes
    assert len(parked) == 3 and parked.best([1, 2, 9])[1] < 3
    parked.put([6], b"f" * 95)  # over the byte budget: the oldest go until it fits
    assert parked.size <= 100 and parked.best([6])[1] == 1
    parked.take(parked.best([6])[0])  # type: ignore[arg-type]
    assert parked.best([6]) == (None, 0)
    parked.put([5], b"x" * 101)  # larger than the whole budget: not kept
    assert parked.best([5]) == (None, 0)


def _text(engine: LlamaEngine, tokens: list[int]) -> tuple[str, int]:
    pieces: list[str] = []
    stats = engine.generate(tokens, GREEDY, threading.Event(), pieces.append)
    return "".join(pieces), stats.prompt_evaluated


def _page(topic: str, n: int) -> str:
    lines = [f"Note {i} about {topic}: the {topic} record number {i} was checked and found in order." for i in range(n)]
    return "\n".join(lines) + f"\nQuestion: What was checked about {topic}?\nAnswer:"


def test_a_conversation_that_comes_back_reads_only_its_new_tokens(engine: LlamaEngine) -> None:
    engine.forget_cache()
    chat = engine.tokenize(_page("lighthouses", 20))
    ide = engine.tokenize(_page("compilers", 20))
    assert len(chat) > PARK_MIN_TOKENS and len(ide) > PARK_MIN_TOKENS
    answer, _ = _text(engine, chat)
    follow_up = engine.tokenize(_page("lighthouses", 20) + " " + answer + "\nQuestion: And then?\nAnswer:")
    _text(engine, ide)  # another conversation takes the model: the first one's cache is parked
    assert len(engine.parked) == 1
    again, evaluated = _text(engine, follow_up)
    new = len(follow_up) - len(chat)
    assert evaluated <= new + 2, f"read {evaluated} tokens of {len(follow_up)}; {new} were new"
    assert len(engine.parked) == 1  # and now the other one waits in its place
    _, ide_evaluated = _text(engine, ide)
    assert ide_evaluated <= 2  # the other conversation comes back whole
    # What comes back is the same cache: the same answer as reading everything from scratch.
    engine.forget_cache()
    cold, cold_evaluated = _text(engine, follow_up)
    assert cold_evaluated == len(follow_up) and cold == again
    engine.forget_cache()


def test_a_short_cache_is_not_worth_parking(engine: LlamaEngine) -> None:
    engine.forget_cache()
    _text(engine, engine.tokenize("Question: Hi?\nAnswer:"))
    _text(engine, engine.tokenize("Question: Bye?\nAnswer:"))
    assert len(engine.parked) == 0
