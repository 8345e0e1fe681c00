"""The curated model catalogue (resources/catalog.json): which Gemma models to offer, and where from.

It names repositories and a quality order of quantizations; exact files,
sizes and checksums come from the hub when the user browses. The models the
welcome page may offer also carry a `first_choice`: one quantization with its
download size and the memory it needs, worked out ahead, so the page can say
what fits this computer before anything goes online. A model that sees images
names the type of image projector it needs, so the list can tell whether this
version of Tern can load it (projector_info.SUPPORTED).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from app.core.engine.projector_info import SUPPORTED
from app.core.models.fit import Machine, MemoryEstimate, Verdict, judge, recommend


@dataclass(frozen=True)
class FirstChoice:
    """The quantization the welcome page offers, with what it costs.

    `ram_bytes` is fit.estimate_memory's `total_ram` for that file at `context` tokens with the PLE on disk
    (Tern's defaults), computed from a header of the same shape and quantization types as the published file.
    """

    quant: str
    download_bytes: int
    ram_bytes: int
    context: int
    note: str = ""  # where the figures come from, when not from the published file

    def estimate(self) -> MemoryEstimate:
        """The numbers as a memory estimate that fit.judge can weigh against a machine."""
        return MemoryEstimate(
            weights_ram=self.ram_bytes,
            ple_disk=0,
            ple_paged=0,
            kv_cache=0,
            compute=0,
            compute_resident=0,
            overhead=0,
            vram=0,
            disk=self.download_bytes,
        )


@dataclass(frozen=True)
class Source:
    """A repository that publishes the model as GGUF."""

    repo: str
    note: str


@dataclass(frozen=True)
class CatalogEntry:
    """One model of the catalogue."""

    id: str
    name: str
    family: str
    kind: str  # "chat" or "embedding"
    use: str
    licence: str
    quality_order: tuple[str, ...]  # best first
    sources: tuple[Source, ...]
    first_choice: FirstChoice | None = None  # offered on the welcome page (chat models only)
    projector: str = ""  # the type of image projector it sees images through ("gemma4v", …); "" for none

    @property
    def sees_images(self) -> bool:
        """True for a model that takes images (through a projector its repositories ship)."""
        return bool(self.projector)

    @property
    def images_in_tern(self) -> bool:
        """True when this version of Tern can load that kind of projector."""
        return self.projector in SUPPORTED

    def quality(self, label: str) -> int:
        """Rank of a quantization label (lower is better; unknown ones last)."""
        order = [q.upper() for q in self.quality_order]
        return order.index(label.upper()) if label.upper() in order else len(order)


def load_catalog() -> list[CatalogEntry]:
    """The catalogue shipped with the app."""
    data = json.loads(resources.files("resources").joinpath("catalog.json").read_text(encoding="utf-8"))
    return [
        CatalogEntry(
            m["id"],
            m["name"],
            m["family"],
            m["kind"],
            m["use"],
            m["licence"],
            tuple(m["quality_order"]),
            tuple(Source(s["repo"], s["note"]) for s in m["sources"]),
            FirstChoice(**m["first_choice"]) if "first_choice" in m else None,
            m.get("projector", ""),
        )
        for m in data["models"]
    ]


@dataclass(frozen=True)
class Recommendation:
    """The one model the welcome page offers, and how it fits this machine."""

    entry: CatalogEntry
    choice: FirstChoice
    verdict: Verdict
    why: str  # fit.judge's sentence, with the numbers


def recommend_first(catalog: list[CatalogEntry], machine: Machine) -> Recommendation | None:
    """The largest welcome-page model that fits this machine; else the smallest, with why it may not.

    None when the catalogue offers none.
    """
    offered = [(e, e.first_choice) for e in catalog if e.kind == "chat" and e.first_choice is not None]
    if not offered:
        return None
    options = [((entry, choice), choice.estimate()) for entry, choice in offered]
    best = recommend(options, machine)  # the largest download that fits, as the model manager recommends
    entry, choice = best if best is not None else min(offered, key=lambda o: o[1].download_bytes)
    verdict, why = judge(choice.estimate(), machine)
    return Recommendation(entry, choice, verdict, why)
