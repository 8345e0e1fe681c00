"""The question-and-answer page for base models: what it looks like and where an answer ends."""

from __future__ import annotations

import pytest

from app.core.chat.completion import (
    EXAMPLES,
    HEADER,
    STOP_SEQUENCES,
    CompletionFrame,
    PageSources,
    is_base_model_file,
)
from app.core.chat.message import ChatMessage
from app.core.docs.grounding import Source, prompt_for

PASSAGE = Source(1, 1, 1, "keeper.md", None, "Keepers", None, None, "The lighthouse keeper\nwas called Edda.")


@pytest.mark.parametrize(
    ("template", "names", "base"),
    [
        (None, ["Qwen2.5 0.5B", "qwen2.5-0.5b-q8_0"], True),  # no template, nothing says it was tuned to chat
        (None, ["Gemma 3 1b", "gemma-3-1b-it-q4_k_m"], False),  # the file name says instruction-tuned
        (None, ["Gemma 3 1b", "it"], False),  # as does a fine-tune label "it"
        (None, ["Mistral 7B Instruct"], False),
        (None, ["tiny chat model"], False),
        ("{{ messages }}", ["Gemma 3 4b"], False),  # it carries a chat template
        (None, ["model-4bit"], True),  # "bit" is not "it"
    ],
)
def test_base_models_are_told_apart_by_template_and_name(template: str | None, names: list[str], base: bool) -> None:
    assert is_base_model_file(template, names) is base


def test_the_page_lays_out_the_conversation_as_questions_and_answers() -> None:
    text = CompletionFrame().render(
        [
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "What is the capital of Italy?"),
            ChatMessage("assistant", "Rome."),
            ChatMessage("user", " What about Spain? "),
        ]
    )
    assert text.startswith(HEADER + "\nThe answers follow this request: Be brief.\n\n")
    for question, answer in EXAMPLES:
        assert f"Question: {question}\nAnswer: {answer}\n\n" in text
    assert text.endswith(
        "Question: What is the capital of Italy?\nAnswer: Rome.\n\nQuestion: What about Spain?\nAnswer:"
    )
    assert "<start_of_turn>" not in text


def test_sources_come_before_the_last_question_without_written_instructions() -> None:
    passages = PageSources().turn([PASSAGE], [], True)
    history = [
        ChatMessage("user", "Who kept it?"),
        ChatMessage("assistant", "Edda."),
        ChatMessage("user", "Who?", context=passages),
    ]
    frame = CompletionFrame().with_documents("")
    text = frame.render(history)
    assert text.endswith(
        "Sources:\n[1] keeper.md, Keepers: The lighthouse keeper was called Edda.\n\nQuestion: Who?\nAnswer:"
    )
    assert text.index("Question: Who kept it?") < text.index("[1] keeper.md")
    assert "Answer: According to [1]," in text  # the worked examples cite their sources
    instructions = prompt_for([PASSAGE], []).split("Sources:")[0].strip()
    assert instructions and instructions not in text  # a base model would copy them, not follow them
    assert "Sources:" not in CompletionFrame().render([*history[:-1], ChatMessage("user", "Who?")])
    # The citing examples' form is the one to copy; the rest of the page is not.
    assert "According to" not in frame.not_to_copy() and EXAMPLES[0][1] in frame.not_to_copy()


def test_the_answer_ends_where_the_page_moves_on() -> None:
    assert "\nQuestion:" in CompletionFrame().stop and "<start_of_turn>" in CompletionFrame().stop
    assert "\n[" not in CompletionFrame().stop  # a list of links may start a line with "["
    assert CompletionFrame().with_documents("").stop == (*STOP_SEQUENCES, "\n[")  # not a made-up source


def test_whole_documents_follow_the_examples_ahead_of_the_conversation() -> None:
    documents = PageSources().documents([PASSAGE], "whole")
    history = [ChatMessage("user", "Who kept it?"), ChatMessage("assistant", "Edda."), ChatMessage("user", "When?")]
    text = CompletionFrame().with_documents(documents).render(history)
    assert text.index("According to [1],") < text.index("[1] keeper.md, Keepers:") < text.index("Question: Who kept")
    assert text.count("keeper.md") == 1  # listed once, where it stays while the chat goes on
