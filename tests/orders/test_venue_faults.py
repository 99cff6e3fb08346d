"""The order manager against venues and plugins that misbehave: nothing leaks, nothing is
corrupted, every order ends in a state that says where it is."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import bot4
from bot4 import (
    Core,
    ExchangeReplyError,
    Leg,
    ManualClock,
    Order,
    OrderManager,
    OrderStatus,
    PaperExchange,
    Route,
    hookimpl,
)
from tests.orders.test_async import AsyncVenue
from tests.risk.conftest import EPOCH, open_desk


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(EPOCH)


@pytest.fixture
def core(clock: ManualClock) -> Iterator[Core]:
    with open_desk(clock, equity=100_000.0, prices={"BTC/USDT": 100.0, "ETH/USDT": 10.0}) as c:
        yield c


def paper(core: Core, clock: ManualClock, name: str = "venue-a") -> PaperExchange:
    venue = PaperExchange(name, clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
    venue.set_book("ETH/USDT", bids=[(9.9, 500.0)], asks=[(10.1, 500.0)])
    core.plugins.register(venue, name=name)
    return venue


def market(qty: float = 1.0, symbol: str = "BTC/USDT") -> Order:
    return Order(symbol=symbol, side="buy", quantity=qty)


def held(core: Core) -> int:
    """Reservations still held in the risk ledger."""
    return core.risk.snapshot().open_orders


# ---------------------------------------------------------------- exceptions after reserve


class RaisingStrategy:
    @hookimpl
    def bot4_route_order(self, order: Order, venues: list[Any], strategy: str) -> Route | None:
        raise RuntimeError("strategy bug")


class BadRouteStrategy:
    @hookimpl
    def bot4_route_order(self, order: Order, venues: list[Any], strategy: str) -> Route | None:
        return Route(legs=(Leg("venue-zzz", order.quantity),), strategy="bad")


@pytest.mark.parametrize(("plugin", "error"), [(RaisingStrategy, RuntimeError), (BadRouteStrategy, bot4.Bot4Error)])
def test_a_failing_routing_plugin_releases_the_reservation(
    core: Core, clock: ManualClock, plugin: type, error: type
) -> None:
    paper(core, clock)
    paper(core, clock, "venue-b")  # two venues: the strategy has something to decide
    strategy = plugin()
    core.plugins.register(strategy)
    om = OrderManager(core, routing="primary")
    for _ in range(60):  # far more than the desk's exposure allows to leak
        order = market(100.0)
        with pytest.raises(error):
            om.submit(order)
        assert om.get(order.client_order_id).status is OrderStatus.DENIED
        assert held(core) == 0
    core.plugins.unregister(strategy)
    assert om.submit(market(10.0)).status is OrderStatus.FILLED  # the desk still trades


def test_with_one_venue_able_to_take_it_no_strategy_is_asked(core: Core, clock: ManualClock) -> None:
    paper(core, clock)
    core.plugins.register(RaisingStrategy())
    om = OrderManager(core, routing="best_price")
    managed = om.submit(market(2.0))
    assert managed.status is OrderStatus.FILLED and managed.legs.keys() == {"venue-a"}
    assert managed.route is not None and managed.route.strategy == "best_price"


class Exploding(PaperExchange):
    """A venue whose adapter raises its own (non-bot4) errors after placing the order."""

    error: BaseException = KeyError("venue bug")

    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        super().create_order(*args, **kwargs)
        raise self.error


@pytest.mark.parametrize("error", [KeyError("venue bug"), KeyboardInterrupt()])
def test_an_adapter_error_leaves_the_order_marked_unknown_at_that_venue(
    core: Core, clock: ManualClock, error: BaseException
) -> None:
    venue = Exploding("venue-a", clock=clock)
    venue.error = error
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    core.plugins.register(venue, name="venue-a")
    om = OrderManager(core, routing="primary")
    order = Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=90.0)
    with pytest.raises(type(error)):
        om.submit(order)
    managed = om.get(order.client_order_id)
    assert managed.status is OrderStatus.SUBMITTED and managed.unknown_legs == {"venue-a"}
    assert "outcome unknown" in managed.reason and held(core) == 1  # the venue may hold it
    # Cancel asks the venue: the order is found by its client id, adopted, and canceled there.
    done = om.cancel(order.client_order_id)
    assert done.status is OrderStatus.CANCELED and done.unknown_legs == frozenset()
    assert venue.fetch_open_orders("BTC/USDT") == [] and held(core) == 0


def test_cancel_of_a_timed_out_placement_asks_the_venue(core: Core, clock: ManualClock) -> None:
    venue = paper(core, clock)
    venue.faults = bot4.Faults(timeout_rate=1.0)  # times out before placing anything
    om = OrderManager(core, routing="primary")
    managed = om.submit(market())
    assert managed.unknown_legs == {"venue-a"}
    venue.faults = bot4.Faults()
    done = om.cancel(managed.id)  # in neither its open nor its closed orders: never placed
    assert done.status is OrderStatus.CANCELED and done.reason == "venue-a never placed it"
    assert held(core) == 0


def test_cancel_of_a_timed_out_placement_at_a_venue_without_history_waits(core: Core, clock: ManualClock) -> None:
    venue = PaperExchange("venue-a", clock=clock, capabilities={"fetchClosedOrders": False})
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    core.plugins.register(venue, name="venue-a")
    venue.faults = bot4.Faults(timeout_rate=1.0)
    om = OrderManager(core, routing="primary")
    managed = om.submit(market())
    venue.faults = bot4.Faults()
    done = om.cancel(managed.id)  # not among the venue's open orders: it may have filled; not ours to say
    assert done.status is OrderStatus.SUBMITTED and "reconcile" in done.reason
    assert held(core) == 1


# ---------------------------------------------------------------- replies


class Garbage(PaperExchange):
    reply: Any = None

    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        super().create_order(*args, **kwargs)
        return self.reply


GOOD_TRADE = {"id": "t1", "price": 101.0, "amount": 1.0, "fee": {"cost": 0.1}}
GARBAGE = [
    (None, "reply"),
    ("ok", "reply"),
    ({}, "id"),
    ({"id": "1"}, "status"),
    ({"id": "1", "status": "open", "filled": -1}, "filled"),
    ({"id": "1", "status": "closed", "filled": 5.0}, "filled"),
    ({"id": "1", "status": "closed", "trades": [{"id": "t1", "price": 101.0}]}, "trades[0].amount"),
    ({"id": "1", "status": "closed", "trades": [{**GOOD_TRADE, "id": None}]}, "trades[0].id"),
    ({"id": "1", "status": "closed", "trades": [{**GOOD_TRADE, "fee": {"cost": "x"}}]}, "trades[0].fee.cost"),
    ({"id": "1", "status": "closed", "trades": [GOOD_TRADE, {**GOOD_TRADE, "id": "t2"}]}, "trades"),
    ({"id": "1", "status": "closed", "trades": "t1"}, "trades"),
]


@pytest.mark.parametrize(("reply", "field"), GARBAGE)
def test_a_garbage_reply_is_named_and_corrupts_nothing(core: Core, clock: ManualClock, reply: Any, field: str) -> None:
    venue = Garbage("venue-a", clock=clock)
    venue.reply = reply
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    core.plugins.register(venue, name="venue-a")
    paper(core, clock, "venue-b")
    om = OrderManager(core, routing="primary")
    managed = om.submit(market())
    assert managed.status is OrderStatus.SUBMITTED and managed.unknown_legs == {"venue-a"}
    assert f"invalid reply: {field}" in managed.reason
    assert om.positions() == []  # nothing applied
    assert all(p.quantity == 0 for p in core.risk.snapshot().positions.values())
    assert held(core) == 1  # held until reconciled: venue-a may have it
    assert managed.legs == {}  # and not sent to venue-b as well


def test_reply_errors_name_venue_and_field() -> None:
    from bot4.orders.report import parse_report

    with pytest.raises(ExchangeReplyError) as info:
        parse_report("venue-a", {"id": "1", "status": "open", "filled": float("nan")}, 1.0)
    assert (info.value.venue, info.value.field) == ("venue-a", "filled")
    assert isinstance(info.value, bot4.ExchangeError)


# ---------------------------------------------------------------- concurrency


class SlowBooks(AsyncVenue):
    """Books answer after a delay that depends on the symbol, so two orders' reads interleave."""

    async def fetch_order_book(self, symbol: str, *args: Any) -> Any:
        await asyncio.sleep(0.02 if symbol == "BTC/USDT" else 0.0)
        return self.paper.fetch_order_book(symbol, *args)


