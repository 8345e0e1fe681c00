"""Read and vet an image projector (mmproj GGUF) before libmtmd sees it.

libmtmd (llama.cpp's multimodal library) trusts a projector file. A key of
the wrong type fails a `GGML_ASSERT` in gguf.cpp; a missing or misshapen
tensor is dereferenced or fails a shape assertion when the encoder's compute
graph is built; a position table too short for an image is read out of
bounds. Each of those ends the whole process. So the header is checked here
first, against what clip.cpp (llama-cpp-python 0.3.36) reads for the
projectors Tern supports: every key its typed getters read, with their types
and ranges, and every tensor the Gemma 4 (gemma4v) and Gemma 3 (gemma3)
vision graphs and the Gemma 4 audio graph (gemma4a, which E2B/E4B projectors
also carry and libmtmd loads with them) use, against the shapes ggml's ops
accept. The rules mirror ggml: a matrix product needs the weight's rows as
long as its input, an element-wise weight must broadcast over what it
scales, a reshape keeps the element count.

The same module says how many tokens an image becomes (`ProjectorInfo.tokens_for`),
computed exactly as libmtmd's preprocessor does, in single precision.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf.constants import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType

from app.core.engine.gguf_info import (
    MAX_METADATA,
    MAX_TENSORS,
    GgufError,
    TensorInfo,
    _Cursor,
    _read_value,
    _tensor_bytes,
    _value_type,
)


class ProjectorError(GgufError):
    """A projector that must not be handed to libmtmd, or that cannot serve the model; the message is for the user."""


SUPPORTED = ("gemma4v", "gemma3")
NOT_YET = {"gemma3nv": "Gemma 3n", "gemma4uv": "Gemma 4 (unified)"}
FAMILY = {"gemma4v": "Gemma 4", "gemma3": "Gemma 3"}
ARCHS = {"gemma4v": frozenset({"gemma4"}), "gemma3": frozenset({"gemma3"})}
_GEMMA4V_TOKENS = (70, 1120)  # clip.cpp: set_limit_image_tokens(70, 1120) for gemma4v
_GEMMA4V_DEFAULT = 280  # Gemma 4's own default budget (vision_config.default_output_length)
_WARMUP_SIDE = 16  # clip.cpp: set_warmup_n_tokens(256) for gemma4v, a 16 x 16 grid of tokens
_DEFAULT_MERGE = {"gemma4v": 3, "gemma3": 4}

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
_CLAMPS = (".input_max", ".input_min", ".output_max", ".output_min")


@dataclass(frozen=True)
class _Header:
    path: Path
    file_size: int
    values: dict[str, Any]
    types: dict[str, tuple[GGUFValueType, GGUFValueType | None]]  # value type, and element type of an array
    tensors: dict[str, TensorInfo]


def _parse(path: Path) -> _Header:
    """The header, keeping each value's type (libmtmd's getters assert on it)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise ProjectorError(f"'{path.name}' is not a projector file: it is only {size} bytes.")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse_buffer(path, buf, size)
    except OSError as exc:
        raise ProjectorError(f"Cannot read '{path}': {exc.strerror or exc}") from exc


