"""Every Qt item model of the app passes Qt's model checks, filled with rows as the app fills them.

Each model is checked with Qt's own C++ tester (its failures are Qt warnings,
which fail the test) and with pytest-qt's Python one, and then changed the way
the app changes it, which both testers re-check as the signals arrive.
"""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QModelIndex, Qt
from pytestqt.modeltest import ModelTester

from app.core.docs.grounding import Source
from app.core.engine.generation import GenerationStats, StopReason
from app.core.store.conversation_store import HIGHLIGHT_END, HIGHLIGHT_START, ConversationSummary
from app.core.store.ref import Ref
from app.ui.chat_model import ChatItem, MessageListModel, MessageRole
from app.ui.sidebar import Kind, Row, SidebarModel, SidebarRole, group_of, snippet_html

DAY = 86_400
NOON = time.mktime((2026, 3, 14, 12, 0, 0, 0, 0, -1))  # fixed, so "Today" never straddles a midnight
TESTERS = pytest.mark.parametrize("force_py", [False, True], ids=["qt", "python"])


def _stats(tokens: int) -> GenerationStats:
    return GenerationStats(
        prompt_tokens=412,
        prompt_evaluated=37,
        completion_tokens=tokens,
        ttft_ms=180.5,
        decode_tok_s=41.2,
        total_ms=180.5 + tokens * 24.3,
        stop_reason=StopReason.END_OF_TURN,
    )


def _source(number: int, name: str, page: int | None) -> Source:
    return Source(
        number=number,
        document_id=number,
        chunk_id=100 + number,
        name=name,
        page=page,
        heading="Keepers" if page is None else None,
        line_start=12 if page is None else None,
        line_end=30 if page is None else None,
        text="The last keeper, Edda Lindqvist, left in 1989.",
    )


def _conversation_rows(now: float) -> list[Row]:
    """Headers and conversations, grouped the way the sidebar groups them."""
    conversations = [
        ConversationSummary(7, "Packing list for the Alps trip", now - 9 * DAY, now - 9 * DAY, True),
        ConversationSummary(6, "Regex for ISO dates", now - 3600, now - 600, False),
        ConversationSummary(5, "", now - 3000, now - 1200, False),  # untitled: shown as "New chat"
        ConversationSummary(4, "Lighthouse history notes", now - 2 * DAY, now - 2 * DAY, False),
        ConversationSummary(3, "Sourdough starter schedule", now - 40 * DAY, now - 40 * DAY, False),
    ]
    rows: list[Row] = []
    heading = ""
    for c in conversations:
        if (group := group_of(c, now)) != heading:
            rows.append(Row(Kind.HEADER, group))
            heading = group
        rows.append(Row(Kind.CONVERSATION, c.title or "New chat", c.id, pinned=c.pinned))
    return rows


def _hit_rows() -> list[Row]:
    marked = f"the first {HIGHLIGHT_START}lighthouse{HIGHLIGHT_END} was built"
    return [
        Row(Kind.HIT, "Lighthouse history notes", 4, 41, snippet_html(f"**Pharos**: {marked} <c. 280 BC>")),
        Row(Kind.HIT, "Lighthouse history notes", 4, None, "Title: " + snippet_html(marked)),
        Row(Kind.HIT, "New chat", 5, 52, snippet_html(f"# {marked}\nand kept until 1989")),
    ]


@TESTERS
def test_sidebar_model(qtmodeltester: ModelTester, force_py: bool) -> None:
    model = SidebarModel()
    model.set_rows(_conversation_rows(NOON))
    qtmodeltester.check(model, force_py=force_py)

    kinds = [model.index(r).data(SidebarRole.KIND) for r in range(model.rowCount())]
    assert kinds.count(Kind.HEADER) == 4 and kinds.count(Kind.CONVERSATION) == 5
    row = model.row_of(6)
    renamed: list[tuple[int, str]] = []
    model.renamed.connect(lambda cid, title: renamed.append((cid, title)))
    assert model.setData(model.index(row), "  Regex for ISO 8601 dates ")
    assert renamed == [(6, "Regex for ISO 8601 dates")]
    assert not model.setData(model.index(row), "   ")  # a blank title is refused
    assert model.index(0).flags() & Qt.ItemFlag.ItemIsEditable == Qt.ItemFlag.NoItemFlags  # a header

    model.set_rows(_hit_rows())  # typing a search
    assert model.index(1).data(SidebarRole.MESSAGE_ID) is None
    model.set_rows([])  # nothing matches
    assert model.rowCount() == 0 and not model.index(0).isValid()
    model.set_rows(_conversation_rows(NOON))  # the search box cleared
    assert model.rowCount(model.index(0)) == 0  # a flat list


@TESTERS
def test_message_list_model(qtmodeltester: ModelTester, force_py: bool) -> None:
    model = MessageListModel()
    question = ChatItem("user", "Who was the last keeper of Skerry Point?", store=Ref(11), saved_id=11)
    answer = ChatItem(
        "assistant",
        "Edda Lindqvist, who left in 1989 [1].",
        stats=_stats(14),
        model="gemma-3-270m-it",
        sources=(_source(1, "skerry-point.pdf", 2), _source(2, "notes.md", None)),
        store=Ref(12),
        saved_id=12,
        versions=(12, 15),
    )
    model.extend([ChatItem("system", "Answer briefly."), question, answer])
    qtmodeltester.check(model, force_py=force_py)

    assert model.index(2).data(MessageRole.VERSIONS) == (1, 2)
    assert len(model.index(2).data(MessageRole.SOURCES)) == 2
    # A new question, and its answer streamed in, as a turn does.
    model.append("user", "And when was the station built?")
    row = model.append("assistant", streaming=True)
    model.set_sources(row, (_source(1, "skerry-point.pdf", 1),), "notes.md is still being read.")
    for piece in ("It was built ", "in 1871, ", "from local granite [1]."):
        model.append_text(row, piece)
    model.finish(row, _stats(9))
    assert model.index(row).data(MessageRole.STREAMING) is False
    model.set_cited(row, (1,))  # the answer cites source 1: listed first, the rest on request
    model.show_all_sources(row, True)
    assert model.index(row).data(MessageRole.CITED) == (1,) and model.item(row).all_sources_shown
    # Regenerating the first answer: its later turns go, then a new version streams.
    model.truncate(3)
    model.reset_message(2, Ref(16), "gemma-3-270m-it")
    assert model.index(2).data(MessageRole.SOURCES) == () and model.index(2).data(MessageRole.CITED) == ()
    model.set_saved(2, 16, (12, 15, 16))  # the turn reports the new version once it is saved
    model.append_text(2, "Edda Lindqvist.")
    model.finish(2, _stats(4), notice="Stopped.")
    assert model.rowCount() == 3 and model.rowCount(model.index(0)) == 0
    assert model.index(2).data(MessageRole.VERSIONS) == (3, 3)
    model.clear()  # another conversation opened
    assert model.rowCount(QModelIndex()) == 0
