"""The one check of "a finite number" every validator uses (floats first: the common case)."""

from __future__ import annotations

import math
import numbers

__all__ = ["is_number", "is_positive"]


def is_number(value: object) -> bool:
    """A finite real number that a float can hold (bool excluded)."""
    if type(value) is float:
        return math.isfinite(value)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except (OverflowError, ValueError, TypeError):  # an int past float range, a Real that is not really one
        return False


def is_positive(value: object) -> bool:
    """A finite real number > 0 (bool excluded)."""
    if type(value) is float:
        return 0.0 < value < math.inf
    return is_number(value) and value > 0  # type: ignore[operator]
