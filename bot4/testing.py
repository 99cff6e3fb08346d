"""A pytest plugin for testing what you build on bot4: rules, routing strategies, adapters.

Installed with bot4 (entry point ``pytest11``), so its fixtures are there in any test run:

- ``bot4_clock``: a :class:`bot4.ManualClock` at 2026-01-01 12:00 UTC; time moves only when
  the test says (``bot4_clock.advance(seconds)``).
- ``bot4_core``: a core of its own on that clock, with bot4's built-in plugins only (none
  installed by entry point), closed and unlinked after the test.
- ``bot4_desk``: ``bot4_core`` ready to trade: every risk limit off (:data:`OPEN_LIMITS`),
  equity 100,000, BTC/USDT marked at 100 — a test turns on the limits it is about.
- ``bot4_paper``: makes paper venues on that core: ``bot4_paper("venue-a", {"BTC/USDT":
  (99.0, 101.0)})`` — a book of one level each side (``depth`` units), registered.
- ``bot4_orders``: makes an :class:`bot4.OrderManager` over the venues registered so far.

See docs/testing.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from bot4.clock import ManualClock
from bot4.core import Core
from bot4.orders.manager import OrderManager
from bot4.plugins.manager import make_plugin_manager
from bot4.risk.limits import RiskLimits
from bot4.venues.paper import PaperExchange

__all__ = ["EPOCH", "OPEN_LIMITS", "open_limits"]

EPOCH = 1_767_268_800.0
"""Where ``bot4_clock`` starts: 2026-01-01 12:00:00 UTC, in seconds."""

OPEN_LIMITS = RiskLimits(
    require_stop_loss=False,
    max_stop_distance=None,
    max_position_risk=None,
    max_position_notional=None,
    max_correlation=None,
    max_drawdown=None,
    daily_loss_limit=None,
    max_gross_exposure=None,
    max_symbol_exposure=None,
    max_open_orders=None,
    max_orders_per_second=None,
)
"""Every risk limit off: ``dataclasses.replace(OPEN_LIMITS, max_open_orders=3)`` turns one on."""


@pytest.fixture
def bot4_clock() -> ManualClock:
    """A manual clock at :data:`EPOCH`."""
    return ManualClock(EPOCH)


@pytest.fixture
def bot4_core(bot4_clock: ManualClock) -> Iterator[Core]:
    """A core of the test's own on ``bot4_clock``; removed after the test."""
    with Core.create(clock=bot4_clock, plugins=make_plugin_manager(entry_points=False)) as core:
        yield core


@pytest.fixture
def bot4_desk(bot4_core: Core) -> Core:
    """``bot4_core`` with every limit off, equity 100,000 and BTC/USDT marked at 100."""
    bot4_core.risk.configure(OPEN_LIMITS)
    bot4_core.risk.set_equity(100_000.0)
    bot4_core.risk.on_price("BTC/USDT", 100.0)
    return bot4_core


@pytest.fixture
def bot4_paper(bot4_core: Core, bot4_clock: ManualClock) -> Callable[..., PaperExchange]:
    """Make a paper venue registered on ``bot4_core``: ``bot4_paper(name, {symbol: (bid, ask)},
    depth=50.0, **options)`` (options as for :class:`bot4.PaperExchange`)."""

    def make(
        name: str = "paper", books: Mapping[str, tuple[float, float]] | None = None, *, depth: float = 50.0, **kw: Any
    ) -> PaperExchange:
        venue = PaperExchange(name, clock=bot4_clock, **kw)
        for symbol, (bid, ask) in (books or {"BTC/USDT": (99.0, 101.0)}).items():
            venue.set_book(symbol, bids=[(bid, depth)], asks=[(ask, depth)])
        bot4_core.plugins.register(venue, name=name)
        return venue

    return make


@pytest.fixture
def bot4_orders(bot4_core: Core) -> Callable[..., OrderManager]:
    """Make an order manager over the venues registered so far: ``bot4_orders(**options)``
    (options as for :class:`bot4.OrderManager`; routing ``primary`` unless given)."""

    def make(**kw: Any) -> OrderManager:
        kw.setdefault("routing", "primary")
        return OrderManager(bot4_core, **kw)

    return make


def open_limits(**limits: Any) -> RiskLimits:
    """:data:`OPEN_LIMITS` with ``limits`` turned on."""
    return dataclasses.replace(OPEN_LIMITS, **limits)