def test_concurrent_orders_are_routed_on_their_own_books(core: Core, clock: ManualClock) -> None:
    a = PaperExchange("venue-a", clock=clock)
    b = PaperExchange("venue-b", clock=clock)
    a.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(100.0, 50.0)])
    b.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(110.0, 50.0)])
    a.set_book("ETH/USDT", bids=[(9.9, 500.0)], asks=[(10.5, 500.0)])
    b.set_book("ETH/USDT", bids=[(9.9, 500.0)], asks=[(10.0, 500.0)])
    for venue in (a, b):
        core.plugins.register(SlowBooks(venue), name=venue.name)
    om = OrderManager(core, routing="best_price")

    async def both() -> list[bot4.ManagedOrder]:
        return await asyncio.gather(om.asubmit(market(1.0)), om.asubmit(market(1.0, "ETH/USDT")))

    btc, eth = asyncio.run(both())
    assert (btc.tracked.venue, btc.tracked.average_fill_price) == ("venue-a", 100.0)
    assert (eth.tracked.venue, eth.tracked.average_fill_price) == ("venue-b", 10.0)


def test_a_cancelled_asubmit_leaves_the_order_marked_unknown(core: Core, clock: ManualClock) -> None:
    venue = PaperExchange("venue-a", clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])

    class Hanging(AsyncVenue):
        async def create_order(self, *args: Any) -> Any:
            await asyncio.sleep(3600)

    core.plugins.register(Hanging(venue), name="venue-a")
    om = OrderManager(core, routing="primary")
    order = market()

    async def cancel_it() -> None:
        task = asyncio.create_task(om.asubmit(order))
        while om.orders() == [] or om.get(order.client_order_id).status is OrderStatus.INITIALIZED:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())
    managed = om.get(order.client_order_id)
    assert managed.unknown_legs == {"venue-a"} and managed.status is OrderStatus.SUBMITTED
    assert "CancelledError" in managed.reason and held(core) == 1


