"""Image projectors: vetted from the header before libmtmd sees them, then once in a child process.

The tiny synthetic projectors load and run in the real libmtmd, and make exactly
as many tokens of an image as `ProjectorInfo.tokens_for` says. Every malformed
variant is refused by `read_projector_info` with a message naming the problem;
the ones that would abort libmtmd are shown to do so in a child, not here.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFReader, GGUFValueType

from app.core.engine.gguf_info import GgufError
from app.core.engine.probe import ModelChecks, ModelRejectedError, identity
from app.core.engine.projector_info import ProjectorError, ProjectorInfo, read_projector_info
from app.core.engine.projector_probe import probe_projector
from app.core.sandbox import Sandbox, SandboxError
from tools.synthetic_mmproj import Key, Tensor, plan, write_plan, write_projector

U32, I32, F32, F64, U64, BOOL, STR, ARR = (
    GGUFValueType.UINT32,
    GGUFValueType.INT32,
    GGUFValueType.FLOAT32,
    GGUFValueType.FLOAT64,
    GGUFValueType.UINT64,
    GGUFValueType.BOOL,
    GGUFValueType.STRING,
    GGUFValueType.ARRAY,
)
E, P, POS, TEXT = 32, 4, 512, 64  # the tiny gemma4v shape (tools/synthetic_mmproj.py) and tiny Gemma 4's width
SIZES = [(64, 48), (1, 1), (12, 12), (13, 7), (640, 480), (333, 777), (1000, 200), (1920, 1080), (4000, 3000)]


def variant(
    path: Path,
    kind: str = "gemma4v",
    n_text: int = TEXT,
    audio: str | None = None,
    keys: dict[str, Key | None] | None = None,
    tensors: dict[str, Tensor | None] | None = None,
) -> Path:
    """The tiny projector of `kind`, with keys and tensors replaced, added or (None) removed."""
    base_keys, base_tensors = plan(kind, n_text, audio=audio)
    new_keys = {k.name: k for k in base_keys} | (keys or {})
    new_tensors = {t.name: t for t in base_tensors} | (tensors or {})
    return write_plan(
        path,
        [k for k in new_keys.values() if k is not None],
        [t for t in new_tensors.values() if t is not None],
    )


def k(name: str, vtype: GGUFValueType, value: Any, sub: GGUFValueType | None = None) -> dict[str, Key | None]:
    return {name: Key(name, vtype, value, sub)}


def t(name: str, *shape: int, fill: str = "random") -> dict[str, Tensor | None]:
    return {name: Tensor(name, shape, fill)}


def gone(*names: str) -> dict[str, Any]:
    return dict.fromkeys(names)


# (id, variant arguments, what the refusal must name). From the earlier experiments' broken set and beyond.
MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("missing_projection", {"tensors": gone("mm.input_projection.weight")}, "mm.input_projection.weight is missing"),
    ("missing_position_table", {"tensors": gone("v.position_embd.weight")}, "v.position_embd.weight is missing"),
    ("unknown_type", {"keys": k("clip.vision.projector_type", STR, "gemma9v")}, "type 'gemma9v'"),
    ("no_vision_flag", {"keys": gone("clip.has_vision_encoder")}, "no image encoder"),
    ("two_means", {"keys": k("clip.vision.image_mean", ARR, [0.5, 0.5], F32)}, "image_mean needs three"),
    ("no_mean", {"keys": gone("clip.vision.image_mean")}, "lacks the setting clip.vision.image_mean"),
    ("no_projection_dim", {"keys": gone("clip.vision.projection_dim")}, "lacks the setting clip.vision.projection_dim"),
    (
        "image_size_i32",
        {"keys": k("clip.vision.image_size", I32, 224)},
        "clip.vision.image_size is stored as int32, where llama.cpp reads uint32",
    ),
    ("patch_size_u64", {"keys": k("clip.vision.patch_size", U64, P)}, "clip.vision.patch_size is stored as uint64"),
    (
        "epsilon_f64",
        {"keys": k("clip.vision.attention.layer_norm_epsilon", F64, 1e-6)},
        "layer_norm_epsilon is stored as float64",
    ),
    (
        "integer_means",
        {"keys": k("clip.vision.image_mean", ARR, [1, 1, 1], I32)},
        "image_mean is stored as array of int32, where llama.cpp reads array of float32",
    ),
    ("type_not_a_string", {"keys": k("clip.vision.projector_type", U32, 3)}, "projector_type is stored as uint32"),
    ("more_blocks_than_tensors", {"keys": k("clip.vision.block_count", U32, 3)}, "v.blk.2.attn_q.weight is missing"),
    ("zero_patch", {"keys": k("clip.vision.patch_size", U32, 0)}, "patch_size is 0"),
    ("huge_patch", {"keys": k("clip.vision.patch_size", U32, 100_000)}, "patch_size is 100000"),
    ("patch_beyond_int32", {"keys": k("clip.vision.patch_size", U32, 2**32 - 1)}, "patch_size is 4294967295"),
    ("projection_wrong_input", {"tensors": t("mm.input_projection.weight", TEXT, E + 8)}, "mm.input_projection"),
    ("patch_four_channels", {"tensors": t("v.patch_embd.weight", E, 4, P, P)}, "v.patch_embd.weight has the shape"),
    ("patch_wrong_width", {"tensors": t("v.patch_embd.weight", E + 8, 3, P, P)}, "v.patch_embd.weight has the shape"),
    ("one_position_table", {"tensors": t("v.position_embd.weight", POS, E, fill="random32")}, "two tables"),
    ("position_wrong_width", {"tensors": t("v.position_embd.weight", 2, POS, E + 8, fill="random32")}, "two tables"),
    ("short_position_table", {"tensors": t("v.position_embd.weight", 2, 64, E, fill="random32")}, "position table"),
    ("vision_flag_u32", {"keys": k("clip.has_vision_encoder", U32, 1)}, "has_vision_encoder is stored as uint32"),
    ("name_not_a_string", {"keys": k("general.name", U32, 7)}, "general.name is stored as uint32"),
    ("missing_attention_output", {"tensors": gone("v.blk.1.attn_out.weight")}, "v.blk.1.attn_out.weight is missing"),
    ("missing_ffn_down", {"tensors": gone("v.blk.0.ffn_down.weight")}, "v.blk.0.ffn_down.weight is missing"),
    ("query_too_wide", {"tensors": t("v.blk.0.attn_q.weight", E + 4, E)}, "v.blk.0.attn_q.weight has the shape"),
    ("ffn_down_wrong", {"tensors": t("v.blk.1.ffn_down.weight", E, 48)}, "v.blk.1.ffn_down.weight has the shape"),
    ("q_norm_wrong", {"tensors": t("v.blk.0.attn_q_norm.weight", E, fill="ones")}, "attn_q_norm.weight has the shape"),
    ("norm_quantized", {"tensors": t("v.blk.0.ln1.weight", E)}, "ln1.weight is stored as F16"),
    ("fused_qkv", {"tensors": t("v.blk.0.attn_qkv.weight", 3 * E, E)}, "v.blk.0.attn_qkv.weight"),
    ("heads_do_not_divide", {"keys": k("clip.vision.attention.head_count", U32, 3)}, "does not split into 3"),
    ("clamp_not_scalar", {"tensors": t("v.blk.0.attn_q.input_max", 2, fill="ones")}, "clamp limit"),
    ("gemma3n_type", {"keys": k("clip.vision.projector_type", STR, "gemma3nv")}, "conv_stem.conv.weight is missing"),
    ("gemma4_unified", {"keys": k("clip.vision.projector_type", STR, "gemma4uv")}, "not support yet"),
    ("another_family", {"keys": k("clip.vision.projector_type", STR, "qwen2vl")}, "type 'qwen2vl'"),
    (
        "audio_only",
        {"audio": "tiny", "keys": k("clip.has_vision_encoder", BOOL, False)},
        "audio-only projector",
    ),
    ("audio_generation", {"keys": k("clip.has_gen_audio_encoder", BOOL, True)}, "generates audio"),
    ("audio_without_projection", {"audio": "tiny", "tensors": gone("mm.a.input_projection.weight")}, "mm.a.input_"),
    ("audio_conv_wrong", {"audio": "tiny", "tensors": t("a.blk.0.conv_dw.weight", E, 3)}, "a.blk.0.conv_dw.weight"),
    ("audio_other_type", {"audio": "tiny", "keys": k("clip.audio.projector_type", STR, "gemma3na")}, "audio part"),
    (
        "audio_width_differs",
        {"audio": "tiny", "tensors": t("mm.a.input_projection.weight", 80, 48)},
        "audio and image parts feed models of different widths",
    ),
    (
        "gemma3_image_not_in_patches",
        {"kind": "gemma3", "n_text": 640, "keys": k("clip.vision.image_size", U32, 66)},
        "image size 66",
    ),
    (
        "gemma3_position_table",
        {"kind": "gemma3", "n_text": 640, "tensors": t("v.position_embd.weight", 64, E, fill="random32")},
        "v.position_embd.weight has the shape",
    ),
]
# These take libmtmd down: each is shown to abort or crash a child, while the header check names it.
ABORTING = {
    "missing_position_table",
    "one_position_table",
    "image_size_i32",
    "type_not_a_string",
    "vision_flag_u32",
    "audio_without_projection",
}


@pytest.mark.parametrize(("args", "problem"), [pytest.param(a, p, id=i) for i, a, p in MALFORMED])
def test_malformed_projectors_are_refused_with_the_problem_named(
    tmp_path: Path, args: dict[str, Any], problem: str
) -> None:
    path = variant(tmp_path / "mmproj-bad.gguf", **args)
    with pytest.raises(GgufError, match=problem):
        read_projector_info(path)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox("projector-test")
    yield box
    box.close()


@pytest.mark.parametrize(("args", "problem"), [pytest.param(a, p, id=i) for i, a, p in MALFORMED if i in ABORTING])
def test_what_would_abort_libmtmd_dies_in_a_child_and_never_reaches_it_here(
    tmp_path: Path, tiny_gemma4_real: Path, sandbox: Sandbox, args: dict[str, Any], problem: str
) -> None:
    path = variant(tmp_path / "mmproj-bad.gguf", **args)
    with pytest.raises(SandboxError) as died:  # libmtmd on its own: the child aborts or crashes
        sandbox.call(probe_projector, str(tiny_gemma4_real), str(path), 1, TEXT, timeout=120)
    assert died.value.kind == "crashed"
    checks = ModelChecks(tmp_path / "checks.json")
    with pytest.raises(ModelRejectedError, match=problem):  # vetted: refused from its header, no child needed
        checks.vet_projector(tiny_gemma4_real, path)
    assert not (tmp_path / "checks.json").exists()


def test_the_synthetic_projectors_pass(gemma4_projector: Path, gemma3_projector: Path) -> None:
    g4 = read_projector_info(gemma4_projector)
    assert (g4.projector_type, g4.family, g4.n_embd_text, g4.patch_size, g4.n_merge) == ("gemma4v", "Gemma 4", 64, 4, 3)
    assert (g4.min_tokens, g4.max_tokens, g4.default_tokens, g4.positions) == (70, 1120, 280, POS)
    assert g4.n_bytes == gemma4_projector.stat().st_size and not g4.has_audio
    g3 = read_projector_info(gemma3_projector)
    assert (g3.projector_type, g3.family, g3.n_embd_text, g3.image_size, g3.patch_size) == (
        "gemma3",
        "Gemma 3",
        640,
        64,
        4,
    )
    assert g3.min_tokens == g3.max_tokens == g3.default_tokens == 16  # (64 / 4 / 4)^2, whatever the image
    assert g3.tokens_for(4000, 30) == g3.tokens_for(30, 4000) == 16


class Mtmd:
    """A projector loaded in libmtmd, in this process, beside a model's vocabulary."""

    def __init__(self, model: Path, projector: Path, max_tokens: int = 0) -> None:
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        from app.core.engine import backends, llama_log

        backends.ensure_loaded()
        llama_log.install()
        llama_log.install_mtmd()
        self.lib, self.m = llama_cpp, mtmd
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(str(model).encode(), params)
        assert self.model
        ctx_params = mtmd.mtmd_context_params_default()
        ctx_params.use_gpu, ctx_params.n_threads, ctx_params.print_timings = False, 2, False
        if max_tokens:
            ctx_params.image_max_tokens = max_tokens
        self.ctx = mtmd.mtmd_init_from_file(str(projector).encode(), self.model, ctx_params)
        assert self.ctx, "libmtmd refused the projector"

    def image_chunk_tokens(self, width: int, height: int, encode: bool = False) -> int:
        """`mtmd_input_chunk_get_n_tokens` of the image chunk libmtmd makes of a width x height image."""
        m = self.m
        n = width * height * 3
        pixels = (ctypes.c_uint8 * n).from_buffer_copy((bytes(range(251)) * (n // 251 + 1))[:n])
        bitmap = m.mtmd_bitmap_init(width, height, pixels)
        marker = m.mtmd_default_marker()
        text = m.mtmd_input_text()
        text.text, text.text_len, text.add_special, text.parse_special = marker, len(marker), False, True
        chunks = m.mtmd_input_chunks_init()
        try:
            assert m.mtmd_tokenize(self.ctx, chunks, ctypes.byref(text), (m.mtmd_bitmap_p_ctypes * 1)(bitmap), 1) == 0
            images = [
                c
                for i in range(m.mtmd_input_chunks_size(chunks))
                if m.mtmd_input_chunk_get_type(c := m.mtmd_input_chunks_get(chunks, i)) == m.MTMD_INPUT_CHUNK_TYPE_IMAGE
            ]
            assert len(images) == 1
            if encode:
                assert m.mtmd_encode_chunk(self.ctx, images[0]) == 0
            return int(m.mtmd_input_chunk_get_n_tokens(images[0]))
        finally:
            m.mtmd_input_chunks_free(chunks)
            m.mtmd_bitmap_free(bitmap)

    def close(self) -> None:
        self.m.mtmd_free(self.ctx)
        self.lib.llama_model_free(self.model)


@pytest.mark.parametrize("max_tokens", [0, 70, 280, 1500])
def test_gemma4_token_counts_are_exactly_libmtmds(
    tiny_gemma4_real: Path, gemma4_projector: Path, max_tokens: int
) -> None:
    info = read_projector_info(gemma4_projector)
    mtmd = Mtmd(tiny_gemma4_real, gemma4_projector, max_tokens)
    rng = random.Random(max_tokens)
    try:
        # a ratio up to 8:1 keeps every grid inside the tiny projector's 512-row position table
        sides = [(rng.randint(8, 2500), rng.uniform(1 / 8, 8)) for _ in range(16)]
        sizes = SIZES + [(side, max(1, round(side * ratio))) for side, ratio in sides]
        for width, height in sizes:
            assert info.fits(width, height, max_tokens or None)
            assert mtmd.image_chunk_tokens(width, height) == info.tokens_for(width, height, max_tokens or None), (
                width,
                height,
            )
        assert mtmd.image_chunk_tokens(64, 48, encode=True) == 80  # and it encodes
    finally:
        mtmd.close()


def test_gemma3_makes_its_fixed_count_of_any_image(starter_model: Path, gemma3_projector: Path) -> None:
    info = read_projector_info(gemma3_projector)
    mtmd = Mtmd(starter_model, gemma3_projector)
    try:
        for width, height in SIZES[:5]:
            assert mtmd.image_chunk_tokens(width, height) == info.tokens_for(width, height) == 16
        assert mtmd.image_chunk_tokens(640, 480, encode=True) == 16
    finally:
        mtmd.close()


def test_a_projector_with_an_audio_encoder_passes_and_loads(tmp_path: Path, tiny_gemma4_real: Path) -> None:
    # Gemma 4 E2B/E4B projectors carry an audio conformer, which libmtmd loads (and warms up) too.
    path = write_projector(tmp_path / "mmproj-audio.gguf", "gemma4v", TEXT, audio="tiny")
    assert read_projector_info(path).has_audio
    mtmd = Mtmd(tiny_gemma4_real, path)
    try:
        assert mtmd.m.mtmd_support_audio(mtmd.ctx)
        assert mtmd.image_chunk_tokens(64, 48, encode=True) == 80
    finally:
        mtmd.close()


def test_grid_and_fit_follow_libmtmds_resize(gemma4_projector: Path) -> None:
    info = read_projector_info(gemma4_projector)
    assert info.grid(64, 48) == (30, 24)  # raised to 70+ tokens: 120 x 96 px, in 4-px patches
    assert info.tokens_for(64, 48) == 80
    assert info.tokens_for(4000, 3000, 280) <= 280 <= info.tokens_for(4000, 3000)
    assert not info.fits(60_000, 40)  # a thin strip outruns the 512-row position table
    with pytest.raises(ValueError, match="at least 70"):
        info.tokens_for(64, 48, max_tokens=50)  # libmtmd would refuse to load with such a limit


def test_a_strip_that_does_not_fit_is_what_aborts_libmtmd(
    tiny_gemma4_real: Path, gemma4_projector: Path, sandbox: Sandbox
) -> None:
    # Why `fits` matters: past the position table, libmtmd reads out of bounds and aborts.
    info = read_projector_info(gemma4_projector)
    assert not info.fits(3000, 2)  # 750 patches wide
    with pytest.raises(SandboxError) as died:
        sandbox.call(encode_one_image, str(tiny_gemma4_real), str(info.path), 3000, 2, timeout=60)
    # The assert fires in ggml's worker threads; the child usually dies of it, and when two threads abort at
    # once it may hang instead. Either way it never answers, and this process goes on.
    assert died.value.kind in ("crashed", "timeout")
    assert sandbox.call(encode_one_image, str(tiny_gemma4_real), str(info.path), 64, 48, timeout=120) == 80


def encode_one_image(model: str, projector: str, width: int, height: int) -> int:
    """In a child: encode one image of that size; its token count."""
    os.environ["GGML_NO_BACKTRACE"] = "1"  # an abort must not wait for a debugger to print a backtrace
    mtmd = Mtmd(Path(model), Path(projector))
    try:
        return mtmd.image_chunk_tokens(width, height, encode=True)
    finally:
        mtmd.close()


def test_a_projector_for_another_model_is_refused(
    tmp_path: Path, tiny_gemma4_real: Path, gemma3_projector: Path, gemma4_projector: Path
) -> None:
    g3 = read_projector_info(gemma3_projector)
    with pytest.raises(ProjectorError, match=r"for Gemma 3 models, and the loaded model is not one \(gemma4\)"):
        g3.check_pairing(64, "gemma4")
    narrow = read_projector_info(variant(tmp_path / "mmproj-48.gguf", n_text=48))
    with pytest.raises(ProjectorError, match="embeddings are 48 wide; the loaded model's are 64"):
        narrow.check_pairing(64, "gemma4")
    wide: ProjectorInfo = replace(read_projector_info(gemma4_projector), n_embd_text=2560)
    with pytest.raises(ProjectorError, match=r"2,560 wide; the loaded model's are 1,536\. Get the projector"):
        wide.check_pairing(1536, "gemma4")
    read_projector_info(gemma4_projector).check_pairing(64, "gemma4")
    checks = ModelChecks(tmp_path / "checks.json")
    with pytest.raises(ModelRejectedError, match="Gemma 3 models"):
        checks.vet_projector(tiny_gemma4_real, gemma3_projector)
    with pytest.raises(ModelRejectedError, match="48 wide"):
        checks.vet_projector(tiny_gemma4_real, narrow.path)


def test_a_text_model_is_not_a_projector(starter_model: Path) -> None:
    with pytest.raises(ProjectorError, match="is a gemma3 language model, not an image projector"):
        read_projector_info(starter_model)


def test_truncated_projectors_are_refused(tmp_path: Path, gemma4_projector: Path) -> None:
    data = gemma4_projector.read_bytes()
    for cut, problem in ((len(data) - 100, "truncated"), (1000, "ends in the middle of its header"), (10, "only")):
        path = tmp_path / f"cut-{cut}.gguf"
        path.write_bytes(data[:cut])
        with pytest.raises(GgufError, match=problem):
            read_projector_info(path)


def test_vetting_runs_libmtmd_once_per_pair_and_remembers(
    tmp_path: Path, tiny_gemma4_real: Path, starter_model: Path, gemma4_projector: Path, gemma3_projector: Path
) -> None:
    cache = tmp_path / "checks.json"
    ModelChecks(cache).vet_projector(tiny_gemma4_real, gemma4_projector)
    ModelChecks(cache).vet_projector(starter_model, gemma3_projector)
    verdicts = json.loads(cache.read_text())
    key = f"projector:{identity(tiny_gemma4_real)}|{identity(gemma4_projector)}"
    assert verdicts[key] == {"ok": True, "reason": ""}
    verdicts[key] = {"ok": False, "reason": "remembered"}  # a second vet must take the kept verdict
    cache.write_text(json.dumps(verdicts))
    started = time.monotonic()
    with pytest.raises(ModelRejectedError, match="remembered"):
        ModelChecks(cache).vet_projector(tiny_gemma4_real, gemma4_projector)
    assert time.monotonic() - started < 1


def test_a_projector_that_computes_garbage_is_rejected_in_the_child(
    tmp_path: Path, tiny_gemma4_real: Path, gemma4_projector: Path
) -> None:
    # Passes every header check; its output projection is NaN, which only running it shows.
    path = tmp_path / "mmproj-nan.gguf"
    path.write_bytes(gemma4_projector.read_bytes())
    weights = next(w for w in GGUFReader(path).tensors if w.name == "mm.input_projection.weight")
    with path.open("r+b") as f:
        f.seek(weights.data_offset)
        f.write(b"\x00\x7e" * (weights.n_bytes // 2))  # F16 NaN
    read_projector_info(path)
    with pytest.raises(ModelRejectedError, match="invalid numbers"):
        ModelChecks(tmp_path / "checks.json").vet_projector(tiny_gemma4_real, path)


def flip(data: bytes, rng: random.Random, limit: int) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        out[rng.randrange(limit)] ^= 1 << rng.randrange(8)
    return bytes(out)


def fuzz(projector: Path, out: Path, count: int) -> list[Path]:
    """`count` mutants of `projector` (bytes flipped in the header, cut short anywhere, both), asserting that
    the header check only ever raises GgufError; the header-flip mutants it let through."""
    data = projector.read_bytes()
    header_end = data.index(b"mm.input_projection.weight") + 100  # past the last tensor entry, into the data
    rng = random.Random(20261202)
    mutate: list[Callable[[], bytes]] = [
        lambda: flip(data, rng, header_end),
        lambda: data[: rng.randrange(len(data))],
        lambda: flip(data, rng, len(data))[: rng.randrange(24, len(data) + 1)],
    ]
    passed = []
    for i in range(count):
        path = out / f"mutant-{i}.gguf"
        path.write_bytes(mutate[i % 3]())
        try:
            read_projector_info(path)
        except GgufError:
            path.unlink()
            continue
        if i % 3 == 0:
            passed.append(path)
    return passed


def encode_in_child(sandbox: Sandbox, model: Path, projectors: list[Path], width: int) -> None:
    """Each projector loads and encodes an image in a child; a crash or hang there fails the test."""
    for path in projectors:
        try:
            sandbox.call(probe_projector, str(model), str(path), 1, width, timeout=120)
        except SandboxError as exc:
            pytest.fail(f"{path.name} passed the header check, but then {exc.detail}")


def test_fuzzed_projectors_only_ever_raise_gguf_errors(
    tmp_path: Path, gemma4_projector: Path, tiny_gemma4_real: Path, sandbox: Sandbox
) -> None:
    passed = fuzz(gemma4_projector, tmp_path, 450)
    assert len(passed) >= 10
    # Header mutants that pass the check must not take libmtmd down either.
    encode_in_child(sandbox, tiny_gemma4_real, passed[:25], TEXT)
