"""The feed against a loopback server speaking Binance's format: it recovers from whatever the
server does, and while it cannot, risk denies new orders on the stale symbols."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import websockets

from bot4 import BreakerConfig, ConfigError, Core, MonotonicClock, Order, make_plugin_manager
from bot4.streams.feed import Feed, FeedConfig
from bot4.testing import OPEN_LIMITS
from tests.streams.loopback import Loopback

SYMBOLS = {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT"}


def ticker(venue_id: str, update_id: int, bid: float, ask: float) -> str:
    return json.dumps(
        {
            "stream": f"{venue_id.lower()}@bookTicker",
            "data": {"u": update_id, "s": venue_id, "b": str(bid), "B": "1.5", "a": str(ask), "A": "2.5"},
        }
    )


@pytest.fixture
def core() -> Iterator[Core]:
    with Core.create(clock=MonotonicClock(), plugins=make_plugin_manager(entry_points=False)) as c:
        c.risk.configure(dataclasses.replace(OPEN_LIMITS, max_price_age=0.5))
        c.risk.set_equity(100_000.0)
        yield c


def config(server: Loopback, **kw: Any) -> FeedConfig:
    kw.setdefault("stall_seconds", 0.5)
    kw.setdefault("ping_seconds", 0.3)
    kw.setdefault("backoff_seconds", 0.01)
    kw.setdefault("backoff_max_seconds", 0.1)
    kw.setdefault("mark_seconds", 0.0)
    return FeedConfig(url=server.url, venue="binance", symbols=SYMBOLS, **kw)


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Until ``check()`` holds (bounded: a loaded machine gets time, a broken feed fails)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def run(scenario: Callable[[Loopback], Awaitable[None]]) -> None:
    async def main() -> None:
        server = Loopback()
        await server.start()
        try:
            await scenario(server)
        finally:
            await server.stop()

    asyncio.run(main())


class Running:
    """A feed task for the duration of a block."""

    def __init__(self, feed: Feed) -> None:
        self.feed, self.stop = feed, asyncio.Event()

    async def __aenter__(self) -> Feed:
        self.task = asyncio.create_task(self.feed.run(self.stop))
        return self.feed

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        async with asyncio.timeout(10):
            await self.task


BUY = dict(symbol="BTC/USDT", side="buy", quantity=0.1, type="limit", price=100.0)


def test_quotes_reach_the_table_and_marks_the_ledger(core: Core) -> None:
    async def scenario(server: Loopback) -> None:
        feed = Feed(core, config(server))
        async with Running(feed):
            await server.wait_connection(1)
            assert server.paths[0] == "/stream?streams=btcusdt@bookTicker/ethusdt@bookTicker"
            await server.send(ticker("BTCUSDT", 10, 99.5, 100.5))
            await server.send(ticker("ETHUSDT", 3, 9.9, 10.1))
            await until(lambda: feed.stats.quotes == 2)
            quote = core.quotes.get("binance", "BTC/USDT")
            assert quote is not None and (quote.bid, quote.ask, quote.update_id) == (99.5, 100.5, 10)
            assert quote.receive_ns > 0 and quote.bid_size == 1.5 and quote.ask_size == 2.5
            assert core.risk.ledger.mark("BTC/USDT") == 100.0  # the mid
            assert core.risk.check(Order(**BUY)).approved
            await server.send(ticker("BTCUSDT", 9, 1.0, 2.0))  # older: reordered
            await server.send(ticker("BTCUSDT", 10, 1.0, 2.0))  # the same again: replayed
            await server.send("this is not json")
            await server.send(json.dumps({"stream": "x", "data": {"e": "trade", "s": "BTCUSDT"}}))  # fields missing
            await server.send(ticker("BTCUSDT", 11, 99.0, 101.0))
            await until(lambda: feed.stats.quotes == 3)
            assert feed.stats.out_of_order == 2 and feed.stats.malformed == 2
            assert feed.stats.connects == 1  # garbage never cost the connection
            quote = core.quotes.get("binance", "BTC/USDT")
            assert quote is not None and quote.update_id == 11

    run(scenario)


def test_a_connection_dropped_mid_frame_reconnects_and_quotes_resume(core: Core) -> None:
    async def scenario(server: Loopback) -> None:
        feed = Feed(core, config(server))
        async with Running(feed):
            await server.wait_connection(1)
            await server.send(ticker("BTCUSDT", 1, 99.0, 101.0))
            await until(lambda: feed.stats.quotes == 1)
            server.drop_mid_frame()
            await server.wait_connection(2)
            await server.send(ticker("BTCUSDT", 2, 99.0, 101.0))
            await until(lambda: feed.stats.quotes == 2)
            assert feed.stats.disconnects >= 1 and feed.stats.connects == 2

    run(scenario)


def test_a_silent_venue_is_left_and_risk_denies_the_stale_symbol_meanwhile(core: Core) -> None:
    async def scenario(server: Loopback) -> None:
        feed = Feed(core, config(server))
        async with Running(feed):
            await server.wait_connection(1)
            await server.send(ticker("BTCUSDT", 1, 99.0, 101.0))
            await until(lambda: feed.stats.quotes == 1)
            assert core.risk.check(Order(**BUY)).approved
            server.silence()  # no data, no pongs
            await until(lambda: core.risk.check(Order(**BUY)).codes == ("STALE_PRICE",))
            await server.wait_connection(2)  # the feed gave up on the silent connection
            assert feed.stats.stalls + feed.stats.disconnects >= 1
            await server.send(ticker("BTCUSDT", 2, 99.0, 101.0))
            await until(lambda: core.risk.check(Order(**BUY)).approved)

    run(scenario)


def test_a_venue_that_is_down_opens_the_breaker_and_the_feed_comes_back_with_it(core: Core) -> None:
    async def scenario(server: Loopback) -> None:
        port = server.port
        await server.stop()
        cfg = config(server, breaker=BreakerConfig(consecutive_failures=3, open_seconds=0.2))
        feed = Feed(core, cfg)
        async with Running(feed):
            await until(lambda: feed.stats.connect_failures >= 3)
            await until(lambda: core.breaker("feed:binance").snapshot().trips >= 1)
            await server.start(port)
            await server.wait_connection(1)
            await server.send(ticker("ETHUSDT", 1, 9.0, 11.0))
            await until(lambda: feed.stats.quotes == 1)
            await until(lambda: core.breaker("feed:binance").state.name == "CLOSED")

    run(scenario)


@pytest.mark.parametrize(
    ("field", "kw"),
    [
        ("url", {"url": "http://x"}),
        ("url", {"url": "ws://127.0.0.1:99999"}),
        ("symbols", {"symbols": {"BTC/USDT": "BTCUSDT", "XBT/USDT": "btcusdt"}}),
        ("symbols", {"symbols": {"x" * 40: "BTCUSDT"}}),
        ("venue", {"venue": "bin\0ance"}),
        ("venue", {"venue": ""}),
        ("symbols", {"symbols": {}}),
        ("symbols", {"symbols": {"BTC/USDT": "BTC/USDT"}}),
        ("kinds", {"kinds": ("kline",)}),
        ("stall_seconds", {"stall_seconds": 0}),
        ("backoff_max_seconds", {"backoff_seconds": 2.0, "backoff_max_seconds": 1.0}),
    ],
)
def test_a_bad_feed_config_is_refused_naming_the_field(field: str, kw: dict[str, Any]) -> None:
    base: dict[str, Any] = {"url": "ws://127.0.0.1:1", "venue": "binance", "symbols": SYMBOLS}
    base.update(kw)
    with pytest.raises(ConfigError) as info:
        FeedConfig(**base)
    assert info.value.args[0] == field


@pytest.mark.processes
def test_a_killed_feed_process_is_restarted_and_no_stale_quote_passes_in_between(core: Core) -> None:
    """SIGKILL the feed worker: the supervisor restarts it; until the new feed marks the
    symbol again, risk denies new orders on it; then quotes and approvals resume."""
    import os
    import signal
    import threading

    from bot4 import Supervisor
    from bot4.streams.feed import FeedWorker

    loop = asyncio.new_event_loop()
    server = Loopback()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def on_server(coroutine: Awaitable[Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)  # type: ignore[arg-type]

    on_server(server.start())
    supervisor = Supervisor(core, FeedWorker(config(server)), 1, backoff=0.05)
    outcome: list[BaseException | None] = []

    def scenario() -> None:
        try:
            on_server(server.wait_connection(1, timeout=60))
            on_server(server.send(ticker("BTCUSDT", 1, 99.0, 101.0)))
            wait(lambda: core.risk.check(Order(**BUY)).approved)
            feed_pids = [w.pid for w in core.workers() if w.pid != os.getpid()]
            assert len(feed_pids) == 1
            os.kill(feed_pids[0], signal.SIGKILL)
            wait(lambda: core.risk.check(Order(**BUY)).codes == ("STALE_PRICE",))  # fails closed meanwhile
            on_server(server.wait_connection(2, timeout=60))  # the restarted feed
            on_server(server.send(ticker("BTCUSDT", 2, 99.0, 101.0)))
            wait(lambda: core.risk.check(Order(**BUY)).approved)
            quote = core.quotes.get("binance", "BTC/USDT")
            assert quote is not None and quote.update_id == 2
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            supervisor.stop()

    thread = threading.Thread(target=scenario)
    thread.start()
    try:
        assert supervisor.run(duration=120) == 0
    finally:
        thread.join(60)
        on_server(server.stop())
        loop.call_soon_threadsafe(loop.stop)
    assert supervisor.restarts >= 1
    assert outcome == [None], outcome


def wait(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Until ``check()`` holds, from a thread (bounded)."""
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_the_feed_command_writes_quotes_into_a_live_segment_until_ctrl_c(core: Core) -> None:
    import signal
    import subprocess
    import sys

    async def scenario(server: Loopback) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot4", "feed", core.name, "--url", server.url, "--venue", "binance"]
            + ["--symbol", "BTC/USDT=BTCUSDT", "--trades"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            await server.wait_connection(1, timeout=60)
            assert server.paths[0] == "/stream?streams=btcusdt@bookTicker/btcusdt@trade"
            await server.send(ticker("BTCUSDT", 5, 99.0, 101.0))
            await until(lambda: core.quotes.get("binance", "BTC/USDT") is not None, timeout=60)
            await until(lambda: core.risk.check(Order(**BUY)).approved, timeout=60)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "interrupted" in err, err
        assert "'quotes': 1" in out and "Traceback" not in err

    run(scenario)


def test_the_feed_command_refuses_a_bad_symbol_clearly(core: Core) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot4",
            "feed",
            core.name,
            "--url",
            "ws://127.0.0.1:9",
            "--venue",
            "v",
            "--symbol",
            "BTC",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "DESK=ID" in result.stderr and "Traceback" not in result.stderr


def test_update_ids_that_restart_after_a_reconnect_are_taken(core: Core) -> None:
    async def scenario(server: Loopback) -> None:
        feed = Feed(core, config(server))
        async with Running(feed):
            await server.wait_connection(1)
            await server.send(ticker("BTCUSDT", 1_000_000, 99.0, 101.0))
            await until(lambda: feed.stats.quotes == 1)
            server.drop_mid_frame()  # the venue restarts and numbers its updates from 1 again
            await server.wait_connection(2)
            async with asyncio.timeout(20):
                while feed.stats.quotes < 2:  # a loaded machine may see the feed reconnect again (a stall):
                    with contextlib.suppress(AssertionError, ConnectionError, websockets.ConnectionClosed):
                        await server.send(ticker("BTCUSDT", 1, 199.0, 201.0))  # what it missed is sent again
                    with contextlib.suppress(TimeoutError):
                        await until(lambda: feed.stats.quotes >= 2, timeout=0.2)
            assert core.risk.ledger.mark("BTC/USDT") == 200.0

    run(scenario)


def test_ids_that_go_back_and_stay_back_are_taken_as_renumbered(core: Core) -> None:
    async def scenario(server: Loopback) -> None:
        feed = Feed(core, config(server))
        async with Running(feed):
            await server.wait_connection(1)
            await server.send(ticker("BTCUSDT", 10**15, 99.0, 101.0))  # one wild id
            for u in range(1, 60):
                await server.send(ticker("BTCUSDT", u, 199.0, 201.0))
            await until(lambda: feed.stats.messages == 60)
            assert 0 < feed.stats.out_of_order < 59  # dropped for a while, not for ever
            quote = core.quotes.get("binance", "BTC/USDT")
            assert quote is not None and quote.update_id == 59

    run(scenario)


def test_a_conflated_quote_is_marked_once_due_even_if_none_follows(core: Core) -> None:
    async def scenario(server: Loopback) -> None:
        feed = Feed(core, config(server, mark_seconds=0.2))
        async with Running(feed):
            await server.wait_connection(1)
            await server.send(ticker("BTCUSDT", 1, 99.0, 101.0))
            await server.send(ticker("BTCUSDT", 2, 149.0, 151.0))  # within 0.2 s: conflated
            await until(lambda: feed.stats.quotes == 2)
            await until(lambda: core.risk.ledger.mark("BTC/USDT") == 150.0)  # the latest, marked when due

    run(scenario)


def test_stop_is_prompt_while_a_venue_never_completes_the_handshake(core: Core) -> None:
    async def main() -> None:
        accepted = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set()
            await asyncio.sleep(30)  # accepts TCP, never answers the handshake

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            cfg = FeedConfig(url=f"ws://127.0.0.1:{port}", venue="binance", symbols=SYMBOLS, open_seconds=5.0)
            feed = Feed(core, cfg)
            stop = asyncio.Event()
            task = asyncio.create_task(feed.run(stop))
            async with asyncio.timeout(30):
                await accepted.wait()  # the feed is in the middle of its handshake
            loop = asyncio.get_running_loop()
            started = loop.time()
            stop.set()
            async with asyncio.timeout(10):
                await task
            assert loop.time() - started < 1.0  # not the 5 s the handshake may take
            assert core.breaker("feed:binance").snapshot().trips == 0  # stopping is no failure of the venue
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_a_ledger_that_refuses_marks_costs_one_log_line_not_one_per_quote(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    with Core.create(max_symbols=1, clock=MonotonicClock(), plugins=make_plugin_manager(entry_points=False)) as core:
        core.risk.on_price("SOL/USDT", 10.0)  # the ledger's one symbol is taken

        async def scenario(server: Loopback) -> None:
            feed = Feed(core, config(server, mark_seconds=0.0))
            async with Running(feed):
                await server.wait_connection(1)
                for u in range(1, 101):
                    await server.send(ticker("BTCUSDT", u, 99.0, 101.0))
                await until(lambda: feed.stats.quotes == 100)
                assert feed.stats.write_errors == 100  # each mark refused (CapacityError)...
                quote = core.quotes.get("binance", "BTC/USDT")
                assert quote is not None and quote.update_id == 100  # ...while the quotes flow on

        with caplog.at_level(logging.ERROR, logger="bot4.streams"):
            run(scenario)
        assert len([r for r in caplog.records if "could not write" in r.getMessage()]) == 1