# ---------------------------------------------------------------- split routing


def split_venues(
    core: Core, clock: ManualClock, a_asks: list[tuple[float, float]], b_asks: list[tuple[float, float]]
) -> tuple[PaperExchange, PaperExchange]:
    a, b = PaperExchange("venue-a", clock=clock), PaperExchange("venue-b", clock=clock)
    a.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=a_asks)
    b.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=b_asks)
    core.plugins.register(a, name="venue-a")
    core.plugins.register(b, name="venue-b")
    return a, b


def test_split_legs_add_up_to_the_order_exactly(core: Core, clock: ManualClock) -> None:
    split_venues(core, clock, [(100.0, 0.2), (103.0, 5.0)], [(101.0, 0.1)])
    om = OrderManager(core, routing="split")
    done = om.submit(market(0.7))  # 0.2 + 0.4 at a and 0.1 at b: floats that do not add up by themselves
    legs = done.route.legs  # type: ignore[union-attr]
    assert sum(leg.quantity for leg in legs[:-1]) + legs[-1].quantity == 0.7
    assert done.status is OrderStatus.FILLED and done.tracked.filled_quantity == 0.7
    assert core.risk.snapshot().positions["BTC/USDT"].quantity == pytest.approx(0.7)


class DustRoute:
    @hookimpl
    def bot4_route_order(self, order: Order, venues: list[Any], strategy: str) -> Route | None:
        return Route((Leg("venue-a", order.quantity), Leg("venue-b", 5.55e-17)), "dust")


class WrongQuantity:
    @hookimpl
    def bot4_route_order(self, order: Order, venues: list[Any], strategy: str) -> Route | None:
        return Route((Leg("venue-a", order.quantity), Leg("venue-b", order.quantity)), "double")


