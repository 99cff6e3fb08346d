"""Stream adapters: Binance's built in, against a paper venue's stream and a scripted server;
the hook that offers them; a feed that follows one."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bot4 import (
    ConfigError,
    Core,
    MonotonicClock,
    PaperExchange,
    StreamAdapter,
    StreamClosedError,
    hookimpl,
    make_plugin_manager,
)
from bot4.streams.adapter import stream_adapters
from bot4.streams.binance_ws import BinanceStreams
from bot4.streams.connection import ConnectionConfig
from bot4.streams.events import Quote
from bot4.streams.feed import Feed, FeedConfig
from bot4.testing import OPEN_LIMITS
from bot4.venues.paper_stream import PaperStream
from tests.streams.loopback import Loopback
from tests.streams.test_feed import Running, until

SYMBOLS = {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT"}
FAST = ConnectionConfig(stall_seconds=0.5, ping_seconds=0.3, backoff_seconds=0.01, backoff_max_seconds=0.1)


def snapshot_of(stream: PaperStream) -> Callable[[str], Awaitable[Any]]:
    """The REST depth snapshot of the paper stream, fetched over HTTP as from a venue."""

    async def fetch(venue_id: str) -> Any:
        url = f"{stream.rest_url}/api/v3/depth?symbol={venue_id}&limit=1000"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())
        return json.loads(body)

    return fetch


def on_paper(scenario: Callable[[PaperExchange, PaperStream, BinanceStreams], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        venue = PaperExchange("paper")
        venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
        venue.set_book("ETH/USDT", bids=[(9.9, 50.0)], asks=[(10.1, 50.0)])
        stream = PaperStream(venue)
        await stream.start()
        adapter = BinanceStreams(
            "paper", stream.url, SYMBOLS, user_url=stream.user_url, snapshot=snapshot_of(stream), connection=FAST, **kw
        )
        try:
            await scenario(venue, stream, adapter)
        finally:
            await adapter.close()
            await stream.stop()

    asyncio.run(main())


async def subscribed(task: asyncio.Future[Any], adapter: BinanceStreams, *streams: str) -> None:
    """Until the adapter's market connection is open (its subscriptions sent); ``task`` still waits."""
    await until(lambda: adapter.market.ws is not None and all(s in adapter._streams for s in streams))
    await asyncio.sleep(0.05)  # the SUBSCRIBE request reaching the server: it answers, nothing is lost
    assert not task.done()


def test_the_ticker_is_each_change_of_the_venues_best_prices() -> None:
    async def scenario(venue: PaperExchange, stream: PaperStream, adapter: BinanceStreams) -> None:
        waiting = asyncio.ensure_future(adapter.watch_ticker("BTC/USDT"))
        await subscribed(waiting, adapter, "btcusdt@bookTicker")
        venue.set_book("BTC/USDT", bids=[(99.5, 2.0)], asks=[(100.5, 3.0)])
        quote = await asyncio.wait_for(waiting, 10)
        assert (quote.symbol, quote.bid, quote.bid_size, quote.ask, quote.ask_size) == (
            "BTC/USDT",
            99.5,
            2.0,
            100.5,
            3.0,
        )
        venue.set_book("ETH/USDT", bids=[(9.0, 1.0)], asks=[(11.0, 1.0)])  # another symbol: not this watch's
        nxt = asyncio.ensure_future(adapter.watch_ticker("BTC/USDT"))
        await asyncio.sleep(0.1)
        assert not nxt.done()
        venue.set_book("BTC/USDT", bids=[(99.6, 2.0)], asks=[(100.4, 3.0)])
        assert (await asyncio.wait_for(nxt, 10)).bid == 99.6

    on_paper(scenario)


