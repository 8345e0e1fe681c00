"""The message model passes Qt's model checks, and streamed text is batched."""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from app.core.engine.generation import GenerationStats, StopReason
from app.core.store.conversation_store import BranchEntry, OpenedConversation, StoredMessage
from app.ui.chat_model import MessageListModel, MessageRole, StreamBuffer
from app.ui.chat_session import chat_items, reading_progress
from app.ui.markdown_html import render_markdown
from app.ui.message_footer import stats_line


def test_model_passes_qtmodeltester(qtmodeltester: ModelTester) -> None:
    model = MessageListModel()
    model.append("user", "Hi")
    model.append("assistant", "Hello", streaming=True)
    qtmodeltester.check(model, force_py=True)
    model.append_text(1, " there")
    model.finish(1, GenerationStats(3, 3, 2, 10.0, 50.0, 40.0, StopReason.END_OF_TURN))
    model.append("user", "Again")
    model.truncate(1)
    model.clear()
    qtmodeltester.check(model, force_py=True)


def test_roles_and_history() -> None:
    model = MessageListModel()
    model.append("user", "Hi")
    row = model.append("assistant", streaming=True)
    index = model.index(row)
    assert index.data(MessageRole.ROLE) == "assistant"
    assert index.data(MessageRole.STREAMING) is True
    model.append_text(row, "Hello")
    assert [(m.role, m.content) for m in model.history()] == [("user", "Hi"), ("assistant", "Hello")]
    assert [m.content for m in model.history(upto=row)] == ["Hi"]


def test_stream_buffer_batches_pieces_into_one_change(qtbot: QtBot) -> None:
    model = MessageListModel()
    row = model.append("assistant", streaming=True)
    changes: list[list[int]] = []
    model.dataChanged.connect(lambda _a, _b, roles: changes.append(list(roles)))
    buffer = StreamBuffer(model)
    for piece in ["Hel", "lo", ",", " world"]:
        buffer.add(row, piece)
    QCoreApplication.processEvents()
    assert changes == []  # nothing until the timer fires
    qtbot.waitUntil(lambda: len(changes) == 1, timeout=1000)
    assert model.item(row).text == "Hello, world"
    assert int(MessageRole.TEXT) in changes[0]
    assert int(MessageRole.STATS) not in changes[0]


def test_markdown_renders_code_blocks_with_copy_links() -> None:
    md = render_markdown("Use `pip`:\n\n```python\nprint('hi')\n```\n\n- one\n- two\n\n<script>x</script>")
    assert md.code_blocks == ["print('hi')"]
    assert 'href="copy:0"' in md.html
    assert "<li>one</li>" in md.html
    assert "<script>" not in md.html  # raw HTML from a model is shown, not interpreted
    assert "monospace" in md.html


def test_markdown_follows_a_dark_palette() -> None:
    light = render_markdown("```\nx\n```")
    dark = render_markdown("```\nx\n```", dark=True)
    assert "#f3f4f6" in light.html and "#f3f4f6" not in dark.html
    assert dark.code_blocks == light.code_blocks == ["x"]


def test_code_lines_keep_their_length_unless_wrapping_is_asked_for() -> None:
    text = "```python\nx = 1\n```"
    assert "white-space:pre;" in render_markdown(text).html
    wrapped = render_markdown(text, wrap_code=True)
    assert "white-space:pre-wrap;" in wrapped.html and wrapped.code_blocks == ["x = 1"]


def test_stored_answers_bring_back_the_sources_they_cite() -> None:
    source = {
        "number": 2,
        "document_id": 5,
        "chunk_id": 9,
        "name": "report.pdf",
        "page": 3,
        "heading": None,
        "line_start": None,
        "line_end": None,
        "text": "The keeper was Edda.",
    }
    stats = {"sources": [{**source, "number": 1}, source], "cited": [2], "notice": ""}
    answer = StoredMessage(8, 1, 7, "assistant", "Edda [2].", "gemma", stats, True, 0.0)
    question = StoredMessage(7, 1, None, "user", "Who?", None, None, True, 0.0)
    opened = OpenedConversation(1, "t", "", [BranchEntry(question, (7,)), BranchEntry(answer, (8,))])
    items = chat_items(opened, 0)
    assert items[1].cited == (2,) and [s.number for s in items[1].sources] == [1, 2]
    assert items[0].cited == () and stats["cited"] == [2]  # the stored dict is read, not changed


def test_long_chats_lay_out_only_what_is_shown(qtbot: QtBot) -> None:
    from app.ui.conversation_view import ConversationView

    model = MessageListModel()
    view = ConversationView()
    view.setModel(model)
    view.resize(800, 600)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    for i in range(500):
        model.append("assistant", f"Answer {i}\n\n- a list item\n- another\n\n```\ncode {i}\n```")
    view.scroll_to_end()
    last_id = model.item(499).id
    qtbot.waitUntil(lambda: last_id in view.delegate._cache, timeout=5000)  # the visible end was rendered
    assert len(view.delegate._cache) < 50  # ...and not the 500 rows above it
    assert model.item(0).id not in view.delegate._cache


def test_stored_answers_tell_the_next_turn_how_their_sources_were_given() -> None:
    source = {"number": 7, "document_id": 5, "chunk_id": 9, "name": "report.pdf", "page": 3, "heading": None,
              "line_start": None, "line_end": None, "text": "The keeper was Edda."}  # fmt: skip
    stats = {"sources": [source], "cited": [7], "sources_mode": "retrieval"}
    answer = StoredMessage(8, 1, 7, "assistant", "Edda [7].", "gemma", stats, True, 0.0)
    question = StoredMessage(7, 1, None, "user", "Who?", None, None, True, 0.0)
    model = MessageListModel()
    model.extend(
        chat_items(OpenedConversation(1, "t", "", [BranchEntry(question, (7,)), BranchEntry(answer, (8,))]), 0)
    )
    user, assistant = model.history()
    assert user.given is None and assistant.given is not None
    assert assistant.given.mode == "retrieval" and [s.number for s in assistant.given.sources] == [7]
    assert model.item(1).cited == (7,)  # numbers are the conversation's, not 1..n of this answer


def test_a_long_prompt_shows_how_far_its_reading_is_and_the_stats_say_what_was_cached() -> None:
    assert reading_progress(1024, 3400, 40.4, True) == "Reading your documents… 1,024 / 3,400 tokens, about 40 s left"
    assert reading_progress(0, 3400, -1.0, False) == "Reading the conversation… 0 / 3,400 tokens"
    assert reading_progress(512, 30000, 600.0, True).endswith("about 10 min left")
    model = MessageListModel()
    model.append("assistant", streaming=True)
    model.set_progress(0, "Reading your documents… 512 / 3,400 tokens")
    assert model.item(0).progress.startswith("Reading your documents")
    stats = GenerationStats(3515, 22, 40, 900.0, 20.0, 3000.0, StopReason.END_OF_TURN)
    assert "prompt 3,515 tokens: 22 read, 3,493 cached" in stats_line(stats)
