"""Routing on the shared quote table: a fresh quote is the venue's book, no venue is asked;
a stale, missing, one-sided or crossed quote never is, and the venue is asked instead."""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
from typing import Any

import pytest

from bot4 import ConfigError, Core, Fees, ManualClock, Order, OrderManager, OrderStatus, PaperExchange
from bot4.plugins.manager import make_plugin_manager
from bot4.streams.events import Quote
from bot4.testing import EPOCH, OPEN_LIMITS
from tests.breaker.test_processes import join_all, start

ctx = mp.get_context("spawn")

# The venues' own books say venue-a is cheaper; the quotes say venue-b is: where an order
# goes tells which was read.
BOOK_A = dict(bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
BOOK_B = dict(bids=[(98.0, 5.0)], asks=[(102.0, 5.0)])


class Counting(PaperExchange):
    """A paper venue that counts the book reads it is asked for."""

    def __init__(self, name: str, clock: ManualClock) -> None:
        super().__init__(name, fees=Fees(taker=0.001), clock=clock)
        self.book_reads = 0

    def fetch_order_book(self, symbol: str, limit: int | None = None) -> dict[str, Any]:
        self.book_reads += 1
        return super().fetch_order_book(symbol, limit)


def venues(core: Core, clock: ManualClock) -> tuple[Counting, Counting]:
    a, b = Counting("venue-a", clock), Counting("venue-b", clock)
    a.set_book("BTC/USDT", **BOOK_A)
    b.set_book("BTC/USDT", **BOOK_B)
    core.plugins.register(a, name="venue-a")
    core.plugins.register(b, name="venue-b")
    return a, b


def quote(bid: float, ask: float, size: float = 5.0) -> Quote:
    return Quote("BTC/USDT", bid, size, ask, size, 1)


def buy() -> Order:
    return Order(symbol="BTC/USDT", side="buy", quantity=1.0)


def test_fresh_quotes_are_the_books_and_no_venue_is_asked(bot4_desk: Core, bot4_clock: ManualClock) -> None:
    a, b = venues(bot4_desk, bot4_clock)
    now = bot4_desk.clock.now_ns()
    bot4_desk.quotes.publish("venue-a", quote(99.0, 103.0), now)  # venue-a's quote: dearer than venue-b's
    bot4_desk.quotes.publish("venue-b", quote(98.0, 102.0), now)
    om = OrderManager(bot4_desk, routing="best_price")
    done = om.submit(buy())
    assert done.status is OrderStatus.FILLED and done.tracked.venue == "venue-b"
    assert a.book_reads == b.book_reads == 0


def test_a_quote_older_than_the_limit_is_not_used(bot4_desk: Core, bot4_clock: ManualClock) -> None:
    a, b = venues(bot4_desk, bot4_clock)
    now = bot4_desk.clock.now_ns()
    bot4_desk.quotes.publish("venue-a", quote(99.0, 103.0), now)
    bot4_desk.quotes.publish("venue-b", quote(98.0, 102.0), now)
    om = OrderManager(bot4_desk, routing="best_price", quote_max_age=0.5)
    bot4_clock.advance(0.5)
    assert om.submit(buy()).tracked.venue == "venue-b"  # exactly at the limit: still fresh
    assert a.book_reads == b.book_reads == 0
    bot4_clock.advance(0.001)
    assert om.submit(buy()).tracked.venue == "venue-a"  # the venues' books: venue-a is cheaper
    assert a.book_reads == b.book_reads == 1


@pytest.mark.parametrize(
    "bad",
    [
        quote(math.nan, 103.0),  # one-sided
        quote(104.0, 103.0),  # crossed
        quote(99.0, 103.0, size=0.0),  # no size
        quote(99.0, math.inf),
    ],
)
def test_a_quote_that_is_not_a_two_sided_book_is_not_used(bot4_desk: Core, bot4_clock: ManualClock, bad: Quote) -> None:
    a, b = venues(bot4_desk, bot4_clock)
    now = bot4_desk.clock.now_ns()
    bot4_desk.quotes.publish("venue-a", bad, now)
    bot4_desk.quotes.publish("venue-b", quote(98.0, 102.0), now)
    om = OrderManager(bot4_desk, routing="best_price")
    assert om.submit(buy()).tracked.venue == "venue-a"  # its own book (101) beats venue-b's quote (102)
    assert (a.book_reads, b.book_reads) == (1, 0)


def test_a_quote_from_the_future_is_not_used(bot4_desk: Core, bot4_clock: ManualClock) -> None:
    a, b = venues(bot4_desk, bot4_clock)
    later = bot4_desk.clock.now_ns() + 10**9  # written on another clock
    bot4_desk.quotes.publish("venue-b", quote(50.0, 51.0), later)
    om = OrderManager(bot4_desk, routing="best_price")
    assert om.submit(buy()).tracked.venue == "venue-a"
    assert b.book_reads == 1


def test_only_quotes_of_the_orders_venue_and_symbol_count(bot4_desk: Core, bot4_clock: ManualClock) -> None:
    a, b = venues(bot4_desk, bot4_clock)
    now = bot4_desk.clock.now_ns()
    bot4_desk.quotes.publish("venue-b", Quote("ETH/USDT", 1.0, 5.0, 2.0, 5.0, 1), now)
    bot4_desk.quotes.publish("venue-c", quote(50.0, 51.0), now)
    om = OrderManager(bot4_desk, routing="best_price")
    assert om.submit(buy()).tracked.venue == "venue-a"
    assert a.book_reads == b.book_reads == 1


def test_quote_max_age_none_always_asks_the_venue(bot4_desk: Core, bot4_clock: ManualClock) -> None:
    a, b = venues(bot4_desk, bot4_clock)
    now = bot4_desk.clock.now_ns()
    bot4_desk.quotes.publish("venue-a", quote(99.0, 103.0), now)
    bot4_desk.quotes.publish("venue-b", quote(98.0, 102.0), now)
    om = OrderManager(bot4_desk, routing="best_price", quote_max_age=None)
    assert om.submit(buy()).tracked.venue == "venue-a"
    assert a.book_reads == b.book_reads == 1


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "1", True, 1e9])
def test_a_bad_quote_max_age_is_refused(bot4_desk: Core, bot4_clock: ManualClock, bad: object) -> None:
    venues(bot4_desk, bot4_clock)
    with pytest.raises(ConfigError, match="quote_max_age"):
        OrderManager(bot4_desk, quote_max_age=bad)  # type: ignore[arg-type]