def _parse_buffer(path: Path, buf: mmap.mmap, size: int) -> _Header:
    cur = _Cursor(buf, size)
    if cur.unpack("<I", "magic") != GGUF_MAGIC:
        raise ProjectorError(f"'{path.name}' is not a projector file: it is not a GGUF file at all.")
    version = cur.unpack("<I", "version")
    if version not in (2, 3):
        raise ProjectorError(f"'{path.name}' uses GGUF version {version}; this app reads versions 2 and 3.")
    n_tensors, n_kv = cur.unpack("<Q", "tensor count"), cur.unpack("<Q", "metadata count")
    if n_tensors > min(size // 24, MAX_TENSORS) or n_kv > min(size // 24, MAX_METADATA):
        raise ProjectorError(f"'{path.name}' has an impossible header; it is corrupt.")
    values: dict[str, Any] = {}
    types: dict[str, tuple[GGUFValueType, GGUFValueType | None]] = {}
    for _ in range(n_kv):
        key = cur.string("metadata key")
        if not key or key in values:
            raise ProjectorError(f"'{path.name}' has an empty or repeated metadata key; it is corrupt.")
        vtype = _value_type(cur.unpack("<I", key), key)
        sub = None
        if vtype == _ARR:
            cur.need(4, key)
            sub = _value_type(struct.unpack_from("<I", buf, cur.pos)[0], key)
        values[key] = _read_value(cur, vtype, key)
        types[key] = (vtype, sub)
    alignment = values.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if types.get("general.alignment", (_U32,))[0] != _U32 or alignment <= 0 or alignment & (alignment - 1):
        raise ProjectorError(f"'{path.name}' declares an invalid data alignment; it is corrupt.")
    raw: list[tuple[str, tuple[int, ...], GGMLQuantizationType, int]] = []
    names: set[str] = set()
    for _ in range(n_tensors):
        name = cur.string("tensor name")
        n_dims = cur.unpack("<I", name)
        if not 1 <= n_dims <= 4:
            raise ProjectorError(f"Tensor '{name[:80]}' claims {n_dims} dimensions; the file is corrupt.")
        shape = tuple(cur.unpack("<Q", name) for _ in range(n_dims))
        raw_type, offset = cur.unpack("<I", name), cur.unpack("<Q", name)
        try:
            qtype = GGMLQuantizationType(raw_type)
            GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise ProjectorError(f"Tensor '{name[:80]}' has an unknown data type {raw_type}.") from None
        if len(name.encode()) >= 64 or name in names:
            raise ProjectorError(f"'{path.name}' has a repeated or over-long tensor name; it is corrupt.")
        if math.prod(shape) >= 2**62:
            raise ProjectorError(f"Tensor '{name}' claims an impossible shape; the file is corrupt.")
        names.add(name)
        raw.append((name, shape, qtype, offset))
    data_start = -(-cur.pos // alignment) * alignment
    tensors: dict[str, TensorInfo] = {}
    expected = 0  # gguf.cpp wants the tensors packed in order, each padded to the alignment
    for name, shape, qtype, offset in raw:
        n_bytes = _tensor_bytes(name, shape, qtype)
        if offset != expected:
            raise ProjectorError(f"'{path.name}' has its tensor data out of place; it is corrupt.")
        expected += -(-n_bytes // alignment) * alignment
        if data_start + offset + n_bytes > size:
            raise ProjectorError(f"'{path.name}' is truncated: tensor '{name}' runs past the end of the file.")
        tensors[name] = TensorInfo(name, shape, qtype.name, data_start + offset, n_bytes)
    return _Header(path, size, values, types, tensors)


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
            kind = f"{have.name.lower()}" + (f" of {have_sub.name.lower()}" if have_sub else "")
            raise self.bad(f"the setting {name} is a {kind}, where llama.cpp reads a {vtype.name.lower()}")
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


def _show(shape: tuple[int, ...]) -> str:
    return " x ".join(str(n) for n in shape)


def _check_keys(c: _Checks, modality: str) -> dict[str, int | float]:
    """Every key libmtmd's load_hparams reads for `modality`, by its getter's type; the numbers Tern needs."""
    p = modality
    hp: dict[str, int | float] = {
        "n_embd": c.count(f"clip.{p}.embedding_length", 1, 16384),
        "n_head": c.count(f"clip.{p}.attention.head_count", 1, 128),
        "n_ff": c.count(f"clip.{p}.feed_forward_length", 0, 2**31 - 1),
        "n_layer": c.count(f"clip.{p}.block_count", 0, 64 if p == "vision" else 32),
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
        if swap_ffn and up and down and len(down.shape) > 1 and down.shape[0] == e:
            up_name, down_name = down_name, up_name  # old Gemma 3 files store them swapped; clip.cpp swaps back
        first = c.tensor(up_name + ".weight", None, _MATMUL)
        ff = first.shape[1] if len(first.shape) == 2 and first.shape[0] == e else 0
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
    if len(pos.shape) != 3 or pos.shape[0] != e or pos.shape[2] != 2:
        raise c.bad(f"v.position_embd.weight must be two tables of {e}-wide rows, not {_show(pos.shape)}")
    rows = pos.shape[1]
    side = merge * max(_WARMUP_SIDE, math.isqrt(_GEMMA4V_TOKENS[1] - 1) + 1)
    if rows < side:
        raise c.bad(f"its position table has {rows} rows; images of {_GEMMA4V_TOKENS[1]} tokens need {side}")
    _check_vit(c, hp, swap_ffn=False)
    c.scale("v.std_bias", e)
    c.scale("v.std_scale", e)
    proj = c.tensor("mm.input_projection.weight", None, _MATMUL)
    if len(proj.shape) != 2 or proj.shape[0] != e:
        raise c.bad(f"mm.input_projection.weight does not take the encoder's {e}-wide vectors")
    return int(proj.shape[1]), int(rows)


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
    if len(proj.shape) != 2 or proj.shape[1] != e:
        raise c.bad(f"mm.input_projection.weight does not take the encoder's {e}-wide vectors")
    return int(proj.shape[0])


def _check_gemma4a(c: _Checks, hp: dict[str, Any]) -> int:
    """The Gemma 4 audio conformer (models/gemma4a.cpp) as its warm-up graph is built; returns the text width."""
    e, d, h = hp["n_embd"], hp["d_head"], hp["n_head"]
    if d * h != e:
        raise c.bad("its audio attention heads do not add up to the audio encoder's width")
    freq, channels = hp["n_mel"], 1
    for i in range(2):
        conv = c.tensor(f"a.conv1d.{i}.weight", None, _CONV)
        if len(conv.shape) != 4 or conv.shape[:3] != (3, 3, channels):
            raise c.bad(f"a.conv1d.{i}.weight is not a 3 x 3 convolution over {channels} channels")
        channels, freq = conv.shape[3], (freq - 1) // 2 + 1
        c.tensor(f"a.conv1d.{i}.bias", (1, 1, channels), _F32_ONLY, required=False)
        c.scale(f"a.conv1d.{i}.norm.weight", channels)
    width = c.tensor("a.input_projection.weight", None, _MATMUL)
    if len(width.shape) != 2 or width.shape[0] != channels * freq:
        raise c.bad(f"a.input_projection.weight does not take the {channels * freq} values the convolutions give")
    x = width.shape[1]
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
            if len(first.shape) != 2 or first.shape[0] != x:
                raise c.bad(f"the tensor {b}{up}.weight does not take vectors {x} wide")
            c.tensor(f"{b}{down}.weight", (first.shape[1], x), _MATMUL)
        c.tensor(b + "ffn_norm_1.weight", (x,), _F32_ONLY)
        for part in ("attn_q", "attn_k", "attn_v"):
            c.tensor(f"{b}{part}.weight", (x, e), _MATMUL, required=False)
        c.tensor(b + "attn_out.weight", (e, x), _MATMUL)
        c.tensor(b + "attn_out.bias", (x,), _F32_ONLY, required=False)
        c.tensor(b + "attn_k_rel.weight", (e, e), _MATMUL, required=False)
        c.tensor(b + "per_dim_scale.weight", (d,), _F32_ONLY, required=False)
        c.tensor(b + "per_dim_k_scale.weight", (d,), _F32_ONLY, required=False)
        pw1 = c.tensor(b + "conv_pw1.weight", None, _MATMUL)
        if len(pw1.shape) != 2 or pw1.shape[0] != x or pw1.shape[1] % 2:
            raise c.bad(f"the tensor {b}conv_pw1.weight does not take vectors {x} wide into a gated pair")
        half = pw1.shape[1] // 2
        c.tensor(b + "conv_dw.weight", (5, half), _F32_ONLY)  # clip.cpp pads by 4: a 5-tap causal convolution
        c.scale(b + "conv_dw.bias", half)
        c.tensor(b + "conv_pw2.weight", (half, x), _MATMUL)
        c.scale(b + "norm_conv.weight", half)
    out = x
    proj = c.tensor("a.pre_encode.out.weight", None, _MATMUL, required=False)
    if proj is not None:
        if len(proj.shape) != 2 or proj.shape[0] != x:
            raise c.bad("a.pre_encode.out.weight does not take the audio encoder's vectors")
        out = proj.shape[1]
        c.scale("a.pre_encode.out.bias", out)
    c.scale("mm.a.soft_emb_norm.weight", out)
    final = c.tensor("mm.a.input_projection.weight", None, _MATMUL)
    if len(final.shape) != 2 or final.shape[0] != out:
        raise c.bad("mm.a.input_projection.weight does not take the audio encoder's vectors")
    return int(final.shape[1])


def _check_clamps(c: _Checks) -> None:
    """Gemma 4's clamp limits: libmtmd reads each as one F32 value."""
    for name, t in c.h.tensors.items():
        if name.endswith(_CLAMPS) and (t.qtype != "F32" or t.n_elements != 1):
            raise c.bad(f"the clamp limit {name} is not a single F32 value")


def _projector_type(c: _Checks, modality: str) -> str:
    """The type libmtmd uses for `modality`: the shared key wins over the per-modality one, as in load_hparams."""
    shared = c.key("clip.projector_type", _STR)
    return str(shared or c.key(f"clip.{modality}.projector_type", _STR) or "")


def read_projector_info(path: str | os.PathLike[str]) -> ProjectorInfo:
    """Parse and vet an image projector; raise ProjectorError (or GgufError) with a user-facing reason."""
    path = Path(path)
    c = _Checks(_parse(path))
    arch = c.h.values.get("general.architecture")
    if arch != "clip":
        if isinstance(arch, str) and arch:
            raise ProjectorError(f"'{path.name}' is a {arch} language model, not an image projector (mmproj).")
        raise ProjectorError(f"'{path.name}' is not an image projector: it does not say what it holds.")
    c.key("general.name", _STR)
    c.key("general.description", _STR)
    has_vision = c.key("clip.has_vision_encoder", _BOOL)
    has_audio = c.key("clip.has_audio_encoder", _BOOL)
    if c.key("clip.has_gen_audio_encoder", _BOOL):
        raise c.bad("it generates audio, which Tern does not support")
    if not has_vision:
        if has_audio:
            raise ProjectorError(f"'{path.name}' is an audio-only projector; Tern reads images, not sound.")
        raise ProjectorError(f"'{path.name}' has no image encoder.")
    kind = _projector_type(c, "vision")
    if kind in NOT_YET:
        raise ProjectorError(f"'{path.name}' is a {NOT_YET[kind]} image projector, which Tern does not support yet.")
    if kind not in SUPPORTED:
        raise ProjectorError(
            f"'{path.name}' is a projector of the type '{kind[:40]}', which Tern cannot use: it reads the image "
            "projectors of Gemma 3 and Gemma 4 models."
        )
    hp: dict[str, Any] = {**_check_keys(c, "vision"), "kind": kind}
    hp["n_merge"] = c.count("clip.vision.projector.scale_factor", 1, 16, default=_DEFAULT_MERGE[kind])
    if kind == "gemma4v":
        n_text, positions = _check_gemma4v(c, hp)
        low, high, default = *_GEMMA4V_TOKENS, _GEMMA4V_DEFAULT
    else:
        n_text, positions = _check_gemma3(c, hp), 0
        low = high = default = (hp["image_size"] // hp["patch"] // hp["n_merge"]) ** 2
    if not 1 <= n_text <= 65536:
        raise c.bad(f"it claims to feed a model {n_text} wide")
    _check_clamps(c)
    if has_audio:
        audio = _projector_type(c, "audio")
        if audio != "gemma4a" or kind != "gemma4v":
            raise c.bad(f"its audio part ({audio or 'untyped'}) is not one Tern can load with it")
        if _check_gemma4a(c, {**_check_keys(c, "audio"), "kind": "gemma4a"}) != n_text:
            raise c.bad("its audio and image parts feed models of different widths")
    return ProjectorInfo(
        path=path,
        projector_type=kind,
        n_embd_text=n_text,
        image_size=int(hp["image_size"]),
        patch_size=int(hp["patch"]),
        n_merge=int(hp["n_merge"]),
        positions=positions,
        n_bytes=c.h.file_size,
        min_tokens=low,
        max_tokens=high,
        default_tokens=default,
        has_audio=bool(has_audio),
    )


def _f32(x: float) -> float:
    """`x` rounded to single precision (libmtmd does this arithmetic in float)."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def _fit(width: int, height: int, align: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """mtmd-image.cpp `calc_size_preserved_ratio`: the resized size, in float32 as there."""
    fa = _f32(align)

    def by(x: float, how: Any) -> int:
        return int(how(_f32(x / fa))) * align

    def nearest(x: float) -> float:  # std::round: halves away from zero (x >= 0 here)
        return math.floor(x + 0.5)

    w, h = _f32(width), _f32(height)
    w_bar, h_bar = max(align, by(w, nearest)), max(align, by(h, nearest))
    if max_pixels > 0 and h_bar * w_bar > max_pixels:
        beta = _f32(math.sqrt(_f32(_f32(h * w) / _f32(max_pixels))))
        h_bar = max(align, by(_f32(h / beta), math.floor))
        w_bar = max(align, by(_f32(w / beta), math.floor))
    elif min_pixels > 0 and h_bar * w_bar < min_pixels:
        beta = _f32(math.sqrt(_f32(_f32(min_pixels) / _f32(h * w))))
        h_bar = by(_f32(h * beta), math.ceil)
        w_bar = by(_f32(w * beta), math.ceil)
    return w_bar, h_bar


@dataclass(frozen=True)
class ProjectorInfo:
    """What an image projector is for, and how many tokens it makes of an image."""

    path: Path
    projector_type: str  # "gemma4v" or "gemma3"
    n_embd_text: int  # the width of the text model it feeds
    image_size: int  # gemma3: the side every image is resized to; gemma4v: unused
    patch_size: int  # pixels per patch side
    n_merge: int  # patches pooled into one token, per side
    positions: int  # gemma4v: patches per side its position tables cover; 0 for gemma3
    n_bytes: int  # file size
    min_tokens: int  # the fewest tokens libmtmd makes of an image (by default)
    max_tokens: int  # the most, unless the context asks for another limit
    default_tokens: int  # the model family's own default budget per image
    has_audio: bool = False  # an audio encoder too (Gemma 4 E2B/E4B), which libmtmd loads alongside

    @property
    def family(self) -> str:
        """ "Gemma 4" or "Gemma 3"."""
        return FAMILY[self.projector_type]

    def grid(self, width: int, height: int, max_tokens: int | None = None) -> tuple[int, int]:
        """(columns, rows) of patches libmtmd cuts an image of width x height px into.

        `max_tokens` is libmtmd's `image_max_tokens` (None or 0: its default); it must not be below
        `min_tokens`, or libmtmd refuses to load the projector.
        """
        if width <= 0 or height <= 0:
            raise ValueError("an image needs a positive width and height")
        if self.projector_type == "gemma3":
            side = self.image_size // self.patch_size
            return side, side
        cap = max_tokens if max_tokens else self.max_tokens
        if cap < self.min_tokens:
            raise ValueError(f"libmtmd needs a budget of at least {self.min_tokens} tokens per image")
        area = (self.patch_size * self.n_merge) ** 2
        w, h = _fit(width, height, self.patch_size * self.n_merge, self.min_tokens * area, cap * area)
        return w // self.patch_size, h // self.patch_size

    def tokens_for(self, width: int, height: int, max_tokens: int | None = None) -> int:
        """Tokens libmtmd makes of an image of width x height px (`max_tokens`: as for `grid`)."""
        cols, rows = self.grid(width, height, max_tokens)
        return (cols * rows) // (self.n_merge * self.n_merge)

    def fits(self, width: int, height: int, max_tokens: int | None = None) -> bool:
        """Whether libmtmd can encode such an image: a very long, thin one outruns the position table."""
        cols, rows = self.grid(width, height, max_tokens)
        return self.projector_type == "gemma3" or (max(cols, rows) <= self.positions and width * height < 2**31)

    def check_pairing(self, model_n_embd: int, model_arch: str) -> None:
        """Raise ProjectorError unless this projector can serve a `model_arch` model `model_n_embd` wide."""
        archs = ARCHS[self.projector_type]
        if model_arch not in archs:
            raise ProjectorError(
                f"This image projector is for {self.family} models, and the loaded model is not one "
                f"({model_arch}). Get the projector that comes with this model."
            )
        if model_n_embd != self.n_embd_text:
            raise ProjectorError(
                f"This image projector is for a model whose embeddings are {self.n_embd_text:,} wide; the loaded "
                f"model's are {model_n_embd:,}. Get the projector that comes with this model."
            )
