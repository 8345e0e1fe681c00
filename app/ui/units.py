"""Human-readable counts and sizes for widgets; the formatters live in core so its messages read the same."""

from __future__ import annotations

from app.core.units import mib, params, size

__all__ = ["mib", "params", "size"]
