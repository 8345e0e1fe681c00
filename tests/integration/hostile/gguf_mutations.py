"""Deterministic GGUF mutations for the hostile-file suite and `bench/hostile.py`.

A source GGUF is parsed into its parts (header, metadata, tensor table, data)
and written back with one thing wrong: a header field, a hyper-parameter at or
beyond its limits, an array of the wrong length, a tensor's shape, type or
offset, a cut anywhere in the file, or flipped bytes. The writer is our own so
that it can write what `gguf.GGUFWriter` would refuse to.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gguf import GGUFReader, GGUFValueType

from app.core.engine.gguf_info import SCALAR_FORMATS

_SCALAR = SCALAR_FORMATS  # the struct format of each scalar value type
_INTS = [0, 1, 2, 3, 7, 255, 256, 511, 512, 513, 1000, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**40, 2**63 - 1]
_FLOATS = [0.0, -1.0, 1e-30, 1e30, float("inf"), float("-inf"), float("nan")]


@dataclass
class Kv:
    """One metadata entry; `etype` is the element type of an array."""

    key: str
    vtype: GGUFValueType
    value: Any
    etype: GGUFValueType | None = None


@dataclass
class Tensor:
    """One tensor-table entry (`offset` relative to the data section)."""

    name: str
    dims: list[int]
    ttype: int
    offset: int


@dataclass
class Gguf:
    """A parsed GGUF file."""

    version: int
    kvs: list[Kv]
    tensors: list[Tensor]
    data: bytes
    alignment: int = 32


def parse(path: Path) -> Gguf:
    """Read every part of `path` (small models only: values are kept in memory)."""
    reader = GGUFReader(str(path))
    kvs = []
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):
            continue
        vtype = GGUFValueType(field.types[0])
        if vtype == GGUFValueType.ARRAY:
            etype = GGUFValueType(field.types[1])
            value: Any = [_field_value(field, i, etype) for i in field.data]
            kvs.append(Kv(field.name, vtype, value, etype))
        else:
            kvs.append(Kv(field.name, vtype, _field_value(field, field.data[0], vtype)))
    start = min(int(t.data_offset) for t in reader.tensors)
    raw = path.read_bytes()
    tensors = [
        Tensor(t.name, [int(d) for d in t.shape], int(t.tensor_type), int(t.data_offset) - start)
        for t in reader.tensors
    ]
    alignment = next((int(k.value) for k in kvs if k.key == "general.alignment"), 32)
    return Gguf(int(reader.fields["GGUF.version"].parts[0][0]), kvs, tensors, raw[start:], alignment)


def _field_value(field: Any, index: int, vtype: GGUFValueType) -> Any:
    part = field.parts[index]
    if vtype == GGUFValueType.STRING:
        return bytes(part).decode("utf-8", errors="replace")
    return part.tolist()[0]


def _encode(vtype: GGUFValueType, value: Any, etype: GGUFValueType | None = None) -> bytes:
    if vtype == GGUFValueType.STRING:
        raw = str(value).encode()
        return struct.pack("<Q", len(raw)) + raw
    if vtype == GGUFValueType.ARRAY:
        assert etype is not None
        body = b"".join(_encode(etype, v) for v in value)
        return struct.pack("<IQ", int(etype), len(value)) + body
    fmt = _SCALAR[vtype]
    if fmt in ("<f", "<d"):
        return struct.pack(fmt, float(value))
    if fmt == "<?":
        return struct.pack(fmt, bool(value))
    bits = struct.calcsize(fmt) * 8
    return struct.pack(fmt.upper() if fmt[1].islower() else fmt, int(value) % (1 << bits))


def serialize(g: Gguf, n_tensors: int | None = None, n_kv: int | None = None, magic: bytes = b"GGUF") -> bytes:
    """The file's bytes, with optional lying counts."""
    out = bytearray(magic)
    out += struct.pack(
        "<IQQ", g.version, len(g.tensors) if n_tensors is None else n_tensors, len(g.kvs) if n_kv is None else n_kv
    )
    for kv in g.kvs:
        out += _encode(GGUFValueType.STRING, kv.key) + struct.pack("<I", int(kv.vtype))
        out += _encode(kv.vtype, kv.value, kv.etype)
    for t in g.tensors:
        out += _encode(GGUFValueType.STRING, t.name) + struct.pack("<I", len(t.dims))
        out += b"".join(struct.pack("<Q", d % (1 << 64)) for d in t.dims)
        out += struct.pack("<IQ", t.ttype % (1 << 32), t.offset % (1 << 64))
    out += b"\0" * (-len(out) % max(1, g.alignment))
    return bytes(out + g.data)


Mutation = tuple[str, bytes]  # a name saying what was done, the file's bytes


def _with_kv(g: Gguf, key: str, kv: Kv | None) -> Gguf:
    kvs = [k for k in g.kvs if k.key != key] + ([kv] if kv is not None else [])
    return replace(g, kvs=kvs)


def _header(g: Gguf, rng: random.Random) -> Mutation:
    choice = rng.randrange(5)
    if choice == 0:
        return "magic", serialize(g, magic=rng.choice([b"GGUG", b"\0\0\0\0", b"GGML"]))
    if choice == 1:
        version = rng.choice([0, 1, 4, 2**31, 2**32 - 1])
        return f"version={version}", serialize(replace(g, version=version))
    counts = rng.choice([-1, 1, 2, 1000, 2**31, 2**40, 2**64 - 1])
    if choice in (2, 3):
        n = (len(g.kvs) + counts) % 2**64 if counts in (-1, 1, 2) else counts
        return f"n_kv={n}", serialize(g, n_kv=n)
    n = (len(g.tensors) + counts) % 2**64 if counts in (-1, 1, 2) else counts
    return f"n_tensors={n}", serialize(g, n_tensors=n)


