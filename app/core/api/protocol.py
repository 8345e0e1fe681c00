"""OpenAI's chat, completion and embedding requests, read strictly, and the answers in OpenAI's shapes.

A request body becomes a plain call (`ChatCall`, `CompletionCall`,
`EmbeddingCall`) or an `ApiError` that says in plain words what is wrong:
malformed JSON, a field of the wrong type or out of range, an unknown role,
an oversized field, or a parameter Tern does not support. Parameters that
change nothing here (`user`, `stream_options` without usage, `store`, …) are
accepted and ignored, as OpenAI's own server ignores unknown metadata; any
other unknown parameter is refused by name, so a client never believes an
option it sent was honoured when it was not.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from app.core.chat.message import ChatMessage, ToolCall
from app.core.chat.tool_calls import arguments_of
from app.core.engine.generation import GenerationStats, SamplingParams, StopReason
from app.core.images import ImageError, read_data_url

MAX_MESSAGES = 2048
MAX_TEXT_CHARS = 2_000_000  # one message, prompt or input: far more than any context window holds
MAX_STOPS = 4  # as OpenAI
MAX_STOP_CHARS = 200
MAX_EMBEDDING_INPUTS = 256
MAX_TOOLS = 128
MAX_IMAGES = 16  # per request: each one is hundreds of tokens of context
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_TOKENS_CAP = 1 << 20  # "no limit": the engine stops where the context is full

# Accepted and ignored: metadata, and options whose only value here is the default.
_IGNORED = {
    "user",
    "store",
    "metadata",
    "service_tier",
    "parallel_tool_calls",
    "reasoning_effort",
    "prediction",
    "modalities",
    "verbosity",
    "stream_options",
    "encoding_format",
    "dimensions",
    "suffix",
    "best_of",
}
_SAMPLING_KEYS = {
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "response_format",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
}
_CHAT_KEYS = {"model", "messages", "stream", *_SAMPLING_KEYS}
_COMPLETION_KEYS = {"model", "prompt", "stream", "echo", *_SAMPLING_KEYS}
_EMBEDDING_KEYS = {"model", "input"}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ApiError(Exception):
    """A request that gets an error answer in OpenAI's format."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        """The JSON answer."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass(frozen=True)
class ChatCall:
    """A chat completion request: the conversation, ending with the user's message."""

    model: str | None
    system: str
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    stream: bool = False
    include_usage: bool = False
    max_tokens_given: bool = False
    tools: tuple[dict[str, Any], ...] = ()  # declarations, as sent
    tool_choice: str = "auto"  # "auto", "none", "required" or a tool's name
    # Images of user messages, as sent (decoded bytes of their data: URLs): (message index, bytes, name).
    images: tuple[tuple[int, bytes, str], ...] = ()


@dataclass(frozen=True)
class CompletionCall:
    """A plain completion request: text to continue."""

    model: str | None
    prompt: str
    sampling: SamplingParams
    stream: bool = False
    include_usage: bool = False
    max_tokens_given: bool = False


@dataclass(frozen=True)
class EmbeddingCall:
    """An embedding request: one vector per input text."""

    model: str | None
    inputs: tuple[str, ...]
    base64: bool = False