def test_the_book_follows_the_venue_through_every_change() -> None:
    """Invariant: after each change the adapter's book is the venue's book, level for level."""

    async def scenario(venue: PaperExchange, stream: PaperStream, adapter: BinanceStreams) -> None:
        rng = random.Random(5)
        first = asyncio.ensure_future(adapter.watch_order_book("BTC/USDT"))
        await subscribed(first, adapter, "btcusdt@depth@100ms")
        for step in range(60):
            mid = 100 + rng.uniform(-5, 5)
            bids = [(round(mid - 0.5 - i * rng.uniform(0.1, 1), 2), rng.choice([1.0, 2.0, 3.0])) for i in range(5)]
            asks = [(round(mid + 0.5 + i * rng.uniform(0.1, 1), 2), rng.choice([1.0, 2.0, 3.0])) for i in range(5)]
            watch = first if step == 0 else asyncio.ensure_future(adapter.watch_order_book("BTC/USDT"))
            await asyncio.sleep(0)
            venue.set_book("BTC/USDT", bids=bids, asks=asks)
            view = await asyncio.wait_for(watch, 10)
            expected = venue.fetch_order_book("BTC/USDT")
            assert [list(level) for level in view.bids] == expected["bids"]
            assert [list(level) for level in view.asks] == expected["asks"]
        limited = asyncio.ensure_future(adapter.watch_order_book("BTC/USDT", limit=2))
        await asyncio.sleep(0)
        venue.set_book("BTC/USDT", bids=[(99.0, 1.0), (98.0, 1.0), (97.0, 1.0)], asks=[(101.0, 1.0)])
        view = await asyncio.wait_for(limited, 10)
        assert view.bids == [(99.0, 1.0), (98.0, 1.0)] and view.asks == [(101.0, 1.0)]

    on_paper(scenario)


def test_order_updates_are_queued_between_calls_and_none_is_lost() -> None:
    async def scenario(venue: PaperExchange, stream: PaperStream, adapter: BinanceStreams) -> None:
        first = asyncio.ensure_future(adapter.watch_orders())
        await until(lambda: adapter.user is not None and adapter.user.ws is not None)
        await asyncio.sleep(0.05)
        for k in range(5):  # the consumer is busy elsewhere meanwhile
            venue.create_order("BTC/USDT", "market", "buy", 0.1, None, {"clientOrderId": f"o{k}"})
        updates = await asyncio.wait_for(first, 10)
        while sum(bool(u.trade_id) for u in updates) < 5:
            updates += await asyncio.wait_for(adapter.watch_orders(), 10)
        fills = [u for u in updates if u.trade_id]
        assert [u.client_order_id for u in fills] == [f"o{k}" for k in range(5)]
        assert len({u.trade_id for u in fills}) == 5 and all(u.status == "closed" for u in fills)
        assert [u.status for u in updates if u.client_order_id == "o0"] == ["open", "closed"]
        eth = asyncio.ensure_future(adapter.watch_my_trades("ETH/USDT"))
        await asyncio.sleep(0.05)
        venue.create_order("BTC/USDT", "market", "buy", 0.1, None, {"clientOrderId": "btc"})
        venue.create_order("ETH/USDT", "market", "sell", 1.0, None, {"clientOrderId": "eth"})
        (trade,) = await asyncio.wait_for(eth, 10)
        assert (trade.client_order_id, trade.last_quantity, trade.last_price) == ("eth", 1.0, 9.9)

    on_paper(scenario)


def test_a_full_order_queue_drops_the_oldest_and_counts_them() -> None:
    async def scenario(venue: PaperExchange, stream: PaperStream, adapter: BinanceStreams) -> None:
        go = asyncio.Event()

        async def consumer() -> list[Any]:
            await adapter.watch_orders()  # its queue exists from here on
            await go.wait()  # busy elsewhere while 8 updates arrive
            return await adapter.watch_orders()

        task = asyncio.ensure_future(consumer())
        await until(lambda: adapter.user is not None and adapter.user.ws is not None)
        await asyncio.sleep(0.05)
        venue.create_order("BTC/USDT", "market", "buy", 0.1, None, {"clientOrderId": "a"})
        await until(lambda: adapter.stats.order_updates >= 2)
        for k in range(4):
            venue.create_order("BTC/USDT", "market", "buy", 0.1, None, {"clientOrderId": f"b{k}"})
        await until(lambda: adapter.stats.order_updates >= 10)
        go.set()
        kept = await asyncio.wait_for(task, 10)
        assert len(kept) == 3 and kept[-1].client_order_id == "b3" and kept[-1].status == "closed"
        assert adapter.stats.dropped_updates >= 5

    on_paper(scenario, max_queued=3)


