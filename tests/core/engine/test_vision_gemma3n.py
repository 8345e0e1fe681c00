"""Gemma 3n's image projector (gemma3nv, MobileNetV5): vetted from its header, then loaded by real libmtmd."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gguf import GGUFValueType

from app.core.chat.message import image_placeholder
from app.core.engine.generation import SamplingParams
from app.core.engine.gguf_info import GgufError
from app.core.engine.llama_engine import LlamaEngine
from app.core.engine.options import LoadOptions
from app.core.engine.probe import ModelChecks, ModelRejectedError
from app.core.engine.projector_info import read_projector_info
from app.core.engine.projector_probe import probe_projector
from app.core.sandbox import Sandbox, SandboxError
from tests.core.engine.test_projector_info import encode_in_child, fuzz
from tests.core.engine.test_vision import noise, offer
from tools.synthetic_mmproj import GEMMA3NV_TOKENS, Key, Tensor, plan, write_plan

TEXT = 64  # tiny Gemma 3n's width, and the tiny MobileNetV5's
U32, F32, STR = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING
GREEDY = SamplingParams(temperature=0.0, max_tokens=4)


def variant(
    path: Path, keys: dict[str, Key | None] | None = None, tensors: dict[str, Tensor | None] | None = None
) -> Path:
    """The tiny gemma3nv projector, with keys and tensors replaced, added or (None) removed."""
    base_keys, base_tensors = plan("gemma3nv", TEXT)
    new_keys = {k.name: k for k in base_keys} | (keys or {})
    new_tensors = {t.name: t for t in base_tensors} | (tensors or {})
    return write_plan(
        path, [k for k in new_keys.values() if k is not None], [t for t in new_tensors.values() if t is not None]
    )


def k(name: str, vtype: GGUFValueType, value: Any) -> dict[str, Key | None]:
    return {name: Key(name, vtype, value)}


def t(name: str, *shape: int, fill: str = "random") -> dict[str, Tensor | None]:
    return {name: Tensor(name, shape, fill)}


def gone(*names: str) -> dict[str, Any]:
    return dict.fromkeys(names)


STEM, PWL, DW = "v.conv_stem.conv.weight", "v.blk.0.0.conv_pwl.weight", "v.blk.1.0.dw_mid.conv.weight"
LS, Q, PROJ = "v.blk.1.0.layer_scale.gamma", "v.blk.2.1.attn.query.proj.weight", "mm.input_projection.weight"
# (id, variant arguments, what the refusal names); shapes in numpy order, as the writer takes them
MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("no-stem", {"tensors": gone(STEM)}, "tensor v.conv_stem.conv.weight is missing"),
    ("stem-5x5", {"tensors": t(STEM, 8, 3, 5, 5, fill="random32")}, "conv_stem.conv.weight is not a 3 x 3"),
    ("stem-bias-f16", {"tensors": t("v.conv_stem.conv.bias", 1, 8, 1, 1)}, "conv_stem.conv.bias is stored as F16"),
    ("stem-bias-shape", {"tensors": t("v.conv_stem.conv.bias", 8, fill="random32")}, "conv_stem.conv.bias has"),
    ("no-pwl", {"tensors": gone(PWL)}, "tensor v.blk.0.0.conv_pwl.weight is missing"),
    ("pwl-channels", {"tensors": t(PWL, 8, 12, 1, 1)}, "conv_pwl.weight is not a 1 x 1 convolution over 16"),
    ("dw-f32", {"tensors": t(DW, 16, 1, 3, 3, fill="random32")}, "dw_mid.conv.weight is stored as F32"),
    ("dw-even", {"tensors": t(DW, 16, 1, 4, 4)}, "dw_mid.conv.weight is not a depthwise"),
    ("dw-channels", {"tensors": t(DW, 8, 1, 3, 3)}, "dw_mid.conv.weight is not a depthwise"),
    ("layer-scale-f16", {"tensors": t(LS, 1, 12, 1, 1)}, "layer_scale.gamma is stored as F16"),
    ("layer-scale-shape", {"tensors": t(LS, 12, fill="ones")}, "layer_scale.gamma has the shape"),
    ("bn-width", {"tensors": t("v.blk.0.0.bn1.weight", 8, fill="ones")}, "bn1.weight has the shape"),
    ("heads-split", {"tensors": t(Q, 12, 16, 1, 1)}, "do not fit together"),
    ("no-key", {"tensors": gone("v.blk.2.1.attn.key.proj.weight")}, "attn.key.proj.weight is missing"),
    ("no-output", {"tensors": gone("v.blk.2.1.attn.output.proj.weight")}, "attn.output.proj.weight is missing"),
    ("fusion-width", {"tensors": t("v.msfa.ffn.pw_exp.conv.weight", 64, 16, 1, 1)}, "over 32 channels"),
    ("encoder-width", {"tensors": t("v.msfa.norm.weight", 32, fill="ones")}, "msfa.norm.weight has the shape"),
    ("width-key", {"keys": k("clip.vision.embedding_length", U32, 48)}, "ends in 64 channels"),
    ("token-count", {"keys": k("clip.vision.patch_size", U32, 4)}, "makes 256 tokens"),
    ("image-size", {"keys": k("clip.vision.image_size", U32, 384)}, "cannot pool a 24 x 24"),
    ("tiny-image", {"keys": k("clip.vision.image_size", U32, 8)}, "image size 8"),
    ("size-type", {"keys": k("clip.vision.image_size", F32, 512.0)}, "image_size is stored as float32"),
    ("no-soft-norm", {"tensors": gone("mm.soft_emb_norm.weight")}, "mm.soft_emb_norm.weight is missing"),
    ("soft-norm-width", {"tensors": t("mm.soft_emb_norm.weight", 32, fill="ones")}, "soft_emb_norm.weight has"),
    ("no-projection", {"tensors": gone(PROJ)}, "mm.input_projection.weight is missing"),
    ("wide-projection", {"tensors": t(PROJ, 96, TEXT)}, "to as many"),
    ("narrow-input", {"tensors": t(PROJ, TEXT, 32)}, "to as many"),
]
# Each of these, handed to libmtmd as it is, aborts the process (checked below in a child)
ABORTING = {"no-stem", "no-pwl", "dw-f32", "layer-scale-f16", "heads-split", "token-count", "wide-projection"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox("gemma3n-projector-test")
    yield box
    box.close()


def test_the_synthetic_gemma3n_projector_passes(gemma3n_projector: Path) -> None:
    info = read_projector_info(gemma3n_projector)
    assert (info.projector_type, info.family, info.n_embd_text, info.has_audio) == ("gemma3nv", "Gemma 3n", TEXT, False)
    assert (info.min_tokens, info.max_tokens, info.default_tokens) == (GEMMA3NV_TOKENS,) * 3
    for width, height in [(1, 1), (64, 48), (4000, 300)]:
        assert info.grid(width, height) == (16, 16)
        assert info.tokens_for(width, height) == GEMMA3NV_TOKENS
        assert info.fits(width, height)
    info.check_pairing(TEXT, "gemma3n")
    with pytest.raises(GgufError, match="for Gemma 3n models"):
        info.check_pairing(TEXT, "gemma3")


def test_vetting_loads_it_in_a_child_with_tiny_gemma3n(
    tmp_path: Path, tiny_gemma3n: Path, gemma3n_projector: Path
) -> None:
    ModelChecks(tmp_path / "checks.json").vet_projector(tiny_gemma3n, gemma3n_projector)
    assert (tmp_path / "checks.json").exists()


def test_the_engine_reads_an_image_into_gemma3n(tiny_gemma3n: Path, gemma3n_projector: Path) -> None:
    engine = LlamaEngine()
    try:
        loaded = engine.load(tiny_gemma3n, LoadOptions(n_ctx=1024, n_threads=2, projector=str(gemma3n_projector)))
        assert loaded.projector == gemma3n_projector.name
        key = offer(engine, noise(90, 50))
        tokens = engine.tokenize("<start_of_turn>user\n" + image_placeholder(key) + "Describe it.<end_of_turn>\n")
        assert sum(1 for tok in tokens if tok < 0) == read_projector_info(gemma3n_projector).tokens_for(90, 50)
        stats = engine.generate(tokens, GREEDY, threading.Event(), lambda _t: None)
        assert stats.prompt_evaluated == len(tokens)
    finally:
        engine.unload()


def test_a_gemma3n_audio_part_is_left_alone_as_libmtmd_leaves_it(tmp_path: Path, tiny_gemma3n: Path) -> None:
    audio = {
        **k("clip.has_audio_encoder", GGUFValueType.BOOL, True),
        **k("clip.audio.projector_type", STR, "gemma3na"),
    }
    path = variant(tmp_path / "mmproj-audio.gguf", keys=audio)
    assert not read_projector_info(path).has_audio
    ModelChecks(tmp_path / "checks.json").vet_projector(tiny_gemma3n, path)


@pytest.mark.parametrize(("args", "problem"), [pytest.param(a, p, id=i) for i, a, p in MALFORMED])
def test_malformed_gemma3n_projectors_are_refused_with_the_problem_named(
    tmp_path: Path, args: dict[str, Any], problem: str
) -> None:
    path = variant(tmp_path / "mmproj-bad.gguf", **args)
    with pytest.raises(GgufError, match=problem):
        read_projector_info(path)


@pytest.mark.parametrize(("args", "problem"), [pytest.param(a, p, id=i) for i, a, p in MALFORMED if i in ABORTING])
def test_what_would_abort_libmtmd_dies_in_a_child_and_is_refused_here(
    tmp_path: Path, tiny_gemma3n: Path, sandbox: Sandbox, args: dict[str, Any], problem: str
) -> None:
    path = variant(tmp_path / "mmproj-bad.gguf", **args)
    with pytest.raises(SandboxError) as died:
        sandbox.call(probe_projector, str(tiny_gemma3n), str(path), 1, TEXT, timeout=120)
    assert died.value.kind == "crashed"
    with pytest.raises(ModelRejectedError, match=problem):
        ModelChecks(tmp_path / "checks.json").vet_projector(tiny_gemma3n, path)
    assert not (tmp_path / "checks.json").exists()


def test_fuzzed_gemma3n_projectors_only_ever_raise_gguf_errors(
    tmp_path: Path, gemma3n_projector: Path, tiny_gemma3n: Path, sandbox: Sandbox
) -> None:
    passed = fuzz(gemma3n_projector, tmp_path, 300)
    assert len(passed) >= 5
    encode_in_child(sandbox, tiny_gemma3n, passed[:12], TEXT)
