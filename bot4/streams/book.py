"""A local order book kept in step with a venue's depth-diff stream, and its top of book.

The synchronisation is Binance's documented one (spot, "How to manage a local order book
correctly"), which most venues with update ids share:

1. buffer the diff events from the stream (:meth:`DepthBook.on_diff` before a snapshot);
2. fetch a snapshot; if its ``last_update_id`` is older than the first buffered event's
   ``first_id``, fetch another (:meth:`DepthBook.on_snapshot` says so by returning False);
3. drop buffered events whose ``final_id`` is at or before the snapshot; the first one
   kept must cover ``last_update_id + 1``;
4. apply every following event whose ``first_id`` is the previous ``final_id + 1``; an
   event already covered is dropped (a replay); one that leaves a gap means updates were
   lost: the book is out of sync and must start again from step 1
   (:class:`bot4.StreamGapError`, :attr:`DepthBook.synced` false).

Quantities are absolute: a level at quantity 0 is removed (removing a level the book does
not hold is normal).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from bot4.errors import StreamGapError

__all__ = ["BookView", "DepthBook", "DepthDiff", "DepthSnapshot", "Level"]

Level = tuple[float, float]
"""(price, quantity)."""


class DepthDiff(NamedTuple):
    """A depth-diff event: the levels that changed between two update ids (inclusive)."""

    symbol: str
    first_id: int
    final_id: int
    bids: list[Level]
    asks: list[Level]
    event_ms: int = 0
    """The venue's event time (ms since the epoch), 0 when not given."""


class DepthSnapshot(NamedTuple):
    """A full book as of ``last_update_id``."""

    last_update_id: int
    bids: list[Level]
    asks: list[Level]


class BookView(NamedTuple):
    """A book as a stream adapter gives it: the best levels of each side, best first."""

    symbol: str
    bids: list[Level]
    """Highest price first."""
    asks: list[Level]
    """Lowest price first."""
    update_id: int
    """The venue's update id the book is at."""


class DepthBook:
    """One symbol's book, kept by a snapshot and the diffs after it.

    ``max_buffer`` bounds the diffs held while waiting for a snapshot: past it the oldest
    are dropped, and the snapshot that follows must be newer than what was dropped.
    """

    def __init__(self, symbol: str, *, max_buffer: int = 10_000) -> None:
        self.symbol = symbol
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.last_id = -1
        """The update id the book is at (-1 before a snapshot)."""
        self.synced = False
        """Whether the book follows the stream: a snapshot applied and no update missed since."""
        self.resyncs = 0
        """How many times a gap put the book out of sync."""
        self.dropped = 0
        """Diffs dropped as already applied (replays, or older than the snapshot)."""
        self._buffer: list[DepthDiff] = []
        self._max_buffer = max_buffer

    def on_diff(self, diff: DepthDiff) -> bool:
        """Take one diff event; returns whether it changed the book.

        Raises :class:`bot4.StreamGapError` when updates between the book and this event were
        lost: the book is out of sync (cleared) and buffers from this event on, waiting for
        a new snapshot.
        """
        if not self.synced:
            self._buffer.append(diff)
            if len(self._buffer) > self._max_buffer:
                del self._buffer[0]
            return False
        if diff.final_id <= self.last_id:
            self.dropped += 1
            return False
        if diff.first_id > self.last_id + 1:
            expected = self.last_id + 1
            self._lose_sync(diff)
            raise StreamGapError(self.symbol, expected, diff.first_id)
        self._apply(diff)
        return True

    def on_snapshot(self, snapshot: DepthSnapshot) -> bool:
        """Start the book from ``snapshot`` and the diffs buffered since; returns whether it is
        in sync. False: the snapshot is older than the buffered stream (fetch another), or
        the buffered diffs leave a gap after it (those after the gap stay buffered for the
        next snapshot). A snapshot no newer than the book in sync is ignored."""
        if self.synced and snapshot.last_update_id <= self.last_id:
            return True  # older than the book it would replace: ignored
        buffered = [d for d in self._buffer if d.final_id > snapshot.last_update_id]
        self.dropped += len(self._buffer) - len(buffered)
        if buffered and buffered[0].first_id > snapshot.last_update_id + 1:
            self._buffer = buffered  # the snapshot is too old for what the stream sent: fetch again
            return False
        self.bids = {p: q for p, q in snapshot.bids if q > 0}
        self.asks = {p: q for p, q in snapshot.asks if q > 0}
        self.last_id = snapshot.last_update_id
        self.synced = True
        self._buffer = []
        for i, diff in enumerate(buffered):
            if diff.final_id <= self.last_id:
                self.dropped += 1  # a replay inside the buffer
                continue
            if diff.first_id > self.last_id + 1:
                self._lose_sync(diff)
                self._buffer = buffered[i:]  # kept for the next snapshot, from the gap on
                return False
            self._apply(diff)
        return True

    def top(self) -> tuple[Level | None, Level | None]:
        """The best bid and the best ask, each (price, quantity) or None."""
        bid = max(self.bids) if self.bids else None
        ask = min(self.asks) if self.asks else None
        return (
            None if bid is None else (bid, self.bids[bid]),
            None if ask is None else (ask, self.asks[ask]),
        )

    def depth(self, levels: int) -> tuple[list[Level], list[Level]]:
        """The best ``levels`` bids (highest first) and asks (lowest first)."""
        bids = sorted(self.bids.items(), key=lambda level: -level[0])[:levels]
        asks = sorted(self.asks.items())[:levels]
        return bids, asks

    def view(self, levels: int | None = None) -> BookView:
        """The book's best ``levels`` each side (None: every level)."""
        bids, asks = self.depth(len(self.bids) + len(self.asks) if levels is None else levels)
        return BookView(self.symbol, bids, asks, self.last_id)

    def _apply(self, diff: DepthDiff) -> None:
        _merge(self.bids, diff.bids)
        _merge(self.asks, diff.asks)
        self.last_id = diff.final_id

    def desync(self) -> None:
        """Start again from step 1 (diffs were missed, e.g. between two connections): the book
        is cleared and buffers the diffs that follow, waiting for a new snapshot."""
        if self.synced:
            self.resyncs += 1
        self.synced = False
        self.bids, self.asks = {}, {}
        self.last_id = -1
        self._buffer = []

    def _lose_sync(self, diff: DepthDiff) -> None:
        self.desync()
        self._buffer = [diff]


def _merge(side: dict[float, float], levels: Iterable[Level]) -> None:
    for price, quantity in levels:
        if quantity > 0:
            side[price] = quantity
        else:
            side.pop(price, None)
