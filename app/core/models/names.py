"""What GGUF file names say: the quantization, the parts of a split model, the projector mark, the base name."""

from __future__ import annotations

import re

SPLIT = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")
# Quantization names as they appear in file names: Q4_K_M, IQ4_XS, Q8_0, BF16, F16, QAT "q4_0" …
_QUANT = re.compile(r"(?i)(?:^|[-_.])((?:UD-)?I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32|MXFP4(?:_MOE)?)(?=[-_.]|$)")
PROJECTOR_MARK = "mmproj"
# Preferred projector precisions, best first: a projector is small next to its model, so full precision costs little.
_PRECISION_ORDER = ("F16", "BF16", "F32", "Q8_0")


def _stem(filename: str) -> str:
    name = filename.rsplit("/", 1)[-1]
    match = SPLIT.match(name)
    return match.group("stem") if match else name.removesuffix(".gguf")


def quant_label(filename: str) -> str:
    """The quantization named in a GGUF file name, e.g. "Q4_K_M" (or the file name without .gguf)."""
    stem = _stem(filename)
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else stem


def is_projector_name(filename: str) -> bool:
    """True for a GGUF whose name marks it as an image projector ("mmproj-model-f16.gguf", "x-mmproj-BF16.gguf")."""
    lower = filename.rsplit("/", 1)[-1].lower()
    return lower.endswith(".gguf") and PROJECTOR_MARK in lower


def precision_rank(label: str) -> int:
    """Rank of a projector's precision: F16 and BF16 first, then F32, then Q8_0, then anything else."""
    upper = label.upper()
    return _PRECISION_ORDER.index(upper) if upper in _PRECISION_ORDER else len(_PRECISION_ORDER)


def base_name(filename: str) -> str:
    """A model's or projector's name without quantization, part numbers and the "mmproj" mark, in lower case.

    "gemma-4-E2B-it-Q4_K_M.gguf" and "mmproj-gemma-4-E2B-it-Q8_0.gguf" both give "gemma-4-e2b-it".
    """
    stem = _QUANT.sub("", _stem(filename))
    stem = re.sub(rf"(?i)(?:^|[-_.]){PROJECTOR_MARK}(?=[-_.]|$)", "", stem)
    return "-".join(w for w in re.split(r"[-_.]+", stem.lower()) if w)


def projector_preference(model_name: str, projector_name: str) -> tuple[bool, int, str]:
    """Sort key among projectors for one model: the same base name first, then by precision, then by name."""
    return (
        base_name(projector_name) != base_name(model_name),
        precision_rank(quant_label(projector_name)),
        projector_name,
    )
