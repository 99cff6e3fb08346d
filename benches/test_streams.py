"""Streams: one Binance bookTicker message handled, bot4's feed against ccxt.pro, same run.

bot4: ``Feed.on_message`` — orjson decode, field-checked parse, out-of-order check, the
quote written into the segment's quote table (seqlock) — without a mark, and with the
default conflated mark (one ``risk.on_price`` per symbol per 50 ms). ccxt.pro:
``binance.handle_message`` on the same message after its own JSON decode, which parses
the ticker and stores it in ``bidsasks``. Each benchmark handles a batch of ``BATCH``
messages with increasing update ids.

    python -m pytest benches/test_streams.py --benchmark-only
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from benches.conftest import BATCH
from bot4 import Core
from bot4.streams.feed import Feed, FeedConfig

SYMBOLS = {"BTC/USDT": "BTCUSDT"}
ROUNDS, WARM_UP = 30, 2


def _batches() -> list[list[bytes]]:
    """Every batch a benchmark handles, made before it starts: update ids only go up."""
    return [messages(BATCH, 1 + k * BATCH) for k in range(ROUNDS + WARM_UP)]


def messages(count: int, start: int = 1) -> list[bytes]:
    return [
        json.dumps(
            {
                "stream": "btcusdt@bookTicker",
                "data": {
                    "u": start + i,
                    "s": "BTCUSDT",
                    "b": f"{25000 + i % 7}.35190000",
                    "B": "31.21000000",
                    "a": f"{25001 + i % 7}.36520000",
                    "A": "40.66000000",
                },
            }
        ).encode()
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def core() -> Iterator[Core]:
    with Core.create() as c:
        c.risk.set_equity(1e9)
        yield c


@pytest.mark.parametrize("lib", ["bot4-quotes", "bot4-marked"])
def test_bot4_handles_a_book_ticker(benchmark: Any, core: Core, lib: str) -> None:
    benchmark.group = "bookTicker handled"
    feed = Feed(core, FeedConfig(url="ws://127.0.0.1:9", venue=lib, symbols=SYMBOLS, mark=lib == "bot4-marked"))
    batches = iter(_batches())

    def batch() -> None:
        for message in next(batches):
            feed.on_message(message)

    benchmark.extra_info["lib"] = lib
    benchmark.pedantic(batch, rounds=ROUNDS, warmup_rounds=WARM_UP)
    assert feed.stats.quotes == (ROUNDS + WARM_UP) * BATCH and feed.stats.malformed == 0


def test_ccxtpro_handles_a_book_ticker(benchmark: Any) -> None:
    ccxtpro = pytest.importorskip("ccxt.pro")
    benchmark.group = "bookTicker handled"

    async def measure() -> None:  # ccxt.pro's client wants a running event loop
        exchange = ccxtpro.binance({"options": {"defaultType": "spot"}})
        try:
            exchange.set_markets([_market()])
            client = exchange.client("wss://stream.binance.com:9443/stream")
            batches = iter(_batches())

            def batch() -> None:
                for message in next(batches):
                    exchange.handle_message(client, json.loads(message))

            benchmark.extra_info["lib"] = "ccxt.pro"
            benchmark.pedantic(batch, rounds=ROUNDS, warmup_rounds=WARM_UP)
            assert exchange.bidsasks["BTC/USDT"]["bid"] > 0
        finally:
            await exchange.close()

    asyncio.run(measure())


def _market() -> dict[str, Any]:
    return {
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