def test_two_consumers_each_get_every_update_and_one_symbols_consumer_drops_no_other() -> None:
    async def scenario(venue: PaperExchange, stream: PaperStream, adapter: BinanceStreams) -> None:
        async def collect(symbol: str | None, count: int) -> list[Any]:
            got: list[Any] = []
            while len(got) < count:
                got += await adapter.watch_orders(symbol)
            return got

        everything = [asyncio.ensure_future(collect(None, 4)) for _ in range(2)]
        eth_only = asyncio.ensure_future(collect("ETH/USDT", 2))
        await until(lambda: adapter.user is not None and adapter.user.ws is not None)
        await asyncio.sleep(0.05)
        venue.create_order("BTC/USDT", "market", "buy", 0.1, None, {"clientOrderId": "btc"})
        venue.create_order("ETH/USDT", "market", "buy", 1.0, None, {"clientOrderId": "eth"})
        first, second = [await asyncio.wait_for(t, 10) for t in everything]
        assert [u.client_order_id for u in first] == [u.client_order_id for u in second] == ["btc"] * 2 + ["eth"] * 2
        assert [u.client_order_id for u in await asyncio.wait_for(eth_only, 10)] == ["eth", "eth"]

    on_paper(scenario)


def test_a_waiting_call_learns_that_the_connection_broke_and_the_next_one_resumes() -> None:
    async def main() -> None:
        server = Loopback()
        await server.start()
        adapter = BinanceStreams("binance", server.url, SYMBOLS, connection=FAST)
        try:
            waiting = asyncio.ensure_future(adapter.watch_ticker("BTC/USDT"))
            await server.wait_connection(1)
            server.drop_mid_frame()
            with pytest.raises(StreamClosedError, match="connection ended"):
                await asyncio.wait_for(waiting, 10)
            again = asyncio.ensure_future(adapter.watch_ticker("BTC/USDT"))
            await server.wait_connection(2)
            await until(lambda: adapter.market.ws is not None)
            ticker = {"u": 7, "s": "BTCUSDT", "b": "1.0", "B": "1", "a": "2.0", "A": "1"}
            await server.send(json.dumps({"stream": "btcusdt@bookTicker", "data": ticker}))
            assert (await asyncio.wait_for(again, 10)).update_id == 7
            assert adapter.market.stats.connects == 2
        finally:
            await adapter.close()
            await server.stop()

    asyncio.run(main())


def test_garbage_and_replays_are_dropped_and_counted_without_losing_the_connection() -> None:
    async def main() -> None:
        server = Loopback()
        await server.start()
        adapter = BinanceStreams("binance", server.url, SYMBOLS, connection=FAST)
        try:
            waiting = asyncio.ensure_future(adapter.watch_ticker("BTC/USDT"))
            await server.wait_connection(1)
            await until(lambda: adapter.market.ws is not None)

            def ticker(u: int, bid: str) -> str:
                data = {"u": u, "s": "BTCUSDT", "b": bid, "B": "1", "a": "200.0", "A": "1"}
                return json.dumps({"stream": "btcusdt@bookTicker", "data": data})

            await server.send(ticker(10, "100.0"))
            assert (await asyncio.wait_for(waiting, 10)).bid == 100.0
            waiting = asyncio.ensure_future(adapter.watch_ticker("BTC/USDT"))
            for junk in ("{", "[]", ticker(11, "NaN"), ticker(9, "101.0"), ticker(10, "101.0")):
                await server.send(junk)
            await server.send(ticker(12, "102.0"))
            assert (await asyncio.wait_for(waiting, 10)).bid == 102.0
            assert adapter.stats.malformed == 3 and adapter.stats.out_of_order == 2
            assert adapter.market.stats.connects == 1
        finally:
            await adapter.close()
            await server.stop()

    asyncio.run(main())


def test_a_depth_gap_fetches_a_new_snapshot_and_the_book_is_right_after_it() -> None:
    async def main() -> None:
        server = Loopback()
        await server.start()
        snapshots = [
            {"lastUpdateId": 10, "bids": [["99", "1"]], "asks": [["101", "1"]]},
            {"lastUpdateId": 20, "bids": [["98", "2"]], "asks": [["102", "2"]]},
        ]
        asked: list[str] = []

        async def snapshot(venue_id: str) -> Any:
            asked.append(venue_id)
            return snapshots[min(len(asked), 2) - 1]

        adapter = BinanceStreams("binance", server.url, SYMBOLS, snapshot=snapshot, connection=FAST)

        def diff(first: int, final: int, bids: list[list[str]]) -> str:
            data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": final, "b": bids, "a": []}
            return json.dumps({"stream": "btcusdt@depth@100ms", "data": data})

        try:
            waiting = asyncio.ensure_future(adapter.watch_order_book("BTC/USDT"))
            await server.wait_connection(1)
            await until(lambda: adapter.market.ws is not None)
            await server.send(diff(9, 11, [["99", "3"]]))  # buffered; the snapshot (10) comes; 11 applies
            view = await asyncio.wait_for(waiting, 10)
            assert view.update_id == 11 and view.bids == [(99.0, 3.0)]
            waiting = asyncio.ensure_future(adapter.watch_order_book("BTC/USDT"))
            await asyncio.sleep(0)
            await server.send(diff(15, 21, [["97", "1"]]))  # 12..14 lost: resync from snapshot 20
            view = await asyncio.wait_for(waiting, 10)
            assert adapter.stats.gaps == 1 and asked == ["BTCUSDT", "BTCUSDT"]
            assert view.update_id == 21 and view.bids == [(98.0, 2.0), (97.0, 1.0)]
        finally:
            await adapter.close()
            await server.stop()

    asyncio.run(main())


