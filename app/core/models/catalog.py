"""The curated model catalogue (resources/catalog.json): which Gemma models to offer, and where from.

It names repositories and a quality order of quantizations; exact files,
sizes and checksums come from the hub when the user browses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources


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
        )
        for m in data["models"]
    ]
