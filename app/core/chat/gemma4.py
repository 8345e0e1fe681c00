"""Gemma 4's prompt format, written out: the text its chat template renders, without running the template.

Gemma 4 has a system role, a thinking switch (`<|think|>` in the system turn),
tool declarations (`<|tool>declaration:NAME{…}<tool|>`), calls
(`<|tool_call>call:NAME{…}<tool_call|>`) and responses
(`<|tool_response>response:NAME{…}<tool_response|>`), with strings quoted as
`<|"|>…<|"|>`. The model's turn ends at `<turn|>`, or at `<|tool_response>`
after a call: the caller then runs the tool and the model goes on in the same
turn. Earlier turns' thoughts are stripped, as Gemma's guidance says; a thought
is given back only while its own tool calls are being answered.

The text is byte for byte what google-gemma-4-31B-it.jinja (the template of
current Gemma 4 releases) renders with `add_generation_prompt`, minus the BOS
text, which the tokenizer adds (tests/core/chat/test_gemma4.py compares them).
Rendering it here instead of in the template's sandbox is faster on every turn,
and the turn pipeline needs the format's parts anyway (tools, thinking).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from app.core.chat.message import ChatMessage, ToolCall, fold_context

QUOTE = '<|"|>'
TURN_END = "<turn|>"
TOOL_RESPONSE = "<|tool_response>"
_STANDARD_KEYS = ("description", "type", "properties", "required", "nullable")

# An OpenAI-style declaration: {"type": "function", "function": {name, description, parameters}}
Tool = Mapping[str, Any]


MARKER_TEXTS = ("<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", QUOTE)


@dataclass(frozen=True)
class Markers:
    """The token ids of Gemma 4's markers (MARKER_TEXTS, in order), as the model's vocabulary numbers them."""

    thought_open: int
    thought_close: int
    call_open: int
    call_close: int
    quote: int  # <|"|>, around strings in a call


def is_gemma4_template(source: str | None) -> bool:
    """Whether a GGUF's chat template is Gemma 4's (its turn and tool-call markers)."""
    return bool(source) and "<|turn>" in str(source) and "<|tool_call>" in str(source)


class Gemma4Template:
    """Gemma 4's turns, with the tools a turn declares and its thinking switch (see the module's notes)."""

    name = "gemma4"
    note = ""

    def __init__(self, tools: Sequence[Tool] = (), thinking: bool = False) -> None:
        self.tools = tuple(tools)
        self.thinking = thinking

    def render(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt, ending where the model's text begins (after a tool's response, the model goes on)."""
        tools, thinking = self.tools, self.thinking
        messages = fold_context(messages)
        out: list[str] = []
        last = None  # what came last: "think", "tool", "tool_call" or "tool_response"
        rest = list(messages)
        if thinking or tools or (rest and rest[0].role == "system"):
            out.append("<|turn>system\n")
            if thinking:
                out.append("<|think|>\n")
                last = "think"
            if rest and rest[0].role == "system":
                out.append(rest.pop(0).content.strip())
            for tool in tools:
                out.append("<|tool>" + declaration(tool).strip() + "<tool|>")
                last = "tool"
            out.append("<turn|>\n")
        last_user = max((i for i, m in enumerate(rest) if m.role == "user"), default=-1)
        for i, message in enumerate(rest):
            if message.role == "tool":
                continue
            last = None
            role = "model" if message.role == "assistant" else message.role
            before = next((m.role for m in reversed(rest[:i]) if m.role != "tool"), None)
            if not (role == "model" and before == "assistant"):  # a model turn goes on after tool responses
                out.append(f"<|turn>{role}\n")
            if message.thinking and i > last_user and message.tool_calls:
                out.append("<|channel>thought\n" + message.thinking + "\n<channel|>")
            for call in message.tool_calls:
                out.append(render_call(call))
                last = "tool_call"
            responded = False
            if message.tool_calls:
                for follow in _tool_messages_after(rest, i):
                    name = next((c.name for c in message.tool_calls if c.id == follow.tool_call_id), None)
                    out.append(tool_response(name or follow.name or "unknown", follow.content))
                    responded = True
                    last = "tool_response"
            out.append(strip_thinking(message.content) if role == "model" else message.content.strip())
            if last == "tool_call" and not responded:
                out.append(TOOL_RESPONSE)
            elif not (responded and not message.content):
                out.append(TURN_END + "\n")
        if last not in ("tool_response", "tool_call"):
            out.append("<|turn>model\n")
            if not thinking:
                out.append("<|channel>thought\n<channel|>")
        return "".join(out)


def _tool_messages_after(messages: Sequence[ChatMessage], index: int) -> list[ChatMessage]:
    follows = []
    for message in messages[index + 1 :]:
        if message.role != "tool":
            break
        follows.append(message)
    return follows


def render_call(call: ToolCall) -> str:
    """`<|tool_call>call:NAME{…}<tool_call|>`: the model's own text of the arguments, or the mapping written out."""
    if isinstance(call.arguments, str):
        arguments = call.arguments
    else:
        arguments = ",".join(
            f"{key}:{format_argument(value, escape_keys=False)}" for key, value in _sorted(call.arguments)
        )
    return f"<|tool_call>call:{call.name}{{{arguments}}}<tool_call|>"