def test_after_a_reconnect_the_book_starts_again_from_a_snapshot() -> None:
    """A venue that restarted numbers its updates anew: a book kept across the reconnect would
    take every new diff for a replay and freeze."""

    async def main() -> None:
        server = Loopback()
        await server.start()
        snapshots = [
            {"lastUpdateId": 100, "bids": [["99", "1"]], "asks": [["101", "1"]]},
            {"lastUpdateId": 4, "bids": [["90", "1"]], "asks": [["110", "1"]]},
        ]

        async def snapshot(venue_id: str) -> Any:
            return snapshots.pop(0)

        adapter = BinanceStreams("binance", server.url, SYMBOLS, snapshot=snapshot, connection=FAST)

        def diff(first: int, final: int, bids: list[list[str]]) -> str:
            data = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": first, "u": final, "b": bids, "a": []}
            return json.dumps({"stream": "btcusdt@depth@100ms", "data": data})

        try:
            waiting = asyncio.ensure_future(adapter.watch_order_book("BTC/USDT"))
            await server.wait_connection(1)
            await until(lambda: adapter.market.ws is not None)
            await server.send(diff(101, 101, [["99", "2"]]))
            assert (await asyncio.wait_for(waiting, 10)).update_id == 101
            server.drop_mid_frame()
            waiting = asyncio.ensure_future(adapter.watch_order_book("BTC/USDT"))
            with pytest.raises(StreamClosedError):
                await asyncio.wait_for(waiting, 10)
            waiting = asyncio.ensure_future(adapter.watch_order_book("BTC/USDT"))
            await server.wait_connection(2)
            await until(lambda: adapter.market.ws is not None)
            await server.send(diff(5, 5, [["91", "1"]]))  # the restarted venue's numbering
            view = await asyncio.wait_for(waiting, 10)
            assert view.update_id == 5 and view.bids == [(91.0, 1.0), (90.0, 1.0)]
        finally:
            await adapter.close()
            await server.stop()

    asyncio.run(main())


def test_close_ends_waiting_calls_and_refuses_new_ones() -> None:
    async def scenario(venue: PaperExchange, stream: PaperStream, adapter: BinanceStreams) -> None:
        waiting = [
            asyncio.ensure_future(adapter.watch_ticker("BTC/USDT")),
            asyncio.ensure_future(adapter.watch_orders()),
            asyncio.ensure_future(adapter.watch_balance()),
        ]
        await asyncio.sleep(0.1)
        await adapter.close()
        for task in waiting:
            with pytest.raises(StreamClosedError):
                await asyncio.wait_for(task, 10)
        with pytest.raises(StreamClosedError):
            await adapter.watch_ticker("BTC/USDT")

    on_paper(scenario)


def test_bad_arguments_are_refused_clearly() -> None:
    async def main() -> None:
        plain = BinanceStreams("b", "ws://127.0.0.1:9", SYMBOLS)
        with pytest.raises(ConfigError, match="not a symbol"):
            await plain.watch_ticker("DOGE/USDT")
        with pytest.raises(ConfigError, match="snapshot"):
            await plain.watch_order_book("BTC/USDT")
        with pytest.raises(ConfigError, match="user_url"):
            await plain.watch_orders()
        with pytest.raises(ConfigError, match="not a symbol"):
            await plain.watch_my_trades("DOGE/USDT")
        await plain.close()

    asyncio.run(main())
    for kw in ({"url": "http://x"}, {"symbols": {}}, {"user_url": "http://x"}, {"max_queued": 0}, {"name": ""}):
        args: dict[str, Any] = {"name": "b", "url": "ws://127.0.0.1:9", "symbols": SYMBOLS, **kw}
        with pytest.raises(ConfigError):
            BinanceStreams(args.pop("name"), args.pop("url"), args.pop("symbols"), **args)
    with pytest.raises(ConfigError):
        ConnectionConfig(stall_seconds=0)


