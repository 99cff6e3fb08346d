"""A local book kept by a snapshot and diffs: the documented sync, gaps, replays, reordering."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot4 import StreamGapError
from bot4.streams.book import DepthBook, DepthDiff, DepthSnapshot


class Venue:
    """The truth: a book that changes by numbered updates, emitted as diffs of several updates."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.bids: dict[float, float] = {99.0: 1.0}
        self.asks: dict[float, float] = {101.0: 1.0}
        self.update_id = 100
        self.history = {self.update_id: (dict(self.bids), dict(self.asks))}
        """The venue's book after each update id it ends a diff at."""

    def step(self) -> DepthDiff:
        first = self.update_id + 1
        bids: dict[float, float] = {}
        asks: dict[float, float] = {}
        for _ in range(self.rng.randint(1, 3)):
            self.update_id += 1
            side, changes = (self.bids, bids) if self.rng.random() < 0.5 else (self.asks, asks)
            base = 99.0 if side is self.bids else 101.0
            price = base + (self.rng.randint(-3, 0) if side is self.bids else self.rng.randint(0, 3))
            quantity = 0.0 if self.rng.random() < 0.3 else float(self.rng.randint(1, 9))
            if quantity:
                side[price] = quantity
            else:
                side.pop(price, None)
            changes[price] = quantity
        self.history[self.update_id] = (dict(self.bids), dict(self.asks))
        return DepthDiff("X", first, self.update_id, sorted(bids.items()), sorted(asks.items()))

    def snapshot(self) -> DepthSnapshot:
        return DepthSnapshot(self.update_id, sorted(self.bids.items()), sorted(self.asks.items()))


def test_the_documented_sync_buffer_snapshot_then_diffs() -> None:
    venue = Venue(random.Random(1))
    book = DepthBook("X")
    early = [venue.step() for _ in range(3)]
    for diff in early:
        assert not book.on_diff(diff)  # buffered: no snapshot yet
    snap = venue.snapshot()
    later = [venue.step() for _ in range(3)]
    for diff in later:
        book.on_diff(diff)
    assert book.on_snapshot(snap) and book.synced
    assert (book.bids, book.asks, book.last_id) == (venue.bids, venue.asks, venue.update_id)
    assert book.dropped == 3  # the diffs the snapshot already held


def test_a_snapshot_older_than_the_stream_is_refused() -> None:
    venue = Venue(random.Random(2))
    old = venue.snapshot()
    venue.step()  # an update neither the snapshot nor the buffer holds
    book = DepthBook("X")
    book.on_diff(venue.step())
    assert not book.on_snapshot(old) and not book.synced
    book.on_diff(venue.step())
    assert book.on_snapshot(venue.snapshot())


def test_a_gap_raises_and_the_book_resyncs_from_a_new_snapshot() -> None:
    venue = Venue(random.Random(3))
    book = DepthBook("X")
    assert book.on_snapshot(venue.snapshot())
    book.on_diff(venue.step())
    venue.step()  # lost
    with pytest.raises(StreamGapError) as info:
        book.on_diff(venue.step())
    assert info.value.expected < info.value.got and "resync" in str(info.value)
    assert not book.synced and book.resyncs == 1 and book.top() == (None, None)
    book.on_diff(venue.step())
    assert book.on_snapshot(venue.snapshot())
    assert (book.bids, book.asks) == (venue.bids, venue.asks)


def test_replays_are_dropped() -> None:
    venue = Venue(random.Random(4))
    book = DepthBook("X")
    book.on_snapshot(venue.snapshot())
    diffs = [venue.step() for _ in range(5)]
    for diff in diffs:
        book.on_diff(diff)
    for diff in diffs:  # the venue replays them all
        assert not book.on_diff(diff)
    assert (book.bids, book.asks, book.dropped) == (venue.bids, venue.asks, 5)


def test_the_buffer_is_bounded() -> None:
    venue = Venue(random.Random(5))
    book = DepthBook("X", max_buffer=4)
    for _ in range(10):
        book.on_diff(venue.step())
    assert len(book._buffer) == 4


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), steps=st.integers(1, 60), snapshot_at=st.integers(0, 60))
def test_whatever_the_stream_does_the_book_is_the_venues_or_knows_it_is_not(
    seed: int, steps: int, snapshot_at: int
) -> None:
    """The stream loses, duplicates and reorders diffs at random; a book that says it is in
    sync always equals the venue's book at its update id."""
    rng = random.Random(seed)
    venue = Venue(rng)
    book = DepthBook("X")
    pending: list[DepthDiff] = []
    snapshot: DepthSnapshot | None = None
    for i in range(steps):
        diff = venue.step()
        if i == snapshot_at:
            snapshot = venue.snapshot()
        roll = rng.random()
        if roll < 0.05:
            continue  # lost
        pending.append(diff)
        if roll < 0.1:
            pending.append(diff)  # duplicated
        if roll < 0.15 and len(pending) > 1:
            pending[-1], pending[-2] = pending[-2], pending[-1]  # reordered
        while pending and rng.random() < 0.7:
            try:
                book.on_diff(pending.pop(0))
            except StreamGapError:
                assert not book.synced
        if snapshot is not None and not book.synced:
            book.on_snapshot(snapshot)
            snapshot = venue.snapshot() if rng.random() < 0.5 else snapshot
        if book.synced:
            assert venue.history[book.last_id] == (book.bids, book.asks)


def test_a_snapshot_older_than_the_synced_book_is_ignored() -> None:
    venue = Venue(random.Random(6))
    book = DepthBook("X")
    old = venue.snapshot()
    assert book.on_snapshot(old)
    for _ in range(4):
        book.on_diff(venue.step())
    assert book.on_snapshot(old)  # the same snapshot again, late: nothing rewinds
    assert (book.bids, book.asks, book.last_id) == (venue.bids, venue.asks, venue.update_id)


def test_diffs_buffered_after_a_gap_are_kept_for_the_next_snapshot() -> None:
    venue = Venue(random.Random(7))
    book = DepthBook("X")
    old = venue.snapshot()
    book.on_diff(venue.step())
    venue.step()  # lost
    later = [venue.step() for _ in range(3)]
    for diff in later:
        book.on_diff(diff)
    assert not book.on_snapshot(old)  # the buffer has a gap after it
    middle = DepthSnapshot(later[0].final_id, *[sorted(side.items()) for side in venue.history[later[0].final_id]])
    assert book.on_snapshot(middle)  # the diffs after the gap were kept: applied on top of it
    assert (book.bids, book.asks, book.last_id) == (venue.bids, venue.asks, venue.update_id)