def test_no_dust_leg_and_no_route_for_another_quantity(core: Core, clock: ManualClock) -> None:
    a, b = split_venues(core, clock, [(100.0, 5.0)], [(101.0, 5.0)])
    dust = DustRoute()
    core.plugins.register(dust)
    om = OrderManager(core, routing="primary")
    done = om.submit(market(1.0))
    assert done.status is OrderStatus.FILLED and done.legs.keys() == {"venue-a"}
    assert b.requests == 0  # the dust was never sent
    core.plugins.unregister(dust)
    core.plugins.register(WrongQuantity())
    order = market(1.0)
    with pytest.raises(bot4.Bot4Error, match="routed 2.0 for an order of 1.0"):
        om.submit(order)
    assert om.get(order.client_order_id).status is OrderStatus.DENIED and held(core) == 0
    assert b.requests == 0


def test_a_split_bigger_than_both_books_keeps_ledger_and_book_together(core: Core, clock: ManualClock) -> None:
    split_venues(core, clock, [(100.0, 1.0)], [(101.0, 2.0)])
    om = OrderManager(core, routing="split")
    done = om.submit(market(10.0))
    assert done.status is OrderStatus.CANCELED and done.tracked.filled_quantity == pytest.approx(3.0)
    assert sum(p.quantity for p in om.positions()) == pytest.approx(3.0)
    assert core.risk.snapshot().positions["BTC/USDT"].quantity == pytest.approx(3.0)
    assert held(core) == 0


class RefusesOrders(PaperExchange):
    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        raise bot4.ExchangeError(self.name, "insufficient balance")


def test_a_refused_leg_ends_the_order_and_releases_it(core: Core, clock: ManualClock) -> None:
    a = PaperExchange("venue-a", clock=clock)
    b = RefusesOrders("venue-b", clock=clock)
    a.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(100.0, 1.0), (105.0, 9.0)])
    b.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 9.0)])
    core.plugins.register(a, name="venue-a")
    core.plugins.register(b, name="venue-b")
    om = OrderManager(core, routing="split")
    done = om.submit(market(3.0))  # 1 at a, 2 at b: b refuses its leg
    assert done.status is OrderStatus.CANCELED and done.tracked.filled_quantity == pytest.approx(1.0)
    assert "venue-b" in done.reason and held(core) == 0
    assert core.risk.snapshot().positions["BTC/USDT"].quantity == pytest.approx(1.0)


# ---------------------------------------------------------------- stop orders


def stop_venue(core: Core, clock: ManualClock, stops: bool = True) -> PaperExchange:
    venue = PaperExchange("venue-a", clock=clock, capabilities={"createStopOrder": stops})
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    core.plugins.register(venue, name="venue-a")
    return venue


def test_a_stop_limit_rests_until_its_trigger_then_fills_within_its_limit(core: Core, clock: ManualClock) -> None:
    venue = stop_venue(core, clock)
    om = OrderManager(core, routing="primary")
    order = Order(symbol="BTC/USDT", side="buy", quantity=1, type="stop_limit", stop_price=110, price=120)
    managed = om.submit(order)
    assert managed.status is OrderStatus.ACCEPTED and managed.tracked.filled_quantity == 0  # not filled at 101
    venue.set_book("BTC/USDT", bids=[(104.0, 5.0)], asks=[(105.0, 5.0)])
    om.poll()
    assert managed.status is OrderStatus.ACCEPTED  # 105 is below the trigger
    venue.set_book("BTC/USDT", bids=[(110.0, 5.0)], asks=[(111.0, 5.0)])
    om.poll()
    assert managed.status is OrderStatus.FILLED and managed.tracked.average_fill_price == 111.0


def test_a_stop_sell_is_sent_with_its_trigger(core: Core, clock: ManualClock) -> None:
    venue = stop_venue(core, clock)
    sent: list[tuple[Any, ...]] = []
    create = venue.create_order
    venue.create_order = lambda *args: sent.append(args) or create(*args)  # type: ignore[method-assign]
    om = OrderManager(core, routing="primary")
    om.submit(market(1.0))  # a position to protect
    stop = om.submit(Order(symbol="BTC/USDT", side="sell", quantity=1, type="stop", stop_price=95))
    assert sent[-1][1] == "market" and sent[-1][5]["triggerPrice"] == 95
    assert stop.status is OrderStatus.ACCEPTED
    venue.set_book("BTC/USDT", bids=[(94.0, 5.0)], asks=[(96.0, 5.0)])
    om.poll()
    assert stop.status is OrderStatus.FILLED and stop.tracked.average_fill_price == 94.0


