"""A llama.cpp grammar (GBNF) that makes Gemma 4 call one of the declared tools, well formed.

Used when a call is required (`tool_choice` "required" or a named function, through
the local API). The markers are Gemma 4's special tokens, matched by id (`<[id]>`),
so the call is written with the very tokens the model's own calls use. Arguments
follow each tool's JSON Schema: its required properties in the order Gemma 4 writes
them (sorted), strings quoted with <|"|>, an enum as its values, numbers, booleans;
nested objects and arrays are written empty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from app.core.chat.gemma4 import Markers, Tool

FREE_TEXT = r"[^<\x00-\x1f]{0,40}"  # a string without a schema: short, and never a marker


def call_grammar(tools: Sequence[Tool], markers: Markers, thinking: bool = False) -> str:
    """GBNF for one call of one of `tools` (after a thought, when the turn thinks).

    It ends at the call's closing marker: there llama.cpp allows only end-of-generation tokens, of
    which <|tool_response> is one (a grammar cannot name an end-of-generation token itself).
    """
    rules = [f'root ::= {"thought " if thinking else ""}<[{markers.call_open}]> "call:" call <[{markers.call_close}]>']
    if thinking:
        rules.append(f'thought ::= <[{markers.thought_open}]> "thought\\n" [^<]* <[{markers.thought_close}]>')
    alternatives = []
    for i, tool in enumerate(tools):
        function = tool.get("function", {}) if isinstance(tool, Mapping) else {}
        name = str(function.get("name", ""))
        if not name:
            continue
        alternatives.append(f"tool{i}")
        parameters = function.get("parameters") or {}
        properties = parameters.get("properties") or {} if isinstance(parameters, Mapping) else {}
        required = [str(k) for k in (parameters.get("required") or [])] if isinstance(parameters, Mapping) else []
        fields = [
            f"{_literal(key + ':')} {_value(properties.get(key) or {}, markers)}"
            for key in sorted(required, key=str.lower)
        ]
        body = ' "," '.join(fields) if fields else ""
        rules.append(f'tool{i} ::= {_literal(name + "{")} {body} "}}"')
    if not alternatives:
        raise ValueError("no tool to call")
    rules.insert(1, "call ::= " + " | ".join(alternatives))
    return "\n".join(rules) + "\n"


def _value(schema: Mapping[str, Any], markers: Markers) -> str:
    quote = f"<[{markers.quote}]>"
    kind = str(schema.get("type", "string")).lower() if isinstance(schema, Mapping) else "string"
    enum = schema.get("enum") if isinstance(schema, Mapping) else None
    if enum:
        options = " | ".join(
            f"{quote} {_literal(str(v))} {quote}" if isinstance(v, str) else _literal(json.dumps(v)) for v in enum
        )
        return f"({options})"
    if kind == "integer":
        return '("-"? [0-9]{1,9})'
    if kind == "number":
        return '("-"? [0-9]{1,9} ("." [0-9]{1,6})?)'
    if kind == "boolean":
        return '("true" | "false")'
    if kind == "object":
        return '"{}"'
    if kind == "array":
        return '"[]"'
    return f"{quote} {FREE_TEXT} {quote}"


def _literal(text: str) -> str:
    """A GBNF string literal."""
    escaped = re.sub(r'[\\"]', lambda m: "\\" + m.group(), text).replace("\n", "\\n")
    return f'"{escaped}"'
