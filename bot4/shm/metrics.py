"""Figures kept in the segment for the operator's view: risk rejections by code, order
latency, and realized P&L, fees and fills by venue and by strategy.

Every process adds to the same words (atomic adds; floats by compare-and-swap), so one
reader of the segment — ``bot4 serve`` — sees the whole desk's totals. They start at 0 when
the segment is created, as Prometheus counters do when a process starts. Nothing here may
fail the path that counts: a figure that cannot be kept is logged and dropped.
"""

from __future__ import annotations

import hashlib
import logging
import math
from bisect import bisect_left
from collections.abc import Callable
from typing import NamedTuple

from bot4.errors import Bot4Error, ConfigError
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm.lock import OwnerLock
from bot4.shm.text import decode_text, encode_text

__all__ = ["LATENCY_BOUNDS", "OTHER", "REJECTION_CODES", "LatencyHistogram", "PnlFigures", "SegmentMetrics"]

log = logging.getLogger(__name__)
OTHER = "(other)"
"""The name P&L figures are kept under once the table has no room for another venue or strategy."""
_VENUE, _STRATEGY = 1, 2
_KINDS = {"venue": _VENUE, "strategy": _STRATEGY}
_OVERFLOW = {_VENUE: L.PNL_ROWS - 2, _STRATEGY: L.PNL_ROWS - 1}
_LAST_ROW = L.PNL_ROWS - 3  # data records are 1 .. _LAST_ROW

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


class PnlFigures(NamedTuple):
    """Realized P&L, fees and fills of one venue or strategy, every process's."""

    realized: float
    """Realized P&L, gross of fees (each order manager's cost basis)."""
    fees: float
    fills: int
    notional: float
    """Traded notional (quantity x price of every fill)."""


