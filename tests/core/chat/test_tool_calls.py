"""Gemma 4's tool calls read back exactly as the reference template writes them; malformed text never crashes."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.core.chat.gemma4 import render_call
from app.core.chat.message import ToolCall
from app.core.chat.tool_calls import MAX_DEPTH, arguments_of, parse_arguments, parse_call

ARGUMENTS: list[dict[str, Any]] = [
    {},
    {"city": "Paris"},
    {"expression": "2 * (3 + 4) / 7", "precise": True},
    {"query": "lighthouse keeper, 1887: {who}? [see p. 3]", "limit": 5, "ratio": 0.25, "exact": False},
    {"path": "/home/ada/notes.md", "lines": [1, 20], "encoding": None},
    {"filter": {"after": "2024-01-01", "tags": ["a", "b"], "nested": {"deep": [{"k": -1.5e-3}]}}},
    {"text": "line one\nline two\ttabbed, and a comma", "Zeta": 1, "alpha": 2},
    {"emoji": "🌊 日本語", "empty": "", "list": []},
]
CALL = re.compile(r"<\|tool_call>(.*?)<tool_call\|>", re.S)


@pytest.fixture(scope="module")
def rendered_calls(gemma4_template: str) -> list[str]:
    """Each argument set as the reference template writes a call to `tool_x` (the text inside the markers)."""
    source = gemma4_template
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    template = env.from_string(source)
    calls = []
    for arguments in ARGUMENTS:
        messages = [
            {"role": "user", "content": "Go"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "tool_x", "arguments": arguments}}],
            },
        ]
        text = template.render(messages=messages, add_generation_prompt=True, bos_token="")
        calls.extend(CALL.findall(text))
    assert len(calls) == len(ARGUMENTS)
    return calls


def test_calls_written_by_the_reference_template_read_back(rendered_calls: list[str]) -> None:
    for text, arguments in zip(rendered_calls, ARGUMENTS, strict=True):
        call = parse_call(text, "id-1")
        assert call is not None, text
        assert call.name == "tool_x" and call.id == "id-1"
        assert arguments_of(call) == arguments
        # Given back, the call is the text the model wrote (so the KV cache still matches it).
        assert render_call(call) == f"<|tool_call>{text}<tool_call|>"
        # And a call built from the mapping renders as the template does.
        assert render_call(ToolCall("tool_x", arguments)) == f"<|tool_call>{text}<tool_call|>"


def test_what_the_model_may_write_around_the_notation() -> None:
    assert parse_arguments('{ city : <|"|>Paris<|"|> , days:[1, 2,], }') == {"city": "Paris", "days": [1, 2]}
    assert parse_arguments('{<|"|>quoted key<|"|>:None,b:True}') == {"quoted key": None, "b": True}
    assert parse_call("call:get_weather{}") == ToolCall("get_weather", "")
    for malformed in [
        "",
        "call:",
        "get_weather{}",
        "call:get_weather",
        "call:get_weather{",
        'call:get_weather{city:<|"|>Paris}',
        "call:get_weather{city:Paris}",
        "call:get_weather{city:1 2}",
        "call:get_weather{}{}",
        "call:get_weather{:1}",
        "call:get_weather{a:[1,2}",
        "call:x{a:" + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "}",
    ]:
        assert parse_call(malformed) is None, malformed


def test_a_thousand_mutated_calls_never_crash(rendered_calls: list[str]) -> None:
    rng = random.Random(16)
    alphabet = [*'{}[]:,<|"> \n\\abcxyz0123456789.-eE', '<|"|>', "call:", "<|tool_call>", "None", "true"]
    read, refused = 0, 0
    for i in range(3000):
        text = list(rng.choice(rendered_calls))
        for _ in range(rng.randint(1, 4)):
            where = rng.randrange(len(text) + 1)
            action = rng.random()
            if action < 0.35 and text:
                del text[min(where, len(text) - 1)]
            elif action < 0.7:
                text.insert(where, rng.choice(alphabet))
            elif action < 0.85 and text:
                text = text[:where]  # cut off, as a stopped answer would be
            else:
                text[where:where] = text[rng.randrange(len(text) + 1) :][:8]  # a piece written twice
        mutated = "".join(text)
        call = parse_call(mutated, str(i))
        if call is None:
            refused += 1
            continue
        read += 1
        assert isinstance(arguments_of(call), dict)  # what is read is whole: its arguments read again
        again = parse_call(render_call(call)[len("<|tool_call>") : -len("<tool_call|>")])
        assert again == ToolCall(call.name, call.arguments)
    assert read > 100 and refused > 100  # both paths were taken


def test_random_text_is_refused_quietly() -> None:
    rng = random.Random(4)
    for _ in range(1000):
        text = "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randint(0, 80)))
        call = parse_call("call:f{" + text + "}")
        assert call is None or isinstance(arguments_of(call), dict)
