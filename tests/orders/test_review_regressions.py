"""Orders against venues and timing that broke the order manager once: each test is a
reproduction of a defect, and holds the invariants the desk relies on (reservations, the
P&L book against the ledger, something working for every open order)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bot4 import Core, ManualClock, Order, OrderManager, OrderStatus, PaperExchange, hookimpl
from tests.orders.test_async import AsyncVenue
from tests.risk.conftest import EPOCH, open_desk


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(EPOCH)


@pytest.fixture
def core(clock: ManualClock) -> Iterator[Core]:
    with open_desk(clock, equity=1_000_000.0, prices={"BTC/USDT": 100.0}) as c:
        yield c


def paper(clock: ManualClock, name: str = "venue-a", ask: float = 101.0, size: float = 50.0) -> PaperExchange:
    venue = PaperExchange(name, clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, size)], asks=[(ask, size)])
    return venue


class Wrapped:
    """A sync venue whose answers pass through ``hook(method, answer)``."""

    def __init__(self, venue: PaperExchange, hook: Callable[[str, Any], Any]) -> None:
        self.venue, self.hook = venue, hook
        self.name, self.fees, self.capabilities = venue.name, venue.fees, venue.capabilities

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.venue, method)
        return lambda *args: self.hook(method, call(*args))

    @hookimpl
    def bot4_exchange_adapters(self) -> list[Any]:
        return [self]


def invariants(core: Core, om: OrderManager) -> None:
    book = sum(p.quantity for p in om.positions() if p.key.symbol == "BTC/USDT")
    ledger = core.risk.snapshot().positions["BTC/USDT"].quantity
    assert book == pytest.approx(ledger, abs=1e-9)
    for m in om.open_orders():
        assert m.open_legs or m.unknown_legs or m.emulated or m.placing, f"{m.status.name} with nothing working"


def test_fills_reported_only_in_filled_are_applied(core: Core, clock: ManualClock) -> None:
    venue = paper(clock)
    no_trades = Wrapped(venue, lambda method, answer: dict(answer, trades=[]) if isinstance(answer, dict) else answer)
    core.plugins.register(no_trades, name="venue-a")
    om = OrderManager(core, routing="primary")
    done = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1))
    assert done.status is OrderStatus.FILLED and done.tracked.average_fill_price == 101.0
    resting = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1, type="limit", price=100))
    venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(100.0, 50.0)])
    om.poll()
    assert resting.status is OrderStatus.FILLED and core.risk.snapshot().open_orders == 0
    invariants(core, om)


def test_protection_over_async_venues_reads_books_as_the_driver_does(core: Core, clock: ManualClock) -> None:
    venue = paper(clock)
    venue.capabilities["createStopOrder"] = False
    core.plugins.register(AsyncVenue(venue), name="venue-a")
    om = OrderManager(core, routing="best_price", protect=True)

    async def run() -> None:
        entry = await om.asubmit(Order(symbol="BTC/USDT", side="buy", quantity=1, stop_loss=95, take_profit=110))
        assert [om.get(i).status for i in entry.protection] == [OrderStatus.ACCEPTED, OrderStatus.ACCEPTED]
        venue.set_book("BTC/USDT", bids=[(94.0, 50.0)], asks=[(96.0, 50.0)])
        await om.amark("BTC/USDT", 94.0)
        stop, take = (om.get(i) for i in entry.protection)
        assert stop.status is OrderStatus.FILLED and take.status is OrderStatus.CANCELED

    asyncio.run(run())
    invariants(core, om)
    assert core.risk.snapshot().open_orders == 0


def test_a_take_profit_that_fills_at_once_cancels_its_stop(core: Core, clock: ManualClock) -> None:
    venue = paper(clock, ask=101.0)
    core.plugins.register(venue, name="venue-a")
    om = OrderManager(core, routing="primary", protect=True)
    venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 1.0)])
    entry = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1, stop_loss=95, take_profit=99))
    stop, take = (om.get(i) for i in entry.protection)  # the target crosses the 99 bid: it fills at once
    assert take.status is OrderStatus.FILLED and stop.status is OrderStatus.CANCELED
    om.mark("BTC/USDT", 94.0)  # nothing left to fire
    invariants(core, om)
    assert core.risk.snapshot().open_orders == 0


def test_cancel_and_reconcile_while_a_placement_is_out(core: Core, clock: ManualClock) -> None:
    venue = paper(clock)
    core.plugins.register(AsyncVenue(venue), name="venue-a")
    om = OrderManager(core, routing="primary")
    order = Order(symbol="BTC/USDT", side="buy", quantity=1, type="limit", price=90)

    async def race() -> None:
        placing = asyncio.create_task(om.asubmit(order))
        while om.orders() == [] or om.get(order.client_order_id).placing is None:
            await asyncio.sleep(0)
        refused = await om.acancel(order.client_order_id)
        assert refused.status is OrderStatus.SUBMITTED and "not answered yet" in refused.reason
        await om.areconcile()  # nothing concluded about an order whose placement is out
        assert om.get(order.client_order_id).tracked.is_open
        assert (await placing).status is OrderStatus.ACCEPTED
        assert (await om.acancel(order.client_order_id)).status is OrderStatus.CANCELED

    asyncio.run(race())
    assert core.risk.snapshot().open_orders == 0


def test_ctrl_c_while_a_stop_fires_leaves_the_others_armed(core: Core, clock: ManualClock) -> None:
    venue = paper(clock)
    interrupted = [False]

    def once(method: str, answer: Any) -> Any:
        if method == "create_order" and not interrupted[0]:
            interrupted[0] = True
            raise KeyboardInterrupt
        return answer

    core.plugins.register(Wrapped(venue, once), name="venue-a")
    om = OrderManager(core, routing="primary")
    first = om.submit(Order(symbol="BTC/USDT", side="sell", quantity=1, type="stop", stop_price=95, stop_loss=120))
    second = om.submit(Order(symbol="BTC/USDT", side="sell", quantity=2, type="stop", stop_price=96, stop_loss=120))
    with pytest.raises(KeyboardInterrupt):
        om.mark("BTC/USDT", 94.0)
    fired, armed = (first, second) if first.unknown_legs else (second, first)
    assert fired.unknown_legs == {"venue-a"} and armed.emulated  # the other one still watches its trigger
    om.mark("BTC/USDT", 93.0)
    assert armed.status is OrderStatus.FILLED


def test_a_stop_that_fills_in_part_is_armed_again_for_the_rest(core: Core, clock: ManualClock) -> None:
    venue = paper(clock)
    core.plugins.register(venue, name="venue-a")
    om = OrderManager(core, routing="primary", protect=True)
    entry = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1, stop_loss=95, take_profit=110))
    venue.set_book("BTC/USDT", bids=[(94.0, 0.3)], asks=[(96.0, 50.0)])  # a thin book as the price falls
    om.mark("BTC/USDT", 94.0)
    stop, take = (om.get(i) for i in entry.protection)
    assert stop.tracked.filled_quantity == pytest.approx(0.3) and take.status is OrderStatus.CANCELED
    (again,) = om.open_orders()  # the rest of the position keeps a stop
    assert again.tracked.order.type is stop.tracked.order.type and again.tracked.order.quantity == pytest.approx(0.7)
    venue.set_book("BTC/USDT", bids=[(93.0, 5.0)], asks=[(96.0, 50.0)])
    om.mark("BTC/USDT", 93.0)
    assert again.status is OrderStatus.FILLED and core.risk.snapshot().open_orders == 0
    invariants(core, om)


def test_ctrl_c_between_two_steps_of_the_upkeep_leaves_upkeep_possible(
    bot4_desk: Core, bot4_clock: ManualClock, bot4_paper: Callable[..., PaperExchange]
) -> None:
    """A KeyboardInterrupt landing in the driver between two venue calls of the upkeep (as a
    signal handler raises it) must not leave the manager believing upkeep is still under way
    while the traceback is kept (sys.last_exc in a REPL)."""
    import inspect
    import sys

    from bot4.orders import venue_calls

    bot4_paper("paper")
    om = OrderManager(bot4_desk, routing="primary", reconcile_every=1.0)
    source, first = inspect.getsourcelines(venue_calls.VenueCalls._drive)
    send_line = first + next(i for i, line in enumerate(source) if "request = flow.send(result)" in line)
    fired: list[int] = []

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == send_line and om._upkeeping and not fired:
            fired.append(1)
            raise KeyboardInterrupt
        return local

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code is venue_calls.VenueCalls._drive.__code__ else None

    kept: BaseException | None = None
    sys.settrace(tracer)
    try:
        om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=101.0, stop_loss=95.0))
    except KeyboardInterrupt as exc:
        kept = exc  # the traceback stays alive, and with it every suspended frame
    finally:
        sys.settrace(None)
    assert fired and kept is not None
    assert not om._upkeeping
    bot4_clock.advance(5.0)
    assert om._upkeep_due()
