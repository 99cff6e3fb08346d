"""Streams under hostile timing: a peer that hangs up at once, a cancel during a close, a
quiet market, a quiet account, many symbols at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.server import serve

from bot4 import Core, make_plugin_manager
from bot4.breaker.state import BreakerState
from bot4.streams.binance_ws import BinanceStreams
from bot4.streams.connection import Connection, ConnectionConfig
from bot4.streams.feed import Feed, FeedConfig
from bot4.testing import OPEN_LIMITS
from tests.streams.loopback import Loopback
from tests.streams.test_adapters import FAST, vars_of
from tests.streams.test_feed import Running, until


async def hang_up_server(accepted: list[int]) -> Any:
    async def handler(ws: Any) -> None:  # a maintenance notice, then goodbye
        accepted[0] += 1
        await ws.send('{"error":{"code":-1003,"msg":"Too many requests"}}')
        await ws.close()

    return await serve(handler, "127.0.0.1", 0)


def test_a_peer_that_answers_once_and_hangs_up_is_not_hammered() -> None:
    async def main() -> None:
        accepted = [0]
        server = await hang_up_server(accepted)
        port = server.sockets[0].getsockname()[1]
        config = ConnectionConfig(backoff_seconds=0.05, backoff_max_seconds=0.4)
        connection = Connection("storm", f"ws://127.0.0.1:{port}/stream", config, None, lambda m: None)
        stop = asyncio.Event()
        task = asyncio.ensure_future(connection.run(stop))
        await asyncio.sleep(2.0)
        stop.set()
        await task
        server.close()
        await server.wait_closed()
        # backoff doubles to 0.4 s (full jitter: 0.2 s on average): some 15 tries in 2 s, not hundreds
        assert 2 <= accepted[0] <= 40, accepted[0]

    asyncio.run(main())


def test_a_cancel_while_a_connection_closes_is_never_swallowed() -> None:
    async def main() -> None:
        accepted = [0]
        server = await hang_up_server(accepted)
        port = server.sockets[0].getsockname()[1]
        for _ in range(10):
            config = ConnectionConfig(backoff_seconds=0.5, backoff_max_seconds=1.0)
            connection = Connection("c", f"ws://127.0.0.1:{port}/", config, None, lambda m: None)
            task = asyncio.ensure_future(connection.run())
            while connection.stats.disconnects == 0:  # ended by the peer: being closed now
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=5)
            assert done, "the cancel was swallowed: the connection ran on"
        server.close()
        await server.wait_closed()

    asyncio.run(main())


def test_a_quiet_market_never_opens_the_feeds_breaker() -> None:
    class Quiet:
        """An adapter whose market says nothing for a while."""

        name = "quiet"

        def __init__(self) -> None:
            self.quotes: asyncio.Queue[Any] = asyncio.Queue()

        def bot4_stream_adapters(self) -> list[Any]:
            return [self]

        async def watch_ticker(self, symbol: str) -> Any:
            return await self.quotes.get()

        async def watch_order_book(self, symbol: str, limit: int | None = None) -> Any: ...
        async def watch_orders(self, symbol: str | None = None) -> Any: ...
        async def watch_my_trades(self, symbol: str | None = None) -> Any: ...
        async def watch_balance(self) -> Any: ...
        async def close(self) -> None: ...

    from bot4 import hookimpl
    from bot4.streams.events import Quote

    Quiet.bot4_stream_adapters = hookimpl(Quiet.bot4_stream_adapters)  # type: ignore[method-assign]

    async def main() -> None:
        with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
            core.risk.configure(OPEN_LIMITS)
            quiet = Quiet()
            core.plugins.register(quiet)
            settings = vars_of(FAST) | {"stall_seconds": 0.05}
            feed = Feed(core, FeedConfig(adapter="quiet", venue="quiet", symbols=["BTC/USDT"], **settings))
            async with Running(feed):
                await until(lambda: feed.stats.stalls >= 20)  # many stall timeouts in a row
                assert core.breaker("feed:quiet").state is BreakerState.CLOSED
                await quiet.quotes.put(Quote("BTC/USDT", 99.0, 1.0, 101.0, 1.0, 1))
                await until(lambda: feed.stats.quotes == 1)  # the first move is taken at once

    asyncio.run(main())


def test_an_idle_account_keeps_its_user_data_connection() -> None:
    async def main() -> None:
        server = Loopback()
        await server.start()
        adapter = BinanceStreams(
            "b", server.url, {"BTC/USDT": "BTCUSDT"}, user_url=f"{server.url}/ws/key", connection=FAST
        )
        try:
            waiting = asyncio.ensure_future(adapter.watch_orders())
            await server.wait_connection(1)
            await asyncio.sleep(4 * FAST.stall_seconds)  # nothing to tell: an idle account
            assert adapter.user is not None and adapter.user.stats.connects == 1 and not waiting.done()
        finally:
            await adapter.close()
            await server.stop()

    asyncio.run(main())


def test_many_streams_at_once_are_asked_for_in_few_requests() -> None:
    async def main() -> None:
        server = Loopback()
        await server.start()
        symbols = {f"S{k}/USDT": f"S{k}USDT" for k in range(300)}
        adapter = BinanceStreams("b", server.url, symbols, connection=FAST)
        try:
            watches = [asyncio.ensure_future(adapter.watch_ticker(s)) for s in symbols]
            await server.wait_connection(1)
            await until(lambda: sum(len(json.loads(m)["params"]) for m in server.received) == 300)
            assert len(server.received) <= 3  # 200 names a request at most, not one request each
            for task in watches:
                task.cancel()
        finally:
            await adapter.close()
            await server.stop()

    asyncio.run(main())


def test_a_feed_of_many_symbols_asks_for_them_by_request_not_by_url() -> None:
    async def main() -> None:
        server = Loopback()
        await server.start()
        symbols = {f"S{k}/USDT": f"S{k}USDT" for k in range(300)}
        with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
            feed = Feed(core, FeedConfig(url=server.url, venue="b", symbols=symbols, kinds=("bookTicker", "trade")))
            async with Running(feed):
                await server.wait_connection(1)
                await until(lambda: sum(len(json.loads(m)["params"]) for m in server.received) == 600)
                assert server.paths[0] == "/stream" and len(server.received) == 3
                data = {"u": 5, "s": "S7USDT", "b": "1.0", "B": "1", "a": "2.0", "A": "1"}
                await server.send(json.dumps({"stream": "s7usdt@bookTicker", "data": data}))
                await until(lambda: feed.stats.quotes == 1)

    asyncio.run(main())
