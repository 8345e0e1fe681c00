"""Image projectors (mmproj GGUFs) beside installed models: which one lets a model see images.

A vision-capable Gemma sees images through a separate projector GGUF that its
repository ships next to the model files (`mmproj-…gguf`). A projector serves
a model when Tern can load it (`projector_info` vets it as libmtmd would read
it) and it feeds the model's family at the model's embedding width, the test
libmtmd itself applies.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from app.core.engine.gguf_info import GgufError, read_metadata
from app.core.engine.projector_info import ProjectorInfo, read_projector_info
from app.core.models.names import is_projector_name, projector_preference

log = logging.getLogger("tern.models")


def text_shape(metadata: dict[str, Any]) -> tuple[str, int]:
    """A language model's architecture and embedding width from its metadata (width 0 when it does not say)."""
    arch = str(metadata.get("general.architecture", ""))
    value = metadata.get(f"{arch}.embedding_length", 0)
    return arch, value if isinstance(value, int) else 0


def _candidates(model: Path) -> list[Path]:
    try:
        entries = list(model.parent.iterdir())
    except OSError:
        return []
    here = model.resolve()
    return [p for p in entries if is_projector_name(p.name) and p.is_file() and p.resolve() != here]


def projector_for(model_path: Path) -> Path | None:
    """The image projector in `model_path`'s folder that serves it, or None.

    A projector serves it when its name marks it as one ("mmproj"), it is not the model itself, Tern can
    load it, and it feeds the model's family at the model's embedding width. Of several, one sharing the
    model's base name wins, then F16/BF16, then Q8_0. Files that cannot be read are passed over.
    """
    try:
        arch, width = text_shape(read_metadata(model_path))
    except GgufError:
        return None
    serving = []
    for candidate in _candidates(model_path) if width else []:
        try:
            read_projector_info(candidate).check_pairing(width, arch)
            serving.append(candidate)
        except GgufError as exc:  # ProjectorError included: unreadable, unsupported, or for another model
            log.info("Passed over %s as an image projector for %s: %s", candidate.name, model_path.name, exc)
    return min(serving, key=lambda p: projector_preference(model_path.name, p.name), default=None)


def check_pairs(model: Path, projector: Path) -> ProjectorInfo:
    """`projector`'s description if it serves `model`; raises GgufError (a UserError) saying why not."""
    arch, width = text_shape(read_metadata(model))
    info = read_projector_info(projector)
    info.check_pairing(width, arch)
    return info
