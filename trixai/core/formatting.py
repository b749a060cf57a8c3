"""The one set of number formatters every renderer uses (console tables, markdown, report.html).

``value`` writes a score with fixed decimals, ``with_interval`` a value and its 95 % interval as
``0.8784 [0.869, 0.887]``, ``eps_label`` a budget as a fraction of 255 (``8/255``), ``num`` any number with
significant digits (large whole numbers in full), ``verdict`` a check's outcome.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MISSING = "—"


def eps_label(eps: float) -> str:
    """``8/255`` for multiples of 1/255, else the number with 6 significant digits."""
    k = float(eps) * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{float(eps):.6g}"


def eps_key(eps: float) -> str:
    """The budget as a key segment without a slash (``8_255``): flat metric names, record fields."""
    return eps_label(eps).replace("/", "_")


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def num(value: object, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, large whole numbers in full, "—" when missing, "undefined"
    for NaN; booleans as yes/no; anything else as its text."""
    if value is None or isinstance(value, str) and not value:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if is_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            return "undefined" if math.isnan(value) else str(value)
        if float(value).is_integer() and abs(value) >= 1000:
            return f"{int(value):,}".replace(",", "\u2009")
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def value(x: object, decimals: int = 4) -> str:
    """A score with fixed decimals (columns line up); :func:`num` for integers, large or non-finite values."""
    if isinstance(x, float) and math.isfinite(x) and abs(x) < 1e4:
        return f"{x:.{decimals}f}"
    return num(x)


def interval(ci: object, decimals: int = 3) -> str:
    """``[low, high]`` of a stored interval, empty when there is none."""
    if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2 and all(is_number(v) for v in ci):
        return f"[{float(ci[0]):.{decimals}f}, {float(ci[1]):.{decimals}f}]"
    return ""


def with_interval(x: object, ci: object = None, decimals: int = 4, ci_decimals: int = 3) -> str:
    """``0.8784 [0.869, 0.887]``; the bare value without an interval; "—" without a value."""
    if x is None:
        return MISSING
    bracket = interval(ci, ci_decimals)
    return f"{value(x, decimals)} {bracket}" if bracket else value(x, decimals)


def verdict(passed: bool | None) -> str:
    """PASS, FAIL or n/a (a check that could not be decided)."""
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")