def test_a_stop_no_venue_takes_is_emulated_and_sent_only_once_triggered(core: Core, clock: ManualClock) -> None:
    venue = stop_venue(core, clock, stops=False)
    om = OrderManager(core, routing="primary")
    stop = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1, type="stop", stop_price=110))
    assert stop.status is OrderStatus.ACCEPTED and stop.emulated
    assert venue.requests == 0 and held(core) == 1  # held by bot4, its exposure reserved
    om.mark("BTC/USDT", 109.0)
    assert venue.requests == 0
    om.mark("BTC/USDT", 110.0)  # reached: sent as the market order it becomes
    assert stop.status is OrderStatus.FILLED and not stop.emulated
    assert [t.new for t in stop.tracked.history][-2:] == [OrderStatus.TRIGGERED, OrderStatus.FILLED]
    assert held(core) == 0


def test_an_emulated_stop_limit_cancels_without_a_venue(core: Core, clock: ManualClock) -> None:
    venue = stop_venue(core, clock, stops=False)
    om = OrderManager(core, routing="primary")
    stop = om.submit(Order(symbol="BTC/USDT", side="sell", quantity=1, type="stop_limit", stop_price=95, price=94))
    om.cancel(stop.id)
    assert stop.status is OrderStatus.CANCELED and held(core) == 0 and venue.requests == 0
    om.mark("BTC/USDT", 90.0)  # a canceled stop never fires
    assert venue.requests == 0


# ---------------------------------------------------------------- reconciliation


class PlacesThenTimesOut(PaperExchange):
    """Places (and maybe fills) the order, then the answer is lost."""

    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        super().create_order(*args, **kwargs)
        raise bot4.ExchangeTimeoutError(self.name, "no answer in 10s")


def test_reconcile_adopts_a_placed_leg_with_its_fills(core: Core, clock: ManualClock) -> None:
    venue = PlacesThenTimesOut("venue-a", clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    core.plugins.register(venue, name="venue-a")
    om = OrderManager(core, routing="primary")
    filled = om.submit(market(1.0))  # filled at the venue, the answer lost
    resting = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1, type="limit", price=90))
    assert filled.unknown_legs == resting.unknown_legs == {"venue-a"} and held(core) == 2
    result = om.reconcile()
    assert set(result.adopted) == {filled.id, resting.id} and result.fills == 1
    assert filled.status is OrderStatus.FILLED and filled.tracked.average_fill_price == 101.0
    assert resting.status is OrderStatus.ACCEPTED and resting.open_legs == {"venue-a"}
    assert core.risk.snapshot().positions["BTC/USDT"].quantity == 1.0 and held(core) == 1


def test_reconcile_rules_out_a_leg_never_placed_and_releases(core: Core, clock: ManualClock) -> None:
    venue = paper(core, clock)
    venue.faults = bot4.Faults(timeout_rate=1.0)  # times out before placing anything
    om = OrderManager(core, routing="primary")
    managed = om.submit(market())
    venue.faults = bot4.Faults()
    result = om.reconcile()
    assert result.never_placed == (managed.id,) and result.ended == (managed.id,)
    assert managed.status is OrderStatus.REJECTED and held(core) == 0


def test_reconcile_without_closed_order_history_keeps_the_leg_unknown(core: Core, clock: ManualClock) -> None:
    venue = PaperExchange("venue-a", clock=clock, capabilities={"fetchClosedOrders": False})
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    core.plugins.register(venue, name="venue-a")
    venue.faults = bot4.Faults(timeout_rate=1.0)
    om = OrderManager(core, routing="primary")
    managed = om.submit(market())
    venue.faults = bot4.Faults()
    result = om.reconcile()
    assert result.still_unknown == (managed.id,) and managed.status is OrderStatus.SUBMITTED and held(core) == 1


