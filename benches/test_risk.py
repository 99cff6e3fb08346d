"""Pre-trade risk: bot4's check, reserve and halted denial against NautilusTrader's RiskEngine.

Scenario: every built-in rule on (the order-rate and open-order limits set high enough
not to bind), 24 symbols with correlated and independent price histories, 20 open
positions, an order on a symbol not yet held that passes every rule. NautilusTrader:
``RiskEngine.execute(SubmitOrder)`` of a limit order that passes, and the same while
HALTED (its halt check runs last).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from benches._nautilus import NautilusRisk
from bot4 import Core, Order, RiskEngine, RiskLimits

SYMBOLS = [f"S{i:02d}/USDT" for i in range(24)]
HELD = SYMBOLS[:20]
TARGET = SYMBOLS[22]  # independent of everything held


def _prices(risk: RiskEngine, samples: int) -> dict[str, float]:
    rng = random.Random(1)
    prices = {s: 100.0 + i for i, s in enumerate(SYMBOLS)}
    for _ in range(samples):
        common = rng.gauss(0, 0.01)
        for i, s in enumerate(SYMBOLS):
            shock = common if i % 2 == 0 and s != TARGET else 0.0
            prices[s] *= 1 + shock + rng.gauss(0, 0.005)
            risk.on_price(s, prices[s])
        time.sleep(0.0012)  # one correlation sample per round
    return prices


@pytest.fixture(scope="module")
def desk() -> Iterator[tuple[RiskEngine, Order]]:
    with Core.create(max_reservations=65536) as core:
        risk = core.risk
        limits = dataclasses.replace(
            RiskLimits(),
            correlation_sample_seconds=0.001,
            correlation_min_samples=30,
            max_open_orders=1_000_000,
            max_orders_per_second=1_000_000_000,
        )
        risk.configure(dataclasses.replace(limits, max_correlation=None))  # the book is built regardless
        risk.set_equity(10_000_000.0)
        prices = _prices(risk, 60)
        for s in HELD:
            p = prices[s]
            decision = risk.reserve(
                Order(symbol=s, side="buy", quantity=10, type="limit", price=p, stop_loss=p * 0.98)
            ).raise_for_rejection()
            assert decision.reservation is not None
            risk.on_fill(decision.reservation, 10, p)
        risk.configure(limits)
        p = prices[TARGET]
        order = Order(symbol=TARGET, side="buy", quantity=10, type="limit", price=p, stop_loss=p * 0.99)
        assert risk.check(order).approved, risk.check(order)
        assert sum(1 for pos in risk.snapshot().positions.values() if pos.quantity) == 20
        yield risk, order


@pytest.fixture(scope="module")
def nautilus() -> NautilusRisk:
    return NautilusRisk()


def test_check(benchmark: Any, desk: tuple[RiskEngine, Order], batch: int) -> None:
    benchmark.group = "risk check (passes)"
    benchmark.extra_info["lib"] = "bot4"
    risk, order = desk
    check = risk.check

    def run() -> None:
        for _ in range(batch):
            check(order)

    benchmark(run)


def test_reserve(benchmark: Any, desk: tuple[RiskEngine, Order], batch: int) -> None:
    benchmark.group = "risk reserve (passes)"
    benchmark.extra_info["lib"] = "bot4"
    risk, order = desk
    reserve, held = risk.reserve, []

    def release_all() -> None:
        for decision in held:
            risk.release(decision.reservation)
        held.clear()

    def run() -> None:
        for _ in range(batch):
            held.append(reserve(order))

    benchmark.pedantic(run, setup=release_all, rounds=60, iterations=1)
    assert all(d.approved for d in held)
    release_all()


def test_halted(benchmark: Any, desk: tuple[RiskEngine, Order], batch: int) -> None:
    benchmark.group = "risk denied while HALTED"
    benchmark.extra_info["lib"] = "bot4"
    risk, order = desk
    risk.kill_switch.trip("benchmark")
    check = risk.check

    def run() -> None:
        for _ in range(batch):
            check(order)

    try:
        benchmark(run)
    finally:
        risk.kill_switch.reset("benchmark done")


def _nautilus_bench(benchmark: Any, nautilus: NautilusRisk, batch: int) -> None:
    execute = nautilus.engine.execute
    pending: list[Any] = []

    def fresh() -> None:
        pending[:] = nautilus.commands(batch)

    def run() -> None:
        for command in pending:
            execute(command)

    benchmark.pedantic(run, setup=fresh, rounds=40, iterations=1)


def test_nautilus_submit(benchmark: Any, nautilus: NautilusRisk, batch: int) -> None:
    benchmark.group = "risk check (passes)"
    benchmark.extra_info["lib"] = "nautilus"
    _nautilus_bench(benchmark, nautilus, batch)
    assert nautilus.forwarded, "the commands should pass NautilusTrader's checks"


def test_nautilus_halted(benchmark: Any, nautilus: NautilusRisk, batch: int) -> None:
    benchmark.group = "risk denied while HALTED"
    benchmark.extra_info["lib"] = "nautilus"
    nautilus.halt()
    before = len(nautilus.forwarded)
    _nautilus_bench(benchmark, nautilus, batch)
    assert len(nautilus.forwarded) == before, "HALTED must deny"


def test_check_latency_percentiles(benchmark: Any, desk: tuple[RiskEngine, Order]) -> None:
    """Per-call latency of check (each call timed alone, timer cost included): p50, p99."""
    benchmark.group = "risk check per-call percentiles"
    benchmark.extra_info["lib"] = "bot4"
    risk, order = desk
    check, clock = risk.check, time.perf_counter_ns
    samples: list[int] = []

    def run() -> None:
        for _ in range(20_000):
            t = clock()
            check(order)
            samples.append(clock() - t)

    benchmark.pedantic(run, rounds=1, iterations=1)
    samples.sort()
    p50, p99 = samples[len(samples) // 2], samples[len(samples) * 99 // 100]
    benchmark.extra_info["percentiles_ns"] = {"p50": p50, "p99": p99}