def tool_response(name: str, response: Any) -> str:
    """`<|tool_response>response:NAME{…}<tool_response|>`."""
    if isinstance(response, Mapping):
        body = ",".join(f"{key}:{format_argument(value, escape_keys=False)}" for key, value in _sorted(response))
    else:
        body = "value:" + format_argument(response, escape_keys=False)
    return f"{TOOL_RESPONSE}response:{name}{{{body}}}<tool_response|>"


def strip_thinking(text: str) -> str:
    """A model message without its thought channels, trimmed."""
    kept = []
    for part in text.split("<channel|>"):
        kept.append(part.split("<|channel>")[0] if "<|channel>" in part else part)
    return "".join(kept).strip()


def format_argument(value: Any, escape_keys: bool = True) -> str:
    """A value in Gemma 4's notation: strings quoted with <|"|>, objects with sorted keys."""
    if isinstance(value, str):
        return QUOTE + value + QUOTE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        items = (
            (QUOTE + key + QUOTE if escape_keys else str(key)) + ":" + format_argument(item, escape_keys)
            for key, item in _sorted(value)
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_argument(item, escape_keys) for item in value) + "]"
    return str(value)


def declaration(tool: Tool) -> str:
    """A tool's declaration, as the system turn lists it."""
    function = _get(tool, "function") or {}
    name, description = _field(function, "name"), _field(function, "description")
    out = [f"declaration:{name}{{description:{QUOTE}{description}{QUOTE}"]
    params = _get(function, "parameters")
    if params:
        out.append(",parameters:{")
        if _get(params, "properties"):
            out.append("properties:{" + _parameters(_get(params, "properties")) + "},")
        if required := _get(params, "required"):
            out.append("required:[" + ",".join(QUOTE + str(item) + QUOTE for item in required) + "],")
        if _get(params, "type"):
            out.append(f"type:{QUOTE}{_upper(_get(params, 'type'))}{QUOTE}}}")
    if isinstance(function, Mapping) and "response" in function:
        response = function["response"]
        out.append(",response:{")
        if _get(response, "description"):
            out.append(f"description:{QUOTE}{_field(response, 'description')}{QUOTE},")
        if _upper(_get(response, "type")) == "OBJECT":
            out.append(f"type:{QUOTE}{_upper(_get(response, 'type'))}{QUOTE}}}")
    out.append("}")
    return "".join(out)


def _parameters(properties: Any) -> str:
    """Each property that is not a schema keyword: `name:{description…,type:<|"|>TYPE<|"|>}`."""
    out: list[str] = []
    for key, value in _sorted(properties):
        if key in _STANDARD_KEYS:
            continue
        fields: list[str] = []
        kind = _upper(_get(value, "type"))
        if _get(value, "description"):
            fields.append(f"description:{QUOTE}{_field(value, 'description')}{QUOTE}")
        if kind == "STRING":
            if _get(value, "enum"):
                fields.append("enum:" + format_argument(_get(value, "enum")))
        elif kind == "ARRAY":
            items = _get(value, "items")
            if isinstance(items, Mapping) and items:
                fields.append("items:{" + _items(items) + "}")
        if _get(value, "nullable"):
            fields.append("nullable:true")
        if kind == "OBJECT":
            nested = _get(value, "properties")
            if isinstance(nested, Mapping):
                fields.append("properties:{" + _parameters(nested) + "}")
            elif isinstance(value, Mapping):
                fields.append("properties:{" + _parameters(value) + "}")
            if required := _get(value, "required"):
                fields.append("required:[" + ",".join(QUOTE + str(item) + QUOTE for item in required) + "]")
        fields.append(f"type:{QUOTE}{kind}{QUOTE}}}")
        out.append(f"{key}:{{" + ",".join(fields))
    return ",".join(out)


def _items(items: Mapping[str, Any]) -> str:
    parts = []
    for key, value in _sorted(items):
        if value is None:
            continue
        if key == "properties":
            parts.append("properties:{" + (_parameters(value) if isinstance(value, Mapping) else "") + "}")
        elif key == "required":
            parts.append("required:[" + ",".join(QUOTE + str(item) + QUOTE for item in value) + "]")
        elif key == "type":
            kinds = value.upper() if isinstance(value, str) else [_upper(v) for v in value]
            parts.append("type:" + format_argument(kinds))
        else:
            parts.append(f"{key}:" + format_argument(value))
    return ",".join(parts)


def _sorted(mapping: Any) -> list[tuple[Any, Any]]:
    """Items by key, case folded, as Jinja's dictsort orders them."""
    if not isinstance(mapping, Mapping):
        return []
    return sorted(mapping.items(), key=lambda item: item[0].lower() if isinstance(item[0], str) else item[0])


def _get(value: Any, key: str) -> Any:
    """`value[key]` as the template reads it: nothing when it is missing or `value` is no mapping."""
    return value.get(key) if isinstance(value, Mapping) else None


def _field(value: Any, key: str) -> str:
    """`{{ value[key] }}`: nothing when missing, else the value as text (None as "None", as Jinja writes it)."""
    return str(value[key]) if isinstance(value, Mapping) and key in value else ""


def _upper(value: Any) -> str:
    return "" if value is None else str(value).upper()
