"""Streams across processes: how soon a quote a feed receives is visible in another process,
and how fast a bare WebSocket client takes messages (websockets against picows).

Latency: a sender process serves Binance ``bookTicker`` messages over loopback at
``RATE`` messages/s (a millisecond's worth at a time), each stamped with its send time (host-wide monotonic ns) as its
update id; a feed process (``Feed``, default settings: conflated marks) writes them into
the quote table; this process reads the table in a loop and, at each new update id,
takes the time: send → visible and receive → visible (the quote's receive time), p50,
p99 and p99.9 over ``COUNT`` messages.

Throughput: the sender floods ``FLOOD`` messages; a bare client of each library receives
them and decodes each with orjson, same run; and one feed takes them into the quote table.

    python -m pytest benches/test_stream_latency.py --benchmark-only -s
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import time
from typing import Any

import pytest

from bot4 import Core
from bot4.streams.feed import Feed, FeedConfig

RATE, COUNT, FLOOD = 20_000, 60_000, 200_000
SYMBOLS = {"BTC/USDT": "BTCUSDT"}
ctx = mp.get_context("spawn")


def _message(update_id: int) -> bytes:
    return (
        b'{"stream":"btcusdt@bookTicker","data":{"u":%d,"s":"BTCUSDT","b":"25000.35190000","B":"31.21000000",'
        b'"a":"25001.36520000","A":"40.66000000"}}' % update_id
    )


def _frame(payload: bytes) -> bytes:
    """A server's unmasked text frame."""
    n = len(payload)
    head = bytes([0x81, n]) if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big")
    return head + payload


def _serve(port: Any, ready: Any, count: int, rate: float) -> None:
    """Serve one client: ``count`` messages at ``rate`` per second (0: as fast as it goes)."""
    from websockets.asyncio.server import serve

    async def handler(connection: Any) -> None:
        if not rate:  # a flood: frames made beforehand, written straight to the socket in chunks
            transport = connection.transport
            for start in range(0, count, 1000):
                transport.write(b"".join(_frame(_message(k)) for k in range(start, min(count, start + 1000))))
                while transport.get_write_buffer_size() > 1 << 20:
                    await asyncio.sleep(0.0005)
        else:  # paced to the offered rate, a millisecond's messages at a time (the sender mostly sleeps)
            per_ms, start = max(1, round(rate / 1000)), time.monotonic()
            transport = connection.transport  # frames written straight to the socket, stamped as they go
            for k in range(0, count, per_ms):
                await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
                for _ in range(per_ms):
                    transport.write(_frame(_message(time.monotonic_ns())))
        await connection.wait_closed()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
            port.value = server.sockets[0].getsockname()[1]
            ready.set()
            await server.serve_forever()

    asyncio.run(main())


def _feed(name: str, url: str, seconds: float) -> None:
    async def main() -> None:
        with Core.attach(name) as core:
            feed = Feed(core, FeedConfig(url=url, venue="bench", symbols=SYMBOLS, stall_seconds=30.0))
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(seconds, stop.set)
            await feed.run(stop)

    asyncio.run(main())


def _server(count: int, rate: float) -> tuple[Any, str]:
    port, ready = ctx.RawValue("i", 0), ctx.Event()
    proc = ctx.Process(target=_serve, args=(port, ready, count, rate), daemon=True)
    proc.start()
    assert ready.wait(30)
    return proc, f"ws://127.0.0.1:{port.value}"


def _percentiles(samples: list[int]) -> dict[str, float]:
    samples.sort()
    n = len(samples)
    return {f"p{p}": samples[min(n - 1, int(n * p / 100))] / 1e3 for p in (50, 99, 99.9)}


