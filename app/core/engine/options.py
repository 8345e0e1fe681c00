"""What a model load asks for and what it produced, and the engine's errors.

Kept apart from `llama_engine` so that settings, widgets and the start-up path
can name these without importing llama.cpp, which loads on the inference
thread when the first model does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum

from app.core.engine.gguf_info import GgufInfo
from app.core.errors import UserError


class EngineError(UserError, RuntimeError):
    """A failure the user should read (bad file, load failure, full context)."""


class LoadCancelledError(EngineError):
    """The load was aborted through the progress callback."""


def default_threads() -> int:
    """Threads for decoding: every core on small machines, half of them (≈ physical cores) on larger ones."""
    cores = os.cpu_count() or 2
    return cores if cores <= 4 else cores // 2


class Residency(str, Enum):
    """Where the weights live. The PLE table is a pure lookup, so by default it stays on disk."""

    PLE_ON_DISK = "ple_on_disk"  # effective weights in RAM, PLE rows paged in on demand
    PLE_IN_RAM = "ple_in_ram"  # everything read at load: faster first tokens on slow disks
    LOCKED = "locked"  # mlock the model; the on-disk PLE stays excluded


class PlePlacement(str, Enum):
    """What the engine did with the PLE table at load."""

    NONE = "no PLE"
    LAZY = "on disk, rows read on demand"
    DROPPED = "on disk, paged out after load"
    IN_RAM = "in RAM"


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model."""

    n_ctx: int = 8192
    n_threads: int = 0  # 0: default_threads()
    n_gpu_layers: int = 0
    n_batch: int = 512
    residency: Residency = Residency.PLE_ON_DISK
    images: bool = True  # look for the model's image projector (an mmproj file beside it) and load it too
    projector: str = ""  # the image projector (mmproj GGUF) to load with the model; "" to look for one
    image_tokens: int = 0  # with a projector: the most tokens an image may take (0: the projector's own limit)


@dataclass(frozen=True)
class LoadedModel:
    """What the engine has loaded."""

    info: GgufInfo
    n_ctx: int
    n_threads: int
    load_ms: float
    template_name: str
    residency: Residency = Residency.PLE_ON_DISK
    ple: PlePlacement = PlePlacement.NONE
    buffers: tuple[tuple[str, float], ...] = ()  # ("CPU_Mapped model", MiB) as llama.cpp logged them
    template_note: str = ""  # why the file's own chat template is not used, when it is not
    flash_attn: bool = False  # llama.cpp chose flash attention ("auto": where the layers' device runs it)
    projector: str = ""  # the image projector loaded with it (file name), "" when the model sees no images
    image_tokens: int = 0  # with a projector: the most tokens one image takes
    vision_note: str = ""  # why a projector that was asked for is not loaded

    def buffer_mib(self, kind: str) -> float:
        """Total MiB of the buffers whose label ends with `kind` ("model", "KV", "compute")."""
        return sum(mib for label, mib in self.buffers if label.endswith(" " + kind))
