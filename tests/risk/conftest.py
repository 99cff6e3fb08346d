from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from bot4 import Core, ManualClock, Order, RiskEngine, RiskLimits, make_plugin_manager
from bot4.testing import EPOCH as BOT4_EPOCH
from bot4.testing import OPEN_LIMITS

EPOCH = BOT4_EPOCH  # 2026-01-01 12:00:00 UTC: the testing plugin's clock starts there too
NO_LIMITS = OPEN_LIMITS  # every limit off (bot4.testing's definition)


def only(**limits: Any) -> RiskLimits:
    """Every limit off but the ones given."""
    return dataclasses.replace(NO_LIMITS, **limits)


def buy(symbol: str = "BTC/USDT", quantity: float = 1.0, price: float = 100.0, **kw: Any) -> Order:
    return Order(symbol=symbol, side="buy", quantity=quantity, type="limit", price=price, **kw)


def sell(symbol: str = "BTC/USDT", quantity: float = 1.0, price: float = 100.0, **kw: Any) -> Order:
    return Order(symbol=symbol, side="sell", quantity=quantity, type="limit", price=price, **kw)


@contextlib.contextmanager
def open_desk(clock: ManualClock, *, equity: float, prices: dict[str, float]) -> Iterator[Core]:
    """A core with every risk limit off, equity set and the given marks: orders only need a venue."""
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as core:
        core.risk.configure(NO_LIMITS)
        core.risk.set_equity(equity)
        for symbol, price in prices.items():
            core.risk.on_price(symbol, price)
        yield core


@pytest.fixture
def clock(bot4_clock: ManualClock) -> ManualClock:
    return bot4_clock


@pytest.fixture
def core(bot4_core: Core) -> Core:
    return bot4_core


@pytest.fixture
def risk(core: Core) -> RiskEngine:
    engine = core.risk
    engine.configure(NO_LIMITS)
    engine.set_equity(10_000.0)
    return engine


def fill(risk: RiskEngine, order: Order, price: float | None = None) -> None:
    """Reserve ``order`` and fill it completely."""
    decision = risk.reserve(order).raise_for_rejection()
    assert decision.reservation is not None
    risk.on_fill(decision.reservation, order.quantity, price if price is not None else (order.price or 0.0))


@pytest.fixture(scope="module")
def risk_for_hypothesis() -> Iterator[RiskEngine]:
    """One engine with default limits for many examples (function fixtures reset per test only)."""
    with Core.create(clock=ManualClock(EPOCH), plugins=make_plugin_manager(entry_points=False)) as c:
        engine = c.risk
        engine.set_equity(100_000.0)
        engine.on_price("BTC/USDT", 100.0)
        yield engine
