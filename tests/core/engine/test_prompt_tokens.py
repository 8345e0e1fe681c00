"""Long prompts tokenized in pieces give exactly the tokens of the whole; a follow-up tokenizes only its new text."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from app.core.chat.completion import CompletionFrame
from app.core.chat.message import ChatMessage
from app.core.chat.templates import GemmaTurnTemplate
from app.core.engine.llama_engine import LlamaEngine
from app.core.engine.prompt_tokens import PIECE_CHARS, SPLIT_MIN_CHARS, PromptTokenizer, pieces
from tests.core.docs.planted_facts import build_pages
from tools.synthetic_gemma import TINY_GEMMA4, write_gemma


def _vocab_only(path: Path) -> Iterator[llama_cpp.Llama]:
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def starter_vocab(starter_model: Path) -> Iterator[llama_cpp.Llama]:
    yield from _vocab_only(starter_model)


def _whole(llm: llama_cpp.Llama, text: str) -> list[int]:
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)


def _awkward_text(rng: random.Random, size: int) -> str:
    """Lines of prose, code, markup, runs of newlines and spaces, non-Latin scripts and special tokens."""
    parts = [
        "The lighthouse keeper wrote:",
        "  indented code(x) -> y",
        "\t\ttabbed",
        "<start_of_turn>user",
        "<end_of_turn>",
        "[3] almanac.pdf, page 7",
        "Q: Who built it?",
        "A:",
        "日本語のテキスト",
        "Ελληνικά κείμενα",
        "emoji 🌊🌊 and “quotes”",
        "FDA-",
        "approved",
        "<table><tr><td>1</td></tr></table>",
        " leading space",
        "trailing space ",
        "",
        "\r",
    ]
    out: list[str] = []
    while sum(map(len, out)) < size:
        out.append(rng.choice(parts))
        out.append("\n" * rng.choice((1, 1, 1, 2, 2, 3, 5)))
    return "".join(out)


def test_pieces_are_the_text_cut_after_newlines_and_stable_from_the_start() -> None:
    text = "".join(f"Line {i} of the document.\n" + ("\n" if i % 7 == 0 else "") for i in range(400))
    cut = pieces(text)
    assert "".join(cut) == text
    assert all(len(p) >= PIECE_CHARS for p in cut[:-1])
    assert all(p.endswith("\n") and not cut[i + 1].startswith("\n") for i, p in enumerate(cut[:-1]))
    # What follows the text does not change the pieces of its beginning (so they are found again).
    longer = pieces(text + "Q: And the second question?\nA:")
    assert longer[: len(cut) - 1] == cut[:-1]


def test_gemma_vocabulary_is_tokenized_in_pieces_exactly_as_whole(starter_vocab: llama_cpp.Llama) -> None:
    tokenizer = PromptTokenizer(starter_vocab)
    assert tokenizer.splittable
    rng = random.Random(7)
    pages, _where = build_pages()
    frame = CompletionFrame().with_documents("\n\n".join(pages[:12]))
    history = [ChatMessage("user", "Who built the old lighthouse?"), ChatMessage("assistant", "Noted."),
               ChatMessage("user", "How far is it from the harbour?")]  # fmt: skip
    texts = [
        frame.render(history),
        GemmaTurnTemplate().render([ChatMessage("system", "\n\n".join(pages[:12])), *history]),
        *(_awkward_text(rng, 6000) for _ in range(20)),
        "no newline at all " * 400,
        "\n" * 5000 + "end",
    ]
    for text in texts:
        assert len(text) >= SPLIT_MIN_CHARS
        assert tokenizer(text) == _whole(starter_vocab, text)


def test_a_follow_up_tokenizes_only_its_new_text(starter_model: Path) -> None:
    seen: list[int] = []

    class Counting(llama_cpp.Llama):  # the real tokenizer, its calls counted
        def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
            seen.append(len(text))
            return super().tokenize(text, add_bos, special)

    llm = Counting(str(starter_model), vocab_only=True, verbose=False)
    try:
        tokenizer = PromptTokenizer(llm)
        assert tokenizer.splittable
        pages, _where = build_pages()
        frame = CompletionFrame().with_documents("\n\n".join(pages[:12]))
        history = [ChatMessage("user", "Who built the old lighthouse?")]
        first = frame.render(history)
        tokenizer(first)
        seen.clear()
        history += [ChatMessage("assistant", "Noted."), ChatMessage("user", "How far is it from the harbour?")]
        second = frame.render(history)
        assert tokenizer(second) == _whole(llm, second)
        read = sum(seen[:-1])  # the last call is _whole's
        assert read < 2 * PIECE_CHARS + len(second) - len(first)  # the last piece or two, not the documents
        assert read < len(second.encode()) // 4
    finally:
        llm.close()


def test_a_vocabulary_with_a_token_across_a_line_end_is_tokenized_whole(tmp_path: Path, starter_model: Path) -> None:
    # A fine-tuned model may add a token such as "\nQ:"; cutting after the newline would split it.
    path = write_gemma(tmp_path / "added.gguf", TINY_GEMMA4, starter_model, added_tokens={6: "\nQ:"})
    for llm in _vocab_only(path):
        tokenizer = PromptTokenizer(llm)
        text = _awkward_text(random.Random(3), 6000) + "A: Noted.\nQ: And then?\n"
        lines = re.split(r"(?<=\n)(?=[^\n])", text)  # every place pieces may be cut
        cut = [t for line in lines for t in llm.tokenize(line.encode(), add_bos=False, special=True)]
        assert 6 in _whole(llm, text)
        assert cut != _whole(llm, text)[1:]  # pieces would not do here
        assert not tokenizer.splittable
        assert tokenizer(text) == _whole(llm, text)


def test_the_engine_tokenizes_a_documents_prompt_as_llama_cpp_does(engine: LlamaEngine) -> None:
    pages, _where = build_pages()
    text = CompletionFrame().with_documents("\n\n".join(pages[:12])).render([ChatMessage("user", "Who?")])
    llm = engine._require()
    assert engine.tokenize(text) == llm.tokenize(text.encode(), add_bos=True, special=True)
    assert engine.tokenize("Hi") == llm.tokenize(b"Hi", add_bos=True, special=True)
