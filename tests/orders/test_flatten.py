"""The kill switch tripped to flatten: every order manager cancels what it sent and closes
what it holds, at the venue that holds it, and never more than the desk holds."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing as mp
from collections.abc import Iterator
from typing import Any

import pytest

from bot4 import (
    ConfigError,
    Core,
    ExchangeError,
    ManualClock,
    Order,
    OrderManager,
    OrderStatus,
    PaperExchange,
    RiskLimits,
    TradingState,
)
from tests.breaker.test_processes import join_all, start
from tests.risk.conftest import EPOCH, NO_LIMITS, open_desk

ctx = mp.get_context("spawn")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(EPOCH)


@pytest.fixture
def core(clock: ManualClock) -> Iterator[Core]:
    with open_desk(clock, equity=100_000.0, prices={"BTC/USDT": 100.0, "ETH/USDT": 10.0}) as c:
        yield c


class Refusing(PaperExchange):
    """A paper venue that refuses the next ``refuse_create`` orders and ``refuse_cancel`` cancels."""

    refuse_create = 0
    refuse_cancel = 0

    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        if self.refuse_create > 0:
            self.refuse_create -= 1
            raise ExchangeError(self.name, "refused (test)")
        return super().create_order(*args, **kwargs)

    def cancel_order(self, *args: Any, **kwargs: Any) -> Any:
        if self.refuse_cancel > 0:
            self.refuse_cancel -= 1
            raise ExchangeError(self.name, "refused (test)")
        return super().cancel_order(*args, **kwargs)


def paper(core: Core, clock: ManualClock, name: str) -> Refusing:
    venue = Refusing(name, clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
    venue.set_book("ETH/USDT", bids=[(9.9, 500.0)], asks=[(10.1, 500.0)])
    core.plugins.register(venue, name=name)
    return venue


def buy(qty: float, symbol: str = "BTC/USDT", **kw: Any) -> Order:
    return Order(symbol=symbol, side="buy", quantity=qty, **kw)


def desk_position(core: Core, symbol: str) -> float:
    return core.risk.snapshot().positions[symbol].quantity


@pytest.fixture
def trading(core: Core, clock: ManualClock) -> tuple[OrderManager, Refusing, Refusing]:
    """A manager holding BTC at two venues and ETH at one, a resting order and an emulated stop."""
    a, b = paper(core, clock, "venue-a"), paper(core, clock, "venue-b")
    om = OrderManager(core, routing="primary")
    assert om.submit(buy(2.0)).status is OrderStatus.FILLED  # venue-a
    a.refuse_create = 1  # the next order goes to venue-b
    assert om.submit(buy(1.0)).status is OrderStatus.FILLED
    assert om.submit(buy(30.0, "ETH/USDT")).status is OrderStatus.FILLED
    resting = om.submit(buy(1.0, type="limit", price=90.0))
    stop = om.submit(
        Order(symbol="BTC/USDT", side="sell", quantity=1.0, type="stop", stop_price=80.0, reduce_only=True)
    )
    assert resting.status is OrderStatus.ACCEPTED and stop.emulated
    return om, a, b


def test_a_flattening_trip_cancels_every_order_and_closes_every_position_at_its_venue(
    core: Core, trading: tuple[OrderManager, Refusing, Refusing]
) -> None:
    om, a, b = trading
    core.risk.kill_switch.trip("operator: flatten", flatten=True)
    assert core.risk.trading_state is TradingState.FLATTENING and core.risk.kill_switch.active
    om.mark("BTC/USDT", 100.0)  # the manager's next operation flattens
    assert all(not m.tracked.is_open for m in om.orders())
    assert not a.fetch_open_orders() and not b.fetch_open_orders()
    held = {(p.key.symbol, p.key.venue): p.quantity for p in om.positions()}
    assert held == {("BTC/USDT", "venue-a"): 0.0, ("BTC/USDT", "venue-b"): 0.0, ("ETH/USDT", "venue-a"): 0.0}
    closes = [m for m in om.orders() if m.tracked.order.reduce_only and m.tracked.order.type.value == "market"]
    assert sorted((m.tracked.venue, m.tracked.order.symbol, m.tracked.order.quantity) for m in closes) == [
        ("venue-a", "BTC/USDT", 2.0),
        ("venue-a", "ETH/USDT", 30.0),
        ("venue-b", "BTC/USDT", 1.0),
    ]
    snap = core.risk.snapshot()
    assert snap.open_orders == 0 and desk_position(core, "BTC/USDT") == 0.0 and desk_position(core, "ETH/USDT") == 0.0
    denied = om.submit(buy(1.0, stop_loss=99.0))  # still no new risk
    assert denied.status is OrderStatus.DENIED and "KILL_SWITCH" in denied.decision.codes  # type: ignore[union-attr]
    assert om.flatten() == []  # flat: nothing more to do


def test_a_halting_trip_leaves_orders_and_positions_alone(
    core: Core, trading: tuple[OrderManager, Refusing, Refusing]
) -> None:
    om, a, _ = trading
    core.risk.kill_switch.trip("operator: halt")
    assert core.risk.trading_state is TradingState.HALTED
    om.mark("BTC/USDT", 100.0)
    assert len(om.open_orders()) == 2 and len(a.fetch_open_orders()) == 1
    assert desk_position(core, "BTC/USDT") == 3.0


def test_flatten_retries_what_a_venue_refused_at_the_next_operation(
    core: Core, trading: tuple[OrderManager, Refusing, Refusing]
) -> None:
    om, a, _ = trading
    a.refuse_create, a.refuse_cancel = 2, 1  # venue-a refuses its cancel and its two closes once
    core.risk.kill_switch.trip("flatten", flatten=True)
    om.mark("BTC/USDT", 100.0)
    assert desk_position(core, "BTC/USDT") == 2.0  # venue-b's closed; venue-a's refused
    assert len(a.fetch_open_orders()) == 1
    om.poll()  # any operation takes the next step
    assert not a.fetch_open_orders()
    assert desk_position(core, "BTC/USDT") == 0.0 and desk_position(core, "ETH/USDT") == 0.0
    assert core.risk.snapshot().open_orders == 0


def test_a_drawdown_trip_flattens_when_the_limits_say_so(clock: ManualClock) -> None:
    with open_desk(clock, equity=5_000.0, prices={"BTC/USDT": 100.0}) as core:
        paper(core, clock, "venue-a")
        core.risk.configure(dataclasses.replace(NO_LIMITS, max_drawdown=0.05, flatten_on_kill=True))
        om = OrderManager(core, routing="primary")
        assert om.submit(buy(40.0)).status is OrderStatus.FILLED  # 4,040 of BTC on 5,000
        om.mark("BTC/USDT", 90.0)  # -440: past the 5% drawdown: the kill switch trips, to flatten
        assert core.risk.trading_state is TradingState.FLATTENING
        om.mark("BTC/USDT", 90.0)
        assert desk_position(core, "BTC/USDT") == 0.0


def test_a_bad_flatten_argument_is_a_config_error(core: Core) -> None:
    with pytest.raises(ConfigError, match="flatten"):
        core.risk.kill_switch.trip("x", flatten="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="flatten_on_kill"):
        RiskLimits(flatten_on_kill=1)  # type: ignore[arg-type]
    assert core.risk.trading_state is TradingState.ACTIVE


def test_flatten_on_kill_round_trips_through_the_segment(core: Core) -> None:
    core.risk.configure(dataclasses.replace(NO_LIMITS, flatten_on_kill=True))
    assert core.risk.limits.flatten_on_kill is True
    core.risk.kill_switch.trip("the limits say flatten")
    assert core.risk.trading_state is TradingState.FLATTENING


def test_aflatten_and_amark_flatten_too(core: Core, clock: ManualClock) -> None:
    paper(core, clock, "venue-a")
    om = OrderManager(core, routing="primary")

    async def scenario() -> None:
        assert (await om.asubmit(buy(2.0))).status is OrderStatus.FILLED
        core.risk.kill_switch.trip("flatten", flatten=True)
        await om.amark("BTC/USDT", 100.0)
        assert desk_position(core, "BTC/USDT") == 0.0
        assert await om.aflatten() == []

    asyncio.run(scenario())


def _holder(name: str, ready: Any, go: Any, done: Any) -> None:
    with Core.attach(name) as core:
        venue = PaperExchange("venue-a")
        venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
        core.plugins.register(venue, name="venue-a")
        om = OrderManager(core, routing="primary")
        assert om.submit(buy(1.0)).status is OrderStatus.FILLED
        ready.put(1)
        go.wait(60)
        om.mark("BTC/USDT", 100.0)
        done.put(sum(p.quantity for p in om.positions()))


def test_managers_in_several_processes_close_exactly_what_the_desk_holds() -> None:
    with Core.create() as core:
        core.risk.configure(NO_LIMITS)
        core.risk.set_equity(100_000.0)
        core.risk.on_price("BTC/USDT", 100.0)
        ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [start(_holder, core.name, ready, go, done) for _ in range(3)]
        for _ in procs:
            ready.get(timeout=120)
        assert desk_position(core, "BTC/USDT") == 3.0
        core.risk.kill_switch.trip("flatten the fleet", flatten=True)
        go.set()
        left = [done.get(timeout=120) for _ in procs]
        join_all(procs, timeout=120)
        assert left == [0.0, 0.0, 0.0]
        assert desk_position(core, "BTC/USDT") == 0.0
        assert core.risk.snapshot().open_orders == 0
