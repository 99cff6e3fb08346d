"""The one validation of a symbol name, for every entry point (orders, prices, the ledger)."""

from __future__ import annotations

__all__ = ["MAX_SYMBOL_BYTES", "symbol_problem"]

MAX_SYMBOL_BYTES = 32
"""A symbol is at most this many UTF-8 bytes (its row in the segment holds that many)."""


def symbol_problem(symbol: object) -> str | None:
    """Why ``symbol`` is not a valid symbol name, or None when it is.

    A symbol is a non-empty printable string (no NUL, no control characters, no lone
    surrogates) of at most :data:`MAX_SYMBOL_BYTES` UTF-8 bytes, so that it has exactly one
    encoding in the segment.
    """
    if not isinstance(symbol, str) or not symbol or not symbol.isprintable():
        return f"must be a non-empty printable string, got {symbol!r}"
    if len(symbol.encode()) > MAX_SYMBOL_BYTES:
        return f"must be at most {MAX_SYMBOL_BYTES} UTF-8 bytes, got {symbol!r}"
    return None
