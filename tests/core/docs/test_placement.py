"""Sources stay where they were first given, so each follow-up's prompt starts with the previous one."""

from __future__ import annotations

from app.core.chat.message import ChatMessage, Given
from app.core.chat.templates import GemmaTurnTemplate
from app.core.docs.grounding import ChatSources, Grounding, Source
from app.core.docs.placement import place


def _source(chunk: int, text: str, number: int = 0) -> Source:
    return Source(number or chunk, 7, chunk, "guide.pdf", chunk, None, None, None, text)


A, B, C = _source(11, "Alpha passage."), _source(12, "Beta passage."), _source(13, "Gamma passage.")


def _render(history: tuple[ChatMessage, ...], documents: str) -> str:
    system = [ChatMessage("system", documents)] if documents else []
    return GemmaTurnTemplate().render([*system, *history])


def _followed(history: list[ChatMessage], grounding: Grounding) -> tuple[str, list[ChatMessage]]:
    """Place, render, then answer: the prompt text and the history as the next turn sees it."""
    placed = place(history, grounding, ChatSources())
    text = _render(placed.history, placed.documents)
    return text, [*history, ChatMessage("assistant", "An answer.", given=placed.given)]


def test_whole_documents_sit_ahead_of_the_conversation_and_do_not_move() -> None:
    whole = Grounding("whole", [A, B], [], "")
    first, history = _followed([ChatMessage("user", "What is alpha?")], whole)
    second, history = _followed([*history, ChatMessage("user", "And beta?")], whole)
    prefix = first.removesuffix("<start_of_turn>model\n")
    assert second.startswith(prefix)  # the follow-up only adds: the cached prompt is reused whole
    assert first.index("Alpha passage.") < first.index("What is alpha?")
    assert second.count("Alpha passage.") == 1


def test_passages_stay_with_the_question_that_needed_them_and_only_new_ones_are_added() -> None:
    first, history = _followed([ChatMessage("user", "What is alpha?")], Grounding("retrieval", [A, B], [], ""))
    # The next question needs B again and C for the first time: B keeps its number, C gets the next one.
    placed = place([*history, ChatMessage("user", "And gamma?")], Grounding("retrieval", [C, B], [], ""), ChatSources())
    second = _render(placed.history, placed.documents)
    assert second.startswith(first.removesuffix("<start_of_turn>model\n"))
    assert [(s.chunk_id, s.number) for s in placed.given.sources] == [(13, 3), (12, 2)]
    question = placed.history[-1].context
    assert "[3] guide.pdf, page 13:\nGamma passage." in question and "Beta passage." not in question
    assert "Sources given earlier that also apply: [2]." in question
    assert second.count("Beta passage.") == 1


def test_a_question_nothing_matches_says_so_and_keeps_the_numbering() -> None:
    _, history = _followed([ChatMessage("user", "What is alpha?")], Grounding("retrieval", [A], [], ""))
    placed = place([*history, ChatMessage("user", "Weather?")], Grounding("retrieval", [], [], ""), ChatSources())
    assert "No passage in the attached documents matches" in placed.history[-1].context
    history = [*history, ChatMessage("user", "Weather?"), ChatMessage("assistant", "No idea.", given=placed.given)]
    again = place([*history, ChatMessage("user", "Beta?")], Grounding("retrieval", [B], [], ""), ChatSources())
    assert [s.number for s in again.given.sources] == [2]
    assert again.history[2].context == placed.history[-1].context  # the unanswered question reads as it did


def test_passages_given_only_in_messages_left_out_are_given_again() -> None:
    _, history = _followed([ChatMessage("user", "What is alpha?")], Grounding("retrieval", [A], [], ""))
    history = [*history, ChatMessage("user", "Thanks"), ChatMessage("assistant", "You're welcome.")]
    # The prompt keeps messages from index 2 on: A's first message is left out, so A comes again, as [1].
    placed = place([*history, ChatMessage("user", "Alpha again?")], Grounding("retrieval", [A], [], ""), ChatSources(),
                   kept_from=2)  # fmt: skip
    assert "[1] guide.pdf, page 11:\nAlpha passage." in placed.history[-1].context
    assert placed.left_out == ()  # given again: nothing the user must be told about
    kept = place([*history, ChatMessage("user", "Alpha again?")], Grounding("retrieval", [A], [], ""), ChatSources())
    assert kept.history[-1].context == "Sources given earlier that apply: [1]."


def test_passages_left_out_with_old_messages_are_named_unless_given_again_or_still_in_context() -> None:
    _, history = _followed([ChatMessage("user", "Alpha and beta?")], Grounding("retrieval", [A, B], [], ""))
    _, history = _followed([*history, ChatMessage("user", "Beta?")], Grounding("retrieval", [B], [], ""))
    # Messages 0-1 (which gave [1] and [2]) are left out; [2] is also in kept message 2; C is new.
    placed = place([*history, ChatMessage("user", "Gamma?")], Grounding("retrieval", [C], [], ""), ChatSources(),
                   kept_from=2)  # fmt: skip
    assert placed.left_out == (1,)
    assert "Beta passage." in placed.history[2].context  # the kept question now carries [2] itself


def test_earlier_answers_given_whole_documents_are_not_written_into_their_questions() -> None:
    _, history = _followed([ChatMessage("user", "What is alpha?")], Grounding("whole", [A], [], ""))
    placed = place([*history, ChatMessage("user", "And beta?")], Grounding("retrieval", [B], [], ""), ChatSources())
    assert placed.history[0].context == ""  # its documents were ahead of the chat; now passages are used instead
    assert [s.number for s in placed.given.sources] == [1]
    assert isinstance(placed.given, Given) and placed.given.mode == "retrieval"


def test_notes_about_unread_files_go_with_the_new_question_only() -> None:
    placed = place(
        [ChatMessage("user", "Alpha?")],
        Grounding("whole", [A], [], ""),
        ChatSources(),
        notes="Still being read: b.pdf.",
    )
    assert placed.history[-1].context == "Still being read: b.pdf."
    assert "b.pdf" not in placed.documents
