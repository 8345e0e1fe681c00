"""Gemma 4's prompt, rendered in Python, is byte for byte what its reference chat template renders."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.core.chat.gemma4 import Gemma4Template, format_argument, is_gemma4_template, strip_thinking
from app.core.chat.message import ChatMessage, ToolCall, fold_context


@pytest.fixture(scope="module")
def reference(gemma4_template: str) -> jinja2.Template:
    """google-gemma-4-31B-it.jinja, in the environment Hugging Face's and Tern's template rendering use."""
    source = gemma4_template
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    return env.from_string(source)


def _as_dict(message: ChatMessage) -> dict[str, Any]:
    """A message as an OpenAI-style client sends it (keys only where set)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
                **({"id": c.id} if c.id else {}),
            }
            for c in message.tool_calls
        ]
    if message.thinking:
        out["reasoning_content"] = message.thinking
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    return out


def _function(name: str, description: str | None, parameters: Any = None, **more: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, **more}
    if description is not None:
        function["description"] = description
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


WEATHER = _function(
    "get_weather",
    "Current weather in a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
)
SEARCH = _function(
    "search_documents",
    "Search the conversation's documents.",
    {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer", "description": "How many passages", "nullable": True},
            "Tags": {"type": "array", "items": {"type": "string"}},
            "files": {"type": "array", "items": {"type": ["string", "null"], "enum": ["a", "b"], "description": None}},
            "filter": {
                "type": "object",
                "properties": {"after": {"type": "string"}, "pages": {"type": "array", "items": {"type": "integer"}}},
                "required": ["after"],
            },
            "options": {"type": "object", "exact": {"type": "boolean"}},
            "rows": {
                "type": "array",
                "items": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
            },
        },
        "required": ["query"],
    },
)
CLOCK = _function("current_time", "The date, time and time zone.", {"type": "object", "properties": {}})
BARE = _function("ping", None)
ANSWERING = _function("lookup", "Look a word up.", {"type": "object", "properties": {"word": {"type": "string"}}},
                      response={"description": "The entry", "type": "object"})  # fmt: skip
NO_TYPE = _function("odd", "Parameters without a type.", {"properties": {"x": {"type": "number"}}, "required": ["x"]})

U = ChatMessage
CALL = ToolCall("get_weather", {"city": "Paris", "unit": "celsius"}, id="call_1")
CASES: dict[str, tuple[list[ChatMessage], list[dict[str, Any]], bool]] = {
    "one question": ([U("user", "Hello")], [], False),
    "question with spaces": ([U("user", "  Hello\n\n")], [], False),
    "system": ([U("system", " Be brief. "), U("user", "Hi")], [], False),
    "thinking": ([U("user", "Why is the sky blue?")], [], True),
    "system and thinking": ([U("system", "Be brief."), U("user", "Hi")], [], True),
    "turns": ([U("user", "Hi"), U("assistant", "Hello! "), U("user", "How are you?")], [], False),
    "old thought stripped": (
        [U("user", "Hi"), U("assistant", "<|channel>thought\nplan<channel|>Hello"), U("user", "Again")],
        [],
        False,
    ),
    "tools declared": ([U("user", "Weather in Paris?")], [WEATHER, SEARCH, CLOCK], False),
    "odd declarations": ([U("system", "S"), U("user", "x")], [BARE, ANSWERING, NO_TYPE], True),
    "call pending": ([U("user", "Weather?"), U("assistant", "", tool_calls=(CALL,))], [WEATHER], False),
    "call answered": (
        [
            U("user", "Weather?"),
            U("assistant", "", tool_calls=(CALL,)),
            U("tool", '{"temp": 21}', tool_call_id="call_1"),
        ],
        [WEATHER],
        False,
    ),
    "call answered, then the answer": (
        [
            U("user", "Weather?"),
            U("assistant", "", tool_calls=(CALL,), thinking="Need the weather."),
            U("tool", "21 degrees", tool_call_id="call_1"),
            U("assistant", "It is 21 °C in Paris."),
            U("user", "Thanks"),
        ],
        [WEATHER],
        True,
    ),
    "thought kept while its calls are answered": (
        [
            U("user", "Weather?"),
            U("assistant", "", tool_calls=(CALL,), thinking="Need the weather."),
            U("tool", "21 degrees", tool_call_id="call_1"),
        ],
        [WEATHER],
        True,
    ),
    "two calls, names from ids and from the message": (
        [
            U("user", "Both"),
            U("assistant", "Checking.", tool_calls=(CALL, ToolCall("current_time", {}, id="call_2"))),
            U("tool", "sunny", tool_call_id="call_1"),
            U("tool", "12:00", name="current_time"),
        ],
        [WEATHER, CLOCK],
        False,
    ),
    "the model's own call text": (
        [
            U("user", "Weather?"),
            U("assistant", "", tool_calls=(ToolCall("get_weather", 'city:<|"|>Paris<|"|>'),)),
            U("tool", "rain"),
        ],
        [WEATHER],
        False,
    ),
    "arguments of every kind": (
        [
            U("user", "x"),
            U(
                "assistant",
                "",
                tool_calls=(
                    ToolCall(
                        "search_documents",
                        {
                            "query": 'a "b" c',
                            "limit": 3,
                            "ratio": 0.5,
                            "exact": True,
                            "none": None,
                            "Tags": ["x", 1, False],
                            "filter": {"b": 1, "A": [{"k": "v"}]},
                        },
                        id="c",
                    ),
                ),
            ),
        ],
        [SEARCH],
        False,
    ),
    "context folded into the question": ([U("user", "Who?", context="[1] notes.txt\nAda wrote it.")], [], False),
    "unicode": ([U("user", "日本語で答えて 🌊"), U("assistant", "はい"), U("user", "Ελληνικά")], [], False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendering_matches_the_reference_template(reference: jinja2.Template, case: str) -> None:
    messages, tools, thinking = CASES[case]
    expected = reference.render(
        messages=[_as_dict(m) for m in fold_context(messages)],
        tools=tools or None,
        enable_thinking=thinking,
        add_generation_prompt=True,
        bos_token="<bos>",
    )
    assert expected.startswith("<bos>")
    assert Gemma4Template(tools, thinking).render(messages) == expected[len("<bos>") :]


def test_format_arguments_and_thoughts() -> None:
    assert format_argument({"b": [1, "x"], "A": True}) == '{<|"|>A<|"|>:true,<|"|>b<|"|>:[1,<|"|>x<|"|>]}'
    assert format_argument({"b": None}, escape_keys=False) == "{b:None}"
    assert strip_thinking(" <|channel>thought\nx<channel|>Answer <|channel>y<channel|>end ") == "Answer end"


def test_gemma4_templates_are_recognised(gemma4_template: str) -> None:
    assert is_gemma4_template(gemma4_template)
    assert not is_gemma4_template("{{ messages }}<start_of_turn>")
    assert not is_gemma4_template(None)
