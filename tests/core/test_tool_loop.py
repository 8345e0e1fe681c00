"""The tool loop on real llama.cpp: a tiny Gemma 4 with Gemma 4's own vocabulary calls a tool, which runs.

The model has random weights, so by itself it never writes a tool call. A llama.cpp
grammar (tool_choice "required", the same grammar the local API uses for a required
call) makes its first step a well-formed call; everything after is real: the call
is read from the model's tokens, allowed or refused, run on its thread, answered in
Gemma 4's format, and the model goes on from the KV cache after reading only the
response.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app.core import tool_loop
from app.core.chat.gemma4 import Gemma4Template, tool_response
from app.core.chat.message import ChatMessage
from app.core.chat.tool_grammar import call_grammar
from app.core.engine.channels import Channels
from app.core.engine.generation import SamplingParams
from app.core.engine.llama_engine import LlamaEngine
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from app.core.store.ref import Ref
from app.core.tools.base import Toolbox, ToolCard, ToolContext
from app.core.tools.builtin import CALCULATOR, CLOCK
from app.core.turn import TurnEvents, TurnRequest, TurnSaving, run_turn
from tests.core.test_turn import StoreHere

SAMPLING = SamplingParams(temperature=0.0, max_tokens=36, repeat_penalty=1.0)  # the call takes ~25 tokens
# The calculator, its expression limited to one value so that the grammar-made call computes something.
SIX_TIMES_SEVEN = replace(
    CALCULATOR,
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string", "enum": ["6*7"]}},
        "required": ["expression"],
    },
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreHere]:
    conn = open_database(tmp_path / "history.db", b"k" * 32)
    yield StoreHere(ConversationStore(conn))
    conn.close()


def _turn(engine: LlamaEngine, store: StoreHere, allow: bool, **request: object) -> tuple[object, list[ToolCard]]:
    cards: list[ToolCard] = []
    asked: list[ToolCard] = []

    def allowed(card: ToolCard) -> bool:
        asked.append(card)
        return allow

    conversation = store.store.create_conversation("")
    saving = TurnSaving(Ref(conversation), (), Ref(), question=Ref(), conversation_id=conversation)
    history = (ChatMessage("user", "What is six times seven?"),)
    events = TurnEvents(tool=cards.append, allow=allowed)
    engine.forget_cache()
    result = run_turn(engine, TurnRequest(1, history, sampling=SAMPLING, saving=saving, **request), events, store)  # type: ignore[arg-type]
    return result, cards + [replace(a, id="asked:" + a.id) for a in asked]


def test_the_engine_knows_gemma4_from_its_vocabulary(gemma4_engine: LlamaEngine) -> None:
    assert isinstance(gemma4_engine.template, Gemma4Template)
    assert gemma4_engine.markers is not None
    llm = gemma4_engine._require()
    assert llm.tokenize(b"<|tool_call>", add_bos=False, special=True) == [gemma4_engine.markers.call_open]


def test_a_required_call_runs_and_the_answer_goes_on_reading_only_the_response(
    gemma4_engine: LlamaEngine, store: StoreHere
) -> None:
    toolbox = Toolbox.of([SIX_TIMES_SEVEN, CLOCK])
    first_prompt = gemma4_engine.tokenize(
        Gemma4Template(toolbox.declarations()).render([ChatMessage("user", "What is six times seven?")])
    )
    result, cards = _turn(gemma4_engine, store, True, toolbox=toolbox, tool_choice="calculate")
    final = cards[-1]
    assert (final.name, final.status, final.result) == ("calculate", "done", "42")
    assert final.arguments == 'expression:<|"|>6*7<|"|>'
    assert [c.status for c in cards] == ["running", "done"]  # the calculator runs freely
    assert result.cards == (final,)  # type: ignore[attr-defined]
    # Step two read only the response: the call the model wrote was still in the KV cache.
    response = gemma4_engine._require().tokenize(tool_response("calculate", "42").encode(), add_bos=False, special=True)
    read_after_call = result.stats.prompt_evaluated - len(first_prompt)  # type: ignore[attr-defined]
    assert read_after_call == len(response)
    # The history keeps the card apart from the answer's text.
    answer = store.store.current_path(store.store.conversations()[0].id)[-1]
    assert answer.stats is not None and answer.stats["tools"][0]["result"] == "42"
    assert "42" not in answer.content or "<|tool_response>" not in answer.content


def test_a_call_that_asks_first_can_be_refused_and_the_model_is_told(
    gemma4_engine: LlamaEngine, store: StoreHere
) -> None:
    toolbox = Toolbox.of([SIX_TIMES_SEVEN], ask={"calculate": True})
    _result, cards = _turn(gemma4_engine, store, False, toolbox=toolbox, tool_choice="required")
    statuses = [c.status for c in cards if not c.id.startswith("asked:")]
    assert statuses == ["asking", "refused"]
    assert [c.name for c in cards if c.id.startswith("asked:")] == ["calculate"]
    assert "did not allow" in cards[-2].result


def test_without_a_toolbox_the_calls_go_back_to_the_caller(gemma4_engine: LlamaEngine, store: StoreHere) -> None:
    result, cards = _turn(gemma4_engine, store, True, tools=(SIX_TIMES_SEVEN.declaration(),), tool_choice="calculate")
    assert cards == []
    (call,) = result.pending  # type: ignore[attr-defined]
    assert call.name == "calculate" and call.arguments == 'expression:<|"|>6*7<|"|>'


def test_stop_while_a_tool_asks_ends_the_turn(gemma4_engine: LlamaEngine, store: StoreHere) -> None:
    toolbox = Toolbox.of([SIX_TIMES_SEVEN], ask={"calculate": True})
    request = TurnRequest(1, (ChatMessage("user", "Six times seven?"),), sampling=SAMPLING, toolbox=toolbox,
                          tool_choice="required")  # fmt: skip

    def stop_and_refuse(_card: ToolCard) -> bool:
        request.cancel.stop()
        return False

    gemma4_engine.forget_cache()
    result = run_turn(gemma4_engine, request, TurnEvents(allow=stop_and_refuse), None)
    assert result.cards[-1].status == "refused"
    first_prompt = gemma4_engine.tokenize(
        Gemma4Template(toolbox.declarations()).render([ChatMessage("user", "Six times seven?")])
    )
    assert result.stats.prompt_evaluated == len(first_prompt)  # stopped: the model was not asked to go on


def test_a_loop_that_keeps_calling_stops_at_its_cap_and_says_why(
    gemma4_engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Here every step follows the call grammar (the real engine, forced to call again and again).
    monkeypatch.setattr(tool_loop, "MAX_STEPS", 2)
    toolbox = Toolbox.of([SIX_TIMES_SEVEN])
    assert gemma4_engine.markers is not None
    forced = replace(SAMPLING, grammar=call_grammar(toolbox.declarations(), gemma4_engine.markers))
    template = Gemma4Template(toolbox.declarations())
    history = [ChatMessage("user", "Six times seven, again and again?")]
    text: list[str] = []
    cards: list[ToolCard] = []
    hooks = tool_loop.LoopHooks(
        generate=lambda tokens, channels, _step: gemma4_engine.generate(
            tokens, forced, threading.Event(), text.append, None, channels
        ),
        build=lambda more: gemma4_engine.tokenize(template.render([*history, *more])),
        context=gemma4_engine.context_tokens,
        tokenize_more=gemma4_engine.tokenize_more,
        room=1500,
        answer_text=lambda: "".join(text),
        add_text=text.append,
        thought=lambda _piece: None,
        card=cards.append,
        allow=lambda _card: True,
    )
    gemma4_engine.forget_cache()
    first = gemma4_engine.tokenize(template.render(history))
    channels = lambda on_thought, on_call: Channels(gemma4_engine.markers, on_thought, on_call)  # noqa: E731
    result = tool_loop.run_loop(first, hooks, channels, toolbox, ToolContext())
    assert [c.result for c in result.cards] == ["42", "42"]  # two rounds ran; the third call was not run
    assert "stopped after 2 rounds of tool calls" in result.notice
