"""The catalogue's welcome models: the numbers behind them, and which one a machine gets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from app.core.engine.gguf_info import GgufInfo, read_gguf_header
from app.core.models.catalog import load_catalog, recommend_first
from app.core.models.fit import Machine, Verdict, estimate_memory
from tools.synthetic_gemma import GEMMA4_E2B, GEMMA4_E4B, GemmaShape, _add_metadata, tensors_of

# Gemma 4 12B as far as its published description gives it (model card: 48 layers, 3,840 wide, a 1,024-token
# sliding window, 262k vocabulary; its global layers come last in each group of six, as in the other dense
# Gemma 4): the rest follows Gemma 3 12B, whose width and depth it shares (16 query heads, 8 key/value heads
# of 256, FFN 15,360), with Gemma 4's 512-wide global heads sharing one key/value head (ik_llama.cpp PR #1921
# added head size 512 at 16 query heads per key/value head "to unblock Gemma 4 12B"). That gives 11.92B
# parameters; the model card says 11.95B.
GEMMA4_12B = GemmaShape(
    "gemma4",
    "gemma4-12b-shaped",
    3840,
    48,
    16,
    8,
    512,
    256,
    15360,
    0,
    262144,
    sliding_window=1024,
    full_attention_every=6,
    context_length=262144,
    rope_partial=0.25,
    real_vocab=True,
)
GEMMA4_12B_GLOBAL_KV_HEADS = 1

GB = 10**9
TOKENIZER_BYTES = 6_500_000  # Gemma's 262k-token vocabulary in a GGUF header, left out of the header built here


def machine(available_ram: float, disk_free: float = 100 * GB) -> Machine:
    return Machine(int(available_ram / 0.7), int(available_ram), 0, 0, int(disk_free))


def test_a_machine_gets_the_largest_welcome_model_that_fits() -> None:
    catalog = load_catalog()
    offered = {e.name for e in catalog if e.first_choice is not None}
    assert offered == {"Gemma 4 E2B", "Gemma 4 E4B", "Gemma 4 12B"}

    workstation = recommend_first(catalog, machine(24 * GB))
    assert workstation is not None and workstation.entry.name == "Gemma 4 12B" and workstation.verdict == Verdict.FITS
    assert workstation.why.startswith("Needs about 10.8 GB of RAM (24.0 GB free) and 7.4 GB of disk")

    big = recommend_first(catalog, machine(12 * GB))  # the 12B would take most of it
    assert big is not None and big.entry.name == "Gemma 4 E4B" and big.verdict == Verdict.FITS
    assert big.why.startswith("Needs about 4.1 GB of RAM (12.0 GB free) and 5.3 GB of disk")

    laptop = recommend_first(catalog, machine(4 * GB))  # E4B would take most of it
    assert laptop is not None and laptop.entry.name == "Gemma 4 E2B" and laptop.verdict == Verdict.FITS

    small = recommend_first(catalog, machine(2.5 * GB))  # nothing fits comfortably: the smallest, and why
    assert small is not None and small.entry.name == "Gemma 4 E2B" and small.verdict == Verdict.TIGHT
    assert "Close other apps" in small.why

    little_disk = recommend_first(catalog, machine(12 * GB, disk_free=4 * GB))  # E2B fits, barely; E4B does not
    assert little_disk is not None and little_disk.entry.name == "Gemma 4 E2B" and little_disk.verdict == Verdict.TIGHT
    assert "The disk will be nearly full" in little_disk.why
    no_disk = recommend_first(catalog, machine(12 * GB, disk_free=3 * GB))
    assert no_disk is not None and no_disk.verdict == Verdict.WONT_FIT and "Not enough disk space" in no_disk.why
    assert recommend_first([e for e in catalog if e.first_choice is None], machine(12 * GB)) is None


def test_the_catalogue_says_which_models_see_images() -> None:
    catalog = {e.name: e for e in load_catalog()}
    seeing = {name for name, e in catalog.items() if e.sees_images}
    assert seeing == {
        "Gemma 4 E2B",
        "Gemma 4 E4B",
        "Gemma 4 12B",
        "Gemma 4 26B-A4B",
        "Gemma 4 31B",
        "Gemma 3n E2B",
        "Gemma 3n E4B",
    }
    # Tern loads Gemma 4's image tower (gemma4v) and Gemma 3n's MobileNet (gemma3nv), not yet the 12B's projector.
    assert {name for name in seeing if catalog[name].images_in_tern} == seeing - {"Gemma 4 12B"}
    twelve = catalog["Gemma 4 12B"]
    assert "google/gemma-4-12B-it-qat-q4_0-gguf" in {s.repo for s in twelve.sources}
    assert twelve.first_choice is not None and "architecture" in twelve.first_choice.note


def _use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's Q4_K_M rule (llama-quant.cpp): these layers' attn_v and ffn_down get Q6_K."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def q4_k_m_header(shape: GemmaShape, tmp_path: Path, global_kv_heads: int | None = None) -> GgufInfo:
    """The header of `shape` quantized as llama.cpp's Q4_K_M, without writing a single weight.

    `global_kv_heads`: key/value heads of the full-attention layers, when not the shape's own.
    """
    path = tmp_path / f"{shape.name}.gguf"
    writer = GGUFWriter(str(path), shape.arch)
    _add_metadata(writer, shape)
    writer.add_file_type(15)  # MOSTLY_Q4_K_M
    tensors = tensors_of(shape)
    if global_kv_heads is not None:
        heads = [shape.n_head_kv if shape.is_swa(i) else global_kv_heads for i in range(shape.n_layer)]
        del writer.kv_data[0][f"{shape.arch}.attention.head_count_kv"]
        writer.add_head_count_kv(heads)
        for i, t in enumerate(tensors):
            layer = int(t.name.split(".")[1]) if t.name.startswith("blk.") else -1
            if t.name.endswith(("attn_k.weight", "attn_v.weight")) and not shape.is_swa(layer):
                tensors[i] = replace(t, shape=(shape.head_dim * global_kv_heads, shape.n_embd))
    values = [t.name for t in tensors if t.name.endswith("attn_v.weight")]
    data_bytes = 0
    for t in tensors:
        q = GGMLQuantizationType
        part = t.name.split(".")
        if t.name in ("token_embd.weight", "per_layer_token_embd.weight"):
            qtype = q.Q6_K
        elif t.name == "per_layer_model_proj.weight":
            qtype = q.F16
        elif t.fill != "random":
            qtype = q.F32
        elif t.name.endswith("attn_v.weight"):
            qtype = q.Q6_K if _use_more_bits(values.index(t.name), len(values)) else q.Q4_K
        elif t.name.endswith("ffn_down.weight"):
            qtype = q.Q6_K if _use_more_bits(int(part[1]), shape.n_layer) else q.Q4_K
        else:
            qtype = q.Q4_K
        block, type_size = GGML_QUANT_SIZES[qtype]
        n_bytes = t.n_values // block * type_size
        writer.add_tensor_info(t.name, t.shape, np.dtype(np.float16), n_bytes, qtype)
        data_bytes += -(-n_bytes // 32) * 32
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header = path.read_bytes()
    return read_gguf_header(header, path.name, len(header) + TOKENIZER_BYTES + data_bytes)


@pytest.mark.parametrize(
    ("name", "shape", "global_kv_heads"),
    [("Gemma 4 E2B", GEMMA4_E2B, None), ("Gemma 4 E4B", GEMMA4_E4B, None), ("Gemma 4 12B", GEMMA4_12B, 1)],
)
def test_the_welcome_numbers_are_the_fit_estimate_of_that_file(
    name: str, shape: GemmaShape, global_kv_heads: int | None, tmp_path: Path
) -> None:
    """Download size and RAM as fit.estimate_memory gives them for Q4_K_M at 8,192 tokens, PLE on disk.

    The E2B-shaped Q4_K_M that llama.cpp itself quantized (tests/core/models/test_fit.py) is 3,406,848,416
    bytes, and this header-only build of it comes within 0.1 %; published E2B Q4_K_M files are 3.2-3.4 GB.
    The 12B's figures come from its architecture as far as it is published (GEMMA4_12B above).
    """
    choice = next(e.first_choice for e in load_catalog() if e.name == name)
    assert choice is not None and choice.quant == "Q4_K_M" and choice.context == 8192
    info = q4_k_m_header(shape, tmp_path, global_kv_heads)
    estimate = estimate_memory(info, choice.context)
    assert choice.download_bytes == pytest.approx(info.file_size, rel=0.01)
    assert choice.ram_bytes == pytest.approx(estimate.total_ram, rel=0.01)
