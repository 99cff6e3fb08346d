"""The ccxt.pro stream adapter, offline: ccxt.pro's Binance client, unchanged, against a paper
venue's stream on loopback speaking Binance's format (market streams, the WebSocket API's
user data, the REST depth snapshot)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import ccxt
import ccxt.pro
import pytest

from bot4 import (
    ConfigError,
    Core,
    MonotonicClock,
    Order,
    OrderManager,
    OrderStatus,
    PaperExchange,
    StreamClosedError,
    StreamError,
    make_plugin_manager,
)
from bot4.streams.feed import Feed, FeedConfig
from bot4.testing import OPEN_LIMITS
from bot4.venues.ccxtpro import CcxtProStreams
from bot4.venues.paper_stream import PaperStream
from tests.streams.test_feed import Running, until

MARKET = {
    "id": "BTCUSDT",
    "symbol": "BTC/USDT",
    "base": "BTC",
    "quote": "USDT",
    "baseId": "BTC",
    "quoteId": "USDT",
    "type": "spot",
    "spot": True,
    "margin": False,
    "swap": False,
    "future": False,
    "option": False,
    "contract": False,
    "linear": None,
    "inverse": None,
    "active": True,
    "precision": {"amount": 1e-8, "price": 1e-8},
    "limits": {},
    "info": {},
    "lowercaseId": "btcusdt",
}


def binance_on(stream: PaperStream) -> Any:
    """ccxt.pro's Binance client, pointed at the paper stream (fake keys: it signs, nobody checks)."""
    exchange = ccxt.pro.binance({"apiKey": "key", "secret": "secret", "options": {"defaultType": "spot"}})
    exchange.urls["api"]["ws"]["spot"] = f"{stream.url}/ws"
    exchange.urls["api"]["ws"]["ws-api"]["spot"] = f"{stream.url}/ws-api/v3"
    exchange.urls["api"]["public"] = f"{stream.rest_url}/api/v3"
    exchange.set_markets([MARKET])
    return exchange


def on_paper(scenario: Callable[[PaperExchange, CcxtProStreams], Awaitable[None]]) -> None:
    async def main() -> None:
        venue = PaperExchange("paper")
        venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
        stream = PaperStream(venue)
        await stream.start()
        adapter = CcxtProStreams(binance_on(stream), name="paper")
        try:
            await scenario(venue, adapter)
        finally:
            await adapter.close()
            await stream.stop()

    asyncio.run(main())


async def settled(task: asyncio.Future[Any]) -> None:
    """Give ccxt.pro time to connect and subscribe; ``task`` must still be waiting."""
    await asyncio.sleep(0.3)
    assert not task.done()


def test_ticker_and_book_through_ccxtpro() -> None:
    async def scenario(venue: PaperExchange, adapter: CcxtProStreams) -> None:
        venue.set_book("BTC/USDT", bids=[(99.1, 1.0)], asks=[(101.0, 5.0)])  # update 2 (1: the book at the start)
        venue.set_book("BTC/USDT", bids=[(99.2, 1.0)], asks=[(101.0, 5.0)])  # update 3: nobody watches yet
        ticker = asyncio.ensure_future(adapter.watch_ticker("BTC/USDT"))
        first = await asyncio.wait_for(adapter.watch_order_book("BTC/USDT"), 10)  # ccxt.pro: the snapshot
        assert first.bids == [(99.2, 1.0)] and first.asks == [(101.0, 5.0)]
        book = asyncio.ensure_future(adapter.watch_order_book("BTC/USDT"))
        await settled(ticker)
        venue.set_book("BTC/USDT", bids=[(99.5, 2.0), (99.0, 1.0)], asks=[(100.5, 3.0)])
        quote = await asyncio.wait_for(ticker, 10)
        assert (quote.bid, quote.bid_size, quote.ask, quote.ask_size) == (99.5, 2.0, 100.5, 3.0)
        assert quote.update_id == 4  # Binance's own book update id, carried through
        view = await asyncio.wait_for(book, 10)
        assert view.bids == [(99.5, 2.0), (99.0, 1.0)] and view.asks == [(100.5, 3.0)]

    on_paper(scenario)