def read_json(body: bytes) -> dict[str, Any]:
    """The request's JSON object."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise _invalid("The request body is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise _invalid(f"The request body is not valid JSON ({exc.msg} at line {exc.lineno}).") from None
    if not isinstance(data, dict):
        raise _invalid("The request body must be a JSON object.")
    return data


def _check_keys(data: dict[str, Any], known: set[str]) -> None:
    for key in data:
        if key not in known and key not in _IGNORED:
            raise _invalid(f"Unsupported parameter: '{key}'.", param=key, code="unsupported_parameter")


def _text(value: Any, param: str, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise _invalid(f"'{param}' must be a string.", param)
    if len(value) > MAX_TEXT_CHARS:
        raise _invalid(f"'{param}' is longer than {MAX_TEXT_CHARS:,} characters.", param)
    if not allow_empty and not value.strip():
        raise _invalid(f"'{param}' is empty.", param)
    return value


def _number(data: dict[str, Any], key: str, low: float, high: float, integer: bool = False) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise _invalid(f"'{key}' must be {'an integer' if integer else 'a number'}.", key)
    if not math.isfinite(value) or not low <= value <= high:
        raise _invalid(f"'{key}' must be between {low:g} and {high:g}; it is {value}.", key)
    return value


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid(f"'{key}' must be true or false.", key)
    return value


def _model(data: dict[str, Any]) -> str | None:
    value = data.get("model")
    if value is None:
        return None
    return _text(value, "model")[:500]


def _include_usage(data: dict[str, Any]) -> bool:
    options = data.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise _invalid("'stream_options' must be an object.", "stream_options")
    return bool(options.get("include_usage", False))


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _invalid("'stop' must be a string or a list of strings.", "stop")
    if len(stops) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stops):
        raise _invalid(f"'stop' holds at most {MAX_STOPS} strings of at most {MAX_STOP_CHARS} characters.", "stop")
    return tuple(s for s in stops if s)


def _sampling(data: dict[str, Any], defaults: SamplingParams) -> tuple[SamplingParams, bool]:
    """The sampling parameters asked for, on top of Tern's own settings; and whether a length limit was given."""
    n = _number(data, "n", 1, 128, integer=True)
    if n not in (None, 1):
        raise _invalid("Only one choice per request is supported ('n' must be 1).", "n", "unsupported_parameter")
    for key in ("logprobs", "top_logprobs", "echo"):
        if data.get(key) not in (None, False, 0):
            raise _invalid(f"'{key}' is not supported.", key, "unsupported_parameter")
    if data.get("logit_bias"):
        raise _invalid("'logit_bias' is not supported.", "logit_bias", "unsupported_parameter")
    fmt = data.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise _invalid(
            "'response_format' other than text (JSON mode, JSON schema) is not supported.",
            "response_format",
            "unsupported_parameter",
        )
    if data.get("functions") or data.get("function_call"):
        raise _invalid("'functions' is not supported; use 'tools'.", "functions", "unsupported_parameter")
    limit_a = _number(data, "max_tokens", 1, MAX_TOKENS_CAP, integer=True)
    limit_b = _number(data, "max_completion_tokens", 1, MAX_TOKENS_CAP, integer=True)
    limit = limit_b if limit_b is not None else limit_a
    values: dict[str, Any] = {
        "temperature": _number(data, "temperature", 0.0, 2.0),
        "top_p": _number(data, "top_p", 0.0, 1.0),
        "top_k": _number(data, "top_k", 0, 100_000, integer=True),
        "min_p": _number(data, "min_p", 0.0, 1.0),
        "repeat_penalty": _number(data, "repeat_penalty", 0.0, 10.0),
        "presence_penalty": _number(data, "presence_penalty", -2.0, 2.0),
        "frequency_penalty": _number(data, "frequency_penalty", -2.0, 2.0),
        "seed": _number(data, "seed", -(1 << 63), (1 << 64) - 1, integer=True),
    }
    chosen = {k: v for k, v in values.items() if v is not None}
    if "seed" in chosen:
        chosen["seed"] = int(chosen["seed"]) & 0xFFFFFFFF  # llama.cpp's seed is 32 bits
    chosen["max_tokens"] = int(limit) if limit is not None else MAX_TOKENS_CAP
    chosen["stop"] = _stops(data.get("stop"))
    return replace(defaults, **chosen), limit is not None


