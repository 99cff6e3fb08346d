"""msgspec's decoder of a combined stream's ``bookTicker`` message (the feed's hot path).

Imported on first use (the ``streams`` extra brings msgspec). Prices and sizes are read as
numbers in C (Binance sends them as text); the ids stay raw JSON, so that only a JSON
integer is taken for one: :meth:`bot4.streams.binance.BinanceSpot.raw_book_ticker`
converts and checks them, and anything else goes the checked way.
"""

import msgspec

__all__ = ["DECODER", "NO_TIME"]

NO_TIME = msgspec.Raw(b"0")
"""The default of a ticker without an event time (compared by identity)."""


class Ticker(msgspec.Struct, gc=False):
    """A ``bookTicker`` payload."""

    u: msgspec.Raw
    s: str
    b: float
    B: float
    a: float
    A: float
    E: msgspec.Raw = NO_TIME


class Combined(msgspec.Struct, gc=False):
    """A combined stream's envelope around it."""

    stream: str
    data: Ticker


DECODER = msgspec.json.Decoder(Combined, strict=False)
"""Decodes the envelope and its payload in one pass; raises a ValueError for anything else."""
