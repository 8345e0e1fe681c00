"""What an image projector costs: the fit guidance's figures, and its image buffer against llama.cpp's own.

The buffer check loads random-weight projectors as wide as the real towers
(Gemma 4 E2B/E4B's 768/3,072, Gemma 3's SigLIP 1,152/4,304, one layer each:
the buffer does not grow with depth) into libmtmd, encodes one image, and
compares the compute buffer llama.cpp reports with vision_fit's estimate.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import replace
from pathlib import Path

import pytest
from llama_cpp import Llama

from app.core.engine import llama_log
from app.core.engine.gguf_info import read_metadata
from app.core.engine.projector_info import read_projector_info
from app.core.models.fit import Machine, MemoryEstimate, Verdict, judge
from app.core.models.vision_fit import (
    ProjectorCost,
    choose_projector,
    image_compute_bytes,
    image_context,
    projector_cost,
    projector_note,
    with_projector,
)
from tools.synthetic_mmproj import Key, Tensor, plan, write_plan, write_projector

GB = 10**9
MIB = 1 << 20
_BUFFER = re.compile(r"CPU compute buffer size\s*=\s*([\d.]+) MiB")


def one_layer(kind: str, n_text: int, shape: str, path: Path) -> Path:
    """A projector with the real tower's widths and a single layer (position tables cut to what images need)."""
    keys, tensors = plan(kind, n_text, shape)
    keys = [Key(k.name, k.vtype, 1) if k.name == "clip.vision.block_count" else k for k in keys]
    kept: list[Tensor] = []
    for t in tensors:
        if t.name.startswith("v.blk.") and not t.name.startswith("v.blk.0."):
            continue
        if kind == "gemma4v" and t.name == "v.position_embd.weight":
            t = replace(t, shape=(2, 128, t.shape[2]))
        kept.append(t)
    return write_plan(path, keys, kept)


