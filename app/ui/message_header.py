"""What goes above an answer's text: its thought, collapsed, and a compact card for each tool call.

Links here are actions the conversation view carries out: `thinking:toggle`
expands or collapses the thought, `tool:ID` one tool card.
"""

from __future__ import annotations

import html

from app.core.tools.base import ToolCard
from app.ui.chat_model import ChatItem

THINKING_SCHEME = "thinking"
TOOL_SCHEME = "tool"
_ONE_LINE = 80  # characters of arguments or result shown on a collapsed card
_STATUS = {
    "asking": "waiting for your answer",
    "running": "running…",
    "refused": "not allowed",
    "failed": "failed",
    "timed out": "took too long",
    "unknown": "no such tool",
    "malformed": "unreadable call",
}


def header_html(item: ChatItem, dark: bool) -> str:
    """The thought section and the tool cards, as HTML ("" when there are none)."""
    muted = "#9aa3b2" if dark else "#6b7280"
    panel = "#1f2430" if dark else "#f3f4f6"
    parts = []
    if item.thinking:
        parts.append(_thinking(item, muted, panel))
    for card in item.tools:
        parts.append(_card(card, card.id in item.tools_shown, muted, panel))
    return "".join(parts)


def _thinking(item: ChatItem, muted: str, panel: str) -> str:
    arrow = "▾" if item.thinking_shown else "▸"
    still = item.streaming and not item.text and not item.thinking_ms
    title = "Thinking…" if still else f"Thought for {_seconds(item.thinking_ms)}" if item.thinking_ms else "Thought"
    head = (
        f'<p style="color:{muted}; font-size:small; margin-bottom:2px;">'
        f'<a style="text-decoration:none; color:{muted};" href="{THINKING_SCHEME}:toggle">{arrow} {title}</a></p>'
    )
    if not item.thinking_shown:
        return head
    body = html.escape(item.thinking.strip()).replace("\n", "<br>")
    return head + (
        f'<table width="100%" cellpadding="6" style="background:{panel}; margin-bottom:6px;"><tr>'
        f'<td style="color:{muted}; font-size:small;"><i>{body}</i></td></tr></table>'
    )


def _card(card: ToolCard, open_: bool, muted: str, panel: str) -> str:
    arrow = "▾" if open_ else "▸"
    outcome = _STATUS.get(card.status) or _short(card.result)
    time = f" · {card.elapsed_ms:.0f} ms" if card.elapsed_ms else ""
    line = (
        f'<a style="text-decoration:none;" href="{TOOL_SCHEME}:{html.escape(card.id)}">{arrow} '
        f"<b>{html.escape(card.label)}</b></a> "
        f'<span style="color:{muted};">{html.escape(_short(card.arguments))} → {html.escape(outcome)}{time}</span>'
    )
    rows = [f'<tr><td style="font-size:small;">{line}</td></tr>']
    if open_:
        arguments = card.arguments.replace('<|"|>', '"') or "(none)"
        for name, value in (("Tool", card.name), ("Arguments", arguments), ("Result", card.result)):
            text = html.escape(value).replace("\n", "<br>")
            rows.append(f'<tr><td style="font-size:small;"><b>{name}</b><br><tt>{text}</tt></td></tr>')
    return f'<table width="100%" cellpadding="4" style="background:{panel}; margin-bottom:6px;">{"".join(rows)}</table>'


def _short(text: str) -> str:
    text = " ".join(text.replace('<|"|>', '"').split())
    return text if len(text) <= _ONE_LINE else text[: _ONE_LINE - 1] + "…"


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms < 60_000 else f"{ms / 60_000:.0f} min"