def _content(value: Any, param: str, images: list[bytes] | None = None) -> str:
    """A message's text: a string, or a list of text parts; with `images`, image parts are taken there."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _text(value, param)
    if not isinstance(value, list):
        raise _invalid(f"'{param}' must be a string or a list of content parts.", param)
    parts = []
    for i, part in enumerate(value):
        if not isinstance(part, dict):
            raise _invalid(f"'{param}[{i}]' must be an object.", param)
        kind = part.get("type")
        if kind == "text":
            parts.append(_text(part.get("text"), f"{param}[{i}].text"))
        elif kind in ("image_url", "input_image") and images is not None:
            images.append(_image(part, f"{param}[{i}]"))
        elif kind in ("image_url", "input_image", "input_audio", "file"):
            raise _invalid(f"'{param}[{i}]' is {kind}: only text is supported here.", param, "unsupported_content")
        else:
            raise _invalid(f"'{param}[{i}]' has an unknown type {kind!r}.", param)
    text = "\n".join(parts)
    if len(text) > MAX_TEXT_CHARS:
        raise _invalid(f"'{param}' is longer than {MAX_TEXT_CHARS:,} characters.", param)
    return text


def _image(part: dict[str, Any], param: str) -> bytes:
    """An image part's bytes, from its data: URL (OpenAI's image_url, or the Responses API's input_image).

    Tern never fetches an image: a web or file URL is refused with a sentence saying so.
    """
    ref = part.get("image_url")
    url = ref.get("url") if isinstance(ref, dict) else ref
    if not isinstance(url, str):
        raise _invalid(f"'{param}.image_url' must hold a 'url' string.", param)
    try:
        data, _mime = read_data_url(url)
    except ImageError as exc:
        raise _invalid(f"'{param}': {exc}", param, "unsupported_content") from None
    return data


def parse_chat(data: dict[str, Any], defaults: SamplingParams) -> ChatCall:
    """A chat completion request (system and developer messages become the system prompt)."""
    _check_keys(data, _CHAT_KEYS)
    raw = data.get("messages")
    if not isinstance(raw, list) or not raw:
        raise _invalid("'messages' must be a non-empty list.", "messages")
    if len(raw) > MAX_MESSAGES:
        raise _invalid(f"'messages' holds at most {MAX_MESSAGES} messages.", "messages")
    system: list[str] = []
    messages: list[ChatMessage] = []
    images: list[tuple[int, bytes, str]] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _invalid(f"'{where}' must be an object.", "messages")
        role = m.get("role")
        if role == "function" or m.get("function_call"):
            raise _invalid(f"'{where}': 'function' messages are not supported; use tool messages.", "messages")
        if role == "tool":
            content = _content(m.get("content"), f"{where}.content")
            call_id = m.get("tool_call_id") or ""
            name = m.get("name") or ""
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise _invalid(f"'{where}.tool_call_id' and '.name' must be strings.", "messages")
            messages.append(ChatMessage("tool", content, tool_call_id=call_id, name=name))
            continue
        if role not in _ROLES:
            raise _invalid(
                f"'{where}.role' must be system, developer, user, assistant or tool; it is {role!r}.", "messages"
            )
        text = "" if _ROLES[role] == "user" else _content(m.get("content"), f"{where}.content")
        if _ROLES[role] == "system":
            if messages:
                raise _invalid(f"'{where}': system messages must come before the conversation.", "messages")
            system.append(text)
        elif role == "assistant":
            thinking = m.get("reasoning_content") or m.get("reasoning") or ""
            calls = _calls(m.get("tool_calls"), where)
            messages.append(ChatMessage("assistant", text, thinking=_text(thinking, where), tool_calls=calls))
        else:
            sent: list[bytes] = []
            text = _content(m.get("content"), f"{where}.content", sent)
            if len(images) + len(sent) > MAX_IMAGES:
                raise _invalid(f"A request holds at most {MAX_IMAGES} images.", "messages", "unsupported_content")
            images += [(len(messages), data, f"image {len(images) + n + 1}") for n, data in enumerate(sent)]
            messages.append(ChatMessage("user", text))
    if not messages or messages[-1].role not in ("user", "tool"):
        raise _invalid("The last message must be the user's, or a tool's result.", "messages")
    sampling, given = _sampling(data, defaults)
    tools, choice = _tools(data)
    return ChatCall(
        _model(data),
        "\n\n".join(s for s in system if s.strip()),
        tuple(messages),
        sampling,
        _flag(data, "stream"),
        _include_usage(data),
        given,
        tools,
        choice,
        tuple(images),
    )


def _tools(data: dict[str, Any]) -> tuple[tuple[dict[str, Any], ...], str]:
    """The declared tools (checked: each a function with a name) and the tool choice."""
    raw = data.get("tools")
    if raw is None:
        raw = []
    if not isinstance(raw, list) or len(raw) > MAX_TOOLS:
        raise _invalid(f"'tools' must be a list of at most {MAX_TOOLS} tools.", "tools")
    tools = []
    for i, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            raise _invalid(f'\'tools[{i}]\' must be {{"type": "function", "function": {{…}}}}.', "tools")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise _invalid(f"'tools[{i}].function.name' must be 1-64 letters, digits, _ . or -.", "tools")
        for key, kind in (("description", str), ("parameters", dict)):
            if function.get(key) is not None and not isinstance(function.get(key), kind):
                raise _invalid(f"'tools[{i}].function.{key}' has the wrong type.", "tools")
        tools.append(tool)
    choice = data.get("tool_choice")
    names = {t["function"]["name"] for t in tools}
    if choice is None or choice in ("auto", "none", "required"):
        chosen = choice or "auto"
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        chosen = str(choice["function"].get("name", ""))
        if chosen not in names:
            raise _invalid(f"'tool_choice' names {chosen!r}, which is not among 'tools'.", "tool_choice")
    else:
        raise _invalid('\'tool_choice\' must be auto, none, required or {"type": "function", …}.', "tool_choice")
    if chosen not in ("auto", "none") and not tools:
        raise _invalid("'tool_choice' requires a call, but no 'tools' were given.", "tool_choice")
    return tuple(tools), chosen


def _calls(raw: Any, where: str) -> tuple[ToolCall, ...]:
    """An assistant message's tool calls, their JSON arguments read."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _invalid(f"'{where}.tool_calls' must be a list.", "messages")
    calls = []
    for i, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _invalid(f"'{where}.tool_calls[{i}]' must have a function with a name.", "messages")
        arguments = function.get("arguments") or "{}"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                raise _invalid(f"'{where}.tool_calls[{i}].function.arguments' is not valid JSON.", "messages") from None
        if not isinstance(arguments, dict):
            raise _invalid(f"'{where}.tool_calls[{i}].function.arguments' must be a JSON object.", "messages")
        call_id = call.get("id") or ""
        calls.append(ToolCall(function["name"], arguments, call_id if isinstance(call_id, str) else ""))
    return tuple(calls)


