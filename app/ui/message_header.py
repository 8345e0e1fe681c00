"""What goes above an answer's text: its thought, collapsed, and a compact card for each tool call.

Links here are actions the conversation view carries out: `thinking:toggle`
expands or collapses the thought, `tool:ID` one tool card.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QUrl
from PySide6.QtGui import QImage, QTextDocument

from app.core.tools.base import ToolCard
from app.ui.chat_model import ChatItem

IMAGE_SCHEME = "image"  # image:KEY opens a question's image larger
THUMB_SCHEME = "thumb"  # thumb:KEY is the image's thumbnail, a resource of the message's document
THUMB_SIDE = 160  # px, the longest side of a thumbnail in a sent message
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
    parts = [_images(item)] if item.images else []
    if item.thinking:
        parts.append(_thinking(item, muted, panel))
    for card in item.tools:
        parts.append(_card(card, card.id in item.tools_shown, muted, panel))
    return "".join(parts)


def add_thumbnails(doc: QTextDocument, item: ChatItem) -> None:
    """Give `doc` the thumbnails its header shows, from memory (the history or the image reader made them)."""
    for image in item.images:
        doc.addResource(
            QTextDocument.ResourceType.ImageResource,
            QUrl(f"{THUMB_SCHEME}:{image.key}"),
            QImage.fromData(image.thumbnail),
        )


def _images(item: ChatItem) -> str:
    """A question's images, as thumbnails that open the image."""
    shown = []
    for image in item.images:
        scale = min(1.0, THUMB_SIDE / max(image.width, image.height, 1))
        width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
        title = html.escape(image.name or "image", quote=True)
        shown.append(
            f'<a href="{IMAGE_SCHEME}:{image.key}"><img src="{THUMB_SCHEME}:{image.key}" width="{width}" '
            f'height="{height}" alt="{title}" title="{title}"></a> '
        )
    return f"<p>{''.join(shown)}</p>"


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
