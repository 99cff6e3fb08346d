"""The order manager end to end over paper venues: risk, routing, breakers, fills, P&L."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

import bot4
from bot4 import (
    BreakerConfig,
    BreakerState,
    Core,
    Faults,
    Fees,
    ManualClock,
    Order,
    OrderManager,
    OrderStatus,
    PaperExchange,
)
from tests.risk.conftest import EPOCH, NO_LIMITS, open_desk

BOOK_A = dict(bids=[(99.0, 5.0)], asks=[(101.0, 1.0), (102.0, 5.0)])
BOOK_B = dict(bids=[(98.5, 5.0)], asks=[(101.5, 5.0)])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(EPOCH)


@pytest.fixture
def core(clock: ManualClock) -> Iterator[Core]:
    with open_desk(clock, equity=100_000.0, prices={"BTC/USDT": 100.0}) as c:  # market orders need a mark
        yield c


def venues(core: Core, clock: ManualClock, **faults_a: object) -> tuple[PaperExchange, PaperExchange]:
    a = PaperExchange("venue-a", fees=Fees(taker=0.001), faults=Faults(**faults_a), clock=clock)  # type: ignore[arg-type]
    b = PaperExchange("venue-b", fees=Fees(taker=0.0005), clock=clock)
    a.set_book("BTC/USDT", **BOOK_A)
    b.set_book("BTC/USDT", **BOOK_B)
    core.plugins.register(a, name="venue-a")
    core.plugins.register(b, name="venue-b")
    return a, b


def market(qty: float, side: str = "buy") -> Order:
    return Order(symbol="BTC/USDT", side=side, quantity=qty)


def test_submit_fills_and_updates_pnl_and_the_risk_ledger(core: Core, clock: ManualClock) -> None:
    venues(core, clock)
    om = OrderManager(core, routing="primary")
    done = om.submit(market(1.0))
    assert done.status is OrderStatus.FILLED
    assert [t.new for t in done.tracked.history] == [OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.FILLED]
    assert done.tracked.venue == "venue-a" and done.tracked.average_fill_price == 101.0
    (pos,) = om.positions()
    assert (pos.quantity, pos.average_price, pos.fees) == (1.0, 101.0, pytest.approx(0.101))
    snap = core.risk.snapshot()
    assert snap.positions["BTC/USDT"].quantity == 1.0
    assert snap.open_orders == 0  # the reservation ended with the fill
    assert snap.equity == pytest.approx(100_000 - 0.101)
    om.mark("BTC/USDT", 105.0)
    assert om.pnl().unrealized == pytest.approx(4.0)
    assert core.risk.snapshot().equity == pytest.approx(100_004 - 0.101)


def test_a_risk_rejection_ends_denied_and_sends_nothing(core: Core, clock: ManualClock) -> None:
    a, b = venues(core, clock)
    core.risk.configure(dataclasses.replace(NO_LIMITS, require_stop_loss=True))
    om = OrderManager(core)
    denied = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1, type="limit", price=101))
    assert denied.status is OrderStatus.DENIED
    assert denied.decision is not None and denied.decision.codes == ("STOP_LOSS_MISSING",)
    assert a.requests == b.requests == 0


def test_each_strategy_on_constructed_books(core: Core, clock: ManualClock) -> None:
    venues(core, clock)
    expect = {
        "primary": ("venue-a",),
        "lowest_fee": ("venue-b",),
        "best_price": ("venue-a",),  # 1 @ 101 x 1.001 beats 101.5 x 1.0005
        "split": ("venue-a", "venue-b"),  # 1 @ 101.1 at a, then b's 101.55 beats a's 102.1
    }
    for strategy, route in expect.items():
        om = OrderManager(core, routing=strategy)
        qty = 3.0 if strategy == "split" else 1.0
        done = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=qty, type="limit", price=110))
        assert done.route is not None and done.route.venues == route, strategy
        assert done.status is OrderStatus.FILLED, strategy
        for venue in ("venue-a", "venue-b"):
            core.plugins.get_plugin(venue).set_book("BTC/USDT", **(BOOK_A if venue == "venue-a" else BOOK_B))
    split = om.orders()[-1]
    assert {leg.venue: leg.quantity for leg in split.route.legs} == {"venue-a": 1.0, "venue-b": 2.0}  # type: ignore[union-attr]
    rr = OrderManager(core, routing="round_robin")
    assert [rr.submit(market(0.1)).route.venues for _ in range(3)] == [("venue-a",), ("venue-b",), ("venue-a",)]  # type: ignore[union-attr]


def test_an_open_breaker_venue_is_skipped(core: Core, clock: ManualClock) -> None:
    a, b = venues(core, clock)
    om = OrderManager(core, routing="primary")
    core.breaker("venue-a").force_open()
    done = om.submit(market(1.0))
    assert done.route is not None and done.route.venues == ("venue-b",)
    assert a.requests == 0


def test_a_failing_venue_trips_its_breaker_and_orders_flow_to_the_other(core: Core, clock: ManualClock) -> None:
    a, b = venues(core, clock, error_rate=1.0)
    om = OrderManager(core, routing="primary", breaker_config=BreakerConfig(consecutive_failures=3))
    outcomes = [om.submit(market(0.1)) for _ in range(6)]
    assert all(o.status is OrderStatus.FILLED for o in outcomes)
    assert all(o.tracked.venue == "venue-b" for o in outcomes)  # each failed over at once
    assert core.breaker("venue-a").state is BreakerState.OPEN
    assert a.requests == 3  # after the trip, venue-a is not even asked
    assert core.risk.snapshot().open_orders == 0


def test_no_venue_left_rejects_with_a_reason_and_releases(core: Core, clock: ManualClock) -> None:
    venues(core, clock)
    om = OrderManager(core)
    core.breaker("venue-a").force_open()
    core.breaker("venue-b").force_open()
    done = om.submit(market(1.0))
    assert done.status is OrderStatus.DENIED and "no venue" in done.reason
    assert core.risk.snapshot().open_orders == 0
    stop = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1, type="stop", stop_price=105))
    assert stop.status is OrderStatus.ACCEPTED and stop.emulated  # no paper venue takes stop orders: bot4 holds it


def test_resting_order_cancel_and_late_fills(core: Core, clock: ManualClock) -> None:
    a, _ = venues(core, clock)
    om = OrderManager(core, routing="primary")
    rest = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=2, type="limit", price=100))
    assert rest.status is OrderStatus.ACCEPTED and om.open_orders() == [rest]
    assert core.risk.snapshot().open_orders == 1
    a.set_book("BTC/USDT", bids=[(98.0, 1.0)], asks=[(99.5, 0.5)])  # half a unit trades against it
    assert om.poll() == 1
    assert rest.status is OrderStatus.PARTIALLY_FILLED and rest.tracked.filled_quantity == 0.5
    om.cancel(rest.id)
    assert rest.status is OrderStatus.CANCELED
    snap = core.risk.snapshot()
    assert snap.open_orders == 0 and snap.positions["BTC/USDT"].reserved_buy == 0
    assert core.risk.audit() == []


def test_a_refused_cancel_returns_to_the_open_status(core: Core, clock: ManualClock) -> None:
    a, _ = venues(core, clock)
    om = OrderManager(core, routing="primary")
    rest = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=2, type="limit", price=100))
    a.faults = Faults(error_rate=1.0)
    om.cancel(rest.id)
    assert rest.status is OrderStatus.ACCEPTED
    assert rest.tracked.history[-1].event is bot4.OrderEvent.CANCEL_REJECTED


def test_ioc_remainder_is_canceled_and_released(core: Core, clock: ManualClock) -> None:
    venues(core, clock)
    om = OrderManager(core, routing="primary")
    ioc = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=3, type="limit", price=101, time_in_force="IOC"))
    assert ioc.status is OrderStatus.CANCELED and ioc.tracked.filled_quantity == 1.0
    assert core.risk.snapshot().open_orders == 0


def test_bad_calls(core: Core, clock: ManualClock) -> None:
    with pytest.raises(bot4.ConfigError, match="no venue"):
        OrderManager(core)
    venues(core, clock)
    with pytest.raises(bot4.ConfigError, match="no-such-strategy"):  # at construction, before any order
        OrderManager(core, routing="no-such-strategy")
    with pytest.raises(bot4.UnknownOrderError):
        OrderManager(core).get("nope")


def test_a_timeout_is_never_sent_elsewhere(core: Core, clock: ManualClock) -> None:
    a, b = venues(core, clock, timeout_rate=1.0)
    om = OrderManager(core, routing="primary")
    done = om.submit(market(1.0))
    assert done.status is OrderStatus.SUBMITTED  # the venue may have it: outcome unknown
    assert done.unknown_legs == {"venue-a"} and "outcome unknown" in done.reason
    assert b.requests == 0  # not placed a second time at venue-b
    assert core.risk.snapshot().open_orders == 1  # its exposure stays reserved until reconciled
