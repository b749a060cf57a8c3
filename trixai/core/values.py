"""Config values that a user may give as one item (``eps=8/255``) or as a list (``eps=[2/255,8/255]``)."""

from __future__ import annotations

from omegaconf import ListConfig

from trixai.core.errors import TrixaiError


def as_list(value: object) -> list:
    """``[value]`` for one item, the items for a list (a string is one item, not its characters)."""
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def parse_eps(values: object) -> list[float]:
    """Budgets in [0, 1] pixel units from numbers or strings such as ``8/255``, one or a list."""
    parsed = []
    for value in as_list(values):
        try:
            if isinstance(value, str) and "/" in value:
                numerator, denominator = value.split("/")
                parsed.append(float(numerator) / float(denominator))
            else:
                parsed.append(float(value))
        except ValueError:
            raise TrixaiError(f"eps: {value!r} is not a number or a fraction like 8/255") from None
    return parsed
