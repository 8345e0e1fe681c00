"""The per-type header checks behind `projector_info.read_projector_info`.

Each check mirrors what clip.cpp (llama-cpp-python 0.3.36) reads for one
projector type and what ggml's ops then accept: every key its typed getters
read, every tensor its graph builder uses, and the shapes that must agree
from one operation to the next. A file that passes builds its graph without
tripping a `GGML_ASSERT`, and encodes an image into as many embeddings as
libmtmd expects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf.constants import GGMLQuantizationType, GGUFValueType

from app.core.engine.gguf_info import GgufError, TensorInfo


class ProjectorError(GgufError):
    """A projector that must not be handed to libmtmd, or that cannot serve the model; the message is for the user."""


_GEMMA4V_TOKENS = (70, 1120)  # clip.cpp: set_limit_image_tokens(70, 1120) for gemma4v
_GEMMA4V_DEFAULT = 280  # Gemma 4's own default budget (vision_config.default_output_length)
_WARMUP_SIDE = 16  # clip.cpp: set_warmup_n_tokens(256) for gemma4v, a 16 x 16 grid of tokens
_DEFAULT_MERGE = {"gemma4v": 3, "gemma3": 4, "gemma3nv": 1}
_MNV5_OUT = 16  # mobilenetv5.cpp: the fusion adapter pools its output down to 16 x 16 when it is larger
_MNV5_NODES = 8000  # clip.cpp builds graphs of at most 8,192 nodes; ggml aborts past that

_STR, _BOOL, _U32, _I32, _F32, _ARR = (
    GGUFValueType.STRING,
    GGUFValueType.BOOL,
    GGUFValueType.UINT32,
    GGUFValueType.INT32,
    GGUFValueType.FLOAT32,
    GGUFValueType.ARRAY,
)
# Types ggml's CPU backend multiplies a matrix by (not the integer, F64 and intermediate types, nor the
# newest ones, whose support varies); element-wise operands and 1-D tensors must be F32.
_MATMUL = frozenset(t.name for t in GGMLQuantizationType) - {
    *("Q8_1", "Q8_K", "I8", "I16", "I32", "I64", "F64", "NVFP4", "Q1_0", "Q2_0")
}
_F32_ONLY = frozenset({"F32"})
_CONV = frozenset({"F32", "F16"})  # ggml_conv_2d converts the input to the kernel's type (im2col)
_TABLE = frozenset({"F32", "F16", "BF16"})
# ggml_conv_2d_dw multiplies the kernel by an F16 im2col; ggml's CPU backend has no F32 x F16 product (it aborts)
_DEPTHWISE = frozenset({"F16"})
_CLAMPS = (".input_max", ".input_min", ".output_max", ".output_min")


@dataclass(frozen=True)
class _Header:
    path: Path
    file_size: int
    values: dict[str, Any]
    types: dict[str, tuple[GGUFValueType, GGUFValueType | None]]  # value type, and element type of an array
    tensors: dict[str, TensorInfo]


class _Checks:
    """Typed access to one header, raising ProjectorError that names the file and the problem."""

    def __init__(self, header: _Header) -> None:
        self.h = header

    def bad(self, what: str) -> ProjectorError:
        return ProjectorError(f"'{self.h.path.name}' is damaged or not a projector Tern can use: {what}.")

    def key(self, name: str, vtype: GGUFValueType, required: bool = False, sub: GGUFValueType | None = None) -> Any:
        """The value of `name` if it has exactly the type libmtmd reads it as."""
        if name not in self.h.values:
            if required:
                raise self.bad(f"it lacks the setting {name}")
            return None
        have, have_sub = self.h.types[name]
        if have != vtype or (sub is not None and have_sub != sub):
            kind = have.name.lower() + (f" of {have_sub.name.lower()}" if have_sub else "")
            want = vtype.name.lower() + (f" of {sub.name.lower()}" if sub else "")
            raise self.bad(f"the setting {name} is stored as {kind}, where llama.cpp reads {want}")
        value = self.h.values[name]
        if vtype == _U32 and value > 2**31 - 1:
            raise self.bad(f"the setting {name} is {value}, out of range")
        if vtype == _ARR and not isinstance(value, list):
            raise self.bad(f"the setting {name} holds {len(value)} values, far too many")
        return value

    def count(self, name: str, low: int, high: int, default: int | None = None) -> int:
        """A u32 setting that must lie in low..high."""
        value = self.key(name, _U32, required=default is None)
        value = default if value is None else value
        assert value is not None
        if not low <= value <= high:
            raise self.bad(f"the setting {name} is {value}; it must be {low} to {high}")
        return int(value)

    def tensor(self, name: str, shape: tuple[int, ...] | None, types: frozenset[str], required: bool = True) -> Any:
        """The tensor `name`, checked for shape (ggml order; None: any) and type; None when optional and absent."""
        t = self.h.tensors.get(name)
        if t is None:
            if required:
                raise self.bad(f"the tensor {name} is missing")
            return None
        if shape is not None and _padded(t.shape) != _padded(shape):
            raise self.bad(f"the tensor {name} has the shape {_show(t.shape)}, where {_show(shape)} is needed")
        if t.qtype not in types:
            raise self.bad(f"the tensor {name} is stored as {t.qtype}, which llama.cpp cannot use there")
        return t

    def scale(self, name: str, width: int) -> None:
        """An optional element-wise weight that must broadcast over vectors `width` wide."""
        t = self.h.tensors.get(name)
        if t is not None:
            self.tensor(name, (width,) if _padded(t.shape) != (1, 1, 1, 1) else (1,), _F32_ONLY)


def _padded(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (*shape, *([1] * (4 - len(shape))))


def _matrix(t: TensorInfo) -> tuple[int, int]:
    """(columns, rows) of a 2-D tensor in ggml order; (0, 0) for any other."""
    ne = _padded(t.shape)
    return (ne[0], ne[1]) if ne[2:] == (1, 1) else (0, 0)


def _show(shape: tuple[int, ...]) -> str:
    return " x ".join(str(n) for n in shape)


def _check_keys(c: _Checks, modality: str, max_layer: int = 64) -> dict[str, int | float]:
    """Every key libmtmd's load_hparams reads for `modality`, by its getter's type; the numbers Tern needs.

    `max_layer` bounds the block count (Gemma 3n's converter writes a placeholder 128 that libmtmd ignores).
    """
    p = modality
    hp: dict[str, int | float] = {
        "n_embd": c.count(f"clip.{p}.embedding_length", 1, 16384),
        "n_head": c.count(f"clip.{p}.attention.head_count", 1, 128),
        "n_ff": c.count(f"clip.{p}.feed_forward_length", 0, 2**31 - 1),
        "n_layer": c.count(f"clip.{p}.block_count", 0, max_layer if p == "vision" else 32),
    }
    c.count(f"clip.{p}.projection_dim", 0, 2**31 - 1)
    eps = c.key(f"clip.{p}.attention.layer_norm_epsilon", _F32, required=True)
    if not (math.isfinite(eps) and 0 <= eps < 1):
        raise c.bad(f"its layer-norm epsilon {eps} is out of range")
    hp["n_head_kv"] = c.count(f"clip.{p}.attention.head_count_kv", 1, 128, default=int(hp["n_head"]))
    head_dim = c.count(f"clip.{p}.attention.head_dim", 0, 1024, default=0)
    if not head_dim and hp["n_embd"] % hp["n_head"]:
        raise c.bad(f"its width {hp['n_embd']} does not split into {hp['n_head']} attention heads")
    hp["d_head"] = head_dim or int(hp["n_embd"]) // int(hp["n_head"])
    if hp["n_head"] % hp["n_head_kv"]:
        raise c.bad(f"its {hp['n_head']} attention heads do not share {hp['n_head_kv']} key/value heads evenly")
    layers = c.key(f"clip.{p}.feature_layer", _ARR, sub=_I32) or []
    if any(v > hp["n_layer"] for v in layers):
        raise c.bad(f"clip.{p}.feature_layer names a layer it does not have")
    if p == "audio":
        hp["n_mel"] = c.count("clip.audio.num_mel_bins", 1, 256)
        return hp
    hp["image_size"] = c.count("clip.vision.image_size", 0, 8192)
    hp["patch"] = c.count("clip.vision.patch_size", 1, 128)
    c.key("clip.minicpmv_version", _I32)
    c.key("clip.minicpmv_query_num", _U32)
    c.key("clip.vision.mm_patch_merge_type", _STR)
    if len(c.key("clip.vision.image_grid_pinpoints", _ARR, sub=_I32) or []) % 2:
        raise c.bad("clip.vision.image_grid_pinpoints has an odd number of values")
    if c.key("clip.use_gelu", _BOOL) and c.key("clip.use_silu", _BOOL):
        raise c.bad("it asks for two activation functions at once (use_gelu and use_silu)")
    for name in ("clip.vision.image_mean", "clip.vision.image_std"):
        values = c.key(name, _ARR, required=True, sub=_F32)
        if len(values) < 3 or not all(math.isfinite(v) for v in values[:3]):
            raise c.bad(f"{name} needs three finite values (one per colour)")
    return hp


def _check_vit(c: _Checks, hp: dict[str, Any], swap_ffn: bool) -> None:
    """The transformer layers of build_vit (clip.cpp), with separate Q/K/V as Gemma's towers have."""
    e, d, layers = hp["n_embd"], hp["d_head"], hp["n_layer"]
    q_out, kv_out = hp["n_head"] * d, hp["n_head_kv"] * d
    c.scale("v.pre_ln.weight", e)
    c.scale("v.pre_ln.bias", e)
    c.scale("v.post_ln.weight", e)
    c.scale("v.post_ln.bias", e)
    for i in range(layers):
        b = f"v.blk.{i}."
        for part in ("attn_qkv.weight", "ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"):
            if b + part in c.h.tensors:  # these switch the graph to paths Gemma's encoders never take
                raise c.bad(f"it has the tensor {b + part}, which a {hp['kind']} projector does not have")
        for part, rows in (("attn_q", q_out), ("attn_k", kv_out), ("attn_v", kv_out)):
            c.tensor(f"{b}{part}.weight", (e, rows), _MATMUL)
            c.tensor(f"{b}{part}.bias", (rows,), _F32_ONLY, required=False)
        c.tensor(f"{b}attn_out.weight", (q_out, e), _MATMUL)
        c.tensor(f"{b}attn_out.bias", (e,), _F32_ONLY, required=False)
        for part in ("attn_q_norm.weight", "attn_k_norm.weight"):
            c.tensor(b + part, (d,), _F32_ONLY, required=False)
        for part in ("ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "attn_post_norm.weight"):
            c.scale(b + part, e)
        for part in ("ffn_post_norm.weight", "ls1.weight", "ls2.weight", "out_scale.weight"):
            c.scale(b + part, e)
        up, down = c.h.tensors.get(b + "ffn_up.weight"), c.h.tensors.get(b + "ffn_down.weight")
        up_name, down_name = b + "ffn_up", b + "ffn_down"
        if swap_ffn and up and down and _matrix(down)[0] == e:
            up_name, down_name = down_name, up_name  # old Gemma 3 files store them swapped; clip.cpp swaps back
        first = c.tensor(up_name + ".weight", None, _MATMUL)
        ff = _matrix(first)[1] if _matrix(first)[0] == e else 0
        if not ff:
            raise c.bad(f"the tensor {up_name}.weight does not take vectors {e} wide")
        c.tensor(up_name + ".weight", (e, ff), _MATMUL)
        c.tensor(up_name + ".bias", (ff,), _F32_ONLY, required=False)
        c.tensor(b + "ffn_gate.weight", (e, ff), _MATMUL, required=False)
        c.tensor(b + "ffn_gate.bias", (ff,), _F32_ONLY, required=False)
        c.tensor(down_name + ".weight", (ff, e), _MATMUL)
        c.tensor(down_name + ".bias", (e,), _F32_ONLY, required=False)


def _check_gemma4v(c: _Checks, hp: dict[str, Any]) -> tuple[int, int]:
    """gemma4v (models/gemma4v.cpp); returns (text width, rows of each position table)."""
    e, p, merge = hp["n_embd"], hp["patch"], hp["n_merge"]
    if hp["d_head"] % 4:
        raise c.bad(f"its attention heads are {hp['d_head']} wide; the 2-D rotary embedding needs a multiple of 4")
    if _WARMUP_SIDE * p * merge > 4096:
        raise c.bad(f"its patches ({p} px, pooled {merge} x {merge}) are far larger than any Gemma 4 projector's")
    c.tensor("v.patch_embd.weight", (p, p, 3, e), _CONV)
    pos = c.tensor("v.position_embd.weight", None, _TABLE)
    if _padded(pos.shape)[0] != e or _padded(pos.shape)[2:] != (2, 1):
        raise c.bad(f"v.position_embd.weight must be two tables of {e}-wide rows, not {_show(pos.shape)}")
    rows = pos.shape[1]
    side = merge * max(_WARMUP_SIDE, math.isqrt(_GEMMA4V_TOKENS[1] - 1) + 1)
    if rows < side:
        raise c.bad(f"its position table has {rows} rows; images of {_GEMMA4V_TOKENS[1]} tokens need {side}")
    _check_vit(c, hp, swap_ffn=False)
    c.scale("v.std_bias", e)
    c.scale("v.std_scale", e)
    proj = c.tensor("mm.input_projection.weight", None, _MATMUL)
    if _matrix(proj)[0] != e:
        raise c.bad(f"mm.input_projection.weight does not take the encoder's {e}-wide vectors")
    return _matrix(proj)[1], int(rows)


def _check_gemma3(c: _Checks, hp: dict[str, Any]) -> int:
    """gemma3 (models/siglip.cpp); returns the text width."""
    e, p, merge, size = hp["n_embd"], hp["patch"], hp["n_merge"], hp["image_size"]
    side = size // p
    if size % p or side > 256 or side < merge or side % merge:
        raise c.bad(f"its image size {size} is not a whole number of {p}-px patches that pool {merge} x {merge}")
    c.tensor("v.patch_embd.weight", (p, p, 3, e), _CONV)
    c.scale("v.patch_embd.bias", e)
    c.tensor("v.position_embd.weight", (e, side * side), _F32_ONLY)
    _check_vit(c, hp, swap_ffn=True)
    c.tensor("mm.soft_emb_norm.weight", (e,), _F32_ONLY)
    proj = c.tensor("mm.input_projection.weight", None, _TABLE)  # transposed in the graph: no quantized type
    if _matrix(proj)[1] != e:
        raise c.bad(f"mm.input_projection.weight does not take the encoder's {e}-wide vectors")
    return _matrix(proj)[0]


def _check_gemma4a(c: _Checks, hp: dict[str, Any]) -> int:
    """The Gemma 4 audio conformer (models/gemma4a.cpp) as its warm-up graph is built; returns the text width."""
    e, d, h = hp["n_embd"], hp["d_head"], hp["n_head"]
    if d * h != e:
        raise c.bad("its audio attention heads do not add up to the audio encoder's width")
    freq, channels = hp["n_mel"], 1
    for i in range(2):
        conv = c.tensor(f"a.conv1d.{i}.weight", None, _CONV)
        if _padded(conv.shape)[:3] != (3, 3, channels):
            raise c.bad(f"a.conv1d.{i}.weight is not a 3 x 3 convolution over {channels} channels")
        channels, freq = _padded(conv.shape)[3], (freq - 1) // 2 + 1
        c.tensor(f"a.conv1d.{i}.bias", (1, 1, channels), _F32_ONLY, required=False)
        c.scale(f"a.conv1d.{i}.norm.weight", channels)
    width = c.tensor("a.input_projection.weight", None, _MATMUL)
    if _matrix(width)[0] != channels * freq:
        raise c.bad(f"a.input_projection.weight does not take the {channels * freq} values the convolutions give")
    x = _matrix(width)[1]
    c.scale("a.input_projection.bias", x)
    for i in range(hp["n_layer"]):
        b = f"a.blk.{i}."
        for norm in ("ffn_norm", "ffn_post_norm", "attn_pre_norm", "ln1", "attn_post_norm", "conv_norm"):
            c.scale(f"{b}{norm}.weight", x)
        for norm in ("ffn_norm_1", "ffn_post_norm_1", "ln2"):
            c.scale(f"{b}{norm}.weight", x)
        c.tensor(b + "ffn_norm.weight", (x,), _F32_ONLY)
        for up, down in (("ffn_up", "ffn_down"), ("ffn_up_1", "ffn_down_1")):
            first = c.tensor(f"{b}{up}.weight", None, _MATMUL)
            if _matrix(first)[0] != x:
                raise c.bad(f"the tensor {b}{up}.weight does not take vectors {x} wide")
            c.tensor(f"{b}{down}.weight", (_matrix(first)[1], x), _MATMUL)
        c.tensor(b + "ffn_norm_1.weight", (x,), _F32_ONLY)
        for part in ("attn_q", "attn_k", "attn_v"):
            c.tensor(f"{b}{part}.weight", (x, e), _MATMUL, required=False)
        c.tensor(b + "attn_out.weight", (e, x), _MATMUL)
        c.tensor(b + "attn_out.bias", (x,), _F32_ONLY, required=False)
        c.tensor(b + "attn_k_rel.weight", (e, e), _MATMUL, required=False)
        c.tensor(b + "per_dim_scale.weight", (d,), _F32_ONLY, required=False)
        c.tensor(b + "per_dim_k_scale.weight", (d,), _F32_ONLY, required=False)
        pw1 = c.tensor(b + "conv_pw1.weight", None, _MATMUL)
        if _matrix(pw1)[0] != x or _matrix(pw1)[1] % 2:
            raise c.bad(f"the tensor {b}conv_pw1.weight does not take vectors {x} wide into a gated pair")
        half = _matrix(pw1)[1] // 2
        c.tensor(b + "conv_dw.weight", (5, half), _F32_ONLY)  # clip.cpp pads by 4: a 5-tap causal convolution
        c.scale(b + "conv_dw.bias", half)
        c.tensor(b + "conv_pw2.weight", (half, x), _MATMUL)
        c.scale(b + "norm_conv.weight", half)
    out = x
    proj = c.tensor("a.pre_encode.out.weight", None, _MATMUL, required=False)
    if proj is not None:
        if _matrix(proj)[0] != x:
            raise c.bad("a.pre_encode.out.weight does not take the audio encoder's vectors")
        out = _matrix(proj)[1]
        c.scale("a.pre_encode.out.bias", out)
    c.scale("mm.a.soft_emb_norm.weight", out)
    final = c.tensor("mm.a.input_projection.weight", None, _MATMUL)
    if _matrix(final)[0] != out:
        raise c.bad("mm.a.input_projection.weight does not take the audio encoder's vectors")
    return _matrix(final)[1]


def _check_clamps(c: _Checks) -> None:
    """Gemma 4's clamp limits: libmtmd reads each as one F32 value."""
    for name, t in c.h.tensors.items():
        if name.endswith(_CLAMPS) and (t.qtype != "F32" or t.n_elements != 1):
            raise c.bad(f"the clamp limit {name} is not a single F32 value")


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """ggml_calc_conv_output_size, for a size that stays positive (checked by the callers)."""
    return (size + 2 * pad - kernel) // stride + 1


def _same(size: int, kernel: int, stride: int) -> int:
    """mobilenetv5.cpp pad_same_2d followed by an unpadded convolution: TensorFlow's SAME padding."""
    out = -(-size // stride)
    return _conv_out(size + max(0, (out - 1) * stride + kernel - size), kernel, stride, 0)


class _MobileNet:
    """Follows MobileNetV5's graph (models/mobilenetv5.cpp) through a square image, shape by shape."""

    def __init__(self, c: _Checks) -> None:
        self.c = c
        self.nodes = 64  # the stem, the fusion adapter and the embedder, with room to spare

    def has(self, name: str) -> bool:
        return name in self.c.h.tensors

    def conv(self, name: str, kernel: int, ch: int) -> int:
        """A dense kernel x kernel convolution over `ch` channels; returns the channels it makes."""
        t = self.c.tensor(name, None, _CONV)
        ne = _padded(t.shape)
        if ne[:3] != (kernel, kernel, ch) or not 1 <= ne[3] <= 16384:
            raise self.c.bad(f"the tensor {name} is not a {kernel} x {kernel} convolution over {ch} channels")
        return int(ne[3])

    def depthwise(self, name: str, ch: int) -> int:
        """A depthwise convolution over `ch` channels (ggml_conv_2d_dw); returns its odd kernel size."""
        t = self.c.tensor(name, None, _DEPTHWISE)
        ne = _padded(t.shape)
        if ne[0] != ne[1] or ne[0] % 2 == 0 or ne[0] > 7 or ne[2:] != (1, ch):
            raise self.c.bad(f"the tensor {name} is not a depthwise convolution over {ch} channels")
        return int(ne[0])

    def norm(self, name: str, ch: int) -> None:
        self.c.tensor(name, (ch,), _F32_ONLY, required=False)

    def scale(self, name: str, ch: int) -> None:
        """A layer scale, multiplied into the map: ggml's CPU backend multiplies F32 by F32 only."""
        self.c.tensor(name, (1, 1, ch), _F32_ONLY, required=False)

    def edge(self, b: str, size: int, ch: int, stride: int) -> tuple[int, int]:
        """build_edge_residual: a 3 x 3 expansion, then a pointwise projection."""
        wide = self.conv(b + "conv_exp.weight", 3, ch)
        size = _same(size, 3, 2) if stride == 2 else size
        self.norm(b + "bn1.weight", wide)
        out = self.conv(b + "conv_pwl.weight", 1, wide)  # read unconditionally by the graph
        self.norm(b + "bn2.weight", out)
        self.nodes += 20
        return size, out

    def inverted(self, b: str, size: int, ch: int, stride: int) -> tuple[int, int]:
        """build_inverted_residual: optional depthwise, expansion, depthwise (strided) and projection."""
        if self.has(b + "dw_start.conv.weight"):
            self.depthwise(b + "dw_start.conv.weight", ch)
            self.norm(b + "dw_start.bn.weight", ch)
        if self.has(b + "pw_exp.conv.weight"):
            ch = self.conv(b + "pw_exp.conv.weight", 1, ch)
            self.norm(b + "pw_exp.bn.weight", ch)
        if self.has(b + "dw_mid.conv.weight"):
            k = self.depthwise(b + "dw_mid.conv.weight", ch)
            size = _same(size, k, stride) if stride > 1 else size
            self.norm(b + "dw_mid.bn.weight", ch)
        if self.has(b + "pw_proj.conv.weight"):
            ch = self.conv(b + "pw_proj.conv.weight", 1, ch)
            self.norm(b + "pw_proj.bn.weight", ch)
        self.scale(b + "layer_scale.gamma", ch)
        self.nodes += 50
        return size, ch

    def attention(self, b: str, size: int, ch: int) -> tuple[int, int]:
        """build_mobilenet_attn: multi-query attention over keys and values pooled by strided convolutions."""
        self.norm(b + "norm.weight", ch)
        q = self.conv(b + "attn.query.proj.weight", 1, ch)
        pooled = []
        for part in ("key", "value"):
            side = size
            if self.has(f"{b}attn.{part}.down_conv.weight"):
                side = _same(size, self.depthwise(f"{b}attn.{part}.down_conv.weight", ch), 2)
                self.norm(f"{b}attn.{part}.norm.weight", ch)
            pooled.append((side, self.conv(f"{b}attn.{part}.proj.weight", 1, ch)))
        (k_side, d), (v_side, d_v) = pooled
        if k_side != v_side or d != d_v or q % d:
            raise self.c.bad(f"the attention in {b[:-1]} has keys, values and queries that do not fit together")
        out = self.conv(b + "attn.output.proj.weight", 1, q)
        self.scale(b + "layer_scale.gamma", out)
        self.nodes += 70
        return size, out


def _check_gemma3nv(c: _Checks, hp: dict[str, Any]) -> tuple[int, int]:
    """gemma3nv (models/mobilenetv5.cpp) on the square image libmtmd resizes to; returns (text width, tokens)."""
    size, e = hp["image_size"], hp["n_embd"]
    if not 32 <= size <= 2048:
        raise c.bad(f"its image size {size} is not one a Gemma 3n encoder works at")
    m = _MobileNet(c)
    ch = m.conv("v.conv_stem.conv.weight", 3, 3)  # read unconditionally by the graph
    size = _same(size, 3, 2)
    c.tensor("v.conv_stem.conv.bias", (1, 1, ch), _F32_ONLY, required=False)
    m.norm("v.conv_stem.bn.weight", ch)
    features: list[tuple[int, int]] = []
    blocks: list[tuple[str, str]] = []  # (prefix, kind), in the order clip.cpp loads them
    stage_ends: list[int] = []
    for stage in range(4):
        first = len(blocks)
        while True:
            b = f"v.blk.{stage}.{len(blocks) - first}."
            if m.has(b + "conv_exp.weight"):
                blocks.append((b, "edge"))
            elif m.has(b + "attn.query.proj.weight"):
                blocks.append((b, "attention"))
            elif m.has(b + "dw_start.conv.weight") or m.has(b + "pw_exp.conv.weight"):
                blocks.append((b, "inverted"))
            else:
                break
        if len(blocks) > first:
            stage_ends.append(len(blocks) - 1)
    fusion = set(stage_ends[2:4]) if len(stage_ends) >= 4 else {len(blocks) - 1}
    starts = {0} | {end + 1 for end in stage_ends}
    for i, (b, kind) in enumerate(blocks):
        stride = 2 if i in starts else 1
        if kind == "edge":
            size, ch = m.edge(b, size, ch, stride)
        elif kind == "attention":
            size, ch = m.attention(b, size, ch)
        else:
            size, ch = m.inverted(b, size, ch, stride)
        if m.nodes > _MNV5_NODES:
            raise c.bad("its image encoder has far more blocks than llama.cpp can build a graph of")
        if i in fusion:
            features.append((size, ch))
    if features:
        size = features[0][0]
        if any(s > size or size % s for s, _ in features):
            raise c.bad("the feature maps its fusion adapter combines do not scale to one size")
        ch = sum(f for _, f in features)
        if m.has("v.msfa.ffn.pw_exp.conv.weight"):
            ch = m.conv("v.msfa.ffn.pw_exp.conv.weight", 1, ch)
            m.norm("v.msfa.ffn.pw_exp.bn.weight", ch)
        if m.has("v.msfa.ffn.pw_proj.conv.weight"):
            ch = m.conv("v.msfa.ffn.pw_proj.conv.weight", 1, ch)
            m.norm("v.msfa.ffn.pw_proj.bn.weight", ch)
        if size > _MNV5_OUT:
            if size % _MNV5_OUT:
                raise c.bad(f"its fusion adapter cannot pool a {size} x {size} map to {_MNV5_OUT} x {_MNV5_OUT}")
            size = _MNV5_OUT
        m.norm("v.msfa.norm.weight", ch)
    if ch != e:
        raise c.bad(f"its encoder ends in {ch} channels, where its width setting says {e}")
    tokens = size * size
    if tokens != hp["image_size"] // hp["patch"]:
        raise c.bad(f"its encoder makes {tokens} tokens of an image, where its settings promise a different count")
    c.tensor("mm.soft_emb_norm.weight", (e,), _F32_ONLY)
    proj = c.tensor("mm.input_projection.weight", None, _MATMUL)
    if _matrix(proj) != (e, e):
        # libmtmd sizes its output by the projection's input width, so a wider output would overrun it
        raise c.bad(f"mm.input_projection.weight must map the encoder's {e}-wide vectors to as many")
    return e, tokens
