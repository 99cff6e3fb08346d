"""The order manager from asyncio, over async (and sync) adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import bot4
from bot4 import Core, Faults, Fees, ManualClock, Order, OrderManager, OrderStatus, PaperExchange
from tests.risk.conftest import EPOCH, open_desk


class AsyncVenue:
    """A paper exchange behind ``async def`` methods (as an asyncio ccxt exchange is)."""

    def __init__(self, paper: PaperExchange) -> None:
        self.paper = paper
        self.name = paper.name
        self.fees = paper.fees
        self.capabilities = paper.capabilities

    in_flight = 0  # across every AsyncVenue
    most_in_flight = 0

    async def _do(self, method: str, *args: Any) -> Any:
        AsyncVenue.in_flight += 1
        AsyncVenue.most_in_flight = max(AsyncVenue.most_in_flight, AsyncVenue.in_flight)
        await asyncio.sleep(0.001)
        try:
            return getattr(self.paper, method)(*args)
        finally:
            AsyncVenue.in_flight -= 1

    async def create_order(self, *args: Any) -> Any:
        return await self._do("create_order", *args)

    async def cancel_order(self, *args: Any) -> Any:
        return await self._do("cancel_order", *args)

    async def fetch_order(self, *args: Any) -> Any:
        return await self._do("fetch_order", *args)

    async def fetch_open_orders(self, *args: Any) -> Any:
        return await self._do("fetch_open_orders", *args)

    async def fetch_balance(self) -> Any:
        return await self._do("fetch_balance")

    async def fetch_order_book(self, *args: Any) -> Any:
        return await self._do("fetch_order_book", *args)

    async def fetch_ticker(self, *args: Any) -> Any:
        return await self._do("fetch_ticker", *args)

    @bot4.hookimpl
    def bot4_exchange_adapters(self) -> list[Any]:
        return [self]


@pytest.fixture
def core() -> Iterator[Core]:
    with open_desk(ManualClock(EPOCH), equity=100_000.0, prices={"BTC/USDT": 100.0}) as c:
        yield c


def paper(name: str, ask: float, **faults: Any) -> PaperExchange:
    p = PaperExchange(name, fees=Fees(taker=0.001), faults=Faults(**faults))
    p.set_book("BTC/USDT", bids=[(ask - 2, 10.0)], asks=[(ask, 10.0)])
    return p


def test_asubmit_over_async_venues_with_books_read_concurrently(core: Core) -> None:
    a, b = AsyncVenue(paper("venue-a", 101.0)), AsyncVenue(paper("venue-b", 100.5))
    core.plugins.register(a, name="venue-a")
    core.plugins.register(b, name="venue-b")
    om = OrderManager(core, routing="best_price")

    async def scenario() -> bot4.ManagedOrder:
        return await om.asubmit(Order(symbol="BTC/USDT", side="buy", quantity=1.0))

    AsyncVenue.most_in_flight = 0
    done = asyncio.run(scenario())
    assert done.status is OrderStatus.FILLED and done.tracked.venue == "venue-b"
    assert om.pnl().fees == pytest.approx(100.5 * 0.001)
    assert AsyncVenue.most_in_flight == 2  # both books were read at once


def test_acancel_and_apoll(core: Core) -> None:
    a = AsyncVenue(paper("venue-a", 101.0))
    core.plugins.register(a, name="venue-a")
    om = OrderManager(core, routing="primary")

    async def scenario() -> bot4.ManagedOrder:
        rest = await om.asubmit(Order(symbol="BTC/USDT", side="buy", quantity=2.0, type="limit", price=100.0))
        assert rest.status is OrderStatus.ACCEPTED
        a.paper.set_book("BTC/USDT", bids=[(98.0, 1.0)], asks=[(99.5, 0.5)])
        assert await om.apoll() == 1
        assert rest.status is OrderStatus.PARTIALLY_FILLED
        return await om.acancel(rest.id)

    done = asyncio.run(scenario())
    assert done.status is OrderStatus.CANCELED and done.tracked.filled_quantity == 0.5
    assert core.risk.snapshot().open_orders == 0


def test_a_venue_whose_book_fails_is_dropped(core: Core) -> None:
    a = AsyncVenue(paper("venue-a", 100.0, error_rate=1.0))
    b = AsyncVenue(paper("venue-b", 101.0))
    core.plugins.register(a, name="venue-a")
    core.plugins.register(b, name="venue-b")
    om = OrderManager(core, routing="best_price")
    done = asyncio.run(om.asubmit(Order(symbol="BTC/USDT", side="buy", quantity=1.0)))
    assert done.status is OrderStatus.FILLED and done.tracked.venue == "venue-b"


def test_sync_calls_to_an_async_venue_are_refused_clearly(core: Core) -> None:
    core.plugins.register(AsyncVenue(paper("venue-a", 101.0)), name="venue-a")
    om = OrderManager(core, routing="primary")
    with pytest.raises(bot4.ConfigError, match="async"):
        om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1.0))


def test_asubmit_over_sync_venues(core: Core) -> None:
    core.plugins.register(paper("venue-a", 101.0), name="venue-a")
    om = OrderManager(core, routing="primary")
    done = asyncio.run(om.asubmit(Order(symbol="BTC/USDT", side="buy", quantity=1.0)))
    assert done.status is OrderStatus.FILLED
