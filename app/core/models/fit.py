"""Will a model fit this machine? RAM, VRAM and disk estimates from a GGUF header, and a verdict.

The estimate follows what Tern's engine asks llama.cpp for (llama_engine.py):
an f16 KV cache of `n_ctx` cells (padded to 256) in every layer that owns one,
sliding-window layers included (`swa_full`); KV-shared layers (Gemma 3n: all
but the first 20; Gemma 4: the last `shared_kv_layers`) own none; micro-batches
of up to 512 tokens; flash attention (llama.cpp's "auto", on for the CPU). With
the PLE on disk its table counts toward disk, plus the rows a chat pages in.

`compute` is the buffer llama.cpp reserves for a worst-case micro-batch whose
512 tokens all want logits. A chat asks for one token's logits and attends over
the tokens it holds, so it touches far fewer pages (`compute_resident`), and
untouched pages of a malloc'd buffer take no RAM.

Checked against llama.cpp's reported buffers (bench/fit.py, x86-64): KV exact;
compute, with flash attention, within 1 % (starter), -2 to +3 % (tiny Gemma
3n/4, 512 to 4,096 tokens), +2 % (E2B-shaped Gemma 4 at 4,096 and 32,768).
"""

from __future__ import annotations

import functools
import math
import mmap
import platform
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TypeVar

import psutil

from app.core.engine.gguf_info import PLE_TENSOR, GgufInfo
from app.core.engine.options import LoadOptions, Residency
from app.core.units import gb

MIB = 1 << 20
PAGE = mmap.PAGESIZE
N_BATCH = LoadOptions().n_batch
MAX_UBATCH = 512  # llama-cpp-python's default n_ubatch caps the micro-batch
KV_CELL_PAD = 256  # llama.cpp rounds n_ctx up to a multiple of this
F16, F32 = 2, 4
# Layers that own a KV cache in Gemma 3n: hard-coded in llama.cpp (src/models/gemma3n.cpp).
GEMMA3N_KV_LAYERS = 20
# SWA period when a file has no `sliding_window_pattern` (llama.cpp's per-model defaults).
_DEFAULT_SWA_PERIOD = {"gemma2": 2, "gemma3": 6, "gemma3n": 5}

# Process baseline: Python, numpy and llama.cpp's libraries, plus what grows with the
# vocabulary (llama.cpp's token tables, the sampler's arrays). bench/fit.py --calibrate:
# peak RSS less the model parts after a 1,000-token chat with the starter (262k vocab),
# tiny Gemma 4 (16k) and tiny Gemma 3n (1k), at 4096 and 8192 tokens; least squares.
RUNTIME_OVERHEAD = 51 * MIB
OVERHEAD_PER_VOCAB_TOKEN = 234
# The Qt window: `tern --self-test` on the starter (8192-token context, 25-token prompt,
# 1,024-token answer) peaked 98 and 102 MiB (two runs) above the engine alone with that chat.
UI_OVERHEAD = 100 * MIB
# CUDA context and cuBLAS workspace. Not measured here (no GPU build of llama.cpp);
# the usual size reported for llama.cpp on CUDA.
GPU_RUNTIME_OVERHEAD = 300 * MIB

# judge(): RAM above this share of what is available is TIGHT; a download that
# leaves less than DISK_MARGIN free is TIGHT.
TIGHT_RAM_SHARE = 0.75
TIGHT_VRAM_SHARE = 0.90
DISK_MARGIN = 2 * 10**9