def parse_completion(data: dict[str, Any], defaults: SamplingParams) -> CompletionCall:
    """A plain completion request (one prompt string)."""
    _check_keys(data, _COMPLETION_KEYS)
    prompt = data.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise _invalid("'prompt' must be one string (a batch of prompts is not supported).", "prompt")
        prompt = prompt[0]
    sampling, given = _sampling(data, defaults)
    # Code completion keeps the text exactly as generated, leading spaces included.
    sampling = replace(sampling, strip=False)
    return CompletionCall(
        _model(data), _text(prompt, "prompt"), sampling, _flag(data, "stream"), _include_usage(data), given
    )


def parse_embedding(data: dict[str, Any]) -> EmbeddingCall:
    """An embedding request: a string or a list of strings."""
    _check_keys(data, _EMBEDDING_KEYS)
    raw = data.get("input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
        raise _invalid("'input' must be a string or a non-empty list of strings (token arrays are not supported).")
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise _invalid(f"'input' holds at most {MAX_EMBEDDING_INPUTS} texts.", "input")
    fmt = data.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise _invalid("'encoding_format' must be float or base64.", "encoding_format")
    return EmbeddingCall(_model(data), tuple(_text(t, "input") for t in inputs), fmt == "base64")


# Answers
def new_id(prefix: str) -> str:
    """A response id."""
    return f"{prefix}-{secrets.token_hex(12)}"


def finish_reason(stats: GenerationStats, calls: tuple[ToolCall, ...] = ()) -> str:
    """OpenAI's name for why the answer ended."""
    if calls:
        return "tool_calls"
    return "stop" if stats.stop_reason == StopReason.END_OF_TURN else "length"


def tool_calls(calls: tuple[ToolCall, ...], streamed: bool = False) -> list[dict[str, Any]]:
    """Calls in OpenAI's shape, their arguments as a JSON string (with each one's index when streamed)."""
    out = []
    for i, call in enumerate(calls):
        arguments = json.dumps(arguments_of(call) or {}, ensure_ascii=False)
        entry: dict[str, Any] = {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": arguments},
        }
        out.append({"index": i, **entry} if streamed else entry)
    return out


def usage(stats: GenerationStats) -> dict[str, Any]:
    """Token counts, with how many of the prompt's came from the cache."""
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.prompt_tokens - stats.prompt_evaluated},
    }


def chat_chunk(rid: str, model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """One streamed piece of a chat answer."""
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def chat_answer(
    rid: str, model: str, text: str, stats: GenerationStats, calls: tuple[ToolCall, ...] = ()
) -> dict[str, Any]:
    """A whole chat answer (with the tool calls it made)."""
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = tool_calls(calls)
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(stats, calls),
            }
        ],
        "usage": usage(stats),
    }


def completion_chunk(rid: str, model: str, text: str, finish: str | None = None) -> dict[str, Any]:
    """One streamed piece of a plain completion."""
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
    }


def completion_answer(rid: str, model: str, text: str, stats: GenerationStats) -> dict[str, Any]:
    """A whole plain completion."""
    answer = completion_chunk(rid, model, text, finish_reason(stats))
    answer["usage"] = usage(stats)
    return answer


def usage_chunk(rid: str, model: str, stats: GenerationStats, chat: bool) -> dict[str, Any]:
    """The last streamed chunk when usage was asked for: no choices, only the counts."""
    return {
        "id": rid,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage(stats),
    }


def model_entry(model_id: str, created: int) -> dict[str, Any]:
    """One entry of /v1/models."""
    return {"id": model_id, "object": "model", "created": created, "owned_by": "tern"}
