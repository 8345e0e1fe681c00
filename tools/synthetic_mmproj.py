"""Random-weight image projectors (mmproj GGUFs) with the layout libmtmd loads.

For tests (tiny projectors, well under a megabyte) and benchmarks (the real
Gemma 4 E2B vision tower's dimensions). Tensor names, shapes and metadata keys
follow llama.cpp's converter (conversion/gemma.py: `Gemma3VisionModel`,
`Gemma4VisionAudioModel`, `Gemma3nVisionAudioModel`) and what libmtmd's loader
reads (tools/mtmd/clip.cpp: `load_hparams`, `load_tensors`, the gemma4v, siglip,
gemma4a and mobilenetv5 graph builders), so
a file written here is one libmtmd loads and runs. Shapes below are in numpy
order (slowest dimension first); ggml lists them the other way round.

    python -m tools.synthetic_mmproj --text-model MODEL.gguf --out DIR [--shape e2b] [--audio]

writes DIR/mmproj-<model stem>.gguf for the model's architecture and width.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter

from app.core.engine.gguf_info import read_metadata
from tools.synthetic_gemma import write_streamed

_POOL_SIZE = 1 << 22
_CHUNK = 1 << 22


@dataclass(frozen=True)
class VisionShape:
    """Hyper-parameters of a vision tower."""

    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    patch: int
    image_size: int  # gemma3: the side every image is resized to; gemma4v: unused by libmtmd (224, as converted)
    positions: int = 0  # gemma4v: rows in each of the x and y position tables
    n_merge: int | None = None  # patches pooled per side; None: libmtmd's default, and no key written


@dataclass(frozen=True)
class AudioShape:
    """Hyper-parameters of a Gemma 4 audio conformer (gemma4a), which Gemma 4 E2B/E4B projectors carry."""

    n_mel: int
    channels: tuple[int, int]  # the two stride-2 subsampling convolutions
    n_embd: int
    n_layer: int
    n_head: int
    n_ff: int
    n_out: int  # width after the output projection, before the multimodal embedder


_CONV_KERNEL = 5  # the depthwise convolution: clip.cpp pads it by 4, so libmtmd needs 5 taps

SHAPES: dict[str, dict[str, VisionShape]] = {
    "gemma4v": {
        "tiny": VisionShape(n_embd=32, n_ff=64, n_layer=2, n_head=2, patch=4, image_size=224, positions=512),
        # Gemma 4 E2B's vision tower, as transformers' Gemma4VisionConfig defaults give it (the E2B/E4B
        # tower; the 26B/31B one is 1152 wide with 27 layers): hidden_size 768, intermediate_size 3072,
        # num_hidden_layers 16, num_attention_heads 12 (head_dim 64), patch_size 16,
        # position_embedding_size 10240, pooling_kernel_size 3 (libmtmd's default n_merge for gemma4v).
        # The layout matches llama.cpp's conversion/gemma.py (Gemma4VisionAudioModel), which writes
        # image_size 224 ("unused, but set to avoid error").
        "e2b": VisionShape(n_embd=768, n_ff=3072, n_layer=16, n_head=12, patch=16, image_size=224, positions=10240),
    },
    "gemma3": {
        "tiny": VisionShape(n_embd=32, n_ff=64, n_layer=2, n_head=2, patch=4, image_size=64),
        # SigLIP-so400m as in every Gemma 3 vision model: 896 px, 14 px patches, 4x4 pooling to 256 tokens.
        "4b": VisionShape(n_embd=1152, n_ff=4304, n_layer=27, n_head=16, patch=14, image_size=896),
    },
}
AUDIO_SHAPES = {
    "tiny": AudioShape(n_mel=16, channels=(4, 4), n_embd=32, n_layer=1, n_head=2, n_ff=64, n_out=48),
    # Gemma 4 E2B/E4B audio_config: hidden_size 1024, 12 layers, 8 heads, subsampling_conv_channels [128, 32],
    # 128 mel bins, output_proj_dims 1536; the converter sets intermediate_size to 4 x hidden_size.
    "e2b": AudioShape(n_mel=128, channels=(128, 32), n_embd=1024, n_layer=12, n_head=8, n_ff=4096, n_out=1536),
}
KIND_FOR_ARCH = {"gemma4": "gemma4v", "gemma3": "gemma3", "gemma3n": "gemma3nv"}
# A tiny MobileNetV5 (Gemma 3n): a 512 px image, a stride-2 stem, then four stages that each halve the map
# (256 -> 128 -> 64 -> 32 -> 16) with edge-residual, inverted-residual and multi-query attention blocks; the
# fusion adapter joins the ends of stages 2 and 3 at 32 x 32 and pools to 16 x 16: 256 tokens, as the real one.
GEMMA3NV_IMAGE = 512
GEMMA3NV_TOKENS = 256


@dataclass(frozen=True)
class Key:
    """One metadata entry."""

    name: str
    vtype: GGUFValueType
    value: Any
    sub_type: GGUFValueType | None = None  # the element type of an array


@dataclass(frozen=True)
class Tensor:
    """One tensor: numpy-order shape, and how to fill it ("random" F16, "random32", "ones" or "zeros" F32)."""

    name: str
    shape: tuple[int, ...]
    fill: str = "random"

    @property
    def qtype(self) -> GGMLQuantizationType:
        """The stored type."""
        return GGMLQuantizationType.F16 if self.fill == "random" else GGMLQuantizationType.F32

    @property
    def n_bytes(self) -> int:
        """Bytes of data."""
        return math.prod(self.shape) * (2 if self.fill == "random" else 4)


def _u32(name: str, value: int) -> Key:
    return Key(name, GGUFValueType.UINT32, value)


def _common_keys(prefix: str, n_embd: int, n_ff: int, n_layer: int, n_head: int, n_text: int) -> list[Key]:
    return [
        _u32(f"clip.{prefix}.embedding_length", n_embd),
        _u32(f"clip.{prefix}.feed_forward_length", n_ff),
        _u32(f"clip.{prefix}.block_count", n_layer),
        _u32(f"clip.{prefix}.attention.head_count", n_head),
        Key(f"clip.{prefix}.attention.layer_norm_epsilon", GGUFValueType.FLOAT32, 1e-6),
        _u32(f"clip.{prefix}.projection_dim", n_text),
    ]


def _vision_keys(kind: str, s: VisionShape, n_text: int) -> list[Key]:
    keys = [
        Key("general.type", GGUFValueType.STRING, "mmproj"),
        Key("general.name", GGUFValueType.STRING, f"synthetic {kind} projector"),
        Key("clip.has_vision_encoder", GGUFValueType.BOOL, True),
        # Gemma 3 projectors name their type with the older, modality-free key; Gemma 4's carry audio too
        Key("clip.projector_type" if kind == "gemma3" else "clip.vision.projector_type", GGUFValueType.STRING, kind),
        _u32("clip.vision.image_size", s.image_size),
        _u32("clip.vision.patch_size", s.patch),
        *_common_keys("vision", s.n_embd, s.n_ff, s.n_layer, s.n_head, n_text),
    ]
    mean, std = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) if kind == "gemma3" else ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    keys += [
        Key("clip.vision.image_mean", GGUFValueType.ARRAY, mean, GGUFValueType.FLOAT32),
        Key("clip.vision.image_std", GGUFValueType.ARRAY, std, GGUFValueType.FLOAT32),
    ]
    if kind == "gemma3":
        keys.append(Key("clip.use_gelu", GGUFValueType.BOOL, True))
    if s.n_merge is not None:
        keys.append(_u32("clip.vision.projector.scale_factor", s.n_merge))
    return keys


def _gemma4v_tensors(s: VisionShape, n_text: int) -> list[Tensor]:
    e, f, d_head = s.n_embd, s.n_ff, s.n_embd // s.n_head
    out = [
        Tensor("v.patch_embd.weight", (e, 3, s.patch, s.patch)),
        Tensor("v.position_embd.weight", (2, s.positions, e), "random32"),  # one table for x, one for y
    ]
    for i in range(s.n_layer):
        b = f"v.blk.{i}."
        out += [
            Tensor(b + "ln1.weight", (e,), "ones"),
            Tensor(b + "attn_q.weight", (e, e)),
            Tensor(b + "attn_k.weight", (e, e)),
            Tensor(b + "attn_v.weight", (e, e)),
            Tensor(b + "attn_q_norm.weight", (d_head,), "ones"),
            Tensor(b + "attn_k_norm.weight", (d_head,), "ones"),
            Tensor(b + "attn_out.weight", (e, e)),
            Tensor(b + "attn_post_norm.weight", (e,), "ones"),
            Tensor(b + "ln2.weight", (e,), "ones"),
            Tensor(b + "ffn_gate.weight", (f, e)),
            Tensor(b + "ffn_up.weight", (f, e)),
            Tensor(b + "ffn_down.weight", (e, f)),
            Tensor(b + "ffn_post_norm.weight", (e,), "ones"),
        ]
    return [*out, Tensor("mm.input_projection.weight", (n_text, e))]


def _gemma3_tensors(s: VisionShape, n_text: int) -> list[Tensor]:
    e, f = s.n_embd, s.n_ff
    side = s.image_size // s.patch
    out = [
        Tensor("v.patch_embd.weight", (e, 3, s.patch, s.patch)),
        Tensor("v.patch_embd.bias", (e,), "random32"),
        Tensor("v.position_embd.weight", (side * side, e), "random32"),
    ]
    for i in range(s.n_layer):
        b = f"v.blk.{i}."
        for part, shape in (("attn_q", (e, e)), ("attn_k", (e, e)), ("attn_v", (e, e)), ("attn_out", (e, e))):
            out += [Tensor(b + part + ".weight", shape), Tensor(b + part + ".bias", (e,), "random32")]
        out += [
            Tensor(b + "ln1.weight", (e,), "ones"),
            Tensor(b + "ln1.bias", (e,), "zeros"),
            Tensor(b + "ln2.weight", (e,), "ones"),
            Tensor(b + "ln2.bias", (e,), "zeros"),
            Tensor(b + "ffn_up.weight", (f, e)),
            Tensor(b + "ffn_up.bias", (f,), "random32"),
            Tensor(b + "ffn_down.weight", (e, f)),
            Tensor(b + "ffn_down.bias", (e,), "random32"),
        ]
    return [
        *out,
        Tensor("v.post_ln.weight", (e,), "ones"),
        Tensor("v.post_ln.bias", (e,), "zeros"),
        Tensor("mm.soft_emb_norm.weight", (e,), "ones"),
        Tensor("mm.input_projection.weight", (e, n_text)),  # Gemma 3 stores it transposed
    ]


def _gemma3nv_keys(n_text: int) -> list[Key]:
    return [
        Key("general.type", GGUFValueType.STRING, "mmproj"),
        Key("general.name", GGUFValueType.STRING, "synthetic gemma3nv projector"),
        Key("clip.has_vision_encoder", GGUFValueType.BOOL, True),
        Key("clip.vision.projector_type", GGUFValueType.STRING, "gemma3nv"),
        _u32("clip.vision.image_size", GEMMA3NV_IMAGE),
        _u32("clip.vision.patch_size", GEMMA3NV_IMAGE // GEMMA3NV_TOKENS),  # as the converter derives it
        # the converter's placeholders: MobileNetV5 reads neither the block count nor the head count
        *_common_keys("vision", n_text, 4 * n_text, 128, 8, n_text),
        Key("clip.vision.image_mean", GGUFValueType.ARRAY, [0.0, 0.0, 0.0], GGUFValueType.FLOAT32),
        Key("clip.vision.image_std", GGUFValueType.ARRAY, [1.0, 1.0, 1.0], GGUFValueType.FLOAT32),
    ]


def _conv(name: str, out: int, inp: int, k: int, fill: str = "random") -> Tensor:
    return Tensor(name, (out, inp, k, k), fill)


def _inverted(b: str, inp: int, wide: int, out: int, k_start: int = 3, strided: bool = False) -> list[Tensor]:
    """A universal inverted residual block: depthwise, expansion, [strided depthwise], projection."""
    parts = [
        _conv(b + "dw_start.conv.weight", inp, 1, k_start),
        Tensor(b + "dw_start.bn.weight", (inp,), "ones"),
        _conv(b + "pw_exp.conv.weight", wide, inp, 1),
        Tensor(b + "pw_exp.bn.weight", (wide,), "ones"),
    ]
    if strided:
        parts += [_conv(b + "dw_mid.conv.weight", wide, 1, 3), Tensor(b + "dw_mid.bn.weight", (wide,), "ones")]
    return [
        *parts,
        _conv(b + "pw_proj.conv.weight", out, wide, 1),
        Tensor(b + "pw_proj.bn.weight", (out,), "ones"),
        Tensor(b + "layer_scale.gamma", (1, out, 1, 1), "ones"),
    ]


def _attention(b: str, ch: int, d_head: int) -> list[Tensor]:
    """A multi-query attention block whose keys and values are pooled by strided depthwise convolutions."""
    return [
        Tensor(b + "norm.weight", (ch,), "ones"),
        _conv(b + "attn.query.proj.weight", 2 * d_head, ch, 1),
        _conv(b + "attn.key.down_conv.weight", ch, 1, 3),
        Tensor(b + "attn.key.norm.weight", (ch,), "ones"),
        _conv(b + "attn.key.proj.weight", d_head, ch, 1),
        _conv(b + "attn.value.down_conv.weight", ch, 1, 3),
        Tensor(b + "attn.value.norm.weight", (ch,), "ones"),
        _conv(b + "attn.value.proj.weight", d_head, ch, 1),
        _conv(b + "attn.output.proj.weight", ch, 2 * d_head, 1),
        Tensor(b + "layer_scale.gamma", (1, ch, 1, 1), "ones"),
    ]


def _gemma3nv_tensors(n_text: int) -> list[Tensor]:
    edge = []
    for i in range(2):
        b = f"v.blk.0.{i}."
        edge += [
            _conv(b + "conv_exp.weight", 16, 8, 3),
            Tensor(b + "bn1.weight", (16,), "ones"),
            _conv(b + "conv_pwl.weight", 8, 16, 1),
            Tensor(b + "bn2.weight", (8,), "ones"),
        ]
    return [
        _conv("v.conv_stem.conv.weight", 8, 3, 3, "random32"),
        Tensor("v.conv_stem.conv.bias", (1, 8, 1, 1), "random32"),
        Tensor("v.conv_stem.bn.weight", (8,), "ones"),
        *edge,
        *_inverted("v.blk.1.0.", 8, 16, 12, strided=True),
        *_inverted("v.blk.1.1.", 12, 24, 12, k_start=5),
        *_inverted("v.blk.2.0.", 12, 32, 16, strided=True),
        *_attention("v.blk.2.1.", 16, 8),
        *_inverted("v.blk.3.0.", 16, 32, 16, strided=True),
        *_attention("v.blk.3.1.", 16, 8),
        _conv("v.msfa.ffn.pw_exp.conv.weight", 64, 32, 1),
        Tensor("v.msfa.ffn.pw_exp.bn.weight", (64,), "ones"),
        _conv("v.msfa.ffn.pw_proj.conv.weight", n_text, 64, 1),
        Tensor("v.msfa.ffn.pw_proj.bn.weight", (n_text,), "ones"),
        Tensor("v.msfa.norm.weight", (n_text,), "ones"),
        Tensor("mm.soft_emb_norm.weight", (n_text,), "ones"),
        # libmtmd 0.3.36 sizes its output by this projection's input width: Gemma 3n's is square
        Tensor("mm.input_projection.weight", (n_text, n_text)),
    ]


def _audio_keys(a: AudioShape, n_text: int) -> list[Key]:
    return [
        Key("clip.has_audio_encoder", GGUFValueType.BOOL, True),
        Key("clip.audio.projector_type", GGUFValueType.STRING, "gemma4a"),
        _u32("clip.audio.num_mel_bins", a.n_mel),
        *_common_keys("audio", a.n_embd, a.n_ff, a.n_layer, a.n_head, n_text),
    ]


def _audio_tensors(a: AudioShape, n_text: int) -> list[Tensor]:
    c0, c1 = a.channels
    freq = a.n_mel
    for _ in range(2):
        freq = (freq - 1) // 2 + 1  # 3x3 kernels, stride 2, padding 1
    e, d_head = a.n_embd, a.n_embd // a.n_head
    out = [
        Tensor("a.conv1d.0.weight", (c0, 1, 3, 3), "random32"),
        Tensor("a.conv1d.0.norm.weight", (c0,), "ones"),
        Tensor("a.conv1d.1.weight", (c1, c0, 3, 3), "random32"),
        Tensor("a.conv1d.1.norm.weight", (c1,), "ones"),
        Tensor("a.input_projection.weight", (e, c1 * freq)),
    ]
    for i in range(a.n_layer):
        b = f"a.blk.{i}."
        out += [
            Tensor(b + "ffn_norm.weight", (e,), "ones"),
            Tensor(b + "ffn_up.weight", (a.n_ff, e)),
            Tensor(b + "ffn_down.weight", (e, a.n_ff)),
            Tensor(b + "ffn_post_norm.weight", (e,), "ones"),
            Tensor(b + "attn_pre_norm.weight", (e,), "ones"),
            Tensor(b + "attn_q.weight", (e, e)),
            Tensor(b + "attn_k.weight", (e, e)),
            Tensor(b + "attn_v.weight", (e, e)),
            Tensor(b + "per_dim_scale.weight", (d_head,), "ones"),
            Tensor(b + "attn_k_rel.weight", (e, e)),
            Tensor(b + "attn_out.weight", (e, e)),
            Tensor(b + "attn_post_norm.weight", (e,), "ones"),
            Tensor(b + "conv_norm.weight", (e,), "ones"),  # the pre-norm: clip.cpp reads the two names crosswise
            Tensor(b + "conv_pw1.weight", (2 * e, e)),
            Tensor(b + "conv_dw.weight", (e, _CONV_KERNEL), "random32"),
            Tensor(b + "norm_conv.weight", (e,), "ones"),
            Tensor(b + "conv_pw2.weight", (e, e)),
            Tensor(b + "ffn_norm_1.weight", (e,), "ones"),
            Tensor(b + "ffn_up_1.weight", (a.n_ff, e)),
            Tensor(b + "ffn_down_1.weight", (e, a.n_ff)),
            Tensor(b + "ffn_post_norm_1.weight", (e,), "ones"),
            Tensor(b + "ln2.weight", (e,), "ones"),
        ]
    return [
        *out,
        Tensor("a.pre_encode.out.weight", (a.n_out, e)),
        Tensor("mm.a.soft_emb_norm.weight", (a.n_out,), "ones"),
        Tensor("mm.a.input_projection.weight", (n_text, a.n_out)),
    ]


def plan(kind: str, n_embd_text: int, shape: str = "tiny", audio: str | None = None) -> tuple[list[Key], list[Tensor]]:
    """The metadata and tensors of a projector of `kind` ("gemma4v", "gemma3", "gemma3nv") feeding `n_embd_text`.

    `audio` names an audio shape ("tiny", "e2b") to add a Gemma 4 audio encoder, as E2B/E4B projectors have.
    Gemma 3n's ("gemma3nv") comes in one tiny shape only.
    """
    if kind == "gemma3nv":
        if shape != "tiny" or audio is not None:
            raise ValueError("a gemma3nv projector comes only in the tiny shape, without audio")
        return _gemma3nv_keys(n_embd_text), _gemma3nv_tensors(n_embd_text)
    try:
        s = SHAPES[kind][shape]
    except KeyError:
        raise ValueError(f"no {shape!r} shape for a {kind!r} projector") from None
    keys = _vision_keys(kind, s, n_embd_text)
    tensors = _gemma4v_tensors(s, n_embd_text) if kind == "gemma4v" else _gemma3_tensors(s, n_embd_text)
    if audio is not None:
        if kind != "gemma4v":
            raise ValueError("only Gemma 4 projectors carry an audio encoder")
        keys += _audio_keys(AUDIO_SHAPES[audio], n_embd_text)
        tensors += _audio_tensors(AUDIO_SHAPES[audio], n_embd_text)
    return keys, tensors


def _values(t: Tensor, pool: np.ndarray, rng: np.random.Generator) -> Iterator[np.ndarray]:
    remaining = math.prod(t.shape)
    while remaining:
        n = min(remaining, _CHUNK)
        if t.fill == "ones":
            yield np.ones(n, dtype=np.float32)
        elif t.fill == "zeros":
            yield np.zeros(n, dtype=np.float32)
        else:
            start = int(rng.integers(0, len(pool) - n)) if n < len(pool) else 0
            values = pool[start : start + n]
            yield values if t.fill == "random" else values.astype(np.float32)
        remaining -= n


def write_plan(path: Path, keys: Sequence[Key], tensors: Sequence[Tensor], seed: int = 0) -> Path:
    """Write a projector GGUF with exactly these keys and tensors to `path` (atomically)."""
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(_POOL_SIZE, dtype=np.float32) * 0.02).astype(np.float16)
    tmp = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(tmp), "clip")
    for key in keys:
        writer.add_key_value(key.name, key.value, key.vtype, key.sub_type)
    for t in tensors:
        dtype = np.dtype(np.float16 if t.qtype == GGMLQuantizationType.F16 else np.float32)
        writer.add_tensor_info(t.name, t.shape, dtype, t.n_bytes, t.qtype)
    write_streamed(writer, [(_values(t, pool, rng), t.n_bytes) for t in tensors])
    writer.close()
    os.replace(tmp, path)
    return path


def write_projector(
    path: Path, kind: str, n_embd_text: int, shape: str = "tiny", audio: str | None = None, seed: int = 0
) -> Path:
    """Write a random-weight projector of `kind` ("gemma4v", "gemma3", "gemma3nv") for a model `n_embd_text` wide."""
    keys, tensors = plan(kind, n_embd_text, shape, audio)
    return write_plan(path, keys, tensors, seed)


def matching_projector(model: Path, out_dir: Path, shape: str = "tiny", audio: str | None = None) -> Path:
    """`out_dir/mmproj-<model stem>.gguf` for `model`'s architecture and width, written unless newer than it."""
    meta = read_metadata(model)
    arch = meta.get("general.architecture")
    kind = KIND_FOR_ARCH.get(str(arch))
    if kind is None:
        raise ValueError(f"{model.name} is a {arch} model; projectors are written for {sorted(KIND_FOR_ARCH)}")
    target = out_dir / f"mmproj-{model.stem}.gguf"
    if target.exists() and target.stat().st_mtime_ns >= model.stat().st_mtime_ns:
        return target
    return write_projector(target, kind, int(meta[f"{arch}.embedding_length"]), shape, audio)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: a projector matched to a text model."""
    parser = argparse.ArgumentParser(description="Write a random-weight image projector matched to a text model.")
    parser.add_argument("--text-model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shape", default="tiny", help="tiny, or e2b (Gemma 4) / 4b (Gemma 3) for real sizes")
    parser.add_argument("--audio", action="store_true", help="add a Gemma 4 audio encoder, as E2B/E4B projectors have")
    args = parser.parse_args(argv)
    audio = ("e2b" if args.shape == "e2b" else "tiny") if args.audio else None
    print(matching_projector(args.text_model, args.out, args.shape, audio))


if __name__ == "__main__":
    main()