def test_fills_reach_the_order_manager_once_through_ccxtpro() -> None:
    async def scenario(venue: PaperExchange, adapter: CcxtProStreams) -> None:
        with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
            core.risk.configure(OPEN_LIMITS)
            core.risk.set_equity(100_000.0)
            core.risk.on_price("BTC/USDT", 100.0)
            core.plugins.register(venue)
            om = OrderManager(core, routing="primary")
            follower = asyncio.ensure_future(om.follow(adapter))
            try:
                await asyncio.sleep(0.5)  # ccxt.pro subscribes to the account's streams
                resting = await om.asubmit(
                    Order(symbol="BTC/USDT", side="buy", quantity=2.0, type="limit", price=100.0, client_order_id="r1")
                )
                assert resting.status is OrderStatus.ACCEPTED
                venue.set_book("BTC/USDT", bids=[(98.0, 5.0)], asks=[(99.5, 0.5), (100.0, 5.0)])  # fills it: 2 trades
                await until(lambda: resting.status is OrderStatus.FILLED)
                assert [f.quantity for f in resting.tracked.fills] == [0.5, 1.5]
                assert core.risk.snapshot().positions["BTC/USDT"].quantity == 2.0
                canceled = await om.asubmit(
                    Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=90.0, client_order_id="c1")
                )
                venue.cancel_order(canceled.legs["paper"], "BTC/USDT")  # at the venue, by hand
                await until(lambda: canceled.status is OrderStatus.CANCELED)
                assert core.risk.snapshot().open_orders == 0  # its reservation released
            finally:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)

    on_paper(scenario)


def test_a_feed_follows_ccxtpro_tickers_into_the_quote_table() -> None:
    async def scenario(venue: PaperExchange, adapter: CcxtProStreams) -> None:
        with Core.create(clock=MonotonicClock(), plugins=make_plugin_manager(entry_points=False)) as core:
            core.risk.configure(dataclasses.replace(OPEN_LIMITS, max_price_age=5.0))
            core.plugins.register(adapter)
            feed = Feed(core, FeedConfig(adapter="paper", venue="paper", symbols=["BTC/USDT"], mark_seconds=0.0))
            async with Running(feed):
                await asyncio.sleep(0.3)
                venue.set_book("BTC/USDT", bids=[(99.5, 2.0)], asks=[(100.5, 3.0)])
                await until(lambda: feed.stats.quotes >= 1)
                quote = core.quotes.get("paper", "BTC/USDT")
                assert quote is not None and (quote.bid, quote.ask) == (99.5, 100.5)
                assert core.risk.ledger.mark("BTC/USDT") == 100.0

    on_paper(scenario)


def test_ccxts_errors_become_bot4s() -> None:
    class Broken:
        id = "broken"
        has: dict[str, bool] = {}

        def __init__(self, error: Exception) -> None:
            self.error = error

        async def watch_ticker(self, symbol: str) -> Any:
            raise self.error

        async def close(self) -> None:
            pass

    async def main() -> None:
        with pytest.raises(StreamClosedError, match="NetworkError"):
            await CcxtProStreams(Broken(ccxt.NetworkError("down"))).watch_ticker("BTC/USDT")
        with pytest.raises(StreamError, match="BadSymbol"):
            await CcxtProStreams(Broken(ccxt.BadSymbol("no such"))).watch_ticker("BTC/USDT")
        with pytest.raises(ConfigError, match="ccxt.pro exchange"):
            CcxtProStreams(object())

    asyncio.run(main())


class FakePro:
    """A ccxt.pro-shaped exchange answering the account's streams from queues."""

    id = "fake"
    has: dict[str, bool] = {}

    def __init__(self) -> None:
        self.trades: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.orders: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def watch_ticker(self, symbol: str) -> Any:
        raise ccxt.NotSupported("no tickers here")

    async def watch_my_trades(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return [await self.trades.get()]

    async def watch_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return [await self.orders.get()]

    async def close(self) -> None:
        pass


def trade(trade_id: str, symbol: str) -> dict[str, Any]:
    return {"id": trade_id, "order": "9", "symbol": symbol, "side": "buy", "amount": 1.0, "price": 10.0,
            "fee": {"cost": 0.01, "currency": "USDT"}, "takerOrMaker": "taker", "info": {"c": "cid"}}  # fmt: skip


def test_every_consumer_gets_its_own_updates_and_close_ends_waiting_ones() -> None:
    async def main() -> None:
        fake = FakePro()
        adapter = CcxtProStreams(fake)

        async def collect(symbol: str | None, count: int) -> list[Any]:
            got: list[Any] = []
            while len(got) < count:
                got += await adapter.watch_orders(symbol)
            return got

        everything = asyncio.ensure_future(collect(None, 2))
        eth = asyncio.ensure_future(collect("ETH/USDT", 1))
        await asyncio.sleep(0.05)
        await fake.trades.put(trade("kraken-TX1", "BTC/USDT"))  # ids need not be numbers
        await fake.trades.put(trade("5f1c-uuid", "ETH/USDT"))
        assert [u.trade_id for u in await asyncio.wait_for(everything, 10)] == ["kraken-TX1", "5f1c-uuid"]
        (only,) = await asyncio.wait_for(eth, 10)
        assert (only.trade_id, only.status, only.filled, only.client_order_id) == ("5f1c-uuid", "", None, "cid")
        waiting = asyncio.ensure_future(adapter.watch_orders())
        await asyncio.sleep(0.05)
        await adapter.close()
        with pytest.raises(StreamClosedError):
            await asyncio.wait_for(waiting, 10)
        with pytest.raises(StreamClosedError):
            await adapter.watch_orders()

    asyncio.run(main())
