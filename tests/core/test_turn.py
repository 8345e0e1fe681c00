"""The turn pipeline, every step in order, with the real model and a real encrypted store (no threads).

`StoreHere` is the `TurnStore` protocol done synchronously over a SQLCipher
`ConversationStore`: the app's own version queues the same calls to the
history's thread.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.chat.completion import MAX_ANSWER_TOKENS
from app.core.chat.image import StoredImage
from app.core.chat.message import ChatMessage, Given
from app.core.docs.chunking import Chunk
from app.core.docs.doc_store import DocumentStore
from app.core.docs.grounding import Grounding, cited_sources
from app.core.docs.retrieval import retrieve
from app.core.engine.generation import SamplingParams
from app.core.engine.llama_engine import LlamaEngine
from app.core.store.conversation_store import ConversationStore, SearchHit
from app.core.store.database import open_database
from app.core.store.ref import Ref
from app.core.store.state_cache import SavedState, StateCache
from app.core.turn import (
    CHECKPOINT_S,
    INTERRUPTED,
    STOPPED_EARLY,
    TurnEvents,
    TurnRequest,
    TurnResult,
    TurnSaving,
    TurnStopped,
    _Answer,
    _dropped_note,
    reading_budget,
    run_turn,
)

GREEDY = SamplingParams(temperature=0.0, max_tokens=24)


class StoreHere:
    """A TurnStore over a real encrypted store, on the calling thread; it logs every call in order."""

    def __init__(self, store: ConversationStore, states: StateCache | None = None) -> None:
        self.store = store
        self.states = states
        self.calls: list[str] = []
        self.checkpoints: list[str] = []

    def save_start(
        self,
        saving: TurnSaving,
        question: str,
        system_prompt: str,
        model: str,
        saved: Callable[[Ref, int, tuple[int, ...]], None],
    ) -> None:
        self.calls.append("save_start")
        if saving.conversation.value is None:
            saving.conversation.value = self.store.create_conversation(system_prompt=system_prompt)
        saved(saving.conversation, saving.conversation.value, ())
        parent = next((r.value for r in reversed(saving.above) if r.value is not None), None)
        if saving.question is not None:
            saving.question.value = parent = self.store.add_message(
                saving.conversation.value, parent, "user", question, images=saving.images
            )
            saved(saving.question, parent, tuple(self.store.siblings(parent)))
        saving.answer.value = self.store.add_message(
            saving.conversation.value, parent, "assistant", "", model, complete=False
        )
        saved(saving.answer, saving.answer.value, tuple(self.store.siblings(saving.answer.value)))

    def ground(self, conversation_id: int, question: str, budget_tokens: int) -> Grounding | None:
        self.calls.append("ground")
        return retrieve(DocumentStore(self.store.connection), conversation_id, question, budget_tokens)

    def search_history(self, text: str, limit: int) -> list[SearchHit]:
        return self.store.search(text, limit)

    def image(self, key: str) -> StoredImage | None:
        self.calls.append("image")
        return self.store.images.image(key)

    def checkpoint(self, answer: Ref, text: str) -> None:
        self.calls.append("checkpoint")
        self.checkpoints.append(text)
        assert answer.value is not None
        self.store.update_message(answer.value, text, complete=False)

    def save_answer(self, answer: Ref, text: str, stats: dict[str, Any] | None) -> None:
        self.calls.append("save_answer")
        assert answer.value is not None
        self.store.update_message(answer.value, text, stats)

    def state_tokens(self, conversation_id: int, model: str) -> tuple[int, ...] | None:
        return self.states.tokens(conversation_id, model) if self.states is not None else None

    def load_state(self, conversation_id: int, model: str) -> SavedState | None:
        self.calls.append("load_state")
        return self.states.get(conversation_id, model) if self.states is not None else None

    def save_state(self, conversation_id: int, state: SavedState) -> None:
        self.calls.append("save_state")
        if self.states is not None:
            self.states.put(conversation_id, state)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreHere]:
    key = secrets.token_bytes(32)
    conn = open_database(tmp_path / "h.db", key)
    states = StateCache(tmp_path / "states.db", key)
    yield StoreHere(ConversationStore(conn), states)
    states.close()
    conn.close()


class Recorder:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.text: list[str] = []
        self.saved: list[tuple[Ref, int, tuple[int, ...]]] = []
        self.sources: list[tuple[Any, str]] = []
        self.modes: list[str] = []

    def events(self) -> TurnEvents:
        def text(piece: str) -> None:
            self.order.append("text")
            self.text.append(piece)

        def saved(ref: Ref, message_id: int, versions: tuple[int, ...]) -> None:
            self.order.append("saved")
            self.saved.append((ref, message_id, versions))

        def sources(found: Any, note: str, mode: str) -> None:
            self.order.append("sources")
            self.sources.append((found, note))
            self.modes.append(mode)

        return TurnEvents(text, saved, sources)


def ask(text: str, saving: TurnSaving | None, **kw: Any) -> TurnRequest:
    return TurnRequest(1, (ChatMessage("user", text),), sampling=GREEDY, saving=saving, **kw)


def test_a_turn_saves_the_question_first_and_the_answer_last(engine: LlamaEngine, store: StoreHere) -> None:
    saving = TurnSaving(Ref(), (), Ref(), question=Ref())
    rec = Recorder()
    result = run_turn(engine, ask("Name three colours.", saving, model_name="starter"), rec.events(), store)
    assert store.calls[0] == "save_start" and store.calls[-1] == "save_answer"
    assert rec.order[:3] == ["saved", "saved", "saved"] and rec.order[3:] == ["text"] * len(rec.text)
    conversation, question, answer = (entry[0] for entry in rec.saved)
    assert conversation is saving.conversation and question is saving.question and answer is saving.answer
    stored = store.store.current_path(saving.conversation.value or 0)
    assert [(m.role, m.complete) for m in stored] == [("user", True), ("assistant", True)]
    assert stored[0].content == "Name three colours." and stored[1].content == "".join(rec.text)
    assert stored[1].model == "starter" and stored[1].stats
    assert stored[1].stats["completion_tokens"] == result.stats.completion_tokens == len(rec.text) > 0
    assert result.notice == "" and result.cited == () and "cited" not in stored[1].stats


def test_regenerating_adds_an_answer_version_under_the_saved_question(engine: LlamaEngine, store: StoreHere) -> None:
    first = TurnSaving(Ref(), (), Ref(), question=Ref())
    run_turn(engine, ask("Say hello.", first), TurnEvents(), store)
    again = TurnSaving(first.conversation, (first.question,), Ref(), conversation_id=first.conversation.value)  # type: ignore[arg-type]
    rec = Recorder()
    run_turn(engine, ask("Say hello.", again), rec.events(), store)
    (_, _, ()), (ref, answer_id, versions) = rec.saved  # the conversation, then only the new answer
    assert ref is again.answer and versions == (first.answer.value, answer_id)


def test_sources_are_found_before_the_prompt_and_kept_with_the_answer(engine: LlamaEngine, store: StoreHere) -> None:
    conversation = store.store.create_conversation("Reading")
    docs = DocumentStore(store.store.connection)
    doc = docs.add(conversation, "/docs/keeper.md", "keeper.md", "markdown", 10, 0.0)
    docs.replace_chunks(doc, [Chunk("The lighthouse keeper was called Edda.", None, "Keepers", 1, 1, 9)])
    saving = TurnSaving(Ref(conversation), (), Ref(), question=Ref(), conversation_id=conversation)
    rec = Recorder()
    run_turn(engine, ask("Who kept the lighthouse?", saving), rec.events(), store)
    assert store.calls[:2] == ["save_start", "ground"]
    assert rec.order.index("sources") < rec.order.index("text")
    ((found, note),) = rec.sources
    assert [s.name for s in found] == ["keeper.md"] and note == ""
    stats = store.store.message(saving.answer.value or 0).stats or {}
    assert stats["sources"][0]["text"] == "The lighthouse keeper was called Edda."


def test_a_grounded_answer_records_the_sources_it_cites(engine: LlamaEngine, store: StoreHere) -> None:
    conversation = store.store.create_conversation("Reading")
    docs = DocumentStore(store.store.connection)
    for name, text in (("keeper.md", "The lighthouse keeper was called Edda."), ("menu.md", "Soup is served at noon.")):
        doc = docs.add(conversation, f"/docs/{name}", name, "markdown", 10, 0.0)
        docs.replace_chunks(doc, [Chunk(text, None, None, 1, 1, 9)])
    saving = TurnSaving(Ref(conversation), (), Ref(), question=Ref(), conversation_id=conversation)
    rec = Recorder()
    result = run_turn(engine, ask("Who kept the lighthouse?", saving), rec.events(), store)
    answer = "".join(rec.text)
    assert "[1]" in answer  # the starter, shown citing examples, cites the keeper's passage
    assert result.cited == cited_sources(answer, {1, 2}) and result.cited[0] == 1
    stored = store.store.message(saving.answer.value or 0)
    assert stored.content == answer and stored.stats and stored.stats["cited"] == list(result.cited)
    assert "Answer using only the sources" not in answer and "Question:" not in answer


def test_a_base_model_gets_a_short_cap_and_stops_at_the_next_question(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[SamplingParams] = []
    generate = engine.generate

    def recording(*args: Any) -> Any:
        asked.append(args[1])
        return generate(*args)

    monkeypatch.setattr(engine, "generate", recording)
    rec = Recorder()
    request = TurnRequest(
        1, (ChatMessage("user", "Tell a very long story."),), sampling=SamplingParams(max_tokens=4000)
    )
    result = run_turn(engine, request, rec.events())
    (sampling,) = asked
    assert sampling.max_tokens == MAX_ANSWER_TOKENS and "\nQuestion:" in sampling.stop and sampling.dry_multiplier > 0
    assert 0 < result.stats.completion_tokens <= MAX_ANSWER_TOKENS
    answer = "".join(rec.text)
    assert answer == answer.strip() and "Question:" not in answer and "Answer:" not in answer


def test_the_answer_is_checkpointed_while_it_streams(engine: LlamaEngine, store: StoreHere) -> None:
    ticks = iter(range(1000))
    saving = TurnSaving(Ref(), (), Ref(), question=Ref())
    # A prompt the starter answers at length (it runs to the 24-token limit).
    run_turn(engine, ask("Write a long story.", saving), TurnEvents(), store, clock=lambda: next(ticks) * 0.3)
    assert len(store.checkpoints) >= 5  # a clock 0.3 s per call: about every other piece
    assert all(a != b and b.startswith(a) for a, b in zip(store.checkpoints, store.checkpoints[1:], strict=False))


def test_a_stop_before_the_first_token_still_closes_the_saved_answer(engine: LlamaEngine, store: StoreHere) -> None:
    saving = TurnSaving(Ref(), (), Ref(), question=Ref())
    request = ask("Hello?", saving)
    request.cancel.stop()
    with pytest.raises(TurnStopped):
        run_turn(engine, request, TurnEvents(), store)
    answer = store.store.message(saving.answer.value or 0)
    assert answer.complete and answer.stats == {"notice": STOPPED_EARLY}


def test_an_interrupted_turn_says_so_in_its_notice(engine: LlamaEngine, store: StoreHere) -> None:
    saving = TurnSaving(Ref(), (), Ref(), question=Ref())
    request = ask("Write a long story.", saving)
    rec = Recorder()
    events = rec.events()

    def text(piece: str) -> None:
        events.text(piece)
        if len(rec.text) == 3:
            request.cancel.stop(INTERRUPTED)  # as closing the app does

    result = run_turn(engine, request, TurnEvents(text, events.saved, events.sources), store)
    assert result.stats.stop_reason.value == "cancelled" and result.notice == INTERRUPTED
    answer = store.store.message(saving.answer.value or 0)
    assert answer.content == "".join(rec.text) and answer.stats and answer.stats["notice"] == INTERRUPTED


def test_without_a_store_nothing_is_saved_and_the_answer_still_comes(engine: LlamaEngine) -> None:
    rec = Recorder()
    result = run_turn(engine, ask("Hi.", TurnSaving(Ref(), (), Ref(), question=Ref())), rec.events(), None)
    assert rec.saved == [] and rec.text and result.stats.completion_tokens > 0


def _converse(
    engine: LlamaEngine, store: StoreHere, conversation: int, questions: list[str]
) -> tuple[list[TurnResult], list[Recorder]]:
    """Ask `questions` in turn, as the chat does: each answer goes back with what it was given."""
    history: list[ChatMessage] = []
    above: tuple[Ref, ...] = ()
    results, recorders = [], []
    for turn, question in enumerate(questions, start=1):
        saving = TurnSaving(Ref(conversation), above, Ref(), question=Ref(), conversation_id=conversation)
        history.append(ChatMessage("user", question))
        dropped = results[-1].dropped_messages if results else 0
        request = TurnRequest(turn, tuple(history), sampling=GREEDY, saving=saving, previous_dropped=dropped)
        rec = Recorder()
        results.append(run_turn(engine, request, rec.events(), store))
        ((found, _note),) = rec.sources
        history.append(ChatMessage("assistant", "".join(rec.text), given=Given(rec.modes[0], found)))  # type: ignore[arg-type]
        above = (*above, saving.question or Ref(), saving.answer)
        recorders.append(rec)
    return results, recorders


def _attach(store: StoreHere, conversation: int, name: str, passages: list[str]) -> None:
    docs = DocumentStore(store.store.connection)
    doc = docs.add(conversation, f"/docs/{name}", name, "pdf", 10, 0.0)
    docs.replace_chunks(doc, [Chunk(text, page, None, None, None, 60) for page, text in enumerate(passages, start=1)])


FACTS = [
    f"Harbour note {n}: the {colour} buoy number {n} marks the {side} side of channel {n * 7}, "
    f"and boats passing it must keep below {n + 4} knots while the tide runs."
    for n, (colour, side) in enumerate(
        [("red", "port"), ("green", "starboard"), ("yellow", "northern"), ("black", "southern")] * 8, start=1
    )
]


def test_a_follow_up_on_whole_documents_evaluates_only_the_new_turn(engine: LlamaEngine, store: StoreHere) -> None:
    conversation = store.store.create_conversation("Harbour")
    _attach(store, conversation, "harbour.pdf", FACTS[:10])  # about 450 tokens: whole, within the 1,024 budget
    (first, second), recs = _converse(
        engine, store, conversation, ["Which buoy marks channel 21?", "How fast may boats pass buoy 5?"]
    )
    assert recs[0].modes == ["whole"] and recs[1].modes == ["whole"]
    assert second.stats.prompt_tokens > first.stats.prompt_tokens > 400
    new = second.stats.prompt_tokens - first.stats.prompt_tokens  # the first answer and the new question
    assert second.stats.prompt_evaluated <= new + 4, second.stats  # the documents came from the cache


def test_a_follow_up_with_passages_evaluates_only_new_passages(engine: LlamaEngine, store: StoreHere) -> None:
    conversation = store.store.create_conversation("Harbour")
    _attach(store, conversation, "harbour.pdf", FACTS)  # about 1,400 tokens: more than the budget, so passages
    (first, second), recs = _converse(
        engine, store, conversation, ["Which buoy marks channel 21?", "How fast may boats pass buoy 30?"]
    )
    assert recs[0].modes == ["retrieval"] and recs[1].modes == ["retrieval"]
    earlier = {s.chunk_id: s.number for s in recs[0].sources[0][0]}
    later = recs[1].sources[0][0]
    assert all(earlier.get(s.chunk_id, s.number) == s.number for s in later)  # a passage keeps its number
    assert {s.number for s in later if s.chunk_id not in earlier}.isdisjoint(earlier.values())
    new = second.stats.prompt_tokens - first.stats.prompt_tokens  # answer, new passages, question
    assert second.stats.prompt_evaluated <= new + 4, second.stats
    assert new < first.stats.prompt_tokens  # the first turn's passages were not given again


def test_a_long_prompt_reports_its_reading_batch_by_batch(engine: LlamaEngine, store: StoreHere) -> None:
    conversation = store.store.create_conversation("Harbour")
    _attach(store, conversation, "harbour.pdf", FACTS[:20])  # about 900 tokens: two batches of 512
    engine.forget_cache()
    reading: list[tuple[int, int, float | None]] = []
    saving = TurnSaving(Ref(conversation), (), Ref(), question=Ref(), conversation_id=conversation)
    events = TurnEvents(reading=lambda done, total, left: reading.append((done, total, left)))
    result = run_turn(engine, ask("Which buoy marks channel 21?", saving), events, store)
    total = result.stats.prompt_evaluated
    assert total > 512 and reading[0] == (0, total, None) and reading[-1][:2] == (total, total)
    assert [done for done, _, _ in reading] == sorted(done for done, _, _ in reading)
    assert reading[1][2] is not None and reading[1][2] > 0  # after the first batch, the time left is estimated
    assert engine.prefill_tok_s is not None and engine.prefill_tok_s > 0  # and the reading speed was measured
    short: list[tuple[int, int, float | None]] = []
    run_turn(engine, ask("Hello?", None), TurnEvents(reading=lambda *a: short.append(a)))
    assert short == []  # a prompt of one batch is read in one go, with nothing to report


def test_the_note_on_a_trimmed_prompt_names_the_passages_that_went_with_the_old_messages() -> None:
    assert _dropped_note(0, 8192, (1,)) == ""
    assert _dropped_note(4, 8192) == "The 4 oldest messages were left out to fit the 8,192-token context window."
    assert _dropped_note(2, 4096, (3,)).endswith("context window, and with them passage [3].")
    assert _dropped_note(6, 4096, (1, 2, 5)).endswith("and with them passages [1], [2] and [5].")


def test_the_source_budget_is_what_this_machine_reads_in_the_longest_wait() -> None:
    assert reading_budget(8192, None, 60) == 4096  # speed not known yet: half the context
    assert reading_budget(8192, 28.0, 60) == 1680  # an E2B-class model on two cores: a minute's reading
    assert reading_budget(8192, 1000.0, 60) == 4096  # never more than half the context
    assert reading_budget(8192, 2.0, 60) == 512  # never less than a few passages


def test_reopening_a_conversation_restores_its_documents_from_the_saved_state(
    engine: LlamaEngine, store: StoreHere
) -> None:
    """As after a restart: the cache is empty, but the state saved after the first answer is put back."""
    conversation = store.store.create_conversation("Harbour")
    _attach(store, conversation, "harbour.pdf", FACTS[:14])  # about 630 tokens: whole
    engine.forget_cache()
    (first,), recs = _converse(engine, store, conversation, ["Which buoy marks channel 21?"])
    assert "save_state" in store.calls and first.stats.prompt_evaluated > 600
    question = ChatMessage("user", "Which buoy marks channel 21?")
    answer = ChatMessage("assistant", "".join(recs[0].text), given=Given("whole", recs[0].sources[0][0]))
    follow_up = (question, answer, ChatMessage("user", "How fast may boats pass buoy 5?"))

    def ask_again() -> TurnResult:
        engine.forget_cache()  # a restart, or another conversation in between
        saving = TurnSaving(Ref(conversation), (), Ref(), question=Ref(), conversation_id=conversation)
        return run_turn(engine, TurnRequest(2, follow_up, sampling=GREEDY, saving=saving), Recorder().events(), store)

    restored = ask_again()
    assert restored.stats.prompt_evaluated < 80, restored.stats  # the documents and the first turn came from disk
    assert store.states is not None
    store.states.drop([conversation])  # deleted with its conversation: read again from the start
    again = ask_again()
    assert again.stats.prompt_evaluated == again.stats.prompt_tokens > 600


def test_a_turn_that_adds_to_a_document_conversation_keeps_its_state_too(engine: LlamaEngine, store: StoreHere) -> None:
    """The second turn reads few tokens, but what it adds is kept: after a restart, the third reads only itself."""
    conversation = store.store.create_conversation("Harbour")
    _attach(store, conversation, "harbour.pdf", FACTS[:14])  # about 630 tokens: whole
    engine.forget_cache()
    asked = ["Which buoy marks channel 21?", "How fast may boats pass buoy 5, and which side of the channel is it on?"]
    (_, second), recs = _converse(engine, store, conversation, asked)
    assert second.stats.prompt_evaluated < 256 and store.calls.count("save_state") == 2
    history: list[ChatMessage] = []
    for question, rec in zip(asked, recs, strict=True):
        answer = ChatMessage("assistant", "".join(rec.text), given=Given("whole", rec.sources[0][0]))
        history += [ChatMessage("user", question), answer]
    history.append(ChatMessage("user", "Which buoy marks channel 35?"))
    engine.forget_cache()  # a restart
    saving = TurnSaving(Ref(conversation), (), Ref(), question=Ref(), conversation_id=conversation)
    third = run_turn(engine, TurnRequest(3, tuple(history), sampling=GREEDY, saving=saving), Recorder().events(), store)
    # Read: the second answer's tail and the new question, not the second turn again.
    assert third.stats.prompt_evaluated <= third.stats.prompt_tokens - second.stats.prompt_tokens, third.stats


def test_a_big_state_is_kept_only_after_long_readings(
    engine: LlamaEngine, store: StoreHere, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.core.turn.SAVE_STATE_STEP_MAX_BYTES", 1024)  # every state is "big" here
    conversation = store.store.create_conversation("Harbour")
    _attach(store, conversation, "harbour.pdf", FACTS[:14])
    engine.forget_cache()
    asked = ["Which buoy marks channel 21?", "How fast may boats pass buoy 5, and which side of the channel is it on?"]
    (first, second), _ = _converse(engine, store, conversation, asked)
    assert first.stats.prompt_evaluated >= 256 > second.stats.prompt_evaluated
    assert store.calls.count("save_state") == 1  # the reading of the document, not the short follow-up


def test_a_state_saved_with_another_context_size_or_model_is_never_restored(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    cache = StateCache(tmp_path / "states.db", key, cap_bytes=1000)
    cache.put(1, SavedState("gemma.gguf|ctx=8192|gemma-turns", (2, 5, 7), b"x" * 400))
    assert cache.get(1, "gemma.gguf|ctx=4096|gemma-turns") is None
    assert cache.get(1, "gemma.gguf|ctx=8192|gemma-turns") == SavedState(
        "gemma.gguf|ctx=8192|gemma-turns", (2, 5, 7), b"x" * 400
    )
    cache.put(2, SavedState("m", (1,), b"y" * 400))
    cache.get(1, "gemma.gguf|ctx=8192|gemma-turns")  # 1 is now the most recently used
    cache.put(3, SavedState("m", (1,), b"z" * 400))  # over the cap: the least recently used (2) goes
    assert cache.tokens(2, "m") is None and cache.tokens(3, "m") == (1,) and cache.size() == 800
    cache.close()
    assert b"zzzz" not in (tmp_path / "states.db").read_bytes()  # encrypted at rest
    other = StateCache(tmp_path / "states.db", secrets.token_bytes(32))  # another key: started afresh
    assert other.size() == 0
    other.close()


def test_a_piece_is_checkpointed_within_half_a_second_though_no_other_follows() -> None:
    """On a busy machine the next token may be seconds away: the last piece must not wait for it."""

    class Writes:
        def __init__(self) -> None:
            self.writes: list[tuple[str, str]] = []

        def checkpoint(self, answer: Ref, text: str) -> None:
            self.writes.append(("checkpoint", text))

        def save_answer(self, answer: Ref, text: str, stats: dict[str, Any] | None) -> None:
            self.writes.append(("final", text))

    store = Writes()
    answer = _Answer(store, TurnSaving(Ref(1), (), Ref(2)), TurnEvents(), time.monotonic)  # type: ignore[arg-type]
    answer.add("The ")  # within half a second of the start: not written at once
    assert store.writes == []
    time.sleep(CHECKPOINT_S + 0.4)
    assert store.writes == [("checkpoint", "The ")]  # written by the timer, with no further piece
    answer.add("keeper")
    answer.save(None, "", (), None)  # at once: the pending timer is cancelled, nothing comes after the final save
    time.sleep(CHECKPOINT_S + 0.4)
    assert store.writes == [("checkpoint", "The "), ("final", "The keeper")]
