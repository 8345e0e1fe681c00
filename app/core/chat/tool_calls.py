"""Reading Gemma 4's tool calls: `call:NAME{key:value,…}`, strings quoted as `<|"|>…<|"|>`.

Values are strings, numbers, true/false/null, arrays `[…]` and objects `{key:value,…}`
(keys unquoted, as the model writes them; a quoted key is read too). The parser is
tolerant in what it accepts (spaces, a trailing comma, `None`) and strict in what it
returns: anything it cannot read whole is `None`, and the caller shows the model's
text as it is. It never raises on any input, and it gives up on input nested deeper
than MAX_DEPTH or longer than MAX_CALL_CHARS rather than work on it.
"""

from __future__ import annotations

import re
from typing import Any

from app.core.chat.gemma4 import QUOTE
from app.core.chat.message import ToolCall

MAX_DEPTH = 32
MAX_CALL_CHARS = 256_000
_NAME = re.compile(r"\s*call:([\w.\-]+)\s*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_WORDS = {"true": True, "false": False, "null": None, "None": None, "True": True, "False": False}
_SPACE = re.compile(r"\s*")


class _MalformedError(Exception):
    pass


def parse_call(text: str, call_id: str = "") -> ToolCall | None:
    """`call:NAME{…}` (the text between `<|tool_call>` and `<tool_call|>`) as a call, or None when malformed.

    The call keeps its arguments' own text, so the prompt can give the model back exactly what it wrote.
    """
    if len(text) > MAX_CALL_CHARS:
        return None
    named = _NAME.match(text)
    if named is None:
        return None
    body_start = named.end()
    arguments = parse_arguments(text[body_start:])
    if arguments is None:
        return None
    inner = text[body_start:].strip()[1:-1]
    return ToolCall(named.group(1), inner, call_id)


def parse_arguments(text: str) -> dict[str, Any] | None:
    """`{key:value,…}` as a dict, or None when it is not exactly one well-formed object."""
    if len(text) > MAX_CALL_CHARS:
        return None
    try:
        reader = _Reader(text)
        reader.space()
        value = reader.object(0)
        reader.space()
        if reader.pos != len(text):
            return None
        return value
    except (_MalformedError, RecursionError):
        return None


def arguments_of(call: ToolCall) -> dict[str, Any] | None:
    """A call's arguments as a dict (None when its text does not read)."""
    if isinstance(call.arguments, str):
        return parse_arguments("{" + call.arguments + "}")
    return dict(call.arguments)


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None  # \s* always matches
        self.pos = match.end()

    def expect(self, literal: str) -> None:
        if not self.text.startswith(literal, self.pos):
            raise _MalformedError
        self.pos += len(literal)

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _MalformedError
        text, pos = self.text, self.pos
        if text.startswith(QUOTE, pos):
            return self.string()
        if text.startswith("{", pos):
            return self.object(depth + 1)
        if text.startswith("[", pos):
            return self.array(depth + 1)
        number = _NUMBER.match(text, pos)
        if number:
            self.pos = number.end()
            raw = number.group()
            return float(raw) if any(c in raw for c in ".eE") else int(raw)
        for word, meaning in _WORDS.items():
            if text.startswith(word, pos):
                self.pos += len(word)
                return meaning
        raise _MalformedError

    def string(self) -> str:
        self.expect(QUOTE)
        end = self.text.find(QUOTE, self.pos)
        if end < 0:
            raise _MalformedError
        value = self.text[self.pos : end]
        self.pos = end + len(QUOTE)
        return value

    def key(self) -> str:
        if self.text.startswith(QUOTE, self.pos):
            return self.string()
        end = self.pos
        while end < len(self.text) and self.text[end] not in ":}{[],":
            end += 1
        key = self.text[self.pos : end].strip()
        if not key or QUOTE in key:
            raise _MalformedError
        self.pos = end
        return key

    def object(self, depth: int) -> dict[str, Any]:
        self.expect("{")
        out: dict[str, Any] = {}
        self.space()
        while not self.text.startswith("}", self.pos):
            key = self.key()
            self.space()
            self.expect(":")
            self.space()
            out[key] = self.value(depth)
            self.space()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                self.space()
            elif not self.text.startswith("}", self.pos):
                raise _MalformedError
        self.pos += 1
        return out

    def array(self, depth: int) -> list[Any]:
        self.expect("[")
        out: list[Any] = []
        self.space()
        while not self.text.startswith("]", self.pos):
            out.append(self.value(depth))
            self.space()
            if self.text.startswith(",", self.pos):
                self.pos += 1
                self.space()
            elif not self.text.startswith("]", self.pos):
                raise _MalformedError
        self.pos += 1
        return out
