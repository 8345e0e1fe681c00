"""Stop sequences: held back while they might still match, never passed on, the rest passed on one piece per token."""

from __future__ import annotations

import threading

import pytest

from app.core.chat.completion import STOP_SEQUENCES
from app.core.engine.generation import SamplingParams, StopReason, StopSequenceFilter
from app.core.engine.llama_engine import LlamaEngine

STOPS = ("\nQuestion:", "\nUser:")


def stream(
    pieces: list[str], stops: tuple[str, ...] = STOPS, strip: bool = True
) -> tuple[list[str], StopSequenceFilter]:
    """Feed `pieces` as one token each, as the engine does, and finish as it does when no stop matched."""
    out: list[str] = []
    gate = StopSequenceFilter(stops, out.append, strip=strip)
    for piece in pieces:
        if gate.feed(piece):
            break
    gate.finish()
    return out, gate


def test_text_before_a_stop_sequence_is_passed_on_and_the_stop_sequence_is_not() -> None:
    out, gate = stream([" Paris", ".", "\n", "\n", "Question", ":", " What"])
    assert out == ["Paris", "."] and gate.stopped and gate.tokens == 2


def test_a_prefix_is_held_until_it_can_no_longer_match_and_then_rides_with_the_next_token() -> None:
    out: list[str] = []
    gate = StopSequenceFilter(STOPS, out.append, strip=True)
    assert not gate.feed(" One\n")
    assert not gate.feed("Qu")
    assert out == ["One"]  # "\nQu" could still become "\nQuestion:"
    assert not gate.feed("ietly")
    assert out == ["One", "\nQu", "ietly"] and gate.tokens == 3


def test_a_stop_sequence_split_inside_tokens_is_cut_where_it_begins() -> None:
    out, gate = stream([" Yes.\nQue", "stion: why"])
    assert out == ["Yes."] and gate.stopped and gate.tokens == 1


def test_held_text_is_flushed_when_the_generation_ends_without_a_stop() -> None:
    out, gate = stream([" a", "\nUse"])  # ended (e.g. at the token limit) while "\nUse" might become "\nUser:"
    assert "".join(out) == "a\nUse" and not gate.stopped and gate.tokens == 2


def test_the_answer_is_stripped_at_both_ends() -> None:
    out, _ = stream(["\n", "  ", " Hi", " there", "  \n"])
    assert "".join(out) == "Hi there"


def test_without_stop_sequences_every_piece_passes_at_once_and_unchanged() -> None:
    out, gate = stream([" a", "\n", "", "b "], stops=(), strip=False)
    assert out == [" a", "\n", "b "] and gate.tokens == 4


def test_streamed_pieces_never_contain_any_part_of_a_stop_sequence() -> None:
    text = " Well.\nQ: no\nQuest\nQuestion: next"
    for size in (1, 2, 3, 5):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        out, gate = stream(pieces, stops=STOP_SEQUENCES)
        assert "".join(out) == " Well.".strip() and gate.stopped


@pytest.mark.parametrize("size", [1, 2, 4])
def test_one_piece_per_token_until_the_stop(size: int) -> None:
    text = " The sea is wide.\nIt is blue.\n\nQuestion: And?"
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    out, gate = stream(pieces)
    assert "".join(out) == "The sea is wide.\nIt is blue."
    assert len(out) == gate.tokens


def test_the_real_model_stops_at_the_next_question_and_never_streams_it(engine: LlamaEngine) -> None:
    # A page of questions: the starter writes the answer and then, greedily, the next "Question:".
    page = "".join(f"Question: What is {n} plus {n}?\nAnswer: {2 * n}.\n\n" for n in range(1, 6))
    tokens = engine.tokenize(page + "Question: What is 6 plus 6?\nAnswer:")
    unfiltered: list[str] = []
    engine.generate(tokens, SamplingParams(temperature=0.0, max_tokens=40), threading.Event(), unfiltered.append)
    assert "\nQuestion:" in "".join(unfiltered)  # without stop sequences the model runs on into the next question
    pieces: list[str] = []
    sampling = SamplingParams(temperature=0.0, max_tokens=40, stop=STOP_SEQUENCES)
    stats = engine.generate(tokens, sampling, threading.Event(), pieces.append)
    answer = "".join(pieces)
    assert stats.stop_reason == StopReason.END_OF_TURN
    assert answer and answer == "".join(unfiltered).split("\nQuestion:")[0].strip()
    assert not any(stop.strip() in answer for stop in STOP_SEQUENCES)
    assert len(pieces) == stats.completion_tokens  # one streamed piece per token of the answer
