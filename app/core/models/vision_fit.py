"""What seeing images costs: a projector's memory, one image's working buffers, and the context an image takes.

The projector's weights are read into memory whole when it loads (libmtmd
copies them into a backend buffer; nothing is memory-mapped), so they cost
their file size. Encoding an image needs a compute buffer that grows with the
number of patches; libmtmd sizes it for the first image it encodes (for Gemma
4, a 256-token image at load: clip.cpp `set_warmup_n_tokens(256)`) and keeps
it. The sizes below are fits to what llama.cpp itself reports ("CPU compute
buffer size", clip.cpp `reserve_compute_meta`) when it encodes one image,
measured on x86-64 with random-weight projectors of the real towers' widths
(tests/core/models/test_vision_fit.py repeats the measurement):

- gemma4v (Gemma 4 E2B/E4B/26B/31B): 12 bytes x patches x (width + FFN width),
  patches = tokens x 3 x 3; exact for the 768-wide E2B/E4B tower from 63 to
  1,064 tokens, within 5 % for the 1,152-wide tower of the larger models.
- gemma3 (SigLIP, Gemma 3 4B and up): 4 bytes x 4,096 patches x (FFN width +
  2 x width); exact for SigLIP's 1,152/4,304.

Another projector type gets no buffer estimate: the guidance then counts its
weights and says that each image needs working memory on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from app.core.engine.projector_info import ProjectorInfo
from app.core.models.fit import Machine, MemoryEstimate, Verdict, judge
from app.core.units import size

F32 = 4
GEMMA4_WARMUP_TOKENS = 256  # clip.cpp: gemma4v warms up with a 16 x 16-token image, and keeps that buffer


@dataclass(frozen=True)
class ProjectorCost:
    """Memory and context an image projector takes."""

    weights: int  # bytes: its file, read into memory whole
    compute: int | None  # bytes of working buffers for one image at `tokens`; None when not estimated
    tokens: int  # context tokens one image takes at the default detail (its most)
    max_tokens: int  # at the highest detail

    @property
    def total(self) -> int:
        """Bytes resident once it has read an image (the buffers counted as 0 when not estimated)."""
        return self.weights + (self.compute or 0)


def _u32(metadata: dict[str, Any], key: str) -> int:
    value = metadata.get(key, 0)
    return value if isinstance(value, int) and value > 0 else 0


def image_compute_bytes(info: ProjectorInfo, metadata: dict[str, Any], tokens: int) -> int | None:
    """libmtmd's compute buffer for one image of `tokens` tokens (None for a type without an estimate)."""
    width = _u32(metadata, "clip.vision.embedding_length")
    ffn = _u32(metadata, "clip.vision.feed_forward_length")
    if info.projector_type == "gemma4v":
        patches = max(tokens, GEMMA4_WARMUP_TOKENS) * info.n_merge * info.n_merge
        return 3 * F32 * patches * (width + ffn)
    if info.projector_type == "gemma3":
        patches = (info.image_size // info.patch_size) ** 2
        return F32 * patches * (ffn + 2 * width)
    return None


def projector_cost(info: ProjectorInfo, metadata: dict[str, Any], tokens: int | None = None) -> ProjectorCost:
    """What a projector costs with images read at up to `tokens` each (None or 0: its family's default)."""
    tokens = min(max(tokens or info.default_tokens, info.min_tokens), info.max_tokens)
    return ProjectorCost(info.n_bytes, image_compute_bytes(info, metadata, tokens), tokens, info.max_tokens)


def with_projector(estimate: MemoryEstimate, cost: ProjectorCost) -> MemoryEstimate:
    """The estimate with a projector loaded: in graphics memory when the model uses the GPU, else in RAM.

    libmtmd puts the projector on the GPU whenever the model has layers there (Tern asks for that).
    """
    disk = estimate.disk + cost.weights  # it is downloaded with the model
    if estimate.vram:
        return replace(estimate, vram=estimate.vram + cost.total, disk=disk)
    return replace(estimate, projector=cost.total, load_ram=estimate.load_ram + cost.weights, disk=disk)


def image_context(cost: ProjectorCost, n_ctx: int) -> str:
    """E.g. "Each image uses up to 280 tokens of the 8,192-token context."."""
    return f"Each image uses up to {cost.tokens:,} tokens of the {n_ctx:,}-token context."


def projector_note(cost: ProjectorCost, n_ctx: int) -> str:
    """What the guidance says of a projector: its memory, and the context an image takes."""
    if cost.compute is None:
        memory = f"The image projector needs {size(cost.weights)} of memory, plus working memory for each image."
    else:
        memory = f"The image projector needs about {size(cost.total)} of memory with an image."
    return f"{memory} {image_context(cost, n_ctx)}"


K = TypeVar("K")


def choose_projector(
    options: Sequence[tuple[K, ProjectorCost]], estimate: MemoryEstimate, machine: Machine
) -> K | None:
    """The first (most preferred) projector with which the model still FITS; else the smallest; None if none."""
    for key, cost in options:
        if judge(with_projector(estimate, cost), machine)[0] == Verdict.FITS:
            return key
    return min(options, key=lambda kv: kv[1].total)[0] if options else None
