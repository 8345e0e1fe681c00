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
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from app.core.chat.message import ChatMessage
from app.core.engine.generation import GenerationStats, SamplingParams, StopReason

MAX_MESSAGES = 2048
MAX_TEXT_CHARS = 2_000_000  # one message, prompt or input: far more than any context window holds
MAX_STOPS = 4  # as OpenAI
MAX_STOP_CHARS = 200
MAX_EMBEDDING_INPUTS = 256
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
        raise _invalid("'functions' is not supported.", "functions", "unsupported_parameter")
    choice = data.get("tool_choice")
    if choice not in (None, "auto", "none") and data.get("tools"):
        raise _invalid(
            "This model's prompt format has no tool calling here, so a tool call cannot be required.",
            "tool_choice",
            "unsupported_parameter",
        )
    if data.get("tools") is not None and not isinstance(data.get("tools"), list):
        raise _invalid("'tools' must be a list.", "tools")
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


def _content(value: Any, param: str) -> str:
    """A message's text: a string, or a list of text parts."""
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
        elif kind in ("image_url", "input_image", "input_audio", "file"):
            raise _invalid(f"'{param}[{i}]' is {kind}: only text is supported.", param, "unsupported_content")
        else:
            raise _invalid(f"'{param}[{i}]' has an unknown type {kind!r}.", param)
    text = "\n".join(parts)
    if len(text) > MAX_TEXT_CHARS:
        raise _invalid(f"'{param}' is longer than {MAX_TEXT_CHARS:,} characters.", param)
    return text


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
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _invalid(f"'{where}' must be an object.", "messages")
        role = m.get("role")
        if role in ("tool", "function") or m.get("tool_calls") or m.get("function_call"):
            raise _invalid(
                f"'{where}' is a tool call or result: tool calling is not supported with this model's format.",
                "messages",
                "unsupported_parameter",
            )
        if role not in _ROLES:
            raise _invalid(f"'{where}.role' must be system, developer, user or assistant; it is {role!r}.", "messages")
        text = _content(m.get("content"), f"{where}.content")
        if _ROLES[role] == "system":
            if messages:
                raise _invalid(f"'{where}': system messages must come before the conversation.", "messages")
            system.append(text)
        else:
            messages.append(ChatMessage(_ROLES[role], text))  # type: ignore[arg-type]
    if not messages or messages[-1].role != "user":
        raise _invalid("The last message must be the user's.", "messages")
    sampling, given = _sampling(data, defaults)
    return ChatCall(
        _model(data),
        "\n\n".join(s for s in system if s.strip()),
        tuple(messages),
        sampling,
        _flag(data, "stream"),
        _include_usage(data),
        given,
    )


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


def finish_reason(stats: GenerationStats) -> str:
    """OpenAI's name for why the answer ended."""
    return "stop" if stats.stop_reason == StopReason.END_OF_TURN else "length"


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


def chat_answer(rid: str, model: str, text: str, stats: GenerationStats) -> dict[str, Any]:
    """A whole chat answer."""
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(stats),
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
