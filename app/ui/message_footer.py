"""What goes under a message's text: its sources, a note, the version switcher, the model and speed.

Links in this HTML are actions the conversation view carries out:
`source:N` opens source N, `version:±1` shows a neighbouring version, and
`show-sources:all` / `show-sources:cited` lists every source or only those
the answer cites.
"""

from __future__ import annotations

import html

from app.core.docs.grounding import Source
from app.core.engine.generation import GenerationStats, StopReason
from app.ui.chat_model import ChatItem

VERSION_SCHEME = "version"
SOURCE_SCHEME = "source"
SHOW_SOURCES_SCHEME = "show-sources"


def stats_line(stats: GenerationStats) -> str:
    """The footer under an answer: speed, latency, and how much of the prompt was read rather than cached."""
    parts = [f"{stats.completion_tokens} tokens"]
    if stats.decode_tok_s:
        parts.append(f"{stats.decode_tok_s:.1f} tok/s")
    parts.append(f"first token {stats.ttft_ms:.0f} ms")
    if stats.prompt_tokens:
        cached = stats.prompt_tokens - stats.prompt_evaluated
        parts.append(f"prompt {stats.prompt_tokens:,} tokens: {stats.prompt_evaluated:,} read, {cached:,} cached")
    if stats.stop_reason == StopReason.CANCELLED:
        parts.append("stopped")
    elif stats.stop_reason in (StopReason.MAX_TOKENS, StopReason.CONTEXT_FULL):
        parts.append("cut at the token limit" if stats.stop_reason == StopReason.MAX_TOKENS else "context full")
    return " · ".join(parts)


def version_switcher(position: int, count: int) -> str:
    """ "‹ 2/3 ›" with links to the neighbouring versions (HTML)."""
    style = "text-decoration:none; font-weight:bold;"
    prev = f'<a style="{style}" href="{VERSION_SCHEME}:-1">&nbsp;‹&nbsp;</a>' if position > 1 else "&nbsp;‹&nbsp;"
    nxt = f'<a style="{style}" href="{VERSION_SCHEME}:1">&nbsp;›&nbsp;</a>' if position < count else "&nbsp;›&nbsp;"
    return f"{prev}{position}/{count}{nxt}"


def cited_first(sources: tuple[Source, ...], cited: tuple[int, ...]) -> tuple[list[Source], list[Source]]:
    """The sources the answer cites, and the others it was given; all of them count as cited when it cites none."""
    numbers = set(cited) & {s.number for s in sources}
    if not numbers:
        return list(sources), []
    return [s for s in sources if s.number in numbers], [s for s in sources if s.number not in numbers]


def _source_rows(sources: list[Source]) -> str:
    return "<br>".join(
        f'[{s.number}] <a href="{SOURCE_SCHEME}:{s.number}">{html.escape(s.citation())}</a>' for s in sources
    )


def sources_html(sources: tuple[Source, ...], cited: tuple[int, ...], all_shown: bool) -> str:
    """The answer's sources: those it cites first, the rest one click away ("+4 more used")."""
    first, rest = cited_first(sources, cited)
    parts = [f"<b>Sources</b><br>{_source_rows(first)}"]
    if rest and all_shown:
        parts.append(f"<br><i>Also used</i><br>{_source_rows(rest)}")
        parts.append(f'<br><a href="{SHOW_SOURCES_SCHEME}:cited">Show cited sources only</a>')
    elif rest:
        parts.append(f'<br><a href="{SHOW_SOURCES_SCHEME}:all">+{len(rest)} more used</a>')
    return f'<p style="font-size:small;">{"".join(parts)}</p>'


def footer_html(item: ChatItem, dark: bool) -> str:
    """Everything under a message's text, as HTML: sources, a note, then versions, model and speed."""
    streaming = item.streaming
    footer = []
    if item.sources:
        footer.append(sources_html(item.sources, item.cited, item.all_sources_shown))
    if item.notice:
        colour = "#f0b35a" if dark else "#92400e"
        footer.append(f'<p style="color:{colour}; font-size:small;">{html.escape(item.notice)}</p>')
    muted = "#9aa3b2" if dark else "#6b7280"
    line = []
    position, count = item.version_position, len(item.versions)
    if count > 1 and position and not streaming:
        line.append(version_switcher(position, count))
    facts = [item.model] if item.model and item.role == "assistant" and not streaming else []
    if item.stats is not None and item.role == "assistant":
        facts.append(stats_line(item.stats))
    if facts:
        line.append(f'<span style="font-size:small;">{html.escape(" · ".join(facts))}</span>')
    if line:
        footer.append(f'<p style="color:{muted};">{"&nbsp;&nbsp;".join(line)}</p>')
    return "".join(footer)