def test_reconcile_reports_and_cancels_foreign_orders(core: Core, clock: ManualClock) -> None:
    venue = paper(core, clock)
    om = OrderManager(core, routing="primary")
    ours = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1, type="limit", price=90))
    stray = venue.create_order("BTC/USDT", "limit", "buy", 1.0, 80.0, {"clientOrderId": "someone-else"})
    heard: list[bot4.Reconciliation] = []

    class Listener:
        @hookimpl
        def bot4_orders_reconciled(self, manager: OrderManager, result: bot4.Reconciliation) -> None:
            heard.append(result)

    core.plugins.register(Listener())
    assert om.reconcile().foreign == (("venue-a", stray["id"]),)
    assert heard[-1].foreign == (("venue-a", stray["id"]),)
    result = om.reconcile(cancel_foreign=True)
    assert result.canceled_foreign == (("venue-a", stray["id"]),)
    assert [o["id"] for o in venue.fetch_open_orders("BTC/USDT")] == [ours.legs["venue-a"]]
    om.reconcile()  # all in order: nothing to tell
    assert len(heard) == 2


def test_reconcile_every_runs_before_the_first_operation_and_then_periodically(core: Core, clock: ManualClock) -> None:
    venue = PlacesThenTimesOut("venue-a", clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    core.plugins.register(venue, name="venue-a")
    heard: list[bot4.Reconciliation] = []

    class Listener:
        @hookimpl
        def bot4_orders_reconciled(self, manager: OrderManager, result: bot4.Reconciliation) -> None:
            heard.append(result)

    core.plugins.register(Listener())
    stray = PaperExchange.create_order(venue, "BTC/USDT", "limit", "buy", 1.0, 80.0, {"clientOrderId": "old"})
    om = OrderManager(core, routing="primary", reconcile_every=30.0)
    lost = om.submit(market(1.0))  # reconciled first (start-up): the stray order is found
    assert [r.foreign for r in heard] == [(("venue-a", stray["id"]),)]
    assert lost.unknown_legs == {"venue-a"}
    clock.advance(29.0)
    om.mark("BTC/USDT", 100.0)  # not due yet
    assert len(heard) == 1 and lost.status is OrderStatus.SUBMITTED
    clock.advance(1.0)
    om.mark("BTC/USDT", 100.0)  # due: the lost answer is found, its fill applied
    assert heard[-1].adopted == (lost.id,) and lost.status is OrderStatus.FILLED
    assert core.risk.snapshot().positions["BTC/USDT"].quantity == 1.0
    with pytest.raises(bot4.ConfigError, match="reconcile_every"):
        OrderManager(core, reconcile_every=0)


# ---------------------------------------------------------------- brackets


def bracket_desk(core: Core, clock: ManualClock, stops: bool) -> tuple[PaperExchange, OrderManager]:
    venue = PaperExchange("venue-a", clock=clock, capabilities={"createStopOrder": stops})
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 1.0)])
    core.plugins.register(venue, name="venue-a")
    return venue, OrderManager(core, routing="primary", protect=True)


def exits(om: OrderManager, entry: bot4.ManagedOrder) -> list[bot4.ManagedOrder]:
    return [om.get(i) for i in entry.protection]


@pytest.mark.parametrize("stops", [True, False], ids=["venue-stops", "emulated-stops"])
def test_each_entry_fill_gets_its_stop_and_take_profit(core: Core, clock: ManualClock, stops: bool) -> None:
    venue, om = bracket_desk(core, clock, stops)
    entry = om.submit(
        Order(symbol="BTC/USDT", side="buy", quantity=2, type="limit", price=102, stop_loss=95, take_profit=110)
    )
    assert entry.status is OrderStatus.PARTIALLY_FILLED  # 1 of 2 at 101
    stop, take = exits(om, entry)
    assert (stop.tracked.order.type, stop.tracked.order.quantity, stop.tracked.order.reduce_only) == (
        bot4.OrderType.STOP,
        1.0,
        True,
    )
    assert stop.emulated is (not stops) and stop.tracked.is_open
    assert (take.tracked.order.price, take.tracked.order.quantity, take.status) == (110.0, 1.0, OrderStatus.ACCEPTED)
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.5, 5.0)])
    om.poll()  # the rest of the entry fills: exits for that fill too
    assert entry.status is OrderStatus.FILLED and len(entry.protection) == 4
    assert sum(om.get(i).tracked.order.quantity for i in entry.protection) == 4.0  # 2 stops + 2 targets


