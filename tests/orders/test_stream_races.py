"""A venue's stream racing the order manager's own calls: a leg still being sent, an amendment
that replaces the order, an older report after a newer one, garbage, a venue not routed to."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import bot4
from bot4 import (
    Core,
    ExchangeReplyError,
    Order,
    OrderManager,
    OrderStatus,
    OrderUpdate,
    PaperExchange,
    make_plugin_manager,
)
from bot4.testing import OPEN_LIMITS
from tests.streams.test_feed import until


class Held:
    """An async paper venue whose create_order (or edit_order) answers only once released."""

    def __init__(self, paper: PaperExchange, *, hold_create: bool = False) -> None:
        self.paper, self.name, self.fees, self.capabilities = paper, paper.name, paper.fees, paper.capabilities
        self.hold_create = hold_create
        self.sent = asyncio.Event()
        self.release = asyncio.Event()

    async def create_order(self, *args: Any) -> Any:
        reply = self.paper.create_order(*args)
        self.sent.set()
        if self.hold_create:
            await self.release.wait()
        return reply

    async def edit_order(self, id: str, symbol: str, type: str, side: str, *rest: Any) -> Any:
        """A cancel-replace (Binance spot's): the old order canceled, a new one (a new id) placed."""
        amount, price, params = rest
        self.paper.cancel_order(id, symbol)
        new = self.paper.create_order(symbol, type, side, amount, price, params)
        self.sent.set()
        await self.release.wait()
        return new

    async def cancel_order(self, *args: Any) -> Any:
        return self.paper.cancel_order(*args)

    async def fetch_order(self, *args: Any) -> Any:
        return self.paper.fetch_order(*args)

    async def fetch_open_orders(self, *args: Any) -> Any:
        return self.paper.fetch_open_orders(*args)

    async def fetch_balance(self) -> Any:
        return self.paper.fetch_balance()

    async def fetch_order_book(self, *args: Any) -> Any:
        return self.paper.fetch_order_book(*args)

    async def fetch_ticker(self, *args: Any) -> Any:
        return self.paper.fetch_ticker(*args)

    @bot4.hookimpl
    def bot4_exchange_adapters(self) -> list[Any]:
        return [self]


def desk() -> Core:
    core = Core.create(plugins=make_plugin_manager(entry_points=False))
    core.risk.configure(OPEN_LIMITS)
    core.risk.set_equity(100_000.0)
    core.risk.on_price("BTC/USDT", 100.0)
    return core


def update(cid: str, order_id: str, status: str, *, filled: float | None = 0.0, qty: float = 1.0) -> OrderUpdate:
    return OrderUpdate("BTC/USDT", cid, order_id, "buy", "limit", status, 98.0, qty, filled, 0.0, 0.0, 0.0, None, "")


def test_a_report_that_one_leg_ended_never_ends_an_order_whose_other_leg_is_being_sent() -> None:
    async def main() -> None:
        with desk() as core:
            a = PaperExchange("venue-a")
            a.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(100.0, 4.0)])
            b = PaperExchange("venue-b")
            b.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(100.5, 20.0)])
            core.plugins.register(Held(a))
            held_b = Held(b, hold_create=True)
            core.plugins.register(held_b)
            om = OrderManager(core, routing="split", quote_max_age=None)
            order = Order(symbol="BTC/USDT", side="buy", quantity=10.0, type="limit", price=101.0, client_order_id="s1")
            submitting = asyncio.ensure_future(om.asubmit(order))
            await held_b.sent.wait()  # leg A answered (4 filled, open), leg B is out
            managed = om.get("s1")
            a_id = managed.legs["venue-a"]
            om_update = update("s1", a_id, "expired", filled=4.0, qty=4.0)  # the stream: A's leg is over
            await om.aon_order_update("venue-a", om_update)
            assert managed.tracked.is_open  # B may still trade: the order is not over
            assert core.risk.snapshot().open_orders == 1  # nor its reservation
            held_b.release.set()
            done = await asyncio.wait_for(submitting, 10)
            assert done.status is OrderStatus.FILLED and done.tracked.filled_quantity == 10.0
            bought = sum(t["amount"] for v in (a, b) for o in v.fetch_closed_orders() for t in o["trades"])
            bought += sum(t["amount"] for v in (a, b) for o in v.fetch_open_orders() for t in o["trades"])
            assert core.risk.snapshot().positions["BTC/USDT"].quantity == bought == 10.0

    asyncio.run(main())


