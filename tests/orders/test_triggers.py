"""Stops bot4 emulates live in the segment: when the worker that placed one dies, the next
mark that reaches it in any other worker fires it there — once, with its reservation."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bot4 import Core, Order, OrderManager, OrderStatus, PaperExchange
from tests.breaker.test_processes import join_all, start
from tests.risk.conftest import NO_LIMITS

pytestmark = pytest.mark.processes
ctx = mp.get_context("spawn")


def venue(core: Core) -> PaperExchange:
    paper = PaperExchange("venue-a")
    paper.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
    core.plugins.register(paper, name="venue-a")
    return paper


def stop_of(qty: float) -> Order:
    return Order(symbol="BTC/USDT", side="sell", quantity=qty, type="stop", stop_price=95.0, reduce_only=True)


def _placer(name: str, ready: Any) -> None:
    """Buys 2 BTC, places a protective stop bot4 emulates, and waits to be killed."""
    with Core.attach(name) as core:
        venue(core)
        om = OrderManager(core, routing="primary")
        assert om.submit(Order(symbol="BTC/USDT", side="buy", quantity=2.0)).status is OrderStatus.FILLED
        stop = om.submit(stop_of(2.0))
        assert stop.emulated and stop.trigger
        ready.put(stop.id)
        time.sleep(600)


def _survivor(name: str, ready: Any, go: Any, fired: Any) -> None:
    """Marks the price through the stop, at once with the other survivors; reports what it sent."""
    with Core.attach(name) as core:
        paper = venue(core)
        om = OrderManager(core, routing="primary")
        ready.put(1)
        go.wait(60)
        for _ in range(20):
            om.mark("BTC/USDT", 94.0)
        fired.put([o["clientOrderId"] for o in paper._orders.values()])


@pytest.fixture
def desk() -> Iterator[Core]:
    with Core.create() as core:
        core.risk.configure(NO_LIMITS)
        core.risk.set_equity(100_000.0)
        core.risk.on_price("BTC/USDT", 100.0)
        yield core


def placed_then_killed(core: Core) -> str:
    ready = ctx.Queue()
    placer = start(_placer, core.name, ready)
    deadline = time.monotonic() + 120
    while ready.empty():
        assert placer.is_alive() and time.monotonic() < deadline, "the placer died before placing its stop"
        time.sleep(0.01)
    stop_id: str = ready.get(timeout=10)
    os.kill(placer.pid, signal.SIGKILL)  # type: ignore[arg-type]
    placer.join(timeout=30)
    return stop_id


def test_a_stop_whose_worker_died_fires_in_another(desk: Core) -> None:
    paper = venue(desk)
    om = OrderManager(desk, routing="primary")
    stop_id = placed_then_killed(desk)
    assert desk.risk.snapshot().open_orders == 1  # the stop's reservation, held for it
    om.mark("BTC/USDT", 96.0)  # not reached: nothing fires
    assert not paper._orders
    om.mark("BTC/USDT", 94.0)  # reached: fired here, as the order it becomes
    sent = list(paper._orders.values())
    assert [(o["clientOrderId"], o["side"], o["type"], o["amount"]) for o in sent] == [(stop_id, "sell", "market", 2.0)]
    taken = om.get(stop_id)
    assert taken.status is OrderStatus.FILLED and "taken over" in taken.tracked.history[0].detail
    snap = desk.risk.snapshot()
    assert snap.positions["BTC/USDT"].quantity == 0.0 and snap.open_orders == 0
    assert desk.risk.reclaim() == 0 and desk.risk.audit() == []
    om.mark("BTC/USDT", 90.0)
    assert len(paper._orders) == 1  # never twice


def test_several_survivors_fire_an_orphan_exactly_once(desk: Core) -> None:
    stop_id = placed_then_killed(desk)
    ready, go, fired = ctx.Queue(), ctx.Event(), ctx.Queue()
    survivors = [start(_survivor, desk.name, ready, go, fired) for _ in range(3)]
    for _ in survivors:
        ready.get(timeout=120)  # all attached: the marks then race
    go.set()
    sent = [fired.get(timeout=120) for _ in survivors]
    join_all(survivors, timeout=120)
    assert sorted(cid for ids in sent for cid in ids) == [stop_id]  # one of them, once
    snap = desk.risk.snapshot()
    assert snap.positions["BTC/USDT"].quantity == 0.0 and snap.open_orders == 0


def test_a_live_workers_stop_is_left_to_it_and_canceling_it_frees_its_record(desk: Core) -> None:
    paper = venue(desk)
    placer, other = OrderManager(desk, routing="primary"), OrderManager(desk, routing="primary")
    assert placer.submit(Order(symbol="BTC/USDT", side="buy", quantity=2.0)).status is OrderStatus.FILLED
    stop = placer.submit(stop_of(2.0))
    record = stop.trigger
    assert record
    other.mark("BTC/USDT", 94.0)  # its owner (this process) lives: the other manager leaves it
    assert stop.status is OrderStatus.ACCEPTED and len(paper._orders) == 1
    placer.cancel(stop.id)
    assert stop.trigger == 0 and not placer._triggers.free(record)  # already free
    again = placer.submit(stop_of(2.0))
    placer.mark("BTC/USDT", 94.0)
    assert again.status is OrderStatus.FILLED and again.trigger == 0
