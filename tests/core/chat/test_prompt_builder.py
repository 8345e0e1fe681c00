"""Chat templates and fitting a conversation into the context window."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.chat.message import ChatMessage
from app.core.chat.prompt_builder import PromptTooLongError, answer_reserve, build_prompt
from app.core.chat.templates import GemmaTurnTemplate, JinjaChatTemplate, select_template
from app.core.engine.gguf_info import read_gguf_info
from app.core.engine.llama_engine import LlamaEngine
from tests.fixtures.gguf_files import write_tiny_gguf


def words(text: str) -> list[int]:
    """A tokenizer stand-in for budget arithmetic: one token per whitespace-separated word."""
    return list(range(len(text.split())))


def conversation(turns: int, words_per_message: int = 10) -> list[ChatMessage]:
    msgs: list[ChatMessage] = []
    for i in range(turns):
        msgs.append(ChatMessage("user", f"question{i} " + "w " * (words_per_message - 1)))
        msgs.append(ChatMessage("assistant", f"answer{i} " + "w " * (words_per_message - 1)))
    return msgs


def test_gemma_turns_put_the_system_prompt_in_the_first_user_turn() -> None:
    text = GemmaTurnTemplate().render(
        [
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello!"),
            ChatMessage("user", "Bye"),
        ]
    )
    assert text == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_template_from_the_file_wins(tmp_path: Path) -> None:
    source = (
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    info = read_gguf_info(write_tiny_gguf(tmp_path / "t.gguf", "gemma3", template=source))
    template = select_template(info.chat_template, "<bos>", "<eos>")
    assert isinstance(template, JinjaChatTemplate)
    # BOS is added by the tokenizer, so the template's own copy is removed.
    assert template.render([ChatMessage("user", "Hi")]) == "[user]Hi[assistant]"


def test_broken_template_falls_back_to_gemma_turns(tmp_path: Path) -> None:
    info = read_gguf_info(write_tiny_gguf(tmp_path / "t.gguf", "gemma3", template="{% if %}"))
    assert isinstance(select_template(info.chat_template, "<bos>", "<eos>"), GemmaTurnTemplate)


def test_template_raise_exception_is_reported(tmp_path: Path) -> None:
    source = "{% if messages[0]['role'] != 'system' %}{{ raise_exception('need a system message') }}{% endif %}"
    info = read_gguf_info(write_tiny_gguf(tmp_path / "t.gguf", "gemma3", template=source))
    # It refuses our probe conversation, so the Gemma format is used instead.
    assert isinstance(select_template(info.chat_template, "<bos>", "<eos>"), GemmaTurnTemplate)


def test_everything_fits_without_trimming() -> None:
    history = [*conversation(3), ChatMessage("user", "last")]
    prompt = build_prompt(history, "", GemmaTurnTemplate(), words, n_ctx=1000, max_tokens=100)
    assert prompt.dropped == 0
    assert "question0" in prompt.text


def test_trimming_drops_oldest_pairs_and_keeps_the_newest_message() -> None:
    history = [*conversation(10), ChatMessage("user", "final question")]
    n_ctx, max_tokens = 200, 40
    prompt = build_prompt(history, "Be brief.", GemmaTurnTemplate(), words, n_ctx, max_tokens)
    budget = n_ctx - answer_reserve(n_ctx, max_tokens)
    assert prompt.dropped > 0 and prompt.dropped % 2 == 0
    assert len(prompt.tokens) <= budget
    assert "final question" in prompt.text
    assert "Be brief." in prompt.text
    assert "question0" not in prompt.text
    # The kept part starts with a user turn, so roles still alternate.
    assert f"question{prompt.dropped // 2}" in prompt.text.split("<end_of_turn>")[0]


def test_next_turn_keeps_the_same_cut_while_it_fits() -> None:
    history = [*conversation(8), ChatMessage("user", "q")]
    first = build_prompt(history, "", GemmaTurnTemplate(), words, 200, 40)
    longer = [*history, ChatMessage("assistant", "w " * 5), ChatMessage("user", "again")]
    kept = build_prompt(longer, "", GemmaTurnTemplate(), words, 200, 40, previous_dropped=first.dropped)
    fresh = build_prompt(longer, "", GemmaTurnTemplate(), words, 200, 40)
    assert first.dropped == 6
    assert kept.dropped == first.dropped  # same prefix, so the KV cache stays valid
    assert fresh.dropped > first.dropped  # without the hint the cut would move


def test_a_message_larger_than_the_window_is_an_error() -> None:
    with pytest.raises(PromptTooLongError, match="context window"):
        build_prompt([ChatMessage("user", "w " * 500)], "", GemmaTurnTemplate(), words, 256, 64)


def test_budget_with_the_real_tokenizer(engine: LlamaEngine) -> None:
    history = [*conversation(30, words_per_message=40), ChatMessage("user", "Summarise.")]
    prompt = build_prompt(history, "", GemmaTurnTemplate(), engine.tokenize, 1024, 256)
    assert prompt.dropped > 0
    assert len(prompt.tokens) <= 1024 - 256
    assert prompt.tokens == engine.tokenize(prompt.text)


def test_megabytes_are_refused_before_tokenizing() -> None:
    calls = []

    def tokenize(text: str) -> list[int]:
        calls.append(len(text))
        return words(text)

    huge = [ChatMessage("user", "ACGT" * 500_000)]  # 2 MB with no space: any tokenizer needs > 31,000 tokens
    with pytest.raises(PromptTooLongError, match="needs at least 31250 tokens"):
        build_prompt(huge, "", GemmaTurnTemplate(), tokenize, n_ctx=8192, max_tokens=512)
    assert calls == []
