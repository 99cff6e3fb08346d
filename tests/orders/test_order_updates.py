"""Order updates pushed by a venue's stream: applied once per trade id whichever of the stream
and the REST reply comes first, never to the wrong order, never after the order ended."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bot4 import (
    ConfigError,
    Core,
    ExchangeReplyError,
    ManualClock,
    Order,
    OrderManager,
    OrderStatus,
    OrderUpdate,
    PaperExchange,
    StreamClosedError,
)
from bot4.streams.binance_ws import BinanceStreams
from bot4.streams.connection import ConnectionConfig
from bot4.venues.paper_stream import PaperStream
from tests.orders.test_stream_races import Held
from tests.streams.test_feed import until

FAST = ConnectionConfig(stall_seconds=0.5, ping_seconds=0.3, backoff_seconds=0.01, backoff_max_seconds=0.1)


def paper(core: Core, clock: ManualClock, name: str = "venue-a") -> PaperExchange:
    venue = PaperExchange(name, clock=clock)
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    core.plugins.register(venue, name=name)
    return venue


def limit(qty: float = 2.0, price: float = 100.0, cid: str = "o1") -> Order:
    return Order(symbol="BTC/USDT", side="buy", quantity=qty, type="limit", price=price, client_order_id=cid)


def update(
    managed: Any,
    *,
    status: str = "open",
    filled: float | None = 0.0,
    last: float = 0.0,
    price: float = 100.0,
    trade_id: int = -1,  # -1: no fill
    fee: float = 0.0,
    fee_currency: str | None = None,
    cid: str | None = None,
    order_id: str | None = None,
    symbol: str = "BTC/USDT",
) -> OrderUpdate:
    return OrderUpdate(
        symbol,
        managed.id if cid is None else cid,
        managed.legs.get("venue-a", "1") if order_id is None else order_id,
        "buy",
        "limit",
        status,
        100.0,
        managed.tracked.order.quantity,
        filled,
        last,
        price,
        fee,
        fee_currency,
        "" if trade_id < 0 else str(trade_id),
    )


def test_a_fill_on_the_stream_is_applied_once_and_ends_the_order(bot4_desk: Core, bot4_clock: ManualClock) -> None:
    paper(bot4_desk, bot4_clock)
    om = OrderManager(bot4_desk, routing="primary")
    managed = om.submit(limit())
    assert managed.status is OrderStatus.ACCEPTED
    partial = update(managed, filled=0.5, last=0.5, trade_id=7)
    assert om.on_order_update("venue-a", partial) is managed
    assert om.on_order_update("venue-a", partial) is managed  # a replay: nothing more
    assert managed.status is OrderStatus.PARTIALLY_FILLED and managed.tracked.filled_quantity == 0.5
    om.on_order_update("venue-a", update(managed, status="closed", filled=2.0, last=1.5, trade_id=8))
    assert managed.status is OrderStatus.FILLED and len(managed.tracked.fills) == 2
    snap = bot4_desk.risk.snapshot()
    assert snap.positions["BTC/USDT"].quantity == 2.0 and snap.open_orders == 0
    assert om.positions()[0].quantity == 2.0


def test_an_older_update_after_a_newer_one_changes_nothing(bot4_desk: Core, bot4_clock: ManualClock) -> None:
    paper(bot4_desk, bot4_clock)
    om = OrderManager(bot4_desk, routing="primary")
    managed = om.submit(limit())
    om.on_order_update("venue-a", update(managed, filled=1.0, last=0.4, trade_id=2))  # trade 1 (0.6) was missed
    assert managed.tracked.filled_quantity == pytest.approx(1.0)  # made up at the order's price
    om.on_order_update("venue-a", update(managed, filled=0.6, last=0.6, trade_id=1))  # the missed one, late
    assert managed.tracked.filled_quantity == pytest.approx(1.0)
    assert bot4_desk.risk.snapshot().positions["BTC/USDT"].quantity == pytest.approx(1.0)


def test_updates_not_for_this_managers_orders_are_ignored(
    bot4_desk: Core, bot4_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    paper(bot4_desk, bot4_clock)
    om = OrderManager(bot4_desk, routing="primary")
    managed = om.submit(limit())
    assert om.on_order_update("venue-a", update(managed, cid="someone-else", filled=1, last=1, trade_id=3)) is None
    with caplog.at_level(logging.WARNING, "bot4.orders"):
        om.on_order_update("venue-a", update(managed, order_id="999", filled=1, last=1, trade_id=3))
        om.on_order_update("venue-a", update(managed, symbol="ETH/USDT", filled=1, last=1, trade_id=3))
    assert caplog.text.count("does not match it") == 2
    assert managed.tracked.filled_quantity == 0 and managed.status is OrderStatus.ACCEPTED
    with pytest.raises(ConfigError, match="no venue"):
        om.on_order_update("venue-z", update(managed))
    with pytest.raises(ConfigError, match="OrderUpdate"):
        om.on_order_update("venue-a", {"id": 1})  # type: ignore[arg-type]


def test_an_update_without_a_client_id_finds_its_order_by_the_venues_id(
    bot4_desk: Core, bot4_clock: ManualClock
) -> None:
    paper(bot4_desk, bot4_clock)
    om = OrderManager(bot4_desk, routing="primary")
    managed = om.submit(limit())
    om.on_order_update("venue-a", update(managed, cid="", filled=None, last=2.0, trade_id=4))
    assert managed.status is OrderStatus.FILLED


def test_a_malformed_update_is_refused_and_changes_nothing(bot4_desk: Core, bot4_clock: ManualClock) -> None:
    paper(bot4_desk, bot4_clock)
    om = OrderManager(bot4_desk, routing="primary")
    managed = om.submit(limit())
    for bad in (
        update(managed, filled=5.0, last=0.5, trade_id=1),  # more than the order
        update(managed, status="bogus"),
        update(managed, filled=0.5, last=0.5, price=float("nan"), trade_id=1),
    ):
        with pytest.raises(ExchangeReplyError):
            om.on_order_update("venue-a", bad)
    assert managed.tracked.filled_quantity == 0 and managed.status is OrderStatus.ACCEPTED


def test_a_fill_after_the_order_ended_is_reported_not_applied(
    bot4_desk: Core, bot4_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    paper(bot4_desk, bot4_clock)
    om = OrderManager(bot4_desk, routing="primary")
    managed = om.submit(limit())
    om.cancel(managed.id)
    assert managed.status is OrderStatus.CANCELED
    with caplog.at_level(logging.WARNING, "bot4.orders"):
        om.on_order_update("venue-a", update(managed, filled=1.0, last=1.0, trade_id=9))
    assert "arrived after it ended" in caplog.text and managed.tracked.filled_quantity == 0
    assert bot4_desk.risk.snapshot().positions["BTC/USDT"].quantity == 0


@pytest.mark.parametrize(("currency", "fee"), [("USDT", 0.2), ("BTC", 0.001 * 100.0), (None, 0.2), ("BNB", 0.0)])
def test_fees_are_kept_in_the_quote_currency(
    bot4_desk: Core, bot4_clock: ManualClock, currency: str | None, fee: float
) -> None:
    paper(bot4_desk, bot4_clock)
    om = OrderManager(bot4_desk, routing="primary")
    managed = om.submit(limit())
    charged = 0.001 if currency == "BTC" else 0.2
    om.on_order_update("venue-a", update(managed, filled=1.0, last=1.0, trade_id=1, fee=charged, fee_currency=currency))
    assert managed.tracked.fees == pytest.approx(fee)


def test_the_stream_before_the_rest_reply_counts_the_fill_once_and_releases_once(bot4_desk: Core) -> None:
    async def main() -> None:
        venue = PaperExchange("venue-a")
        venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
        slow = Held(venue, hold_create=True)  # its REST reply waits; its stream tells the fill first
        bot4_desk.plugins.register(slow)
        stream = PaperStream(venue)
        await stream.start()
        adapter = BinanceStreams(
            "venue-a", stream.url, {"BTC/USDT": "BTCUSDT"}, user_url=stream.user_url, connection=FAST
        )
        om = OrderManager(bot4_desk, routing="primary")
        follower = asyncio.ensure_future(om.follow(adapter))
        try:
            await until(lambda: adapter.user is not None and adapter.user.ws is not None)
            await asyncio.sleep(0.05)
            order = Order(symbol="BTC/USDT", side="buy", quantity=2.0, client_order_id="fast")
            submitting = asyncio.ensure_future(om.asubmit(order))
            await slow.sent.wait()
            managed = None
            await until(lambda: "fast" in {m.id for m in om.orders()} and om.get("fast").status is OrderStatus.FILLED)
            managed = om.get("fast")
            assert not submitting.done()  # filled by the stream while the REST reply is still out
            slow.release.set()
            assert await asyncio.wait_for(submitting, 10) is managed
            assert managed.status is OrderStatus.FILLED and len(managed.tracked.fills) == 1
            assert list(om._finished).count("fast") == 1  # finished once, by the stream
            snap = bot4_desk.risk.snapshot()
            assert snap.positions["BTC/USDT"].quantity == 2.0 and snap.open_orders == 0
            assert om.positions()[0].quantity == 2.0
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await adapter.close()
            await stream.stop()

    asyncio.run(main())


def test_follow_applies_a_resting_orders_fill_without_a_poll(bot4_desk: Core) -> None:
    async def main() -> None:
        venue = PaperExchange("venue-a")
        venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
        bot4_desk.plugins.register(venue)
        stream = PaperStream(venue)
        await stream.start()
        adapter = BinanceStreams(
            "venue-a", stream.url, {"BTC/USDT": "BTCUSDT"}, user_url=stream.user_url, connection=FAST
        )
        bot4_desk.plugins.register(adapter)
        om = OrderManager(bot4_desk, routing="primary")
        follower = asyncio.ensure_future(om.follow())  # every stream named as a venue
        try:
            await until(lambda: adapter.user is not None and adapter.user.ws is not None)
            resting = await om.asubmit(limit(cid="rest"))
            assert resting.status is OrderStatus.ACCEPTED
            venue.set_book("BTC/USDT", bids=[(98.0, 5.0)], asks=[(99.5, 1.0), (100.0, 5.0)])  # crosses it
            await until(lambda: resting.status is OrderStatus.FILLED)
            assert [f.price for f in resting.tracked.fills] == [100.0, 100.0]  # maker at its limit
            assert bot4_desk.risk.snapshot().positions["BTC/USDT"].quantity == 2.0
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await adapter.close()
            await stream.stop()

    asyncio.run(main())


def test_follow_reconciles_when_the_stream_fails_so_a_missed_fill_is_found(bot4_desk: Core) -> None:
    class Failing:
        """A stream that fails once, after the fill it would have told happened."""

        name = "venue-a"
        calls = 0

        async def watch_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
            Failing.calls += 1
            if Failing.calls == 1:
                raise StreamClosedError("venue-a: the user data connection ended")
            await asyncio.sleep(3600)
            return []

        async def watch_ticker(self, symbol: str) -> Any: ...
        async def watch_order_book(self, symbol: str, limit: int | None = None) -> Any: ...
        async def watch_my_trades(self, symbol: str | None = None) -> Any: ...
        async def watch_balance(self) -> Any: ...
        async def close(self) -> None: ...

    async def main() -> None:
        venue = PaperExchange("venue-a")
        venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
        bot4_desk.plugins.register(venue)
        om = OrderManager(bot4_desk, routing="primary")
        resting = await om.asubmit(limit(cid="missed"))
        venue.set_book("BTC/USDT", bids=[(98.0, 5.0)], asks=[(100.0, 5.0)])  # fills it; nobody tells
        follower = asyncio.ensure_future(om.follow(Failing()))
        try:
            await until(lambda: resting.status is OrderStatus.FILLED)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    asyncio.run(main())


def test_follow_refuses_what_it_cannot_follow(bot4_desk: Core, bot4_clock: ManualClock) -> None:
    paper(bot4_desk, bot4_clock)
    om = OrderManager(bot4_desk, routing="primary")

    async def main() -> None:
        with pytest.raises(ConfigError, match="no stream adapter"):
            await om.follow()
        with pytest.raises(ConfigError, match="StreamAdapter"):
            await om.follow(object())  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="not a venue"):
            await om.follow(BinanceStreams("elsewhere", "ws://127.0.0.1:9", {"BTC/USDT": "BTCUSDT"}))

    asyncio.run(main())
