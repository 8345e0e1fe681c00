"""Read and vet an image projector (mmproj GGUF) before libmtmd sees it.

libmtmd (llama.cpp's multimodal library) trusts a projector file. A key of
the wrong type fails a `GGML_ASSERT` in gguf.cpp; a missing or misshapen
tensor is dereferenced or fails a shape assertion when the encoder's compute
graph is built; a position table too short for an image is read out of
bounds. Each of those ends the whole process. So the header is checked here
first, against what clip.cpp (llama-cpp-python 0.3.36) reads for the
projectors Tern supports: every key its typed getters read, with their types
and ranges, and every tensor the Gemma 4 (gemma4v), Gemma 3 (gemma3) and
Gemma 3n (gemma3nv, MobileNetV5) vision graphs and the Gemma 4 audio graph
(gemma4a, which E2B/E4B projectors also carry and libmtmd loads with them)
use, against the shapes ggml's ops accept (projector_checks.py). The rules
mirror ggml: a matrix product needs the weight's rows as long as its input,
an element-wise weight must broadcast over what it scales, a reshape keeps
the element count.

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
    GgufCursor,
    TensorInfo,
    read_value,
    tensor_bytes,
    value_type,
)
from app.core.engine.projector_checks import (
    _ARR,
    _BOOL,
    _DEFAULT_MERGE,
    _GEMMA4V_DEFAULT,
    _GEMMA4V_TOKENS,
    _STR,
    _U32,
    ProjectorError,
    _check_clamps,
    _check_gemma3,
    _check_gemma3nv,
    _check_gemma4a,
    _check_gemma4v,
    _check_keys,
    _Checks,
    _Header,
)

__all__ = ["ARCHS", "FAMILY", "NOT_YET", "SUPPORTED", "ProjectorError", "ProjectorInfo", "read_projector_info"]

SUPPORTED = ("gemma4v", "gemma3", "gemma3nv")
NOT_YET = {"gemma4uv": "Gemma 4 (unified)"}
FAMILY = {"gemma4v": "Gemma 4", "gemma3": "Gemma 3", "gemma3nv": "Gemma 3n"}
ARCHS = {"gemma4v": frozenset({"gemma4"}), "gemma3": frozenset({"gemma3"}), "gemma3nv": frozenset({"gemma3n"})}


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
    cur = GgufCursor(buf, size)
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
        vtype = value_type(cur.unpack("<I", key), key)
        sub = None
        if vtype == _ARR:
            cur.need(4, key)
            sub = value_type(struct.unpack_from("<I", buf, cur.pos)[0], key)
        values[key] = read_value(cur, vtype, key)
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
        n_bytes = tensor_bytes(name, shape, qtype)
        if offset != expected:
            raise ProjectorError(f"'{path.name}' has its tensor data out of place; it is corrupt.")
        expected += -(-n_bytes // alignment) * alignment
        if data_start + offset + n_bytes > size:
            raise ProjectorError(f"'{path.name}' is truncated: tensor '{name}' runs past the end of the file.")
        tensors[name] = TensorInfo(name, shape, qtype.name, data_start + offset, n_bytes)
    return _Header(path, size, values, types, tensors)


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
            "projectors of Gemma 3, Gemma 3n and Gemma 4 models."
        )
    hp: dict[str, Any] = {**_check_keys(c, "vision", 1024 if kind == "gemma3nv" else 64), "kind": kind}
    hp["n_merge"] = c.count("clip.vision.projector.scale_factor", 1, 16, default=_DEFAULT_MERGE[kind])
    if kind == "gemma4v":
        n_text, positions = _check_gemma4v(c, hp)
        low, high, default = *_GEMMA4V_TOKENS, _GEMMA4V_DEFAULT
    elif kind == "gemma3nv":
        n_text, tokens = _check_gemma3nv(c, hp)
        positions, low = 0, tokens
        high = default = tokens
        side = math.isqrt(tokens)  # the encoder's output grid (square, as checked); libmtmd merges nothing more
        hp["patch"], hp["n_merge"] = hp["image_size"] // side, 1
    else:
        n_text, positions = _check_gemma3(c, hp), 0
        low = high = default = (hp["image_size"] // hp["patch"] // hp["n_merge"]) ** 2
    if not 1 <= n_text <= 65536:
        raise c.bad(f"it claims to feed a model {n_text} wide")
    _check_clamps(c)
    if has_audio and kind == "gemma3nv":
        has_audio = False  # libmtmd 0.3.36 skips a Gemma 3n projector's audio encoder: it never reads it
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
    projector_type: str  # "gemma4v", "gemma3" or "gemma3nv"
    n_embd_text: int  # the width of the text model it feeds
    image_size: int  # gemma3, gemma3nv: the side every image is resized to; gemma4v: unused
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
        if self.projector_type == "gemma3nv":  # MobileNetV5 makes a fixed square grid of tokens
            side = math.isqrt(self.min_tokens)
            return side, side
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
        return self.projector_type != "gemma4v" or (max(cols, rows) <= self.positions and width * height < 2**31)

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
