"""A paper venue's stream: what it publishes is what the venue did, in Binance's format, in order."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as connect_sync

from bot4 import ConfigError, PaperExchange
from bot4.streams.binance import BinanceSpot
from bot4.venues.paper_stream import PaperStream

SYMBOLS = {"BTC/USDT": "BTCUSDT"}


def venue() -> PaperExchange:
    v = PaperExchange("paper")
    v.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 1.0), (102.0, 1.0)])
    return v


def test_an_order_is_told_as_binance_tells_it_new_trades_and_the_end() -> None:
    async def main() -> None:
        v = venue()
        stream = PaperStream(v)
        await stream.start()
        try:
            parser = BinanceSpot(SYMBOLS)
            async with connect(stream.user_url) as ws:
                await asyncio.sleep(0.05)
                v.create_order(
                    "BTC/USDT", "market", "buy", 3.0, None, {"clientOrderId": "m1"}
                )  # 2 levels, rest expires
                order = v.create_order("BTC/USDT", "limit", "sell", 1.0, 150.0, {"clientOrderId": "l1"})
                v.cancel_order(order["id"])
                updates = [parser.parse(json.loads(await asyncio.wait_for(ws.recv(), 10))) for _ in range(6)]
        finally:
            await stream.stop()
        assert [(u.client_order_id, u.status, u.filled, u.last_quantity, u.last_price) for u in updates] == [
            ("m1", "open", 0.0, 0.0, 0.0),
            ("m1", "open", 1.0, 1.0, 101.0),
            ("m1", "open", 2.0, 1.0, 102.0),
            ("m1", "expired", 2.0, 0.0, 0.0),  # the remainder the book could not take
            ("l1", "open", 0.0, 0.0, 0.0),
            ("l1", "canceled", 0.0, 0.0, 0.0),
        ]
        trades = [u.trade_id for u in updates if u.trade_id]
        first = v.fetch_order("1")
        assert [t["id"] for t in first["trades"]] == trades  # the REST reply's trade ids
        assert updates[1].order_id == first["id"] and updates[1].fee_currency == "USDT"

    asyncio.run(main())


def test_from_a_thread_beside_a_synchronous_desk() -> None:
    v = venue()
    stream = PaperStream(v, SYMBOLS)
    stream.start_thread()
    try:
        with connect_sync(f"{stream.url}/stream?streams=btcusdt@bookTicker") as ws:
            v.set_book("BTC/USDT", bids=[(99.5, 1.0)], asks=[(100.5, 1.0)])  # this thread, not the server's
            message = json.loads(ws.recv(timeout=10))
        assert message["stream"] == "btcusdt@bookTicker" and message["data"]["b"].startswith("99.5")
        with pytest.raises(ConfigError, match="thread already"):
            stream.start_thread()
    finally:
        stream.stop_thread()
    stream.stop_thread()  # twice: nothing more to stop


def test_rest_snapshot_and_refusals() -> None:
    v = venue()
    stream = PaperStream(v)
    stream.start_thread()
    try:
        v.set_book("BTC/USDT", bids=[(99.0, 5.0), (98.0, 1.0)], asks=[(101.0, 1.0)])
        with urllib.request.urlopen(f"{stream.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=1") as reply:
            body = json.loads(reply.read())
        assert body == {
            "lastUpdateId": 2,  # the book it had when the stream began, then this one
            "bids": [["99.000000000000", "5.000000000000"]],
            "asks": [["101.000000000000", "1.000000000000"]],
        }
        for path, code in (
            ("/api/v3/depth?symbol=NOPE", 400),
            ("/api/v3/depth?symbol=BTCUSDT&limit=x", 400),
            ("/nope", 404),
        ):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(f"{stream.rest_url}{path}")
            assert caught.value.code == code
            caught.value.close()
        with connect_sync(f"{stream.url}/elsewhere") as ws, pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        with connect_sync(f"{stream.url}/ws") as ws:
            ws.send("not json")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
        with connect_sync(f"{stream.url}/ws") as ws:
            ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth"], "id": 3}))
            assert json.loads(ws.recv(timeout=10)) == {"result": None, "id": 3}
            ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 4}))
            assert json.loads(ws.recv(timeout=10)) == {"result": ["btcusdt@depth"], "id": 4}
            ws.send(json.dumps({"method": "WHAT", "id": 5}))
            assert "error" in json.loads(ws.recv(timeout=10))
    finally:
        stream.stop_thread()


def test_a_client_too_far_behind_is_cut_off_and_the_others_go_on() -> None:
    async def main() -> None:
        v = venue()
        stream = PaperStream(v, max_queued=2)
        await stream.start()
        try:
            async with connect(f"{stream.url}/stream?streams=btcusdt@bookTicker") as ws:
                await asyncio.sleep(0.05)
                for k in range(5):  # in one go: the writer cannot send in between
                    v.set_book("BTC/USDT", bids=[(90.0 + k, 1.0)], asks=[(110.0, 1.0)])
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
            assert stream.disconnected_slow == 1
            async with connect(f"{stream.url}/stream?streams=btcusdt@bookTicker") as ws:
                await asyncio.sleep(0.05)
                v.set_book("BTC/USDT", bids=[(95.5, 1.0)], asks=[(110.0, 1.0)])
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["data"]["b"].startswith("95.5")
        finally:
            await stream.stop()

    asyncio.run(main())


@pytest.mark.parametrize("bad", [{"port": 70000}, {"max_queued": 0}, {"venue": object()}])
def test_bad_arguments_are_refused(bad: dict[str, Any]) -> None:
    args: dict[str, Any] = {"venue": venue(), **bad}
    with pytest.raises(ConfigError):
        PaperStream(args.pop("venue"), **args)