def test_the_hook_offers_adapters_by_name_and_refuses_what_is_not_one() -> None:
    pm = make_plugin_manager(entry_points=False)
    first = BinanceStreams("binance", "ws://127.0.0.1:9", SYMBOLS)
    pm.register(first)
    assert stream_adapters(pm) == {"binance": first} and isinstance(first, StreamAdapter)
    pm.register(BinanceStreams("binance", "ws://127.0.0.1:9", SYMBOLS))
    with pytest.raises(ConfigError, match="two stream adapters"):
        stream_adapters(pm)

    class Bogus:
        @hookimpl
        def bot4_stream_adapters(self) -> list[object]:
            return [object()]

    other = make_plugin_manager(entry_points=False)
    other.register(Bogus())
    with pytest.raises(ConfigError, match="not a StreamAdapter"):
        stream_adapters(other)


def test_a_feed_over_an_adapter_writes_quotes_and_marks_and_drops_a_bad_quote() -> None:
    class Scripted:
        """An adapter a plugin offers, answering tickers from a queue (a user's venue)."""

        name = "scripted"

        def __init__(self) -> None:
            self.quotes: asyncio.Queue[Any] = asyncio.Queue()

        @hookimpl
        def bot4_stream_adapters(self) -> list[Any]:
            return [self]

        async def watch_ticker(self, symbol: str) -> Any:
            item = await self.quotes.get()
            if isinstance(item, Exception):
                raise item
            return item

        async def watch_order_book(self, symbol: str, limit: int | None = None) -> Any:
            raise NotImplementedError

        async def watch_orders(self, symbol: str | None = None) -> Any:
            raise NotImplementedError

        async def watch_my_trades(self, symbol: str | None = None) -> Any:
            raise NotImplementedError

        async def watch_balance(self) -> Any:
            raise NotImplementedError

        async def close(self) -> None:
            pass

    async def main() -> None:
        with Core.create(clock=MonotonicClock(), plugins=make_plugin_manager(entry_points=False)) as core:
            core.risk.configure(dataclasses.replace(OPEN_LIMITS, max_price_age=5.0))
            scripted = Scripted()
            core.plugins.register(scripted)
            cfg = FeedConfig(
                adapter="scripted", venue="scripted", symbols=["BTC/USDT"], mark_seconds=0.0, **vars_of(FAST)
            )
            feed = Feed(core, cfg)
            async with Running(feed):
                await scripted.quotes.put(Quote("BTC/USDT", 99.0, 1.0, 101.0, 1.0, 1))
                await until(lambda: feed.stats.quotes == 1)
                assert core.quotes.get("scripted", "BTC/USDT") is not None
                assert core.risk.ledger.mark("BTC/USDT") == 100.0
                await scripted.quotes.put(Quote("ETH/USDT", 9.0, 1.0, 11.0, 1.0, 2))  # not the symbol asked
                await scripted.quotes.put({"bid": 1})
                await scripted.quotes.put(StreamClosedError("reconnecting"))
                await scripted.quotes.put(Quote("BTC/USDT", 109.0, 1.0, 111.0, 1.0, 3))
                await until(lambda: feed.stats.quotes == 2)
                assert feed.stats.malformed == 2 and feed.stats.connect_failures == 1
                assert core.risk.ledger.mark("BTC/USDT") == 110.0

    asyncio.run(main())


def vars_of(config: ConnectionConfig) -> dict[str, Any]:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(ConnectionConfig)}


def test_a_feed_names_an_adapter_that_must_exist_and_follows_tickers_only() -> None:
    with pytest.raises(ConfigError, match="url"):
        FeedConfig(venue="v", symbols=["BTC/USDT"])
    with pytest.raises(ConfigError, match="url"):
        FeedConfig(url="ws://x", adapter="a", venue="v", symbols=SYMBOLS)
    with pytest.raises(ConfigError, match="kinds"):
        FeedConfig(adapter="a", venue="v", symbols=["BTC/USDT"], kinds=("trade",))

    async def main() -> None:
        with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
            feed = Feed(core, FeedConfig(adapter="missing", venue="v", symbols=["BTC/USDT"]))
            with pytest.raises(ConfigError, match="missing"):
                await feed.run()

    asyncio.run(main())
