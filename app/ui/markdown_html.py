"""Markdown to the HTML subset that QTextDocument renders.

Fenced code blocks become a boxed table with a language label and a
`copy:N` link; the delegate resolves that link to `code_blocks[N]`. Long code
lines either stay on one line (the message then scrolls sideways) or wrap, as
the user chooses. Raw HTML in model output is escaped, never rendered.
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
_GRID_TABLE = '<table border="1" cellspacing="0" cellpadding="4" style="border-collapse:collapse;">'
_MONO = "'DejaVu Sans Mono', 'Menlo', 'Consolas', monospace"


@dataclass(frozen=True)
class _Theme:
    code_bg: str
    code_header_bg: str
    code_label: str
    inline_code_bg: str
    formatter: HtmlFormatter


_LIGHT = _Theme("#f3f4f6", "#e5e7eb", "#4b5563", "#eef0f3", HtmlFormatter(nowrap=True, noclasses=True, style="default"))
_DARK = _Theme("#1f2430", "#2b3240", "#aab2c0", "#2b3240", HtmlFormatter(nowrap=True, noclasses=True, style="monokai"))


@dataclass
class RenderedMarkdown:
    """HTML for a message plus the raw text of each code block."""

    html: str
    code_blocks: list[str] = field(default_factory=list)


def _code_html(code: str, language: str, formatter: HtmlFormatter) -> str:
    try:
        lexer = get_lexer_by_name(language) if language else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return html.escape(code)
    return str(highlight(code, lexer, formatter)).rstrip("\n")


def _fence(_renderer: Any, tokens: list[Any], idx: int, _options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    language = token.info.strip().split(" ")[0] if token.info else ""
    code = token.content.rstrip("\n")
    blocks: list[str] = env["code_blocks"]
    theme: _Theme = env["theme"]
    white_space = "pre-wrap" if env["wrap_code"] else "pre"
    n = len(blocks)
    blocks.append(code)
    label = html.escape(language or "code")
    return (
        f'<table width="100%" cellspacing="0" cellpadding="6" border="0" bgcolor="{theme.code_bg}" '
        'style="margin-top:4px; margin-bottom:8px;">'
        f'<tr><td bgcolor="{theme.code_header_bg}"><span style="color:{theme.code_label}; font-size:small;">'
        f'{label}</span>&nbsp;&nbsp;&nbsp;<a href="{COPY_SCHEME}:{n}" style="font-size:small;">Copy</a></td></tr>'
        f'<tr><td><pre style="font-family:{_MONO}; margin:0; white-space:{white_space};">'
        f"{_code_html(code, language, theme.formatter)}</pre></td></tr></table>"
    )


_PARSER = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_PARSER.enable(["table", "strikethrough"])
_PARSER.add_render_rule("fence", _fence)
_PARSER.add_render_rule("code_block", _fence)


def render_markdown(text: str, dark: bool = False, wrap_code: bool = False) -> RenderedMarkdown:
    """Render one message's Markdown, with colours for a light or dark palette; code lines wrap when asked."""
    theme = _DARK if dark else _LIGHT
    blocks: list[str] = []
    body = _PARSER.render(text, {"code_blocks": blocks, "theme": theme, "wrap_code": wrap_code})
    body = body.replace("<code>", f'<code style="font-family:{_MONO}; background-color:{theme.inline_code_bg};">')
    # Markdown tables (code blocks carry their own attributes): Qt draws no grid unless asked.
    body = body.replace("<table>", _GRID_TABLE)
    return RenderedMarkdown(body, blocks)