def test_a_stop_that_fires_cancels_its_take_profit(core: Core, clock: ManualClock) -> None:
    venue, om = bracket_desk(core, clock, stops=False)
    entry = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1, stop_loss=95, take_profit=110))
    stop, take = exits(om, entry)
    venue.set_book("BTC/USDT", bids=[(94.0, 5.0)], asks=[(96.0, 5.0)])
    om.mark("BTC/USDT", 94.5)
    assert stop.status is OrderStatus.FILLED and take.status is OrderStatus.CANCELED
    assert core.risk.snapshot().positions["BTC/USDT"].quantity == 0.0 and held(core) == 0


def test_a_partial_take_profit_resizes_the_stop(core: Core, clock: ManualClock) -> None:
    venue, om = bracket_desk(core, clock, stops=False)
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    entry = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=3, stop_loss=95, take_profit=110))
    stop, take = exits(om, entry)
    venue.set_book("BTC/USDT", bids=[(110.0, 1.0)], asks=[(112.0, 5.0)])  # 1 of the target's 3 trades
    om.poll()
    assert take.status is OrderStatus.PARTIALLY_FILLED and stop.status is OrderStatus.CANCELED
    (new_stop,) = [m for m in om.open_orders() if m.tracked.order.type is bot4.OrderType.STOP]
    assert new_stop.tracked.order.quantity == 2.0 and new_stop.emulated
    assert core.risk.snapshot().positions["BTC/USDT"].quantity == 2.0
    venue.set_book("BTC/USDT", bids=[(90.0, 5.0)], asks=[(91.0, 5.0)])
    om.mark("BTC/USDT", 90.0)  # the rest leaves at the stop; the target is canceled
    assert new_stop.status is OrderStatus.FILLED and take.status is OrderStatus.CANCELED
    assert core.risk.snapshot().positions["BTC/USDT"].quantity == 0.0 and held(core) == 0


# ---------------------------------------------------------------- amend


def resting(core: Core, clock: ManualClock) -> tuple[PaperExchange, OrderManager, bot4.ManagedOrder]:
    venue = paper(core, clock)
    om = OrderManager(core, routing="primary")
    return venue, om, om.submit(Order(symbol="BTC/USDT", side="buy", quantity=2, type="limit", price=95))


def reserved(core: Core) -> float:
    return core.risk.snapshot().positions["BTC/USDT"].reserved_buy


def test_amend_up_moves_the_reservation_once_the_venue_confirms(core: Core, clock: ManualClock) -> None:
    venue, om, order = resting(core, clock)
    done = om.amend(order.id, quantity=3, price=96)
    assert done.status is OrderStatus.ACCEPTED and [t.event for t in done.tracked.history][-2:] == [
        bot4.OrderEvent.PENDING_UPDATE,
        bot4.OrderEvent.UPDATED,
    ]
    (at_venue,) = venue.fetch_open_orders("BTC/USDT")
    assert (at_venue["amount"], at_venue["price"]) == (3.0, 96.0)
    assert reserved(core) == 3.0 and held(core) == 1
    done = om.amend(order.id, price=102)  # crosses the book: trades at once
    assert done.status is OrderStatus.FILLED and held(core) == 0


def test_amend_down_keeps_the_reservation_until_the_order_ends(core: Core, clock: ManualClock) -> None:
    venue, om, order = resting(core, clock)
    om.amend(order.id, quantity=1)
    assert order.tracked.order.quantity == 1.0 and reserved(core) == 2.0  # never looser than before
    venue.set_book("BTC/USDT", bids=[(94.0, 5.0)], asks=[(94.5, 5.0)])
    om.poll()
    assert order.status is OrderStatus.FILLED and held(core) == 0


def test_a_refused_amendment_leaves_the_order_as_it_was(core: Core, clock: ManualClock) -> None:
    venue, om, order = resting(core, clock)
    venue.faults = bot4.Faults(error_rate=1.0)
    done = om.amend(order.id, quantity=3)
    assert done.status is OrderStatus.ACCEPTED and "amendment refused" in done.reason
    assert done.tracked.order.quantity == 2.0 and reserved(core) == 2.0 and held(core) == 1
    venue.faults = bot4.Faults()
    core.risk.configure(bot4.RiskLimits(max_position_notional=0.0025, require_stop_loss=False))  # 250 at 100,000
    done = om.amend(order.id, quantity=3)  # 3 x 95 with the 2 x 95 still held: over the limit
    assert "denied by risk" in done.reason and done.tracked.order.quantity == 2.0 and held(core) == 1
    with pytest.raises(bot4.ConfigError, match="quantity"):
        om.amend(order.id, quantity=-1)