@dataclass(frozen=True)
class ModelShape:
    """The hyper-parameters and tensor sizes the estimate needs, read from a GGUF header."""

    architecture: str
    n_layer: int
    n_embd: int
    n_vocab: int
    n_head: int  # most query heads in any layer
    head_dim: int  # largest key length in any layer
    kv_layers: tuple[tuple[int, int], ...]  # (layer, K+V values per token) for each layer that owns a cache
    has_swa: bool
    ple_width: int  # per-layer-embedding values per token, all layers together (0: no PLE)
    context_length: int
    file_size: int
    weight_bytes: int  # every tensor but the PLE table
    ple_bytes: int
    layer_bytes: tuple[int, ...]  # blk.N tensors, by layer
    output_bytes: int  # output-layer tensors of the file (they move to the GPU with it)
    tied_output_bytes: int  # token_embd when it doubles as the output: copied to the GPU, kept in RAM
    matrix_bytes: tuple[tuple[str, int], ...] = ()  # (type, bytes) of weight matrices llama.cpp may repack

    @classmethod
    def from_info(cls, info: GgufInfo) -> ModelShape:
        """Read the shape from a parsed header."""
        n_layer = info.block_count
        n_embd = int(info.arch_value("embedding_length", 0) or 0)
        heads = _per_layer(info.arch_value("attention.head_count", 1), n_layer)
        heads_kv = _per_layer(info.arch_value("attention.head_count_kv", heads), n_layer)
        key = int(info.arch_value("attention.key_length", 0) or 0) or n_embd // max(heads)
        value = int(info.arch_value("attention.value_length", 0) or 0) or key
        key_swa = int(info.arch_value("attention.key_length_swa", 0) or 0) or key
        value_swa = int(info.arch_value("attention.value_length_swa", 0) or 0) or value
        swa = _swa_layers(info, n_layer)
        # Without flash attention V is stored transposed, and then llama.cpp gives every
        # layer's V the widest V of any layer (llama-kv-cache.cpp).
        v_width = max(heads_kv[il] * (value_swa if swa[il] else value) for il in range(n_layer))
        kv_layers = tuple(
            (il, heads_kv[il] * (key_swa if swa[il] else key) + v_width) for il in range(_kv_layer_count(info, n_layer))
        )
        by_name = {t.name: t for t in info.tensors}
        embd = by_name.get("token_embd.weight")
        tokens = info.metadata.get("tokenizer.ggml.tokens")
        n_vocab = embd.shape[1] if embd and len(embd.shape) > 1 else len(tokens) if tokens is not None else 0
        ple = by_name.get(PLE_TENSOR)
        layer_bytes = [0] * n_layer
        output_bytes = 0
        matrices: dict[str, int] = {}
        for t in info.tensors:
            # The input lookups (token_embd, PLE) stay in plain buffers; matrices need 8-row groups.
            if len(t.shape) == 2 and t.shape[1] % 8 == 0 and t is not embd and t is not ple:
                matrices[t.qtype] = matrices.get(t.qtype, 0) + t.n_bytes
            if t.name.startswith("blk."):
                il = int(t.name.split(".")[1])
                if il < n_layer:
                    layer_bytes[il] += t.n_bytes
            elif t.name.startswith(("output", "altup_")):
                output_bytes += t.n_bytes
        return cls(
            architecture=info.architecture,
            n_layer=n_layer,
            n_embd=n_embd,
            n_vocab=n_vocab,
            n_head=max(heads),
            head_dim=max(key, key_swa),
            kv_layers=kv_layers,
            has_swa=any(swa),
            ple_width=ple.shape[0] if ple else 0,
            context_length=info.context_length,
            file_size=info.file_size,
            weight_bytes=sum(t.n_bytes for t in info.tensors) - info.ple_bytes,
            ple_bytes=info.ple_bytes,
            layer_bytes=tuple(layer_bytes),
            output_bytes=output_bytes,
            tied_output_bytes=embd.n_bytes if embd and "output.weight" not in by_name else 0,
            matrix_bytes=tuple(sorted(matrices.items())),
        )


def _per_layer(value: object, n_layer: int) -> list[int]:
    """A per-layer hyper-parameter that may be one number or an array."""
    if isinstance(value, list) and value:
        return [int(v) for v in value] + [int(value[-1])] * max(0, n_layer - len(value))
    return [int(value) if isinstance(value, (int, float)) else 1] * max(n_layer, 1)


def _swa_layers(info: GgufInfo, n_layer: int) -> list[bool]:
    """Which layers use sliding-window attention, as llama.cpp decides it."""
    pattern = info.arch_value("attention.sliding_window_pattern")
    if isinstance(pattern, list):
        return [bool(p) for p in pattern[:n_layer]] + [False] * max(0, n_layer - len(pattern))
    arch = info.architecture
    if arch not in _DEFAULT_SWA_PERIOD or (arch == "gemma3" and not info.arch_value("attention.sliding_window")):
        return [False] * n_layer
    period = int(pattern) if isinstance(pattern, int) else _DEFAULT_SWA_PERIOD[arch]
    return [period == 0 or il % period < period - 1 for il in range(n_layer)]