def measured_buffer(text_model: Path, projector: Path, max_tokens: int, size: tuple[int, int]) -> tuple[int, int]:
    """(tokens, compute buffer bytes) libmtmd reports for one random image, sized for that very image."""
    import llama_cpp.mtmd_cpp as mtmd

    llama_log.install()
    llama_log.install_mtmd()
    llm = Llama(str(text_model), n_ctx=2048, n_batch=2048, n_ubatch=2048, n_threads=2, verbose=False)
    params = mtmd.mtmd_context_params_default()
    params.use_gpu, params.n_threads, params.print_timings = False, 2, False
    params.warmup = False  # the buffer is then sized for the first image encoded, not the warm-up image
    params.image_max_tokens = max_tokens
    width, height = size
    pixels = (ctypes.c_uint8 * (width * height * 3)).from_buffer_copy(bytes(range(256)) * (width * height * 3 // 256))
    ctx = mtmd.mtmd_init_from_file(str(projector).encode(), llm.model, params)
    assert ctx
    bitmap = mtmd.mtmd_bitmap_init(width, height, pixels)
    chunks = mtmd.mtmd_input_chunks_init()
    try:
        text = mtmd.mtmd_input_text()
        marker = mtmd.mtmd_default_marker()
        text.text, text.text_len, text.add_special, text.parse_special = marker, len(marker), False, True
        assert mtmd.mtmd_tokenize(ctx, chunks, ctypes.byref(text), (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap), 1) == 0
        image = next(
            mtmd.mtmd_input_chunks_get(chunks, i)
            for i in range(mtmd.mtmd_input_chunks_size(chunks))
            if mtmd.mtmd_input_chunk_get_type(mtmd.mtmd_input_chunks_get(chunks, i)) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE
        )
        with llama_log.capture() as lines:
            assert mtmd.mtmd_encode_chunk(ctx, image) == 0
        tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(image))
    finally:
        mtmd.mtmd_input_chunks_free(chunks)
        mtmd.mtmd_bitmap_free(bitmap)
        mtmd.mtmd_free(ctx)
        llm.close()
    found = [float(m.group(1)) for line in lines if (m := _BUFFER.search(line))]
    assert found, "llama.cpp did not report its compute buffer"
    return tokens, int(found[-1] * MIB)


@pytest.mark.parametrize(
    ("kind", "shape", "max_tokens", "tolerance"),
    [("gemma4v", "e2b", 280, 0.02), ("gemma4v", "e2b", 560, 0.02), ("gemma3", "4b", 0, 0.02)],
)
def test_the_image_buffer_estimate_matches_llama_cpp(
    kind: str, shape: str, max_tokens: int, tolerance: float, tmp_path: Path, tiny_gemma: Path, starter_model: Path
) -> None:
    text_model = tiny_gemma if kind == "gemma4v" else starter_model
    width = read_metadata(text_model)[f"{read_metadata(text_model)['general.architecture']}.embedding_length"]
    projector = one_layer(kind, width, shape, tmp_path / f"mmproj-{kind}.gguf")
    tokens, reported = measured_buffer(text_model, projector, max_tokens, (1024, 768))
    info = read_projector_info(projector)
    estimate = image_compute_bytes(info, read_metadata(projector), tokens)
    assert estimate == pytest.approx(reported, rel=tolerance)
    cost = projector_cost(info, read_metadata(projector), max_tokens)
    assert cost.tokens == (max_tokens or 256) and cost.weights == projector.stat().st_size


def test_a_projector_adds_its_memory_and_says_what_an_image_takes(tmp_path: Path) -> None:
    path = write_projector(tmp_path / "mmproj.gguf", "gemma4v", 64)
    info = read_projector_info(path)
    cost = projector_cost(info, read_metadata(path))
    assert (cost.tokens, cost.max_tokens) == (280, 1120)  # Gemma 4's default detail, and its finest
    assert projector_cost(info, read_metadata(path), 5000).tokens == 1120  # never past what libmtmd allows
    assert cost.compute == 12 * 280 * 9 * (32 + 64)  # the tiny tower: 32 wide, FFN 64
    assert image_context(cost, 8192) == "Each image uses up to 280 tokens of the 8,192-token context."
    assert projector_note(cost, 8192).startswith("The image projector needs about 3.1 MB of memory with an image.")
    base = MemoryEstimate(2 * GB, 0, 0, GB, 0, 200_000_000, 150_000_000, 0, 3 * GB, load_ram=3 * GB)
    seeing = with_projector(base, cost)
    assert seeing.total_ram == base.total_ram + cost.total and seeing.disk == base.disk + cost.weights
    assert ("Image projector, with one image", cost.total) in seeing.breakdown()
    on_gpu = with_projector(replace(base, vram=4 * GB), cost)
    assert on_gpu.vram == 4 * GB + cost.total and on_gpu.total_ram == base.total_ram  # libmtmd follows the model
    unknown = ProjectorCost(900_000_000, None, 256, 256)
    assert "plus working memory for each image" in projector_note(unknown, 4096)


def test_the_most_precise_projector_that_still_fits_is_chosen() -> None:
    machine = Machine(16 * GB, 5 * GB, 0, 0, 100 * GB)
    base = MemoryEstimate(2 * GB, 0, 0, GB, 0, 0, 0, 0, 3 * GB)  # 3 GB of 5 GB: fits
    f16 = ProjectorCost(int(0.94 * GB), 110_000_000, 280, 1120)
    q8 = ProjectorCost(int(0.5 * GB), 110_000_000, 280, 1120)
    q4 = ProjectorCost(int(0.2 * GB), 110_000_000, 280, 1120)
    assert judge(with_projector(base, f16), machine)[0] == Verdict.TIGHT  # over 75 % of what is free
    assert choose_projector([("F16", f16), ("Q8_0", q8), ("Q4", q4)], base, machine) == "Q8_0"
    roomy = replace(machine, available_ram=32 * GB)
    assert choose_projector([("F16", f16), ("Q8_0", q8)], base, roomy) == "F16"
    cramped = replace(machine, available_ram=2 * GB)
    assert choose_projector([("F16", f16), ("Q4", q4), ("Q8_0", q8)], base, cramped) == "Q4"  # none fits: smallest
    assert choose_projector([], base, machine) is None
