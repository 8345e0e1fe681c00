"""Reading OpenAI requests strictly: what is honoured, what is refused by name, and the answers' shapes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from app.core.api import protocol
from app.core.api.protocol import ApiError, parse_chat, parse_completion, parse_embedding, read_json
from app.core.chat.message import ToolCall
from app.core.engine.generation import GenerationStats, SamplingParams, StopReason

DEFAULTS = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=1024)


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields}


def refused(call: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args)
    return caught.value


def test_a_chat_request_becomes_a_conversation_with_its_sampling() -> None:
    call = parse_chat(
        {
            "model": "gemma",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
                {"role": "assistant", "content": "Hi!"},
                {"role": "user", "content": "What is 2+2?"},
            ],
            "temperature": 0,
            "top_p": 0.5,
            "max_completion_tokens": 40,
            "seed": 7,
            "stop": ["\n\n", "END"],
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "someone",
        },
        DEFAULTS,
    )
    assert call.model == "gemma" and call.system == "Be brief.\n\nAnswer in English."
    assert [(m.role, m.content) for m in call.messages] == [
        ("user", "Hello\nthere"),
        ("assistant", "Hi!"),
        ("user", "What is 2+2?"),
    ]
    s = call.sampling
    assert (s.temperature, s.top_p, s.max_tokens, s.seed, s.stop) == (0, 0.5, 40, 7, ("\n\n", "END"))
    assert s.repeat_penalty == DEFAULTS.repeat_penalty  # not given: the user's own setting
    assert call.stream and call.include_usage and call.max_tokens_given


def test_without_a_limit_the_answer_may_run_to_the_end_of_the_context() -> None:
    call = parse_chat(chat(), DEFAULTS)
    assert call.sampling.max_tokens == protocol.MAX_TOKENS_CAP and not call.max_tokens_given
    assert call.sampling.temperature == DEFAULTS.temperature


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"n": 2}, "'n' must be 1"),
        ({"logprobs": True}, "'logprobs' is not supported"),
        ({"logit_bias": {"42": 5}}, "'logit_bias' is not supported"),
        ({"response_format": {"type": "json_object"}}, "JSON mode"),
        ({"frobnicate": 1}, "Unsupported parameter: 'frobnicate'"),
        ({"temperature": 3}, "'temperature' must be between 0 and 2; it is 3"),
        ({"temperature": "hot"}, "'temperature' must be a number"),
        ({"max_tokens": 0}, "'max_tokens' must be between"),
        ({"max_tokens": 1.5}, "'max_tokens' must be an integer"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "'stop' holds at most 4"),
        ({"stop": 3}, "'stop' must be a string or a list"),
        ({"stream": "yes"}, "'stream' must be true or false"),
        ({"tools": [{"type": "function"}]}, "must be {"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "letters, digits"),
        ({"tool_choice": "required"}, "no 'tools' were given"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "not among 'tools'",
        ),
        ({"messages": []}, "'messages' must be a non-empty list"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "must be system, developer, user, assistant or tool"),
        ({"messages": [{"role": "function", "content": "x"}]}, "use tool messages"),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]},
                    {"role": "tool", "content": "1"},
                ]
            },
            "not valid JSON",
        ),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}, "last message"),
        ({"messages": [{"role": "user", "content": 5}]}, "must be a string or a list of content parts"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "does not fetch images",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}]},
            "must hold a 'url' string",
        ),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "only text is supported",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "late"}]},
            "system messages must come before",
        ),
        ({"messages": [{"role": "user", "content": "x" * (protocol.MAX_TEXT_CHARS + 1)}]}, "is longer than"),
    ],
)
def test_a_chat_request_that_cannot_be_honoured_is_refused_by_name(fields: dict[str, Any], words: str) -> None:
    error = refused(parse_chat, chat(**fields), DEFAULTS)
    assert error.status == 400 and words in error.message
    assert error.body()["error"]["type"] == "invalid_request_error"


def test_tools_and_their_results_are_read_into_the_conversation() -> None:
    call = parse_chat(chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="auto"), DEFAULTS)
    assert call.messages[-1].content == "Hi" and call.tool_choice == "auto" and len(call.tools) == 1
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    body = chat(
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "reasoning_content": "Look it up.",
             "tool_calls": [{"id": "c1", "type": "function",
                             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
        ],
        tools=[weather],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )  # fmt: skip
    call = parse_chat(body, DEFAULTS)
    assert call.tool_choice == "get_weather"
    _asked, made, result = call.messages
    assert made.tool_calls == (ToolCall("get_weather", {"city": "Paris"}, "c1"),) and made.thinking == "Look it up."
    assert (result.role, result.content, result.tool_call_id) == ("tool", "21 C", "c1")


def test_tool_calls_are_answered_in_openai_shape() -> None:
    stats = GenerationStats(10, 10, 5, 1.0, 1.0, 2.0, StopReason.END_OF_TURN)
    calls = (ToolCall("get_weather", 'city:<|"|>Paris<|"|>,days:2', "call_x"),)
    answer = protocol.chat_answer("id", "m", "", stats, calls)
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (made,) = choice["message"]["tool_calls"]
    assert made == {"id": "call_x", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}}  # fmt: skip
    assert protocol.tool_calls(calls, streamed=True)[0]["index"] == 0
    assert protocol.chat_answer("id", "m", "Hi", stats)["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(body: bytes, words: str) -> None:
    assert words in refused(read_json, body).message


def test_a_completion_keeps_its_text_exactly_and_takes_one_prompt() -> None:
    call = parse_completion({"prompt": ["def add(a, b):\n"], "max_tokens": 8, "stop": "\n\n"}, DEFAULTS)
    assert call.prompt == "def add(a, b):\n" and call.sampling.max_tokens == 8
    assert call.sampling.strip is False  # leading spaces of code are kept
    assert "batch of prompts" in refused(parse_completion, {"prompt": ["a", "b"]}, DEFAULTS).message
    assert "'echo' is not supported" in refused(parse_completion, {"prompt": "a", "echo": True}, DEFAULTS).message


def test_an_embedding_request_takes_a_text_or_a_list_of_texts() -> None:
    assert parse_embedding({"input": "one"}).inputs == ("one",)
    call = parse_embedding({"input": ["a", "b"], "encoding_format": "base64", "model": "e"})
    assert call.inputs == ("a", "b") and call.base64 and call.model == "e"
    assert "token arrays" in refused(parse_embedding, {"input": [[1, 2, 3]]}).message
    assert "at most" in refused(parse_embedding, {"input": ["x"] * (protocol.MAX_EMBEDDING_INPUTS + 1)}).message


def test_answers_have_openais_shape() -> None:
    stats = GenerationStats(120, 20, 9, 80.0, 30.0, 400.0, StopReason.END_OF_TURN)
    answer = protocol.chat_answer("chatcmpl-1", "gemma", "Four.", stats)
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Four.", "refusal": None}
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 9,
        "total_tokens": 129,
        "prompt_tokens_details": {"cached_tokens": 100},
    }
    cut = GenerationStats(10, 10, 16, 5.0, 30.0, 50.0, StopReason.MAX_TOKENS)
    assert protocol.completion_answer("cmpl-1", "gemma", "x", cut)["choices"][0]["finish_reason"] == "length"
    chunk = protocol.usage_chunk("chatcmpl-1", "gemma", stats, chat=True)
    assert chunk["choices"] == [] and chunk["usage"]["total_tokens"] == 129
    json.dumps(answer)  # plain JSON all the way down


def test_image_parts_of_user_messages_are_taken_from_their_data_urls() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 20
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    parts = [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": url}}]
    call = parse_chat(chat(messages=[{"role": "user", "content": parts}]), DEFAULTS)
    assert call.messages[0].content == "What is it?"
    assert call.images == ((0, png, "image 1"),)
    many = [{"type": "image_url", "image_url": url}] * (protocol.MAX_IMAGES + 1)
    assert "at most" in refused(parse_chat, chat(messages=[{"role": "user", "content": many}]), DEFAULTS).message
