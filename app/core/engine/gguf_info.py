"""Read and validate a GGUF file's header without loading the model.

llama.cpp can abort the whole process on a malformed file, so every file is
checked here first: magic, version, a header that parses to the end, a known
architecture, and tensor data that lies inside the file.

The parser is our own, over `gguf`'s type tables, because `gguf.GGUFReader`
builds a numpy view per vocabulary entry and takes many seconds on Gemma's
262k-token vocabulary; this one skips large arrays and takes milliseconds.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    MODEL_ARCH_NAMES,
    GGMLQuantizationType,
    GGUFValueType,
)

from app.core import units
from app.core.errors import UserError

# Architectures llama.cpp can run as a language model. `gguf` lists what the
# converter knows; the MTP drafter is newer than the `gguf` release.
KNOWN_ARCHITECTURES = frozenset(MODEL_ARCH_NAMES.values()) | {"gemma4-assistant"}
NOT_LANGUAGE_MODELS = {"clip": "a vision/audio projector (mmproj)", "wavtokenizer-dec": "an audio decoder"}
GEMMA_ARCHITECTURES = frozenset({"gemma", "gemma2", "gemma3", "gemma3n", "gemma4", "gemma-embedding"})
PLE_TENSOR = "per_layer_token_embd.weight"
# llama.cpp names Gemma sizes by layer count (src/models/gemma4.cpp, gemma3n.cpp).
_GEMMA_SIZES = {
    "gemma4": {35: "E2B", 42: "E4B", 30: "26B-A4B", 48: "12B", 60: "31B"},
    "gemma3n": {30: "E2B", 35: "E4B"},
}
_GEMMA_NAMES = {"gemma": "Gemma", "gemma2": "Gemma 2", "gemma3": "Gemma 3", "gemma3n": "Gemma 3n", "gemma4": "Gemma 4"}

# Arrays longer than this are skipped, not kept (vocabularies, merges, scores).
_MAX_KEPT_ARRAY = 4096
# Bounds on what a header may claim, far above any real model: the largest vocabularies
# and merge lists hold under a million strings, and models a few thousand tensors.
MAX_METADATA = 65_536
MAX_TENSORS = 65_536
MAX_STRINGS = 2_097_152

SCALAR_FORMATS = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


class GgufError(UserError, ValueError):
    """A file that must not be handed to llama.cpp; the message is for the user."""


class HeaderTruncatedError(GgufError):
    """The bytes end inside the header: a truncated file, or too few bytes of a remote one."""


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table; `shape` is in ggml order (fastest dim first)."""

    name: str
    shape: tuple[int, ...]
    qtype: str
    offset: int  # absolute file offset of the data
    n_bytes: int

    @property
    def n_elements(self) -> int:
        """Number of parameters in the tensor."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class GgufInfo:
    """What a GGUF header says about the model."""

    path: Path
    file_size: int
    version: int
    architecture: str
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...] = field(repr=False)

    def arch_value(self, key: str, default: Any = None) -> Any:
        """An architecture-scoped key, e.g. `context_length` → `gemma3.context_length`."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def name(self) -> str:
        """The model's display name, falling back to the file name."""
        return str(self.metadata.get("general.name") or self.path.stem)

    @property
    def context_length(self) -> int:
        """Training context length in tokens (0 when the file does not say)."""
        return int(self.arch_value("context_length", 0) or 0)

    @property
    def block_count(self) -> int:
        """Number of transformer layers."""
        return int(self.arch_value("block_count", 0) or 0)

    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template embedded in the file, if any."""
        template = self.metadata.get("tokenizer.chat_template")
        return template if isinstance(template, str) and template.strip() else None

    @property
    def is_gemma(self) -> bool:
        """True for every Gemma generation."""
        return self.architecture in GEMMA_ARCHITECTURES

    @property
    def total_parameters(self) -> int:
        """Parameter count summed over the tensor shapes."""
        return sum(t.n_elements for t in self.tensors)

    @property
    def family(self) -> str:
        """A label such as "Gemma 4 E2B" or "Gemma 3 270M"; the architecture name for non-Gemma files."""
        base = _GEMMA_NAMES.get(self.architecture)
        if base is None:
            return self.architecture
        size = _GEMMA_SIZES.get(self.architecture, {}).get(self.block_count)
        if size is None:
            label = self.metadata.get("general.size_label")
            size = label.upper() if isinstance(label, str) and label else None
        return f"{base} {size}" if size else base

    @property
    def ple_tensor(self) -> TensorInfo | None:
        """The per-layer embedding table, if the model has one."""
        return next((t for t in self.tensors if t.name == PLE_TENSOR), None)

    @property
    def ple_parameters(self) -> int:
        """Parameters in the per-layer embedding table (0 without one)."""
        ple = self.ple_tensor
        return ple.n_elements if ple else 0

    @property
    def ple_bytes(self) -> int:
        """Bytes of the per-layer embedding table in the file."""
        ple = self.ple_tensor
        return ple.n_bytes if ple else 0

    @property
    def effective_parameters(self) -> int:
        """Parameters that must be in RAM/VRAM: everything but the PLE lookup table."""
        return self.total_parameters - self.ple_parameters

    @property
    def quant_types(self) -> dict[str, int]:
        """Bytes per quantization type, largest first."""
        sizes: dict[str, int] = {}
        for t in self.tensors:
            sizes[t.qtype] = sizes.get(t.qtype, 0) + t.n_bytes
        return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


class GgufCursor:
    """Bounds-checked little-endian reads over a buffer."""

    def __init__(self, buf: mmap.mmap | bytes, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise HeaderTruncatedError(
                f"The file ends in the middle of its header ({what}); it is truncated or corrupt."
            )

    def unpack(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self, what: str) -> str:
        length = self.unpack("<Q", what)
        self.need(length, what)
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_string(self, what: str) -> None:
        length = self.unpack("<Q", what)
        self.need(length, what)
        self.pos += length


def value_type(raw: int, key: str) -> GGUFValueType:
    """The value type a header entry names; GgufError for a number GGUF does not define."""
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise GgufError(f"Metadata key '{key}' has an unknown value type {raw}; the file is corrupt.") from None


def read_value(cur: GgufCursor, vtype: GGUFValueType, key: str) -> Any:
    """One header value of type `vtype` at the cursor (long arrays are skipped, as `SkippedArray`)."""
    if vtype == GGUFValueType.STRING:
        return cur.string(key)
    if vtype == GGUFValueType.ARRAY:
        etype = value_type(cur.unpack("<I", key), key)
        count = cur.unpack("<Q", key)
        if etype == GGUFValueType.ARRAY:
            raise GgufError(f"Metadata key '{key}' nests arrays, which GGUF does not allow.")
        if count > _MAX_KEPT_ARRAY:
            start = cur.pos
            _skip_array(cur, etype, count, key)
            return SkippedArray(etype.name, count, start)
        if etype == GGUFValueType.STRING:
            return [cur.string(key) for _ in range(count)]
        fmt = SCALAR_FORMATS[etype]
        cur.need(struct.calcsize(fmt) * count, key)
        values = list(struct.unpack_from(f"<{count}{fmt[1:]}", cur.buf, cur.pos))
        cur.pos += struct.calcsize(fmt) * count
        return values
    return cur.unpack(SCALAR_FORMATS[vtype], key)


def _skip_array(cur: GgufCursor, etype: GGUFValueType, count: int, key: str) -> None:
    if etype == GGUFValueType.STRING:
        if count > MAX_STRINGS:
            raise GgufError(f"Metadata key '{key}' claims {count} strings; the file is corrupt.")
        for _ in range(count):
            cur.skip_string(key)
    else:
        n = struct.calcsize(SCALAR_FORMATS[etype]) * count
        cur.need(n, key)
        cur.pos += n


@dataclass(frozen=True)
class SkippedArray:
    """Stands in for a large array that was skipped; `read_array` loads it."""

    element_type: str
    count: int
    offset: int  # file offset of the first element

    def __len__(self) -> int:
        return self.count


def tensor_bytes(name: str, shape: tuple[int, ...], qtype: GGMLQuantizationType) -> int:
    """The bytes a tensor of this shape and type takes; GgufError when its rows do not fill whole blocks."""
    block, type_size = GGML_QUANT_SIZES[qtype]
    if shape and shape[0] % block:
        raise GgufError(f"Tensor '{name}' has a row of {shape[0]} values, not a multiple of its block size {block}.")
    return math.prod(shape) // block * type_size


def read_gguf_info(path: str | os.PathLike[str]) -> GgufInfo:
    """Parse and validate `path`; raise `GgufError` with a user-facing reason."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise GgufError(f"'{path.name}' is not a GGUF model: the file is only {size} bytes.")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(path, buf, size)
    except OSError as exc:
        raise GgufError(f"Cannot read '{path}': {exc.strerror or exc}") from exc