def _key(kind: int, name: str) -> int:
    digest = hashlib.blake2b(f"{kind}\x00{name}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1


class SegmentMetrics:
    """The metrics figures of one segment; ``ident`` reads the calling process's identity
    (read at each claim: a forked child claims as itself)."""

    __slots__ = ("_r", "_base", "_ident", "_rows", "_pairs")

    def __init__(self, region: _native.Region, layout: L.Layout, ident: Callable[[], int]) -> None:
        self._r = region
        self._base = layout.metrics
        self._ident = ident
        self._rows: dict[tuple[int, str], int] = {}  # (kind, name) -> record
        self._pairs: dict[tuple[str, str], tuple[int, int]] = {}  # (venue, strategy) -> their records' words

    def _row(self, record: int) -> int:
        return self._base + L.M_PNL + record * L.PNL_WORDS

    def count_rejections(self, codes: tuple[str, ...]) -> None:
        """An order was rejected with ``codes`` (each counted once)."""
        add, base = self._r.add, self._base + L.M_REJECTIONS
        for code in dict.fromkeys(codes):
            add(base + _CODE_INDEX.get(code, _OTHER), 1)

    def observe_order_latency(self, ns: int) -> None:
        """An order reached its venue's answer ``ns`` nanoseconds after it was sent (never
        raises: on a closed core it is dropped)."""
        ns = max(0, int(ns))
        r, base = self._r, self._base
        try:
            r.add(base + L.M_LATENCY + bisect_left(_BOUNDS_NS, ns), 1)
            r.add(base + L.M_LATENCY_SUM_NS, ns)
        except Bot4Error:
            pass

    def rejections(self) -> dict[str, int]:
        """Rejections so far by code (every code of :data:`REJECTION_CODES`, zeros included)."""
        words = self._r.load_range(self._base + L.M_REJECTIONS, len(REJECTION_CODES))
        return dict(zip(REJECTION_CODES, words, strict=True))

    def order_latency(self) -> LatencyHistogram:
        """The order-latency histogram now (its sum may lag its buckets by an order being counted)."""
        r, base = self._r, self._base
        buckets = tuple(r.load_range(base + L.M_LATENCY, len(LATENCY_BOUNDS) + 1))
        return LatencyHistogram(buckets, sum(buckets), r.load(base + L.M_LATENCY_SUM_NS) / 1e9)

    # ------------------------------------------------------------------ P&L by venue and strategy

    def add_fill(self, venue: str, strategy: str, realized: float, fee: float, notional: float) -> None:
        """A fill at ``venue`` for ``strategy``: its realized P&L (gross), fee and notional.
        A fill it cannot keep (a closed core, a figure that is not a finite number) is logged
        and dropped: one NaN would poison the desk's totals for good. Names must be strings."""
        if not isinstance(venue, str) or not isinstance(strategy, str):
            raise ConfigError("venue", f"venue and strategy are names, got {venue!r} and {strategy!r}")
        try:
            realized, fee, notional = float(realized), float(fee), float(notional)
        except (TypeError, ValueError):
            raise ConfigError("realized", f"figures are numbers, got {realized!r}, {fee!r}, {notional!r}") from None
        if not (math.isfinite(realized) and math.isfinite(fee) and math.isfinite(notional)):
            log.warning("P&L figures of a fill at %s not kept: not finite (%r, %r, %r)", venue, realized, fee, notional)
            return
        try:
            rows = self._pairs.get((venue, strategy))
            if rows is None:
                rows = self._rows_of(venue, strategy)
            addf = self._r.addf
            for row in rows:
                addf(row + L.PNL_REALIZED, realized, fee, notional, 1.0)  # realized, fees, notional, fills
        except Bot4Error as exc:  # a closed core: the fill itself is the ledger's, this is only its view
            log.warning("P&L figures of a fill at %s not kept: %s", venue, exc)

    def _rows_of(self, venue: str, strategy: str) -> tuple[int, int]:
        venue_row, strategy_row = self._record(_VENUE, venue), self._record(_STRATEGY, strategy)
        rows = (self._row(venue_row), self._row(strategy_row))
        if (_VENUE, venue) in self._rows and (_STRATEGY, strategy) in self._rows:  # both settled for good
            if len(self._pairs) >= 4096:
                self._pairs.clear()
            self._pairs[venue, strategy] = rows
        return rows

    def _record(self, kind: int, name: str) -> int:
        record = self._rows.get((kind, name))
        if record is not None:
            return record
        key = _key(kind, name)
        record = self._find(key)
        if record is None:
            if self._r.load(self._row(0) + L.PNL_HIGH) > _LAST_ROW:  # full for good (records are never freed)
                record = self._rows[kind, name] = _OVERFLOW[kind]
                return record
            record = self._claim(kind, name, key)  # threads of one process too take turns on the claim lock
        if record <= _LAST_ROW:  # under OTHER only while the claim lock was busy: tried again next time
            self._rows[kind, name] = record
        return record

    def _find(self, key: int) -> int | None:
        r = self._r
        high = min(r.load(self._row(0) + L.PNL_HIGH), _LAST_ROW + 1)
        for record in range(1, high):
            if r.load(self._row(record) + L.PNL_HASH) == key:
                return record
        return None

    def _claim(self, kind: int, name: str, key: int) -> int:
        r, header = self._r, self._row(0)
        try:
            with OwnerLock(r, header + L.PNL_LOCK, self._ident(), timeout=0.05):  # never long: a fill waits on it
                record = self._find(key)  # claimed by another process meanwhile?
                if record is not None:
                    return record
                record = max(1, r.load(header + L.PNL_HIGH))
                if record > _LAST_ROW:
                    return _OVERFLOW[kind]
                row = self._row(record)
                for k, word in enumerate(encode_text(name, L.PNL_NAME_WORDS)):
                    r.store(row + L.PNL_NAME + k, word)
                r.store(row + L.PNL_KIND, kind)
                for field in (L.PNL_REALIZED, L.PNL_FEES, L.PNL_NOTIONAL, L.PNL_FILLS):
                    r.storef(row + field, 0.0)  # a claimer killed before publishing may have left figures
                r.store(row + L.PNL_HASH, key)
                r.store(header + L.PNL_HIGH, record + 1)  # published
                return record
        except Bot4Error:  # the claim lock is held too long: kept under OTHER for now
            return _OVERFLOW[kind]

    def pnl_by(self, field: str) -> dict[str, PnlFigures]:
        """Figures by ``"venue"`` or ``"strategy"``, every process's, named as the order
        managers named them (cut to 64 bytes); :data:`OTHER` holds those past the table."""
        kind = _KINDS.get(field)
        if kind is None:
            raise ConfigError("field", f"group by 'venue' or 'strategy', got {field!r}")
        r = self._r
        high = min(r.load(self._row(0) + L.PNL_HIGH), _LAST_ROW + 1)
        out: dict[str, PnlFigures] = {}
        for record in [*range(1, high), _OVERFLOW[kind]]:
            row = self._row(record)
            if record <= _LAST_ROW and r.load(row + L.PNL_KIND) != kind:
                continue
            fills = int(r.loadf(row + L.PNL_FILLS))
            if record > _LAST_ROW and not fills:
                continue
            name = OTHER if record > _LAST_ROW else decode_text(r.load_range(row + L.PNL_NAME, L.PNL_NAME_WORDS))
            realized, fees = r.loadf(row + L.PNL_REALIZED), r.loadf(row + L.PNL_FEES)
            figures = PnlFigures(realized, fees, fills, r.loadf(row + L.PNL_NOTIONAL))
            previous = out.get(name)
            if previous is not None:  # two names cut to the same text
                figures = PnlFigures(
                    previous.realized + realized,
                    previous.fees + fees,
                    previous.fills + fills,
                    previous.notional + figures.notional,
                )
            out[name] = figures
        return out
