"""Counters kept in the segment only for metrics: risk rejections by code and order latency.

Every process adds to the same words (atomic adds), so one reader of the segment — ``bot4
serve``'s ``/metrics`` — sees the whole desk's totals. Counts start at 0 when the segment
is created, as Prometheus counters do when a process starts.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import NamedTuple

from bot4.shm import _native
from bot4.shm import layout as L

__all__ = ["LATENCY_BOUNDS", "REJECTION_CODES", "LatencyHistogram", "SegmentMetrics"]

REJECTION_CODES: tuple[str, ...] = (
    *(code for _, code in _native.LEDGER_CODES),
    "JOURNAL",
    "SYMBOLS_FULL",
    "RESERVATIONS_FULL",
    "RULE_FAILED",
    "RULE_ERROR",
    "FLEET_EXPOSURE",
    "FLEET_UNREPLICATED",
    "FLEET_RESYNC",
    "FLEET_UNAVAILABLE",
    "OTHER",
)
"""The rejection codes counted one by one; a plugin rule's own codes count as ``OTHER``."""
_CODE_INDEX = {code: i for i, code in enumerate(dict.fromkeys(REJECTION_CODES))}
_OTHER = _CODE_INDEX["OTHER"]
assert len(REJECTION_CODES) <= L.REJECTION_SLOTS

LATENCY_BOUNDS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the order-latency histogram's buckets; one more bucket holds the rest."""
_BOUNDS_NS = tuple(round(b * 1e9) for b in LATENCY_BOUNDS)
assert len(LATENCY_BOUNDS) + 1 <= L.LATENCY_SLOTS


class LatencyHistogram(NamedTuple):
    """The order-latency histogram as read at one instant."""

    buckets: tuple[int, ...]
    """Latencies per bucket (not cumulative): ``LATENCY_BOUNDS`` then the rest."""
    total: int
    """Latencies observed (the sum of ``buckets``)."""
    sum_seconds: float
    """Their sum."""


class SegmentMetrics:
    """The metrics counters of one segment."""

    __slots__ = ("_r", "_base")

    def __init__(self, region: _native.Region, layout: L.Layout) -> None:
        self._r = region
        self._base = layout.metrics

    def count_rejections(self, codes: tuple[str, ...]) -> None:
        """An order was rejected with ``codes`` (each counted once)."""
        add, base = self._r.add, self._base + L.M_REJECTIONS
        for code in dict.fromkeys(codes):
            add(base + _CODE_INDEX.get(code, _OTHER), 1)

    def observe_order_latency(self, ns: int) -> None:
        """An order reached its venue's answer ``ns`` nanoseconds after it was sent."""
        ns = max(0, int(ns))
        r, base = self._r, self._base
        r.add(base + L.M_LATENCY + bisect_left(_BOUNDS_NS, ns), 1)
        r.add(base + L.M_LATENCY_SUM_NS, ns)

    def rejections(self) -> dict[str, int]:
        """Rejections so far by code (every code of :data:`REJECTION_CODES`, zeros included)."""
        words = self._r.load_range(self._base + L.M_REJECTIONS, len(REJECTION_CODES))
        return dict(zip(REJECTION_CODES, words, strict=True))

    def order_latency(self) -> LatencyHistogram:
        """The order-latency histogram now (its sum may lag its buckets by an order being counted)."""
        r, base = self._r, self._base
        buckets = tuple(r.load_range(base + L.M_LATENCY, len(LATENCY_BOUNDS) + 1))
        return LatencyHistogram(buckets, sum(buckets), r.load(base + L.M_LATENCY_SUM_NS) / 1e9)
