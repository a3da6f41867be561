"""Quantities in words for people: one wording for the command line and the web page."""

from __future__ import annotations


def binary_size(n: float) -> str:
    """Bytes in binary units (IEC 80000-13): `512 B`, `12.3 MiB`, up to GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