def test_async_routing_prefetches_only_the_books_not_quoted(bot4_desk: Core, bot4_clock: ManualClock) -> None:
    a, b = venues(bot4_desk, bot4_clock)
    bot4_desk.quotes.publish("venue-b", quote(98.0, 100.5), bot4_desk.clock.now_ns())
    om = OrderManager(bot4_desk, routing="best_price")
    done = asyncio.run(om.asubmit(buy()))
    assert done.tracked.venue == "venue-b"  # its quote (100.5) beats venue-a's book (101)
    assert (a.book_reads, b.book_reads) == (1, 0)


def _publish(name: str, ready: Any, go: Any) -> None:
    with Core.attach(name) as core:
        ready.set()
        go.wait(30)
        core.quotes.publish("venue-b", quote(98.0, 100.5), core.clock.now_ns())


def test_a_quote_another_process_publishes_after_the_first_order_is_used() -> None:
    """The table's reader learnt there was no quote; a feed process publishes one later: found."""
    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:  # the host's clock, as a feed's
        core.risk.configure(OPEN_LIMITS)
        core.risk.set_equity(100_000.0)
        core.risk.on_price("BTC/USDT", 100.0)
        a, b = venues(core, ManualClock(EPOCH))
        om = OrderManager(core, routing="best_price")
        assert om.submit(buy()).tracked.venue == "venue-a" and b.book_reads == 1
        ready, go = ctx.Event(), ctx.Event()
        proc = start(_publish, core.name, ready, go)
        try:
            assert ready.wait(60)
            go.set()
        finally:
            join_all([proc])
        done = om.submit(buy())
        assert done.tracked.venue == "venue-b" and b.book_reads == 1


def test_an_order_larger_than_the_quoted_top_level_asks_the_venue(bot4_desk: Core, bot4_clock: ManualClock) -> None:
    """A quote is the top level only: a larger order would be routed by the top's size, not by price."""
    a, b = venues(bot4_desk, bot4_clock)
    now = bot4_desk.clock.now_ns()
    bot4_desk.quotes.publish("venue-a", quote(99.0, 101.0, size=1.0), now)
    bot4_desk.quotes.publish("venue-b", quote(98.0, 102.0, size=50.0), now)
    om = OrderManager(bot4_desk, routing="best_price")
    big = Order(symbol="BTC/USDT", side="buy", quantity=2.0)
    assert om.submit(big).tracked.venue == "venue-a"  # its book: 5 at 101, cheaper for all 2
    assert (a.book_reads, b.book_reads) == (1, 0)  # venue-b's quote covers 2: not asked
