"""The one check of "a finite number" every validator uses (floats first: the common case)."""

from __future__ import annotations

import math
import numbers

__all__ = ["is_number", "is_positive"]


def is_number(value: object) -> bool:
    """A finite real number (bool excluded)."""
    if type(value) is float:
        return math.isfinite(value)
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def is_positive(value: object) -> bool:
    """A finite real number > 0 (bool excluded)."""
    if type(value) is float:
        return 0.0 < value < math.inf
    return is_number(value) and value > 0  # type: ignore[operator]
