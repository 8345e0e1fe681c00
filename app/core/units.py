"""Human-readable counts and byte sizes, in decimal units, for the UI and for core messages alike."""

from __future__ import annotations


def params(n: int) -> str:
    """2_284_000_000 → "2.28B", 268_098_176 → "268M", 5_242_880 → "5.2M"."""
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e8:
        return f"{n / 1e6:.0f}M"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.0f}K"


def size(n: float) -> str:
    """Bytes in decimal units: "3.2 MB", "1.63 GB"."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.0f} KB"
    return f"{int(n)} B"


def mib(n: float) -> str:
    """A llama.cpp buffer size given in MiB, shown in decimal units."""
    return size(n * 1024 * 1024)


def gb(n: float) -> str:
    """Bytes as decimal gigabytes with one decimal: "1.9 GB"."""
    # One fixed unit, so that "needs 0.8 GB (3.9 GB free)" compares at a glance.
    return f"{n / 1e9:.1f} GB"