def test_an_older_open_report_never_reopens_a_leg_its_venue_ended() -> None:
    with desk() as core:
        a = PaperExchange("venue-a")
        a.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(100.0, 4.0)])
        b = PaperExchange("venue-b")
        b.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(100.5, 2.0)])
        core.plugins.register(a)
        core.plugins.register(b)
        om = OrderManager(core, routing="split", quote_max_age=None)
        managed = om.submit(
            Order(symbol="BTC/USDT", side="buy", quantity=10.0, type="limit", price=101.0, client_order_id="s2")
        )
        assert managed.open_legs == {"venue-a"}  # B's leg of 2 filled and closed; A's rests 4 short
        om.on_order_update("venue-b", update("s2", managed.legs["venue-b"], "open", filled=0.0, qty=2.0))  # old news
        assert managed.open_legs == {"venue-a"}
        canceled = om.cancel("s2")
        assert canceled.status is OrderStatus.CANCELED, canceled.reason


def test_an_amendment_that_replaces_the_order_is_not_ended_by_the_old_orders_cancel() -> None:
    async def main() -> None:
        with desk() as core:
            paper = PaperExchange("venue-a", capabilities={"editOrder": True})
            paper.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
            venue = Held(paper)
            core.plugins.register(venue)
            om = OrderManager(core, routing="primary", quote_max_age=None)
            managed = await om.asubmit(
                Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=98.0, client_order_id="am")
            )
            old_id = managed.legs["venue-a"]
            venue.sent.clear()
            amending = asyncio.ensure_future(om.aamend("am", price=98.5))
            await venue.sent.wait()  # replaced at the venue; its reply is slower than the stream
            await om.aon_order_update("venue-a", update("am", old_id, "canceled"))
            assert managed.tracked.is_open
            venue.release.set()
            await asyncio.wait_for(amending, 10)
            assert managed.status is OrderStatus.ACCEPTED and managed.legs["venue-a"] != old_id
            assert managed.open_legs == {"venue-a"} and core.risk.snapshot().open_orders == 1
            assert [o["id"] for o in paper.fetch_open_orders()] == [managed.legs["venue-a"]]

    asyncio.run(main())


def test_an_update_with_fields_of_the_wrong_type_is_refused_by_name(caplog: pytest.LogCaptureFixture) -> None:
    with desk() as core:
        paper = PaperExchange("venue-a")
        paper.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
        core.plugins.register(paper)
        om = OrderManager(core, routing="primary")
        managed = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=98.0))
        good = update(managed.id, managed.legs["venue-a"], "open")
        for field, value in (("trade_id", 5), ("filled", "1"), ("price", None), ("symbol", b"BTC/USDT"), ("maker", 1)):
            with pytest.raises(ExchangeReplyError, match=field if field != "maker" else "exchange_ms"):
                om.on_order_update("venue-a", good._replace(**{field: value}))
        assert managed.status is OrderStatus.ACCEPTED and managed.tracked.filled_quantity == 0


def test_follow_outlives_an_update_it_cannot_apply() -> None:
    class Garbage:
        name = "venue-a"

        def __init__(self, good: OrderUpdate) -> None:
            self.batches = [[good._replace(trade_id=7)], [good._replace(status="closed", last_quantity=1.0, filled=1.0, last_price=98.0, trade_id="t1")]]  # fmt: skip

        async def watch_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
            if self.batches:
                return self.batches.pop(0)
            await asyncio.sleep(3600)
            return []

        async def watch_ticker(self, symbol: str) -> Any: ...
        async def watch_order_book(self, symbol: str, limit: int | None = None) -> Any: ...
        async def watch_my_trades(self, symbol: str | None = None) -> Any: ...
        async def watch_balance(self) -> Any: ...
        async def close(self) -> None: ...

    async def main() -> None:
        with desk() as core:
            paper = PaperExchange("venue-a")
            paper.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
            core.plugins.register(paper)
            om = OrderManager(core, routing="primary")
            managed = await om.asubmit(Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=98.0))
            stream = Garbage(update(managed.id, managed.legs["venue-a"], "open"))
            follower = asyncio.ensure_future(om.follow(stream))  # type: ignore[arg-type]
            try:
                await until(lambda: managed.status is OrderStatus.FILLED)  # the good one after the bad one
            finally:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)

    asyncio.run(main())


def test_an_update_from_a_venue_the_order_never_went_to_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with desk() as core:
        for name in ("venue-a", "venue-b"):
            paper = PaperExchange(name)
            paper.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
            core.plugins.register(paper)
        om = OrderManager(core, routing="primary")
        managed = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=98.0))
        assert set(managed.legs) == {"venue-a"}
        stray = update(managed.id, "5", "closed", filled=1.0)._replace(last_quantity=1.0, last_price=98.0, trade_id="x")
        with caplog.at_level(logging.WARNING, "bot4.orders"):
            om.on_order_update("venue-b", stray)
        assert "does not match it" in caplog.text
        assert managed.status is OrderStatus.ACCEPTED and managed.tracked.venue == "venue-a"