def _kv_layer_count(info: GgufInfo, n_layer: int) -> int:
    """Layers from the first that own a KV cache; the rest reuse an earlier layer's."""
    if info.architecture == "gemma3n":
        return min(n_layer, GEMMA3N_KV_LAYERS)
    if info.architecture == "gemma4":
        return n_layer - int(info.arch_value("attention.shared_kv_layers", 0) or 0)
    return n_layer


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a model needs, by kind; `total_ram` is what a chat keeps resident."""

    weights_ram: int  # weights that must be resident (the PLE too when it is kept in RAM)
    ple_disk: int  # the PLE table left on disk
    ple_paged: int  # PLE rows a chat pages in from disk
    kv_cache: int
    compute: int  # compute buffers as llama.cpp reserves them
    compute_resident: int  # the part of them a chat touches
    overhead: int  # the process itself: Python, Qt, llama.cpp's runtime and token tables
    vram: int  # 0 on the CPU
    disk: int  # the model file
    # Resident when a load ends, before the engine releases what it no longer needs:
    # the file pages of repacked weights next to their copies, and the whole file
    # where llama.cpp pre-faults it (no lazy PLE). Clean file pages the kernel can
    # reclaim under pressure, so judge() goes by total_ram.
    load_ram: int = 0
    projector: int = 0  # an image projector in RAM: its weights and one image's working buffers (vision_fit)

    @property
    def total_ram(self) -> int:
        """Resident memory during a chat."""
        return (
            self.weights_ram + self.ple_paged + self.kv_cache + self.compute_resident + self.overhead + self.projector
        )

    @property
    def peak_ram(self) -> int:
        """The largest resident size, load included (what a process's peak RSS shows)."""
        return max(self.total_ram, self.load_ram)

    def breakdown(self) -> list[tuple[str, int]]:
        """(label, bytes) rows for the UI; zero rows left out."""
        rows = [
            ("Model weights in RAM", self.weights_ram),
            ("Conversation memory (KV cache)", self.kv_cache),
            ("Working buffers", self.compute_resident),
            ("Per-layer embeddings read from disk", self.ple_paged),
            ("Image projector, with one image", self.projector),
            ("App and runtime", self.overhead),
            ("Per-layer embeddings left on disk", self.ple_disk),
            ("Graphics memory", self.vram),
            ("Disk", self.disk),
        ]
        return [(label, n) for label, n in rows if n > 0]


def _pad(n: int, to: int) -> int:
    return -(-n // to) * to


def _compute_bytes(shape: ModelShape, n_ubatch: int, n_kv: int, n_outputs: int) -> int:
    """Peak of llama.cpp's graph allocator for one micro-batch: the largest of three phases.

    With flash attention (the engine's "auto", on for the CPU) no KQ scores are
    kept: attention holds the masks (one per attention kind), their f16 copies
    that flash attention reads, and each token's working vectors. The PLE
    projection holds four f32 copies of the per-layer inputs; the output holds
    the logits. In the PLE and output phases the allocator (measured, not
    derived) has not reused the f16 masks' space.
    """
    kinds = 2 if shape.has_swa else 1
    masks = F32 * n_ubatch * n_kv * kinds
    masks_f16 = F16 * n_ubatch * n_kv * kinds
    work = 2 * shape.ple_width + 3 * shape.n_head * shape.head_dim + 6 * shape.n_embd
    attention = masks + masks_f16 + F32 * n_ubatch * work
    ple = masks_f16 + F32 * n_ubatch * 4 * shape.ple_width
    output = F32 * (n_outputs * shape.n_vocab + 3 * n_ubatch * shape.n_embd) + (masks_f16 if shape.ple_width else 0)
    return max(attention, ple, output)


def estimate_memory(
    model: GgufInfo | ModelShape,
    n_ctx: int,
    residency: Residency = Residency.PLE_ON_DISK,
    n_gpu_layers: int = 0,
    file_size: int | None = None,
    *,
    tokens: int | None = None,
    include_ui: bool = True,
    repacked: frozenset[str] | None = None,
) -> MemoryEstimate:
    """What loading `model` with `n_ctx` costs; `tokens` in use defaults to a full context.

    `repacked`: quantization types llama.cpp re-lays out on this CPU (default: `repack_types()`).
    """
    shape = model if isinstance(model, ModelShape) else ModelShape.from_info(model)
    n_ctx = min(n_ctx, shape.context_length) if shape.context_length else n_ctx  # as the engine clamps it
    cells = _pad(n_ctx, KV_CELL_PAD)
    in_use = min(tokens if tokens is not None else n_ctx, n_ctx)
    n_ubatch = min(N_BATCH, n_ctx, MAX_UBATCH)

    # llama.cpp puts the output layer and the last n_gpu_layers - 1 blocks on the GPU.
    first_gpu = max(shape.n_layer + 1 - n_gpu_layers, 0) if n_gpu_layers > 0 else shape.n_layer + 1
    offloaded = sum(shape.layer_bytes[first_gpu:]) + (shape.output_bytes if n_gpu_layers > 0 else 0)
    kv_cpu = sum(values * cells * F16 for layer, values in shape.kv_layers if layer < first_gpu)
    kv_gpu = sum(values * cells * F16 for layer, values in shape.kv_layers if layer >= first_gpu)
    compute = _compute_bytes(shape, n_ubatch, cells, n_ubatch)

    ple_in_ram = residency == Residency.PLE_IN_RAM
    ple_paged = 0
    if shape.ple_bytes and not ple_in_ram:
        # One row per distinct token, at most one per token used; a row spans its pages plus a boundary.
        row = shape.ple_bytes / max(shape.n_vocab, 1)
        pages = math.ceil(row / PAGE) + 1
        ple_paged = min(shape.ple_bytes, min(in_use, shape.n_vocab) * pages * PAGE)
    overhead = RUNTIME_OVERHEAD + OVERHEAD_PER_VOCAB_TOKEN * shape.n_vocab + (UI_OVERHEAD if include_ui else 0)
    repack = repack_types() if repacked is None else repacked
    repacked_bytes = sum(n for qtype, n in shape.matrix_bytes if qtype in repack)
    # With a lazy PLE (Gemma 4, PLE on disk) llama.cpp pre-faults nothing; only what repacking reads is resident.
    lazy = shape.architecture == "gemma4" and shape.ple_bytes > 0 and not ple_in_ram
    if residency == Residency.LOCKED:
        prefaulted = shape.weight_bytes + (0 if lazy else shape.ple_bytes)
    else:
        prefaulted = repacked_bytes if lazy else shape.weight_bytes + shape.ple_bytes
    # A tied output is copied to the GPU; the CPU keeps token_embd for the input lookup.
    gpu = offloaded + shape.tied_output_bytes + kv_gpu + compute + GPU_RUNTIME_OVERHEAD
    return MemoryEstimate(
        weights_ram=shape.weight_bytes - offloaded + (shape.ple_bytes if ple_in_ram else 0),
        ple_disk=0 if ple_in_ram else shape.ple_bytes,
        ple_paged=ple_paged,
        kv_cache=kv_cpu,
        compute=compute,
        compute_resident=_compute_bytes(shape, n_ubatch, _pad(in_use, KV_CELL_PAD), 1),
        overhead=overhead,
        vram=gpu if n_gpu_layers > 0 else 0,
        disk=file_size if file_size is not None else shape.file_size,
        load_ram=overhead + kv_cpu + repacked_bytes + prefaulted,
    )


def repack_types(machine: str | None = None, cpu_flags: frozenset[str] | None = None) -> frozenset[str]:
    """Types llama.cpp's CPU backend copies into interleaved layouts at load (ggml-cpu/repack.cpp)."""
    arch = (machine or platform.machine()).lower()
    if arch in ("x86_64", "amd64"):
        flags = _cpu_flags() if cpu_flags is None else cpu_flags
        if flags and "avx2" not in flags:
            return frozenset()
        # Unknown flags (not Linux): x86-64 machines that run Tern have AVX2.
        return frozenset({"Q4_0", "Q4_K", "IQ4_NL", "MXFP4"} | ({"Q2_K"} if "avx512f" in flags else set()))
    if arch in ("arm64", "aarch64"):
        # With the dot-product extension (every Apple Silicon, ARMv8.2 and later).
        return frozenset({"Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q8_0", "IQ4_NL", "MXFP4"})
    return frozenset()


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """x86 feature flags from /proc/cpuinfo, read once; empty where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def for_file(estimate: MemoryEstimate, header_file_size: int, file_size: int) -> MemoryEstimate:
    """Another quantization of the same model: weights scale with the file; KV, buffers and overhead do not."""
    scale = file_size / header_file_size if header_file_size else 1.0
    return replace(
        estimate,
        weights_ram=int(estimate.weights_ram * scale),
        ple_disk=int(estimate.ple_disk * scale),
        ple_paged=int(estimate.ple_paged * scale),
        disk=file_size,
    )


@dataclass(frozen=True)
class Machine:
    """What this computer has free, in bytes."""

    total_ram: int
    available_ram: int
    vram_total: int
    vram_free: int
    disk_free: int

    @classmethod
    def detect(cls, models_dir: Path) -> Machine:
        """RAM from psutil, disk from the models folder (or its nearest existing parent), VRAM from nvidia-smi."""
        mem = psutil.virtual_memory()
        folder = models_dir
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        vram_total, vram_free = _nvidia_vram()
        _cpu_flags()  # read here, off the GUI thread, for the fit guidance that follows
        return cls(int(mem.total), int(mem.available), vram_total, vram_free, shutil.disk_usage(folder).free)


def _nvidia_vram() -> tuple[int, int]:
    """(total, free) bytes of the first NVIDIA GPU; (0, 0) when there is none or it cannot be asked."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return 0, 0
    try:
        out = subprocess.run(
            [tool, "--query-gpu=memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=3,
            check=True,
        ).stdout
        total, free = (int(float(x)) * MIB for x in out.splitlines()[0].split(","))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return 0, 0
    return total, free


class Verdict(str, Enum):
    """Whether a model fits."""

    FITS = "fits"
    TIGHT = "tight"  # runs, but little is left: other apps may slow down or be swapped out
    WONT_FIT = "won't fit"


def judge(estimate: MemoryEstimate, machine: Machine, *, download: bool = True) -> tuple[Verdict, str]:
    """FITS, TIGHT or WONT_FIT, with a sentence that gives the numbers.

    WONT_FIT: more RAM than is available, a file larger than the free disk
    (when it still has to be downloaded), or more VRAM than is free.
    TIGHT: over 75 % of the available RAM, over 90 % of free VRAM, or a
    download that would leave under 2 GB of disk.
    """
    ram, free = estimate.total_ram, machine.available_ram
    parts = [f"Needs about {gb(ram)} of RAM ({gb(free)} free)"]
    if download:
        parts.append(f"{gb(estimate.disk)} of disk ({gb(machine.disk_free)} free)")
    if estimate.vram:
        parts.append(f"{gb(estimate.vram)} of graphics memory ({gb(machine.vram_free)} free)")
    sentence = " and ".join(parts) + "."
    lower = sentence[0].lower() + sentence[1:]
    if ram > free:
        return Verdict.WONT_FIT, f"Not enough memory: {lower}"
    if download and estimate.disk > machine.disk_free:
        return Verdict.WONT_FIT, f"Not enough disk space: {lower}"
    if estimate.vram > machine.vram_free:
        return Verdict.WONT_FIT, f"Not enough graphics memory: {lower}"
    if ram > TIGHT_RAM_SHARE * free:
        return Verdict.TIGHT, f"{sentence} Close other apps for the best speed."
    if download and machine.disk_free - estimate.disk < DISK_MARGIN:
        return Verdict.TIGHT, f"{sentence} The disk will be nearly full."
    if estimate.vram > TIGHT_VRAM_SHARE * machine.vram_free:
        return Verdict.TIGHT, f"{sentence} Graphics memory will be nearly full."
    return Verdict.FITS, sentence


K = TypeVar("K")


def recommend(
    options: Sequence[tuple[K, MemoryEstimate]], machine: Machine, *, best_first: bool = False, download: bool = True
) -> K | None:
    """The best option that FITS: the first when `best_first`, else the largest file (higher quality)."""
    ordered = list(options) if best_first else sorted(options, key=lambda kv: -kv[1].disk)
    for key, estimate in ordered:
        if judge(estimate, machine, download=download)[0] == Verdict.FITS:
            return key
    return None
