"""Tool calling through the local API, answered by a tiny Gemma 4 with Gemma 4's own vocabulary.

The model has random weights, so it writes a call only because the request requires one:
`tool_choice` names the function, and Tern then makes the model's first step follow a
llama.cpp grammar of a call to it (as it would for any model). The rest is real: the call
is read from the model's tokens and comes back as OpenAI `tool_calls`; the client's
`role: tool` result goes back into Gemma 4's format and the model goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from app.core.api.server import ApiConfig, ApiServer, RequestRecord
from app.core.engine.llama_engine import LlamaEngine
from tests.core.api.test_server import KEY, MODEL, EngineBackend, Served

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
            "required": ["city"],
        },
    },
}
ASK = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    "tools": [WEATHER],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "max_tokens": 30,
    "temperature": 0,
}


@pytest.fixture
def served(gemma4_engine: LlamaEngine) -> Iterator[Served]:
    backend = EngineBackend(gemma4_engine)
    records: list[RequestRecord] = []
    server = ApiServer(ApiConfig(0, KEY, frozenset()), backend, records.append)
    server.start()
    try:
        yield Served(server, backend, records)
    finally:
        server.stop()
        backend.close()


def _events(content: bytes) -> list[Any]:
    lines = [line.removeprefix(b"data: ") for line in content.split(b"\n\n") if line]
    assert lines[-1] == b"[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_a_required_call_comes_back_as_tool_calls(served: Served) -> None:
    status, _headers, body = served.request("POST", "/v1/chat/completions", ASK)
    assert status == 200, body
    choice = json.loads(body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["city"] in ("Paris", "Oslo")


def test_streamed_calls_come_in_a_delta_before_the_end(served: Served) -> None:
    status, headers, body = served.request("POST", "/v1/chat/completions", {**ASK, "stream": True})
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = _events(body)
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    (calls,) = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert calls[0]["index"] == 0 and calls[0]["function"]["name"] == "get_weather"
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_the_clients_result_goes_back_and_the_model_goes_on(served: Served, gemma4_engine: LlamaEngine) -> None:
    status, _headers, body = served.request("POST", "/v1/chat/completions", ASK)
    call = json.loads(body)["choices"][0]["message"]["tool_calls"][0]
    follow = {
        **ASK,
        "tool_choice": "auto",
        "max_tokens": 4,
        "messages": [
            *ASK["messages"],
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 C"},
        ],
    }
    status, _headers, body = served.request("POST", "/v1/chat/completions", follow)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")
    # The prompt held the result in Gemma 4's format, after the call.
    held = gemma4_engine._require().detokenize(gemma4_engine.context_tokens(), special=True).decode()
    assert '<|tool_response>response:get_weather{value:<|"|>Sunny, 21 C<|"|>}<tool_response|>' in held
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] > 0  # the conversation so far was cached


def test_a_model_without_tool_calling_refuses_tools_by_name(engine: LlamaEngine) -> None:
    backend = EngineBackend(engine)  # the starter: a base model, no tool format
    server = ApiServer(ApiConfig(0, KEY, frozenset()), backend, lambda _r: None)
    server.start()
    try:
        status, _headers, body = Served(server, backend, []).request("POST", "/v1/chat/completions", ASK)
    finally:
        server.stop()
        backend.close()
    error = json.loads(body)["error"]
    assert status == 400 and error["code"] == "unsupported_parameter" and "Gemma 4" in error["message"]