def test_receive_to_visible_in_another_process(benchmark: Any) -> None:
    benchmark.group = "stream latency (µs)"
    benchmark.extra_info["lib"] = "bot4"
    with Core.create() as core:
        core.risk.set_equity(1e6)
        server, url = _server(COUNT, RATE)
        feed = ctx.Process(target=_feed, args=(core.name, url, COUNT / RATE + 20), daemon=True)
        feed.start()
        sent: list[int] = []
        received: list[int] = []

        def read() -> None:
            quotes, last = core.quotes, 0
            deadline = time.monotonic() + COUNT / RATE + 30
            while len(sent) < COUNT * 0.98 and time.monotonic() < deadline:
                os.sched_yield()  # a reader that spins would take the feed's core (2 cores here)
                quote = quotes.get("bench", "BTC/USDT")
                if quote is not None and quote.update_id != last:
                    now = time.monotonic_ns()
                    last = quote.update_id
                    sent.append(now - quote.update_id)
                    received.append(now - quote.receive_ns)

        try:
            benchmark.pedantic(read, rounds=1, iterations=1)
        finally:
            for proc in (feed, server):
                proc.kill()
                proc.join(10)
        assert len(sent) > COUNT * 0.5, f"only {len(sent)} of {COUNT} quotes seen"
        benchmark.extra_info["seen"] = len(sent)
        benchmark.extra_info["send_to_visible_us"] = _percentiles(sent)
        benchmark.extra_info["receive_to_visible_us"] = _percentiles(received)
        print(f"\n{len(sent)} quotes seen of {COUNT} sent at {RATE}/s")
        print("send -> visible (µs):", _percentiles(sent))
        print("receive -> visible (µs):", _percentiles(received))


async def _websockets_client(url: str, count: int) -> float:
    import orjson
    from websockets.asyncio.client import connect

    async with connect(url, compression=None, max_size=1 << 20) as ws:
        first = await ws.recv()
        start = time.perf_counter()
        orjson.loads(first)
        for _ in range(count - 1):
            orjson.loads(await ws.recv())
        return (count - 1) / (time.perf_counter() - start)


async def _picows_client(url: str, count: int) -> float:
    import orjson
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    done = asyncio.get_running_loop().create_future()

    class Listener(WSListener):  # type: ignore[misc]
        def __init__(self) -> None:
            self.n = 0
            self.start = 0.0

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type is not WSMsgType.TEXT and frame.msg_type is not WSMsgType.BINARY:
                return
            orjson.loads(frame.get_payload_as_memoryview())
            self.n += 1
            if self.n == 1:
                self.start = time.perf_counter()
            elif self.n == count and not done.done():
                done.set_result((count - 1) / (time.perf_counter() - self.start))

    transport, _ = await ws_connect(Listener, url)
    try:
        return float(await done)
    finally:
        transport.disconnect()


@pytest.mark.parametrize("lib", ["websockets", "picows"])
def test_bare_client_throughput(benchmark: Any, lib: str) -> None:
    if lib == "picows":
        pytest.importorskip("picows")
    benchmark.group = "bare WebSocket client (messages/s)"
    benchmark.extra_info["lib"] = lib
    client = _websockets_client if lib == "websockets" else _picows_client
    rates: list[float] = []

    def once() -> None:
        server, url = _server(FLOOD, 0)
        try:
            rates.append(asyncio.run(client(url, FLOOD)))
        finally:
            server.kill()
            server.join(10)

    benchmark.pedantic(once, rounds=3, iterations=1)
    benchmark.extra_info["messages_per_second"] = sorted(rates)[1]
    print(f"\n{lib}: {sorted(rates)[1]:,.0f} messages/s (median of 3)")


def test_feed_throughput(benchmark: Any) -> None:
    """One feed process, flooded: bookTicker messages per second into the quote table (no mark)."""
    benchmark.group = "feed throughput (messages/s)"
    benchmark.extra_info["lib"] = "bot4"
    rates: list[float] = []

    def once() -> None:
        server, url = _server(FLOOD, 0)

        async def main() -> None:
            with Core.create() as core:
                feed = Feed(core, FeedConfig(url=url, venue="bench", symbols=SYMBOLS, mark=False, stall_seconds=30.0))
                stop = asyncio.Event()
                task = asyncio.create_task(feed.run(stop))
                await feed.connected.wait()
                start, first = time.perf_counter(), feed.stats.quotes
                while feed.stats.quotes < FLOOD and not task.done():
                    await asyncio.sleep(0.001)
                rates.append((feed.stats.quotes - first) / (time.perf_counter() - start))
                stop.set()
                await task

        try:
            asyncio.run(main())
        finally:
            server.kill()
            server.join(10)

    benchmark.pedantic(once, rounds=3, iterations=1)
    benchmark.extra_info["messages_per_second"] = sorted(rates)[1]
    print(f"\nfeed: {sorted(rates)[1]:,.0f} bookTicker messages/s into the quote table (median of 3)")
