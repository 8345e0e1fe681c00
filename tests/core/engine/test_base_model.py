"""Base models in the engine: which files get the question-and-answer page, and how they are sampled."""

from __future__ import annotations

import threading
from pathlib import Path

import llama_cpp.llama_cpp as llama_lib
import pytest

from app.core.chat.completion import STOP_SEQUENCES, CompletionFrame
from app.core.chat.message import ChatMessage
from app.core.chat.templates import GemmaTurnTemplate, JinjaChatTemplate
from app.core.engine.generation import SamplingParams, base_model_sampling
from app.core.engine.gguf_info import GgufInfo, read_gguf_info
from app.core.engine.llama_engine import LlamaEngine, LoadOptions, is_base_model
from app.core.engine.sampler_chain import build_sampler
from tools.synthetic_gemma import TINY_GEMMA4, write_gemma


def header_only(file_name: str, metadata: dict[str, object]) -> GgufInfo:
    """A GGUF's header as read, without a file behind it."""
    return GgufInfo(Path(f"/models/{file_name}"), 1, 3, "gemma3", {"general.name": "Gemma 3 1b", **metadata}, ())


def test_the_starter_is_a_base_model(starter_model: Path) -> None:
    info = read_gguf_info(starter_model)
    assert info.chat_template is None
    assert is_base_model(info)


def test_names_and_fine_tune_labels_are_read() -> None:
    assert is_base_model(header_only("gemma-3-1b.gguf", {}))
    assert not is_base_model(header_only("gemma-3-1b-it.gguf", {}))
    assert not is_base_model(header_only("model.gguf", {"general.finetune": "it"}))
    assert not is_base_model(header_only("model.gguf", {"tokenizer.chat_template": "{{ messages }}"}))


def test_the_starter_is_loaded_with_the_page(engine: LlamaEngine) -> None:
    assert isinstance(engine.template, CompletionFrame)
    assert engine.loaded is not None and engine.loaded.template_name == "base-completion"
    tokens = engine.tokenize(engine.template.render([ChatMessage("user", "Hi")]))
    assert 105 not in tokens and 106 not in tokens  # no <start_of_turn> / <end_of_turn>


def test_a_model_with_a_chat_template_keeps_its_turns(tmp_path: Path, starter_model: Path) -> None:
    source = "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    model = write_gemma(tmp_path / "gemma-4.gguf", TINY_GEMMA4, starter_model, chat_template=source)
    engine = LlamaEngine()
    try:
        engine.load(model, LoadOptions(n_ctx=256))
        assert isinstance(engine.template, JinjaChatTemplate) and engine.template.note == ""
    finally:
        engine.unload()


def test_an_instruction_tuned_name_without_a_template_keeps_gemma_turns(tmp_path: Path, starter_model: Path) -> None:
    model = write_gemma(tmp_path / "gemma-4-e2b-it.gguf", TINY_GEMMA4, starter_model)
    engine = LlamaEngine()
    try:
        engine.load(model, LoadOptions(n_ctx=256))
        assert isinstance(engine.template, GemmaTurnTemplate)
    finally:
        engine.unload()


def test_a_base_model_is_sampled_with_a_short_cap_stop_sequences_and_repetition_control() -> None:
    chosen = SamplingParams(temperature=0.3, max_tokens=1024, seed=5)
    sampling = base_model_sampling(chosen, STOP_SEQUENCES, 160, "Question: Why?\nAnswer: Because.")
    assert sampling.max_tokens == 160 and sampling.stop == STOP_SEQUENCES
    assert sampling.dry_multiplier > 0 and sampling.presence_penalty > 0
    assert sampling.dry_history == "Question: Why?\nAnswer: Because."
    assert (sampling.temperature, sampling.seed) == (0.3, 5)  # the user's own settings stay
    assert base_model_sampling(SamplingParams(max_tokens=40), (), 160, "").max_tokens == 40  # a lower setting wins


@pytest.mark.parametrize(("dry", "names"), [(0.0, ["penalties", "greedy"]), (0.8, ["penalties", "dry", "greedy"])])
def test_the_sampler_chain_has_dry_only_when_asked(engine: LlamaEngine, dry: float, names: list[str]) -> None:
    assert engine._llm is not None
    sampling = SamplingParams(temperature=0.0, dry_multiplier=dry, dry_history="Question: Why?\nAnswer: Because.")
    chain = build_sampler(engine._llm, sampling)
    try:
        n = llama_lib.llama_sampler_chain_n(chain.sampler)
        found = [llama_lib.llama_sampler_name(llama_lib.llama_sampler_chain_get(chain.sampler, i)) for i in range(n)]
    finally:
        chain.close()
    assert [name.decode() for name in found] == names


def test_dry_samplers_are_cloned_from_one_made_per_setting_and_keep_no_history(engine: LlamaEngine) -> None:
    """Making a DRY sampler scans the vocabulary; each chain gets a clone, which starts with no history."""
    prompt = engine.tokenize(
        "Question: Repeat after me: the red fox jumps over the lazy dog, the red fox jumps over the lazy dog.\nAnswer:"
    )

    def answer(history: str) -> str:
        engine.forget_cache()
        out: list[str] = []
        sampling = SamplingParams(
            temperature=0.0, repeat_penalty=1.0, max_tokens=24, dry_multiplier=0.8, dry_history=history, stop=("\n\n",)
        )
        engine.generate(prompt, sampling, threading.Event(), out.append)
        return "".join(out)

    assert engine._llm is not None
    engine._llm.close_dry_samplers()
    first = answer("")
    assert len(engine._llm._dry_made) == 1
    with_history = answer("the red fox jumps over the lazy dog")
    assert with_history != first  # the history fed to one clone steers its answer…
    assert answer("") == first  # …and never reaches the next clone
    assert len(engine._llm._dry_made) == 1
    engine.forget_cache()
