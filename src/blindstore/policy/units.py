"""Byte sizes as people write them in a policy (``512``, ``64 KiB``, ``1.5 GB``) and back."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

__all__ = ["format_size", "parse_size"]

_UNITS: Final = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE: Final = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")
# Largest first, so 1048576 reads "1 MiB" rather than "1024 KiB".
_DISPLAY: Final = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def parse_size(text: str) -> int:
    """Bytes in ``text``: digits, optionally a decimal fraction and a unit (B, KB..TB, KiB..TiB,
    case-insensitive). Fractions of a byte are dropped. Raise ``ValueError`` otherwise."""
    found = _SIZE.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not a size (e.g. 1048576, 64 KiB, 1.5 GB)")
    number, unit = found.groups()
    factor = _UNITS.get(unit.lower() or "b")
    if factor is None:
        raise ValueError(f"{text!r}: unknown unit {unit!r} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")
    return int(Decimal(number) * factor)


def format_size(size: int) -> str:
    """``size`` in the largest binary unit that divides it exactly, else in bytes."""
    for unit, factor in _DISPLAY:
        if size and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"
