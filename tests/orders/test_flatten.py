"""The kill switch tripped to flatten: every order manager cancels what it sent and closes
what it holds, at the venue that holds it, and never more than the desk holds."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing as mp
from collections.abc import Iterator
from typing import Any

import pytest

import bot4
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
    hookimpl,
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


# ---------------------------------------------------------------- what a hostile desk does to a flattening


def sell(qty: float, symbol: str = "BTC/USDT", **kw: Any) -> Order:
    return Order(symbol=symbol, side="sell", quantity=qty, **kw)


def held_by_venue(om: OrderManager) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for p in om.positions():
        key = (p.key.symbol, p.key.venue)
        out[key] = out.get(key, 0.0) + p.quantity
    return {k: v for k, v in out.items() if abs(v) > 1e-12}


def assert_consistent(core: Core, *managers: OrderManager) -> None:
    """Reservations are what open orders hold; the P&L books add up to the ledger."""
    held = {m.reservation.id for om in managers for m in om.open_orders() if m.reservation is not None}
    assert core.risk.snapshot().open_orders == len(held)
    for symbol in ("BTC/USDT", "ETH/USDT"):
        books = sum(p.quantity for om in managers for p in om.positions() if p.key.symbol == symbol)
        assert abs(books - desk_position(core, symbol)) < 1e-9


class GatedVenue:
    """An async adapter over a paper venue whose BTC sells wait for a gate (so two flattening
    steps can be made to overlap)."""

    def __init__(self, paper: PaperExchange) -> None:
        self.paper, self.name, self.fees, self.capabilities = paper, paper.name, paper.fees, paper.capabilities
        self.gate: asyncio.Event | None = None
        self.creates: list[tuple[str, str, float]] = []

    async def create_order(
        self, symbol: str, kind: str, side: str, qty: float, price: Any = None, params: Any = None
    ) -> Any:
        self.creates.append((symbol, side, qty))
        if symbol == "BTC/USDT" and side == "sell" and self.gate is not None:
            await self.gate.wait()
        return self.paper.create_order(symbol, kind, side, qty, price, params)

    async def cancel_order(self, *a: Any) -> Any:
        return self.paper.cancel_order(*a)

    async def fetch_order(self, *a: Any) -> Any:
        return self.paper.fetch_order(*a)

    async def fetch_open_orders(self, *a: Any) -> Any:
        return self.paper.fetch_open_orders(*a)

    async def fetch_order_book(self, *a: Any) -> Any:
        return self.paper.fetch_order_book(*a)

    async def fetch_balance(self) -> Any:
        return self.paper.fetch_balance()

    async def fetch_ticker(self, *a: Any) -> Any:
        return self.paper.fetch_ticker(*a)

    @hookimpl
    def bot4_exchange_adapters(self) -> list[Any]:
        return [self]


def test_two_flattening_steps_never_overlap_and_close_twice(core: Core, clock: ManualClock) -> None:
    venue = PaperExchange("venue-a", clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
    gated = GatedVenue(venue)
    core.plugins.register(gated, name="venue-a")
    om, other = OrderManager(core, routing="primary"), OrderManager(core, routing="primary")

    async def scenario() -> None:
        assert (await other.asubmit(buy(5.0))).status is OrderStatus.FILLED  # another worker holds BTC too
        assert (await om.asubmit(buy(2.0))).status is OrderStatus.FILLED
        core.risk.kill_switch.trip("flatten", flatten=True)
        gated.gate = asyncio.Event()
        first = asyncio.create_task(om.amark("BTC/USDT", 100.0))  # its step's close waits at the venue
        while not any(side == "sell" for _, side, _ in gated.creates):
            await asyncio.sleep(0)
        assert await om.aflatten() == []  # a step is under way: no second one
        gated.gate.set()
        await first

    asyncio.run(scenario())
    assert [c for c in gated.creates if c[1] == "sell"] == [("BTC/USDT", "sell", 2.0)]
    assert held_by_venue(om) == {} and desk_position(core, "BTC/USDT") == 5.0
    assert_consistent(core, om, other)


def test_flattening_cannot_be_disabled_by_unregistering_the_rule(core: Core, clock: ManualClock) -> None:
    paper(core, clock, "venue-a")
    om = OrderManager(core, routing="primary")
    assert om.submit(buy(1.0)).status is OrderStatus.FILLED
    core.plugins.unregister(name="bot4.rule.trading_state")
    core.risk.kill_switch.trip("flatten", flatten=True)
    opened = om.submit(buy(5.0))
    assert opened.status is OrderStatus.DENIED and "KILL_SWITCH" in opened.decision.codes  # type: ignore[union-attr]
    assert not core.risk.check(buy(5.0)).approved
    assert desk_position(core, "BTC/USDT") == 0.0  # the close still passed


class BuggyCancel(Refusing):
    def cancel_order(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("adapter bug in cancel_order")


def test_an_adapter_bug_during_the_step_never_keeps_a_mark_from_the_ledger(core: Core, clock: ManualClock) -> None:
    venue = BuggyCancel("venue-a", clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
    core.plugins.register(venue, name="venue-a")
    om = OrderManager(core, routing="primary")
    assert om.submit(buy(2.0)).status is OrderStatus.FILLED
    assert om.submit(buy(1.0, type="limit", price=90.0)).status is OrderStatus.ACCEPTED
    core.risk.kill_switch.trip("flatten", flatten=True)
    om.mark("BTC/USDT", 95.0)  # the cancel raises: logged, and the mark goes on
    assert core.risk.snapshot().positions["BTC/USDT"].mark == 95.0


def test_positions_that_offset_across_venues_are_not_retried_without_end(core: Core, clock: ManualClock) -> None:
    a, _ = paper(core, clock, "venue-a"), paper(core, clock, "venue-b")
    om = OrderManager(core, routing="primary")
    assert om.submit(buy(2.0)).status is OrderStatus.FILLED  # venue-a
    a.refuse_create = 1
    assert om.submit(sell(2.0)).status is OrderStatus.FILLED  # venue-b: the desk holds nothing net
    core.risk.kill_switch.trip("flatten", flatten=True)
    for _ in range(5):
        om.mark("BTC/USDT", 100.0)
    denied = [m for m in om.orders() if m.status is OrderStatus.DENIED]
    assert len(denied) <= 2  # one try per position, not one per operation
    assert_consistent(core, om)


class ResetsOnCancel(Refusing):
    core: Core | None = None

    def cancel_order(self, *args: Any, **kwargs: Any) -> Any:
        reply = super().cancel_order(*args, **kwargs)
        if self.core is not None:
            self.core.risk.kill_switch.reset("operator resumes")  # from another shell, meanwhile
            self.core = None
        return reply


def test_a_reset_during_a_step_stops_it(core: Core, clock: ManualClock) -> None:
    venue = ResetsOnCancel("venue-a", clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
    core.plugins.register(venue, name="venue-a")
    om = OrderManager(core, routing="primary")
    assert om.submit(buy(2.0)).status is OrderStatus.FILLED
    om.submit(buy(1.0, type="limit", price=90.0))
    core.risk.kill_switch.trip("flatten", flatten=True)
    venue.core = core
    om.mark("BTC/USDT", 100.0)
    assert core.risk.trading_state is TradingState.ACTIVE and desk_position(core, "BTC/USDT") == 2.0


def test_an_order_that_ended_at_its_venue_unseen_does_not_block_the_close(core: Core, clock: ManualClock) -> None:
    venue = paper(core, clock, "venue-a")
    om = OrderManager(core, routing="primary")
    assert om.submit(buy(2.0)).status is OrderStatus.FILLED
    target = om.submit(sell(2.0, type="limit", price=105.0, reduce_only=True))
    venue.set_book("BTC/USDT", bids=[(105.0, 2.0), (99.0, 50.0)], asks=[(106.0, 50.0)])  # it fills, unseen
    core.risk.kill_switch.trip("flatten", flatten=True)
    om.mark("BTC/USDT", 100.0)
    assert target.status is OrderStatus.FILLED and desk_position(core, "BTC/USDT") == 0.0
    assert_consistent(core, om)


class PlacesThenTimesOut(Refusing):
    timeouts = 0

    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        reply = super().create_order(*args, **kwargs)
        if self.timeouts:
            self.timeouts -= 1
            raise bot4.ExchangeTimeoutError(self.name, "placed, the answer lost")
        return reply


def test_a_close_whose_answer_was_lost_is_found_by_the_next_step(core: Core, clock: ManualClock) -> None:
    venue = PlacesThenTimesOut("venue-a", clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
    core.plugins.register(venue, name="venue-a")
    om = OrderManager(core, routing="primary")
    assert om.submit(buy(2.0)).status is OrderStatus.FILLED
    core.risk.kill_switch.trip("flatten", flatten=True)
    venue.timeouts = 1
    om.mark("BTC/USDT", 100.0)  # the close is placed and filled; its answer is lost
    om.mark("BTC/USDT", 100.0)  # the next step looks for it
    assert desk_position(core, "BTC/USDT") == 0.0
    sells = [o for o in venue._orders.values() if o["side"] == "sell"]
    assert len(sells) == 1  # never sent twice
    assert_consistent(core, om)


def test_a_hook_that_flattens_from_inside_a_step_does_not_recurse(core: Core, clock: ManualClock) -> None:
    a, _ = paper(core, clock, "venue-a"), paper(core, clock, "venue-b")
    om = OrderManager(core, routing="primary")
    om.submit(buy(2.0))
    a.refuse_create = 1
    om.submit(sell(2.0))
    calls: list[int] = []

    class Again:
        @hookimpl
        def bot4_order_rejected(self, order: Order, decision: Any) -> None:
            calls.append(1)
            om.flatten()

    core.plugins.register(Again())
    core.risk.kill_switch.trip("flatten", flatten=True)
    om.mark("BTC/USDT", 100.0)
    assert len(calls) <= 2 and om._upkeeping is False


def test_bot4_status_and_kill_name_the_flattening(core: Core, capsys: pytest.CaptureFixture[str]) -> None:
    from bot4._cli import main as cli
    from bot4._cli.status import render, status_of

    assert cli.main(["kill", core.name, "--reason", "desk incident", "--flatten"]) == 0
    assert "FLATTENING" in capsys.readouterr().out
    assert "FLATTENING by the kill switch" in render(status_of(core.name))


def test_the_first_reconciliation_sweeps_even_after_a_narrow_one(core: Core, clock: ManualClock) -> None:
    venue = paper(core, clock, "venue-a")
    stray = PaperExchange.create_order(venue, "BTC/USDT", "limit", "buy", 1.0, 80.0, {"clientOrderId": "old"})
    heard: list[Any] = []

    class Listener:
        @hookimpl
        def bot4_orders_reconciled(self, manager: OrderManager, result: Any) -> None:
            heard.append(result)

    core.plugins.register(Listener())
    om = OrderManager(core, routing="primary", reconcile_every=30.0)
    om.reconcile()  # narrow: this manager has no orders yet
    clock.advance(30.0)
    om.submit(buy(1.0))
    assert any(("venue-a", stray["id"]) in r.foreign for r in heard)
    with pytest.raises(ConfigError, match="reconcile_every"):
        OrderManager(core, reconcile_every=1e-12)
