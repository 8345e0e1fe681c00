"""Markdown to the HTML subset that QTextDocument renders.

Fenced code blocks become a boxed table with a language label and a
`copy:N` link; the delegate resolves that link to `code_blocks[N]`. Raw HTML
in model output is escaped, never rendered.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

COPY_SCHEME = "copy"
_FORMATTER = HtmlFormatter(nowrap=True, noclasses=True, style="default")
_MONO = "'DejaVu Sans Mono', 'Menlo', 'Consolas', monospace"


@dataclass
class RenderedMarkdown:
    """HTML for a message plus the raw text of each code block."""

    html: str
    code_blocks: list[str] = field(default_factory=list)


def _code_html(code: str, language: str) -> str:
    try:
        lexer = get_lexer_by_name(language) if language else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return html.escape(code)
    return str(highlight(code, lexer, _FORMATTER)).rstrip("\n")


def _fence(_renderer: Any, tokens: list[Any], idx: int, _options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    language = token.info.strip().split(" ")[0] if token.info else ""
    code = token.content.rstrip("\n")
    blocks: list[str] = env["code_blocks"]
    n = len(blocks)
    blocks.append(code)
    label = html.escape(language or "code")
    return (
        '<table width="100%" cellspacing="0" cellpadding="6" border="0" bgcolor="#f3f4f6" '
        'style="margin-top:4px; margin-bottom:8px;">'
        f'<tr><td bgcolor="#e5e7eb"><span style="color:#4b5563; font-size:small;">{label}</span>'
        f'&nbsp;&nbsp;&nbsp;<a href="{COPY_SCHEME}:{n}" style="font-size:small;">Copy</a></td></tr>'
        f'<tr><td><pre style="font-family:{_MONO}; margin:0;">{_code_html(code, language)}</pre></td></tr>'
        "</table>"
    )


_PARSER = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_PARSER.enable(["table", "strikethrough"])
_PARSER.add_render_rule("fence", _fence)
_PARSER.add_render_rule("code_block", _fence)


def render_markdown(text: str) -> RenderedMarkdown:
    """Render one message's Markdown."""
    blocks: list[str] = []
    body = _PARSER.render(text, {"code_blocks": blocks})
    body = body.replace("<code>", f'<code style="font-family:{_MONO}; background-color:#eef0f3;">')
    return RenderedMarkdown(body, blocks)
