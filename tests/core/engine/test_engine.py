"""The engine on the real starter model: streaming, cancel, KV-cache reuse, bad files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from app.core.chat.message import ChatMessage
from app.core.chat.templates import GemmaTurnTemplate
from app.core.engine.generation import SamplingParams, StopReason
from app.core.engine.gguf_info import GgufError
from app.core.engine.llama_engine import LlamaEngine
from app.core.turn import TurnEvents, TurnRequest, run_turn

GREEDY = SamplingParams(temperature=0.0, max_tokens=24)


def test_streams_text_and_reports_stats(engine: LlamaEngine) -> None:
    pieces: list[str] = []
    stats = engine.generate(engine.tokenize("The capital of France is"), GREEDY, threading.Event(), pieces.append)
    assert len(pieces) >= 2  # more than one streamed piece
    assert "".join(pieces).strip()
    assert stats.prompt_tokens == len(engine.tokenize("The capital of France is"))
    assert 0 < stats.completion_tokens <= 24
    assert stats.ttft_ms > 0
    assert stats.decode_tok_s > 0
    assert stats.stop_reason in (StopReason.MAX_TOKENS, StopReason.END_OF_TURN)


def test_flash_attention_is_on_where_the_cpu_runs_it_and_saved_states_depend_on_it(engine: LlamaEngine) -> None:
    # llama.cpp's "auto": the CPU runs flash attention, which skips the cells outside a sliding window
    # and leaves V untransposed in the KV cache, so a state saved without it would not restore.
    assert engine.loaded is not None and engine.loaded.flash_attn
    assert engine.identity.endswith("|fa=1")


def test_cancel_stops_before_the_next_token(engine: LlamaEngine) -> None:
    cancel = threading.Event()
    pieces: list[str] = []

    def on_text(text: str) -> None:
        pieces.append(text)
        if len(pieces) == 5:
            cancel.set()

    params = SamplingParams(temperature=0.0, max_tokens=500)
    stats = engine.generate(engine.tokenize("Once upon a time"), params, cancel, on_text)
    assert stats.stop_reason == StopReason.CANCELLED
    assert stats.completion_tokens == 5
    assert len(pieces) == 5


def test_second_turn_reuses_the_cached_history(engine: LlamaEngine) -> None:
    history = [ChatMessage("user", "Tell me about the history of lighthouses on rocky coasts. " * 6)]
    run_turn(engine, TurnRequest(1, tuple(history), sampling=GREEDY), TurnEvents())
    answer = engine.cached_tokens  # something was generated and cached
    assert answer > 0
    history += [ChatMessage("assistant", "They guided ships."), ChatMessage("user", "And today?")]
    second = run_turn(engine, TurnRequest(2, tuple(history), sampling=GREEDY), TurnEvents())
    # Only the new turn (and the answer's re-tokenised tail) is evaluated.
    assert second.stats.prompt_tokens > 80
    assert second.stats.prompt_evaluated < 30
    assert second.stats.prompt_evaluated < second.stats.prompt_tokens / 3


def test_starter_model_gets_the_base_model_page_and_gemma_turns_still_tokenize(engine: LlamaEngine) -> None:
    assert engine.loaded is not None
    assert engine.loaded.info.chat_template is None
    assert engine.template is not None
    assert engine.template.name == "base-completion"  # a base model: a question-and-answer page, not chat turns
    tokens = engine.tokenize(GemmaTurnTemplate().render([ChatMessage("user", "Hi")]))
    # <start_of_turn> and <end_of_turn> are single special tokens (105, 106) after BOS (2).
    assert tokens[:2] == [2, 105]
    assert 106 in tokens


@pytest.mark.parametrize("kind", ["truncated", "garbage"])
def test_bad_file_is_refused_and_the_loaded_model_stays(
    engine: LlamaEngine, starter_model: Path, tmp_path: Path, kind: str
) -> None:
    bad = tmp_path / f"{kind}.gguf"
    if kind == "truncated":
        with starter_model.open("rb") as src:
            bad.write_bytes(src.read(30_000_000))
    else:
        bad.write_bytes(os.urandom(1 << 16))
    before = engine.loaded
    with pytest.raises(GgufError):
        engine.load(bad)
    assert engine.loaded is before
    pieces: list[str] = []
    engine.generate(
        engine.tokenize("Hello"), SamplingParams(temperature=0.0, max_tokens=4), threading.Event(), pieces.append
    )
    assert pieces


def test_load_cancelled_through_progress(starter_model: Path) -> None:
    from app.core.engine.llama_engine import LoadCancelledError

    e = LlamaEngine()
    with pytest.raises(LoadCancelledError):
        e.load(starter_model, progress=lambda fraction: fraction < 0.2)
    assert e.loaded is None


def test_long_tokens_are_not_lost(engine: LlamaEngine) -> None:
    # Token 14443 is a 34-byte piece; a 32-byte buffer would drop it silently.
    assert engine._llm is not None
    piece = engine._token_bytes(engine._llm._model.vocab, 14443)
    assert len(piece) == 34
    assert engine.tokenize(piece.decode())[1:] == [14443]


def test_stop_ends_a_long_prompt_evaluation(engine: LlamaEngine) -> None:
    cancel = threading.Event()
    tokens = engine.tokenize("The lighthouse keeper wrote in his log every night. " * 150)[:1500]
    timer = threading.Timer(0.05, cancel.set)
    timer.start()
    stats = engine.generate(tokens, SamplingParams(temperature=0.0, max_tokens=8), cancel, TurnEvents())
    timer.join()
    assert stats.stop_reason == StopReason.CANCELLED
    assert stats.completion_tokens == 0
    after = engine.generate(
        engine.tokenize("Hello"), SamplingParams(temperature=0.0, max_tokens=4), threading.Event(), lambda _t: None
    )
    assert after.completion_tokens > 0  # the context is usable after an aborted prompt