# ---------------------------------------------------------------- market rules


def ruled(core: Core, clock: ManualClock, **rules: float) -> tuple[PaperExchange, PaperExchange, OrderManager]:
    a, b = PaperExchange("venue-a", clock=clock), PaperExchange("venue-b", clock=clock)
    for venue in (a, b):
        venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
        core.plugins.register(venue, name=venue.name)
    a.set_market("BTC/USDT", **rules)
    return a, b, OrderManager(core, routing="primary")


def test_an_order_off_a_venue_s_lot_goes_elsewhere(core: Core, clock: ManualClock) -> None:
    a, b, om = ruled(core, clock, amount_step=0.001)
    done = om.submit(market(0.0015))
    assert done.status is OrderStatus.FILLED and done.legs.keys() == {"venue-b"}
    assert a.requests == 0  # refused here, as venue-a would have: never sent there
    assert om.submit(market(0.002)).legs.keys() == {"venue-a"}


def test_below_every_venue_s_minimum_is_rejected_and_released(core: Core, clock: ManualClock) -> None:
    a, b, om = ruled(core, clock, min_notional=10.0)
    b.set_market("BTC/USDT", min_amount=1.0)
    done = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=0.05, type="limit", price=101))
    assert done.status is OrderStatus.REJECTED and held(core) == 0
    assert "minimum" in done.reason and a.requests == b.requests == 0


def test_limit_and_trigger_prices_go_on_the_tick_never_worse(core: Core, clock: ManualClock) -> None:
    a, b, om = ruled(core, clock, price_step=0.5)
    sent: list[tuple[Any, ...]] = []
    create = a.create_order
    a.create_order = lambda *args: sent.append(args) or create(*args)  # type: ignore[method-assign]
    om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1, type="limit", price=95.7))
    om.submit(Order(symbol="BTC/USDT", side="sell", quantity=1, type="limit", price=105.2, reduce_only=False))
    assert [args[4] for args in sent] == [95.5, 105.5]  # a buy pays no more, a sell gets no less


def test_split_legs_fall_on_each_venue_s_lot(core: Core, clock: ManualClock) -> None:
    a = PaperExchange("venue-a", clock=clock)
    b = PaperExchange("venue-b", clock=clock)
    a.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(100.0, 0.37), (103.0, 50.0)])
    b.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
    a.set_market("BTC/USDT", amount_step=0.1)
    b.set_market("BTC/USDT", amount_step=0.01)
    for venue in (a, b):
        core.plugins.register(venue, name=venue.name)
    om = OrderManager(core, routing="split")
    done = om.submit(market(1.0))  # 0.37 is cheapest at a, but a takes lots of 0.1
    sent = {v: o["amount"] for v, venue in (("venue-a", a), ("venue-b", b)) for o in venue._orders.values()}
    assert sent == {"venue-a": 0.3, "venue-b": 0.7}
    assert done.status is OrderStatus.FILLED and done.tracked.filled_quantity == pytest.approx(1.0)


def test_bad_arguments_to_mark_reconcile_and_amend_are_named(core: Core, clock: ManualClock) -> None:
    paper(core, clock)
    om = OrderManager(core, routing="primary", protect=True)
    for bad in ("100", float("nan"), 0.0):
        with pytest.raises(bot4.ConfigError, match="price"):
            om.mark("BTC/USDT", bad)  # type: ignore[arg-type]
    with pytest.raises(bot4.ConfigError, match="cancel_foreign"):
        om.reconcile(cancel_foreign="yes")  # type: ignore[arg-type]
    with pytest.raises(bot4.UnknownOrderError):
        om.amend("nope", quantity=1)
    with pytest.raises(bot4.ConfigError, match="protect"):
        OrderManager(core, protect="yes")  # type: ignore[arg-type]
