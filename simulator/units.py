"""Numbers as people read them: significant digits without exponents, byte counts in binary units."""

from __future__ import annotations

import math

__all__ = ["round_sig", "format_sig", "format_bytes"]

_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def round_sig(x: float, digits: int) -> float:
    """`x` rounded to `digits` significant digits."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def format_sig(x: float, digits: int = 3, *, strip: bool = False) -> str:
    """`x` rounded to `digits` significant digits, never in exponent notation; `strip` drops trailing zeros."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:,.{decimals}f}"
    if strip and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_bytes(n: int) -> str:
    """Binary units: 262144 -> '256 KiB', 5905580032 -> '5.5 GiB'."""
    value, unit = float(n), _BYTE_UNITS[0]
    for unit in _BYTE_UNITS:
        if value < 1024 or unit == _BYTE_UNITS[-1]:
            break
        value /= 1024
    return f"{format_sig(value, 3, strip=True)} {unit}"
