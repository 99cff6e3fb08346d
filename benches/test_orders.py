"""Order management: the whole internal path of an order, and one state transition.

Pipeline: ``OrderManager.submit`` of a market order with every risk rule on —
risk reserve → best-price routing over two paper venues (both books read) → the venue
(zero latency, deep books) → acknowledgement → fill → P&L → risk ledger fill, measured in
steady state (after a warm-up past the bounded history of finished orders). Each
benchmark times a batch of orders. Transition: applying an ACCEPTED event to a
submitted order, bot4's ``TrackedOrder.apply`` against NautilusTrader's ``Order.apply``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from benches._nautilus import nautilus_orders_to_accept
from bot4 import Core, Order, OrderEvent, OrderManager, PaperExchange, RiskLimits, TrackedOrder
from bot4.streams.events import Quote

DEEP = 1e12
WARM_UP = 12_000  # more than the 10 000 finished orders a manager (and a paper venue) keeps


def _open_limits(core: Core) -> None:
    """Every rule on, with limits that do not bind (the path is measured, not a rejection)."""
    core.risk.configure(
        dataclasses.replace(
            RiskLimits(), max_open_orders=1_000_000, max_orders_per_second=1_000_000_000, max_correlation=None
        )
    )
    core.risk.set_equity(1e9)
    core.risk.on_price("BTC/USDT", 100.0)


def paper_desk(core: Core, **options: Any) -> OrderManager:
    """The pipeline's desk on ``core``: every rule on (not binding), two deep paper venues, a
    best-price order manager (``options`` added), warmed up to its steady state."""
    _open_limits(core)
    for name, spread in (("venue-a", 1.0), ("venue-b", 1.5)):
        venue = PaperExchange(name)
        venue.set_book("BTC/USDT", bids=[(100 - spread, DEEP)], asks=[(100 + spread, DEEP)])
        core.plugins.register(venue, name=name)
    manager = OrderManager(core, routing="best_price", **options)
    if options.get("quote_max_age") is not None:
        _publish_quotes(core)
    # Steady state: the manager and the venues hold their bounded history of finished
    # orders (keep_finished / keep_closed), so the heap no longer grows order by order.
    for order in _orders(WARM_UP):
        manager.submit(order)
    return manager


@pytest.fixture(scope="module")
def desk() -> Iterator[OrderManager]:
    with Core.create(max_reservations=65536) as core:
        yield paper_desk(core)


@pytest.fixture(scope="module")
def quoted_desk() -> Iterator[tuple[OrderManager, Core]]:
    """The pipeline's desk with both venues' top of book in the shared quote table, as a
    feed keeps it: routing reads it there, and asks no venue for its book."""
    with Core.create(max_reservations=65536) as core:
        yield paper_desk(core, quote_max_age=60.0), core


def _publish_quotes(core: Core) -> None:
    now = core.clock.now_ns()
    for name, spread in (("venue-a", 1.0), ("venue-b", 1.5)):
        core.quotes.publish(name, Quote("BTC/USDT", 100 - spread, DEEP, 100 + spread, DEEP, 1), now)


def _orders(n: int) -> list[Order]:
    return [Order(symbol="BTC/USDT", side="buy", quantity=0.01, stop_loss=98.0) for _ in range(n)]


def test_submit_to_fill_pipeline(benchmark: Any, desk: OrderManager) -> None:
    benchmark.group = "order submit -> fill -> P&L"
    benchmark.extra_info["lib"] = "bot4"
    batch: list[Order] = []

    def fresh() -> None:
        batch[:] = _orders(200)

    def run() -> None:
        for order in batch:
            desk.submit(order)

    benchmark.pedantic(run, setup=fresh, rounds=30, iterations=1)
    assert all(m.status.name == "FILLED" for m in desk.orders()[-200:])
    benchmark.extra_info["per_order_divisor"] = 200


def test_submit_to_fill_pipeline_quoted(benchmark: Any, quoted_desk: tuple[OrderManager, Core]) -> None:
    """The pipeline with routing on the shared quote table (no book call per order)."""
    benchmark.group = "order submit -> fill -> P&L"
    benchmark.extra_info["lib"] = "bot4 (quotes)"
    desk, core = quoted_desk
    batch: list[Order] = []
    calls = [0]

    def fresh() -> None:
        batch[:] = _orders(200)
        _publish_quotes(core)

    def run() -> None:
        for order in batch:
            desk.submit(order)

    counted = desk._call

    def counting(venue: str, method: str, *args: Any) -> Any:
        calls[0] += method == "fetch_order_book"
        return counted(venue, method, *args)

    desk._call = counting  # type: ignore[method-assign]
    try:
        benchmark.pedantic(run, setup=fresh, rounds=30, iterations=1)
    finally:
        del desk._call
    assert all(m.status.name == "FILLED" for m in desk.orders()[-200:])
    assert calls[0] == 0, "routing asked a venue for its book although its quote was fresh"
    benchmark.extra_info["per_order_divisor"] = 200


def test_submit_latency_percentiles(benchmark: Any, desk: OrderManager) -> None:
    benchmark.group = "order submit per-call percentiles"
    benchmark.extra_info["lib"] = "bot4"
    orders, samples = _orders(5000), []

    def run() -> None:
        for order in orders:
            t = time.perf_counter_ns()
            desk.submit(order)
            samples.append(time.perf_counter_ns() - t)

    benchmark.pedantic(run, rounds=1, iterations=1)
    samples.sort()
    benchmark.extra_info["percentiles_ns"] = {
        "p50": samples[len(samples) // 2],
        "p99": samples[len(samples) * 99 // 100],
    }


def test_transition(benchmark: Any, batch: int) -> None:
    benchmark.group = "order transition (accept a submitted order)"
    benchmark.extra_info["lib"] = "bot4"
    pending: list[TrackedOrder] = []

    def fresh() -> None:
        pending.clear()
        for order in _orders(batch):
            tracked = TrackedOrder(order)
            tracked.apply(OrderEvent.SUBMITTED, 0)
            pending.append(tracked)

    def run() -> None:
        accepted = OrderEvent.ACCEPTED
        for tracked in pending:
            tracked.apply(accepted, 1)

    benchmark.pedantic(run, setup=fresh, rounds=100, iterations=1)


def test_nautilus_transition(benchmark: Any, batch: int) -> None:
    benchmark.group = "order transition (accept a submitted order)"
    benchmark.extra_info["lib"] = "nautilus"
    pending: list[tuple[Any, Any]] = []

    def fresh() -> None:
        orders, events = nautilus_orders_to_accept(batch)
        pending[:] = list(zip(orders, events, strict=True))

    def run() -> None:
        for order, event in pending:
            order.apply(event)

    benchmark.pedantic(run, setup=fresh, rounds=30, iterations=1)


@pytest.fixture(scope="module")
def bracket_desk() -> Iterator[OrderManager]:
    """A desk whose manager protects every entry: a stop (emulated: the paper venues take
    none) and a take-profit limit resting at the venue, one-cancels-other."""
    with Core.create(max_reservations=65536) as core:
        _open_limits(core)
        venue = PaperExchange("venue-a")
        venue.set_book("BTC/USDT", bids=[(99.0, DEEP)], asks=[(101.0, DEEP)])
        core.plugins.register(venue, name="venue-a")
        yield OrderManager(core, routing="primary", protect=True)


def test_bracket_entry_and_exits(benchmark: Any, bracket_desk: OrderManager) -> None:
    benchmark.group = "bracket: entry fill + stop + take-profit placed"
    benchmark.extra_info["lib"] = "bot4"
    batch: list[Order] = []

    def fresh() -> None:
        batch[:] = [
            Order(symbol="BTC/USDT", side="buy", quantity=0.01, stop_loss=98.0, take_profit=110.0) for _ in range(100)
        ]

    def run() -> None:
        for order in batch:
            bracket_desk.submit(order)

    benchmark.pedantic(run, setup=fresh, rounds=20, iterations=1)
    last = bracket_desk.get(batch[-1].client_order_id)
    assert last.status.name == "FILLED" and len(last.protection) == 2
    benchmark.extra_info["per_order_divisor"] = 100


class _Stamping(PaperExchange):
    """A paper venue that notes when an order reaches it."""

    reached_ns = 0

    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        self.reached_ns = time.perf_counter_ns()
        return super().create_order(*args, **kwargs)


def test_emulated_stop_fires_within_one_mark(benchmark: Any) -> None:
    """From ``mark`` (the price update: P&L, risk ledger, triggers) to the fired stop reaching
    its venue's ``create_order``, routing ``primary``."""
    benchmark.group = "emulated stop: mark -> order sent"
    with Core.create(max_reservations=65536) as core:
        _open_limits(core)
        venue = _Stamping("venue-a")
        venue.set_book("BTC/USDT", bids=[(99.0, DEEP)], asks=[(101.0, DEEP)])
        core.plugins.register(venue, name="venue-a")
        om = OrderManager(core, routing="primary")
        samples: list[int] = []

        def run() -> None:
            for _ in range(2000):
                stop = om.submit(
                    Order(symbol="BTC/USDT", side="buy", quantity=0.01, type="stop", stop_price=100.5, stop_loss=98.0)
                )
                t = time.perf_counter_ns()
                om.mark("BTC/USDT", 100.5)
                samples.append(venue.reached_ns - t)
                assert stop.status.name == "FILLED"
                om.mark("BTC/USDT", 100.0)

        benchmark.pedantic(run, rounds=1, iterations=1)
    samples.sort()
    benchmark.extra_info["percentiles_ns"] = {
        "p50": samples[len(samples) // 2],
        "p99": samples[len(samples) * 99 // 100],
    }
