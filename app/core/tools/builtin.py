"""Tern's own tools: search the documents, search the history, a calculator, the clock, read a file."""

from __future__ import annotations

import datetime as dt
from typing import Any

from app.core.docs.ingest import ingest
from app.core.tools.base import ToolContext, ToolError, ToolSpec, cap
from app.core.tools.calculator import CalculatorError, evaluate

SEARCH_BUDGET_TOKENS = 1500  # passages one document search gives back
HISTORY_HITS = 8
FILE_TIME_LIMIT_S = 15.0


def _text_argument(arguments: dict[str, Any], name: str) -> str:
    value = arguments.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"Give '{name}' as text.")
    return value.strip()


def _search_documents(arguments: dict[str, Any], context: ToolContext) -> str:
    query = _text_argument(arguments, "query")
    if context.store is None or context.conversation_id is None:
        return "No documents are attached to this conversation."
    grounding = context.store.ground(context.conversation_id, query, SEARCH_BUDGET_TOKENS)
    if grounding is None or not grounding.sources:
        return "Nothing in the attached documents matches."
    return "\n\n".join(f"[{s.number}] {s.name}{_where(s.page, s.heading)}\n{s.text}" for s in grounding.sources)


def _where(page: int | None, heading: str | None) -> str:
    return (f", page {page}" if page else "") + (f", {heading}" if heading else "")


def _search_history(arguments: dict[str, Any], context: ToolContext) -> str:
    query = _text_argument(arguments, "query")
    if context.store is None:
        return "The history is off."
    hits = context.store.search_history(query, HISTORY_HITS)
    if not hits:
        return "No earlier conversation matches."
    return "\n".join(f"- {hit.title}: {hit.snippet}" for hit in hits)


def _calculate(arguments: dict[str, Any], _context: ToolContext) -> str:
    expression = _text_argument(arguments, "expression")
    try:
        return str(evaluate(expression))
    except CalculatorError as exc:
        raise ToolError(str(exc)) from None


def _now(_arguments: dict[str, Any], _context: ToolContext) -> str:
    now = dt.datetime.now().astimezone()
    zone = now.tzname() or "local time"
    offset = now.strftime("%z")
    return f"{now:%A %d %B %Y}, {now:%H:%M}, time zone {zone} (UTC{offset[:3]}:{offset[3:]})"


def _read_file(arguments: dict[str, Any], context: ToolContext) -> str:
    if context.pick_file is None:
        raise ToolError("Files can only be read in the Tern window.")
    purpose = str(arguments.get("purpose") or "").strip()
    path = context.pick_file(purpose)
    if path is None:
        return "The user chose no file."
    read = ingest(path, time_limit_s=FILE_TIME_LIMIT_S, cancel=context.cancel)  # a sandboxed child, as documents
    text = "\n\n".join(chunk.text for chunk in read.chunks)
    return cap(f"{path.name}:\n{text}" if text.strip() else f"{path.name} holds no text.")


SEARCH_DOCUMENTS = ToolSpec(
    "search_documents",
    "Search documents",
    "Search the documents attached to this conversation. Returns numbered passages with their file and page.",
    {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "What to look for"}},
        "required": ["query"],
    },
    _search_documents,
)
SEARCH_HISTORY = ToolSpec(
    "search_history",
    "Search history",
    "Search the user's earlier conversations with you. Returns matching titles and excerpts.",
    {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "Words to look for"}},
        "required": ["query"],
    },
    _search_history,
)
CALCULATOR = ToolSpec(
    "calculate",
    "Calculator",
    "Evaluate an arithmetic expression exactly, e.g. 17.5 * 12 / 100 or sqrt(2) ** 3.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "The expression"}},
        "required": ["expression"],
    },
    _calculate,
)
CLOCK = ToolSpec(
    "current_time",
    "Date and time",
    "The current date, time and time zone on the user's computer.",
    {"type": "object", "properties": {}},
    _now,
)
READ_FILE = ToolSpec(
    "read_file",
    "Read a file",
    "Ask the user to choose a file, and read its text (PDF, Word, HTML, Markdown, text or code).",
    {"type": "object", "properties": {"purpose": {"type": "string", "description": "Why, shown to the user"}}},
    _read_file,
    asks_first=True,
)
BUILTIN = (SEARCH_DOCUMENTS, SEARCH_HISTORY, CALCULATOR, CLOCK, READ_FILE)