def read_gguf_header(data: bytes, name: str, file_size: int) -> GgufInfo:
    """Parse the first bytes of a remote GGUF of `file_size` bytes (metadata and tensor list, no weights).

    Raises HeaderTruncatedError when `data` stops inside the header: fetch more and try again.
    """
    return _parse(Path(name), data, len(data), file_size)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of any GGUF, a vocabulary-only one included (large arrays skipped: see `read_array`)."""
    path = Path(path)
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _header(path, GgufCursor(buf, len(buf)), len(buf))[2]
    except (OSError, ValueError) as exc:
        raise GgufError(f"Cannot read '{path}': {exc}") from exc


def _header(path: Path, cur: GgufCursor, file_size: int) -> tuple[int, int, dict[str, Any]]:
    """(version, tensor count, metadata) from the start of a GGUF."""
    magic = cur.unpack("<I", "magic")
    if magic != GGUF_MAGIC:
        raise GgufError(
            f"'{path.name}' is not a GGUF model: it does not start with the GGUF signature, so it is another kind "
            "of file (or a damaged one)."
        )
    version = cur.unpack("<I", "version")
    if version not in (2, 3):
        raise GgufError(f"'{path.name}' uses GGUF version {version}; this app reads versions 2 and 3.")
    n_tensors = cur.unpack("<Q", "tensor count")
    n_kv = cur.unpack("<Q", "metadata count")
    # Real models hold a few dozen metadata entries and a few thousand tensors; each entry
    # also needs ~24 bytes. Anything beyond is corruption, refused before any loop over it.
    if n_tensors > min(file_size // 24, MAX_TENSORS) or n_kv > min(file_size // 24, MAX_METADATA):
        raise GgufError(f"'{path.name}' has an impossible header (counts {n_tensors}/{n_kv}); it is corrupt.")

    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string("metadata key")
        if not key or key in metadata:  # llama.cpp refuses these too; zero-filled files stop here
            named = f" (“{key}”)" if key and key.isprintable() and len(key) <= 80 else ""
            raise GgufError(f"'{path.name}' has an empty or repeated metadata key{named}; it is corrupt.")
        metadata[key] = read_value(cur, value_type(cur.unpack("<I", key), key), key)
    return version, n_tensors, metadata


def _parse(path: Path, buf: mmap.mmap | bytes, size: int, file_size: int | None = None) -> GgufInfo:
    """Parse a header from `buf` (`size` bytes readable); tensors must lie within `file_size` (default: `size`)."""
    cur = GgufCursor(buf, size)
    file_size = size if file_size is None else file_size
    version, n_tensors, metadata = _header(path, cur, file_size)

    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise GgufError(f"'{path.name}' does not name its model architecture (general.architecture).")
    if arch in NOT_LANGUAGE_MODELS:
        raise GgufError(f"'{path.name}' is {NOT_LANGUAGE_MODELS[arch]}, not a language model.")
    if arch not in KNOWN_ARCHITECTURES:
        raise GgufError(f"'{path.name}' uses the architecture '{arch}', which this version of llama.cpp does not know.")

    raw_tensors = []
    for _ in range(n_tensors):
        name = cur.string("tensor name")
        n_dims = cur.unpack("<I", name)
        if not 1 <= n_dims <= 4:
            raise GgufError(f"Tensor '{name}' claims {n_dims} dimensions; the file is corrupt.")
        shape = tuple(cur.unpack("<Q", name) for _ in range(n_dims))
        raw_type = cur.unpack("<I", name)
        rel_offset = cur.unpack("<Q", name)
        try:
            qtype = GGMLQuantizationType(raw_type)
            GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise GgufError(f"Tensor '{name}' has an unknown data type {raw_type}.") from None
        raw_tensors.append((name, shape, qtype, rel_offset))

    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise GgufError(f"'{path.name}' declares an invalid data alignment; the file is corrupt.")
    for key in ("context_length", "block_count", "embedding_length"):
        value = metadata.get(f"{arch}.{key}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise GgufError(f"'{path.name}' has a malformed {arch}.{key} value; the file is corrupt.")
    data_start = -(-cur.pos // alignment) * alignment
    tensors = []
    for name, shape, qtype, rel_offset in raw_tensors:
        n_bytes = tensor_bytes(name, shape, qtype)
        start = data_start + rel_offset
        if start + n_bytes > file_size:
            missing = units.size(start + n_bytes - file_size)
            raise GgufError(
                f"'{path.name}' is truncated: tensor '{name}' needs {missing} beyond the end of the file. "
                "Download or copy it again."
            )
        tensors.append(TensorInfo(name, shape, qtype.name, start, n_bytes))
    if not tensors:
        raise GgufError(f"'{path.name}' has no tensors; it holds no model weights.")
    _check_hyperparameters(path.name, arch, metadata, tensors)
    return GgufInfo(path, file_size, version, arch, metadata, tuple(tensors))


# llama-hparams.h: LLAMA_MAX_LAYERS. A layer count outside 1..512 makes llama.cpp abort (GGML_ASSERT).
MAX_LAYERS = 512
_HEAD_SIZE_KEYS = (
    "attention.key_length",
    "attention.value_length",
    "attention.key_length_swa",
    "attention.value_length_swa",
    "rope.dimension_count",
    "rope.dimension_count_swa",
    "attention.sliding_window",
    "embedding_length_per_layer_input",
)
_PER_LAYER_KEYS = (
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.sliding_window_pattern",
)
_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")
# Tensors whose rows take, or whose columns give, a vector of the model's width (n_embd).
_TAKES_EMBD = ("attn_q.weight", "attn_k.weight", "attn_v.weight", "ffn_up.weight", "ffn_gate.weight")
_GIVES_EMBD = ("attn_output.weight", "ffn_down.weight")
# Projections split across attention heads, and the key that counts those heads.
_HEAD_SPLIT = {
    "attn_q.weight": "attention.head_count",
    "attn_k.weight": "attention.head_count_kv",
    "attn_v.weight": "attention.head_count_kv",
}


def _check_hyperparameters(name: str, arch: str, metadata: dict[str, Any], tensors: list[TensorInfo]) -> None:
    """Hyper-parameters that llama.cpp asserts on (and so would abort on) must agree with themselves and the tensors."""

    def bad(what: str) -> GgufError:
        return GgufError(f"'{name}' is damaged or not supported: {what}.")

    layers = metadata.get(f"{arch}.block_count")
    if layers is not None and not 1 <= layers <= MAX_LAYERS:
        raise bad(f"it claims {layers} layers (llama.cpp runs 1 to {MAX_LAYERS})")
    context = metadata.get(f"{arch}.context_length")
    if context is not None and not 0 <= context < 2**31:
        raise bad(f"its context length {context} is out of range")
    width = metadata.get(f"{arch}.embedding_length")
    if width is not None and not 1 <= width <= 2**20:
        raise bad(f"its embedding size {width} is out of range")
    for key in _HEAD_SIZE_KEYS:  # llama.cpp sizes buffers by these before it checks them against the weights
        value = metadata.get(f"{arch}.{key}")
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= 2**20:
            raise bad(f"{arch}.{key} is {value}, far beyond any model")
    per_layer: dict[str, Any] = {}
    for key in _PER_LAYER_KEYS:
        value = metadata.get(f"{arch}.{key}")
        if isinstance(value, (list, SkippedArray)):
            if layers is None or len(value) != layers:
                raise bad(f"{arch}.{key} lists {len(value)} layers, but the model has {layers}")
            if isinstance(value, SkippedArray) or any(not isinstance(v, int) or v < 0 for v in value):
                raise bad(f"{arch}.{key} holds a negative or unreadable value")
        elif value is not None and not isinstance(value, int):
            raise bad(f"{arch}.{key} is malformed")
        per_layer[key] = value

    def at(key: str, layer: int) -> int | None:
        value = per_layer.get(key)
        if isinstance(value, list):
            return int(value[layer]) if layer < len(value) else None
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    for layer in range(layers or 0):
        heads, kv_heads = at("attention.head_count", layer), at("attention.head_count_kv", layer)
        if heads is not None and kv_heads and heads % kv_heads:
            raise bad(f"layer {layer} has {heads} attention heads, not a multiple of its {kv_heads} key/value heads")
    for tensor in tensors:
        if tensor.name == "token_embd.weight" and width is not None and tensor.shape[0] != width:
            raise bad(f"its token embeddings are {tensor.shape[0]} wide, but the model is {width}")
        block = _BLOCK.fullmatch(tensor.name)
        if block is None:
            continue
        layer, part = int(block.group(1)), block.group(2)
        if layers is not None and layer >= layers:
            raise bad(f"it has weights for layer {layer} of a {layers}-layer model")
        if width is not None and part in _TAKES_EMBD and tensor.shape[0] != width:
            raise bad(f"{tensor.name} takes vectors of {tensor.shape[0]}, but the model is {width} wide")
        if width is not None and part in _GIVES_EMBD and (len(tensor.shape) < 2 or tensor.shape[1] != width):
            raise bad(f"{tensor.name} does not give vectors of the model's width {width}")
        if part in _HEAD_SPLIT and len(tensor.shape) > 1:
            heads = at(_HEAD_SPLIT[part], layer)
            if heads and tensor.shape[1] % heads:
                raise bad(f"{tensor.name} has {tensor.shape[1]} outputs, which {heads} heads cannot share")


def read_array(path: str | os.PathLike[str], array: SkippedArray) -> list[Any]:
    """Load a large metadata array (e.g. the vocabulary) that `read_gguf_info` skipped."""
    etype = GGUFValueType[array.element_type]
    with Path(path).open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        cur = GgufCursor(buf, len(buf))
        cur.pos = array.offset
        if etype == GGUFValueType.STRING:
            return [cur.string("array") for _ in range(array.count)]
        fmt = SCALAR_FORMATS[etype]
        size = struct.calcsize(fmt)
        cur.need(size * array.count, "array")
        return list(struct.unpack_from(f"<{array.count}{fmt[1:]}", buf, array.offset))
