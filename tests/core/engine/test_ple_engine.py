"""PLE placement on synthetic Gemma 4 / Gemma 3n models, measured in this process."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.core.engine import llama_log
from app.core.engine.generation import SamplingParams
from app.core.engine.gguf_info import read_gguf_info
from app.core.engine.llama_engine import LlamaEngine, LoadedModel, LoadOptions, PlePlacement, Residency
from app.core.engine.residency import resident_bytes
from tools.synthetic_gemma import TINY_GEMMA3N, TINY_GEMMA4, TINY_GEMMA4_NO_PLE, GemmaShape, write_gemma

CHAT = "Hello! Could you tell me about the lighthouse on the northern cliffs, and who keeps it?"


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory, starter_model: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("synthetic")
    shapes: list[GemmaShape] = [TINY_GEMMA4, TINY_GEMMA4_NO_PLE, TINY_GEMMA3N]
    return {s.name: write_gemma(folder / f"{s.name}.gguf", s, starter_model) for s in shapes}


def ple_resident(model: LoadedModel) -> int:
    ple = model.info.ple_tensor
    assert ple is not None
    value = resident_bytes(model.info.path, ple.offset, ple.n_bytes)
    assert value is not None
    return value


def chat(engine: LlamaEngine) -> str:
    pieces: list[str] = []
    params = SamplingParams(temperature=0.0, max_tokens=12)
    engine.generate(engine.tokenize(CHAT), params, threading.Event(), pieces.append)
    return "".join(pieces)


def test_counts_match_hand_computed_values(synthetic: dict[str, Path]) -> None:
    info = read_gguf_info(synthetic["tiny-gemma4"])
    e, v, n_layer, ple_w, ff, d = 64, 16384, 10, 32, 128, 32
    per_layer = (
        e  # attn_norm
        + 2 * (d * 2 * e)  # attn_q, attn_output (2 heads)
        + d  # attn_q_norm
        + 3 * e  # post_attention_norm, ffn_norm, post_ffw_norm
        + 3 * ff * e  # ffn_gate, ffn_up, ffn_down
        + 2 * ple_w * e  # inp_gate, proj
        + e  # post_norm
        + 1  # layer_output_scale
    )
    own_kv = 2 * (d * e) + d  # attn_k, attn_v, attn_k_norm: only the first 5 layers
    ple = v * ple_w * n_layer
    total = v * e + ple + ple_w * n_layer * e + ple_w + e + d // 2 + n_layer * per_layer + 5 * own_kv
    assert total == 6_704_858
    assert info.total_parameters == total
    assert info.ple_parameters == ple == 5_242_880
    assert info.effective_parameters == total - ple
    assert info.ple_bytes == ple * 2  # F16
    assert info.family == "Gemma 4"
    assert info.block_count == n_layer
    assert info.chat_template is None


def test_gemma4_ple_on_disk_is_paged_in_on_demand(synthetic: dict[str, Path]) -> None:
    engine = LlamaEngine()
    model = engine.load(synthetic["tiny-gemma4"], LoadOptions(n_ctx=1024))
    try:
        assert model.ple == PlePlacement.LAZY
        assert ple_resident(model) == 0
        assert chat(engine)
        after = ple_resident(model)
        assert 0 < after < model.info.ple_bytes // 10
        # llama.cpp reported the lazy PLE as its own mapped buffer.
        assert [label for label, _ in model.buffers].count("CPU_Mapped model") == 2
    finally:
        engine.unload()


def test_gemma4_ple_in_ram_is_fully_resident(synthetic: dict[str, Path]) -> None:
    engine = LlamaEngine()
    model = engine.load(synthetic["tiny-gemma4"], LoadOptions(n_ctx=1024, residency=Residency.PLE_IN_RAM))
    try:
        assert model.ple == PlePlacement.IN_RAM
        assert ple_resident(model) == model.info.ple_bytes
    finally:
        engine.unload()


def test_locked_model_keeps_the_ple_on_disk(synthetic: dict[str, Path]) -> None:
    engine = LlamaEngine()
    model = engine.load(synthetic["tiny-gemma4"], LoadOptions(n_ctx=1024, residency=Residency.LOCKED))
    try:
        assert model.ple == PlePlacement.LAZY
        assert ple_resident(model) == 0
        assert chat(engine)
    finally:
        engine.unload()


def test_gemma3n_loads_generates_and_pages_its_ple_out(synthetic: dict[str, Path]) -> None:
    engine = LlamaEngine()
    model = engine.load(synthetic["tiny-gemma3n"], LoadOptions(n_ctx=1024))
    try:
        assert model.info.architecture == "gemma3n" and model.info.block_count == 22
        assert model.ple == PlePlacement.DROPPED
        assert ple_resident(model) == 0
        assert chat(engine)
        assert 0 < ple_resident(model) < model.info.ple_bytes // 4
    finally:
        engine.unload()


def test_gemma4_without_ple_reports_none(synthetic: dict[str, Path]) -> None:
    engine = LlamaEngine()
    model = engine.load(synthetic["tiny-gemma4-no-ple"], LoadOptions(n_ctx=1024))
    try:
        assert model.info.ple_parameters == 0 and model.info.ple_tensor is None
        assert model.info.effective_parameters == model.info.total_parameters
        assert model.ple == PlePlacement.NONE
        assert chat(engine)
    finally:
        engine.unload()


def test_gpu_layers_pin_the_ple_to_the_cpu_buffer(synthetic: dict[str, Path]) -> None:
    # This build has no GPU, so llama.cpp keeps every layer on the CPU, but the
    # override is still applied and logged; on a GPU build it decides placement.
    engine = LlamaEngine()
    options = LoadOptions(n_ctx=1024, n_gpu_layers=99, residency=Residency.PLE_IN_RAM)
    with llama_log.capture() as lines:
        engine.load(synthetic["tiny-gemma4"], options)
    try:
        assert any("per_layer_token_embd.weight" in line and "overridden" in line for line in lines)
    finally:
        engine.unload()


def test_full_size_shapes_match_the_published_models() -> None:
    from tools.synthetic_gemma import GEMMA4_E2B, GEMMA4_E4B, tensors_of

    e2b = {t.name: t for t in tensors_of(GEMMA4_E2B)}
    # Real E2B GGUFs written by current converters hold 541 tensors (KV-shared layers have no K/V).
    assert len(e2b) == 541
    assert e2b["per_layer_token_embd.weight"].shape == (262144, 35 * 256)
    assert e2b["blk.14.ffn_up.weight"].shape == (6144, 1536)
    assert e2b["blk.15.ffn_up.weight"].shape == (12288, 1536)  # double-wide MLP from the first shared layer
    assert e2b["blk.4.attn_q.weight"].shape == (8 * 512, 1536)  # full attention: 512-wide heads
    assert "blk.15.attn_k.weight" not in e2b
    total = sum(t.n_values for t in e2b.values())
    ple = e2b["per_layer_token_embd.weight"].n_values
    assert round(total / 1e9, 2) == 4.63 and round((total - ple) / 1e9, 2) == 2.28
    e4b = tensors_of(GEMMA4_E4B)
    assert len(e4b) == 42 * 17 - 18 * 3 + 6  # 17 per layer, 3 fewer in 18 shared layers, 6 globals