def _hyperparameter(g: Gguf, rng: random.Random) -> Mutation:
    numeric = [k for k in g.kvs if k.vtype != GGUFValueType.STRING and k.key.split(".")[0] not in ("general",)]
    kv = rng.choice(numeric)
    how = rng.randrange(6)
    if how == 0:
        return f"drop {kv.key}", serialize(_with_kv(g, kv.key, None))
    if how == 1:  # another type
        vtype = rng.choice([GGUFValueType.STRING, GGUFValueType.FLOAT32, GGUFValueType.BOOL, GGUFValueType.INT8])
        value = "12" if vtype == GGUFValueType.STRING else 3
        return f"{kv.key} as {vtype.name}", serialize(_with_kv(g, kv.key, Kv(kv.key, vtype, value)))
    if kv.vtype == GGUFValueType.ARRAY:
        assert kv.etype is not None
        values = list(kv.value)
        if how in (2, 3) and values:  # a wrong length
            values = values[: rng.randrange(len(values))] if how == 2 else values + values[: rng.randrange(1, 5)]
            return f"{kv.key} length {len(values)}", serialize(_with_kv(g, kv.key, replace(kv, value=values)))
        if values and kv.etype in _SCALAR and kv.etype not in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
            values[rng.randrange(len(values))] = rng.choice(_INTS)
            return f"{kv.key} element", serialize(_with_kv(g, kv.key, replace(kv, value=values)))
        return f"{kv.key} emptied", serialize(_with_kv(g, kv.key, replace(kv, value=[])))
    if kv.vtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        value: Any = rng.choice(_FLOATS)
    elif kv.vtype == GGUFValueType.BOOL:
        value = not kv.value
    else:
        value = rng.choice(_INTS)
        if how == 5 and kv.vtype in (GGUFValueType.INT32, GGUFValueType.UINT32):  # the same key widened
            return f"{kv.key}={value} as u64", serialize(_with_kv(g, kv.key, Kv(kv.key, GGUFValueType.UINT64, value)))
    return f"{kv.key}={value}", serialize(_with_kv(g, kv.key, replace(kv, value=value)))


def _tensor_table(g: Gguf, rng: random.Random) -> Mutation:
    tensors = [replace(t, dims=list(t.dims)) for t in g.tensors]
    i = rng.randrange(len(tensors))
    t = tensors[i]
    how = rng.randrange(8)
    if how == 0:
        t.dims[rng.randrange(len(t.dims))] = rng.choice([0, 1, 2, 3, 2**31, 2**40])
    elif how == 1:
        t.dims = list(reversed(t.dims)) if len(t.dims) > 1 else [*t.dims, 2]
    elif how == 2:
        t.dims = t.dims + [1] * rng.randrange(1, 4) if rng.random() < 0.5 else []
    elif how == 3:
        t.ttype = rng.choice([0, 1, 2, 4, 8, 12, 14, 30, 31, 36, 42, 43, 1000, 2**31])
    elif how == 4:
        t.offset = rng.choice([t.offset + 1, t.offset + 32, 0, len(g.data), len(g.data) + 4096, 2**62])
    elif how == 5:
        t.name = rng.choice([tensors[(i + 1) % len(tensors)].name, t.name.replace("blk.", "blk.9"), "", "x" * 300])
    elif how == 6:
        del tensors[i]
    else:
        tensors.append(replace(t, name=t.name + ".extra"))
    return f"tensor {g.tensors[i].name} #{how}", serialize(replace(g, tensors=tensors))


def _truncate(g: Gguf, rng: random.Random) -> Mutation:
    raw = serialize(g)
    header = len(raw) - len(g.data)
    cut = rng.choice([rng.randrange(4, 24), rng.randrange(24, header), header, rng.randrange(header, len(raw))])
    return f"cut at {cut}/{len(raw)}", raw[:cut]


def _flip(g: Gguf, rng: random.Random) -> Mutation:
    raw = bytearray(serialize(g))
    header = len(raw) - len(g.data)
    for _ in range(rng.randrange(1, 9)):
        raw[rng.randrange(header)] ^= 1 << rng.randrange(8)
    return "flipped header bytes", bytes(raw)


MUTATORS: list[tuple[str, Callable[[Gguf, random.Random], Mutation], int]] = [
    ("header", _header, 2),
    ("hyper-parameter", _hyperparameter, 8),
    ("tensor table", _tensor_table, 6),
    ("truncation", _truncate, 2),
    ("flipped bytes", _flip, 2),
]


def mutations(sources: list[Gguf], count: int, seed: int) -> Iterator[tuple[str, str, bytes]]:
    """`count` mutants (category, what was done, bytes), the same ones for the same seed."""
    rng = random.Random(seed)
    weights = [w for _n, _f, w in MUTATORS]
    for _ in range(count):
        category, mutate, _w = rng.choices(MUTATORS, weights)[0]
        name, data = mutate(rng.choice(sources), rng)
        yield category, name, data
