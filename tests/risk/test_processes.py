"""Real processes against one risk ledger: no limit passed together, crashes, the kill switch."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from typing import Any

import pytest

from bot4 import Core, Order, RiskLimits, TradingState
from tests.breaker.test_processes import join_all, start
from tests.risk.conftest import NO_LIMITS

pytestmark = pytest.mark.processes

ctx = mp.get_context("spawn")
EQUITY = 100_000.0
ORDER = dict(symbol="BTC/USDT", side="buy", quantity=2.0, type="limit", price=10.0)  # notional 20


def gross_limit(multiple: float) -> RiskLimits:
    import dataclasses

    return dataclasses.replace(NO_LIMITS, max_gross_exposure=multiple)


def _reserver(name: str, calls: int, results: Any, ready: Any, go: Any, done: Any, delay: float) -> None:
    with Core.attach(name) as core:
        risk = core.risk
        order = Order(**ORDER)
        ready.put(os.getpid())
        go.wait(60)
        time.sleep(delay)
        approved = sum(1 for _ in range(calls) if risk.reserve(order).approved)
        results.put(approved)
        # Alive until every worker is counted: a process that exits has its reservations
        # reclaimed by the next reserve()'s sweep, and they would be approved (and counted) again.
        done.wait(120)


@pytest.mark.parametrize("delay", [0.0, 1.2], ids=["together", "one_after_another"])
def test_four_processes_never_pass_the_gross_limit_together(delay: float) -> None:
    with Core.create(max_reservations=8192) as core:
        risk = core.risk
        risk.configure(gross_limit(1.0))  # 100,000 of gross exposure
        risk.set_equity(EQUITY)
        results, ready, go, done = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Event()
        # delay: worker i starts reserving i * delay after go, past the 1 s sweep (a slow spawn on a loaded box)
        procs = [start(_reserver, core.name, 2_000, results, ready, go, done, i * delay) for i in range(4)]
        try:
            for _ in procs:
                ready.get(timeout=60)  # every worker attached: they reserve together
            go.set()
            approved = sum(results.get(timeout=120) for _ in procs)
            total = approved * 20.0
            assert total <= EQUITY  # never past the limit
            assert total > EQUITY - 20.0  # and nothing lost: it filled up to within one order
            snap = risk.snapshot()
            assert snap.open_orders == approved
            assert snap.gross_exposure == pytest.approx(total)
            assert risk.audit() == []
        finally:
            done.set()
            join_all(procs, timeout=120)


def _churn(name: str, ready: Any) -> None:
    core = Core.attach(name)
    risk = core.risk
    order = Order(**ORDER)
    ready.set()
    while True:
        decision = risk.reserve(order)
        if decision.reservation is not None and random.random() < 0.5:
            risk.release(decision.reservation)


def test_sigkill_in_the_middle_of_reserve_leaves_the_ledger_consistent() -> None:
    rng = random.Random(3)
    with Core.create() as core:
        risk = core.risk
        risk.configure(gross_limit(10.0))
        risk.set_equity(EQUITY)
        for _ in range(6):
            ready = ctx.Event()
            victim = start(_churn, core.name, ready)
            assert ready.wait(60)
            time.sleep(rng.uniform(0.01, 0.08))
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(10)
            t = time.monotonic()
            assert risk.audit() == []  # takes the mutex the victim may have died holding
            held_by_the_dead = risk.snapshot().open_orders  # the parent holds none between rounds
            reclaimed = risk.reclaim()
            assert time.monotonic() - t < 2.0
            snap = risk.snapshot()
            assert snap.open_orders == 0, f"{snap.open_orders} reservations of a dead process left"
            assert snap.gross_exposure == pytest.approx(0.0, abs=1e-6)
            assert snap.positions["BTC/USDT"].reserved_buy == pytest.approx(0.0, abs=1e-9)
            assert reclaimed == held_by_the_dead
            mine = risk.reserve(Order(**ORDER)).reservation  # still works
            assert mine is not None and risk.release(mine)
        assert risk.audit() == []


def _watch_kill_switch(name: str, tripped: Any, results: Any, ready: Any) -> None:
    with Core.attach(name) as core:
        risk = core.risk
        order = Order(**ORDER)
        assert risk.check(order).approved
        ready.put(os.getpid())
        tripped.wait(60)
        results.put(risk.check(order).codes)  # the very next check


def test_kill_switch_is_seen_by_the_next_check_in_every_process() -> None:
    with Core.create() as core:
        risk = core.risk
        risk.configure(NO_LIMITS)
        risk.set_equity(EQUITY)
        tripped, results, ready = ctx.Event(), ctx.Queue(), ctx.Queue()
        procs = [start(_watch_kill_switch, core.name, tripped, results, ready) for _ in range(4)]
        for _ in procs:
            ready.get(timeout=60)
        risk.kill_switch.trip("desk halt")
        tripped.set()
        assert [results.get(timeout=60) for _ in procs] == [("KILL_SWITCH",)] * 4
        join_all(procs)
        assert risk.snapshot().trading_state is TradingState.HALTED
