"""A hypothesis state machine over the order manager with adversarial venues.

The venues acknowledge, fill in parts, refuse, time out before or after placing, answer
garbage or raise their own errors, and their books move; the desk submits, cancels,
polls and reconciles. After every step, read from the outside:

* every open order holds exactly one reservation in the risk ledger, no other order any;
* the P&L book and the risk ledger hold the same position;
* an open order has a leg working at a venue, or one a venue may hold (unknown);
* ``asyncio.gather`` of many orders behaves as one after the other;
* no venue holds an order the desk did not send: each venue order carries the client id of
  an order here, at most once per venue, for at most that order's quantity.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bot4 import Core, ManualClock, Order, OrderManager, PaperExchange, make_plugin_manager
from bot4.errors import ExchangeError, ExchangeTimeoutError
from tests.risk.conftest import EPOCH, NO_LIMITS

MODES = ("normal", "refuse", "timeout_before", "timeout_after", "garbage", "raise")


class VenueBug(Exception):
    """An adapter's own error (not a bot4 one)."""


class Adversary(PaperExchange):
    """A paper venue whose next answers follow ``mode``."""

    mode = "normal"

    def create_order(self, *args: Any, **kwargs: Any) -> Any:
        mode = self.mode
        if mode == "refuse":
            raise ExchangeError(self.name, "insufficient balance")
        if mode == "timeout_before":
            raise ExchangeTimeoutError(self.name, "no answer")
        reply = super().create_order(*args, **kwargs)
        if mode == "timeout_after":
            raise ExchangeTimeoutError(self.name, "no answer")
        if mode == "garbage":
            return {"id": reply["id"], "status": "closed", "filled": -1}
        if mode == "raise":
            raise VenueBug("adapter bug")
        return reply


class OrderMachine(RuleBasedStateMachine):
    protect = False

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(EPOCH)
        self.core = Core.create(clock=self.clock, plugins=make_plugin_manager(entry_points=False))
        self.core.risk.configure(NO_LIMITS)
        self.core.risk.set_equity(10_000_000.0)
        self.core.risk.on_price("BTC/USDT", 100.0)
        self.venues = [Adversary(name, clock=self.clock) for name in ("venue-a", "venue-b")]
        for venue in self.venues:
            venue.set_book("BTC/USDT", bids=[(99.0, 3.0)], asks=[(101.0, 3.0)])
            self.core.plugins.register(venue, name=venue.name)
        self.om = OrderManager(self.core, routing="split", protect=self.protect)

    def teardown(self) -> None:
        self.core.close()
        self.core.unlink()

    @rule(venue=st.integers(0, 1), mode=st.sampled_from(MODES))
    def set_mode(self, venue: int, mode: str) -> None:
        self.venues[venue].mode = mode

    @rule(
        side=st.sampled_from(["buy", "sell"]),
        qty=st.sampled_from([0.5, 1.0, 2.5, 7.0]),
        limit=st.one_of(st.none(), st.sampled_from([95.0, 100.0, 102.0])),
    )
    def submit(self, side: str, qty: float, limit: float | None) -> None:
        kind: dict[str, object] = {"type": "market"} if limit is None else {"type": "limit", "price": limit}
        if self.protect:  # an entry with its protective stop and target
            kind.update(stop_loss=90.0, take_profit=110.0) if side == "buy" else kind.update(
                stop_loss=110.0, take_profit=90.0
            )
        order = Order(symbol="BTC/USDT", side=side, quantity=qty, **kind)  # type: ignore[arg-type]
        try:
            self.om.submit(order)
        except VenueBug:  # the order, or one of its exits, marked where it may be
            assert any(m.unknown_legs for m in self.om.open_orders())

    @rule(qtys=st.lists(st.sampled_from([0.5, 1.0, 4.0]), min_size=2, max_size=5))
    def gather(self, qtys: list[float]) -> None:
        orders = [Order(symbol="BTC/USDT", side="buy", quantity=q) for q in qtys]

        async def all_at_once() -> list[Any]:
            return await asyncio.gather(*(self.om.asubmit(o) for o in orders), return_exceptions=True)

        for order, result in zip(orders, asyncio.run(all_at_once()), strict=True):
            if isinstance(result, BaseException):
                assert isinstance(result, VenueBug), result
                assert self.om.get(order.client_order_id).unknown_legs

    @rule(venue=st.integers(0, 1), mid=st.sampled_from([94.0, 98.0, 100.0, 103.0]), depth=st.sampled_from([0.5, 3.0]))
    def move_book(self, venue: int, mid: float, depth: float) -> None:
        self.venues[venue].set_book("BTC/USDT", bids=[(mid - 1, depth)], asks=[(mid + 1, depth)])

    @precondition(lambda self: self.om.open_orders())
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        managed = data.draw(st.sampled_from(self.om.open_orders()))
        self._quietly(self.om.cancel, managed.id)

    @rule(price=st.sampled_from([85.0, 95.0, 100.0, 105.0, 115.0]))
    def mark(self, price: float) -> None:
        self._quietly(self.om.mark, "BTC/USDT", price)

    @rule(flatten=st.booleans())
    def trip(self, flatten: bool) -> None:
        self.core.risk.kill_switch.trip("machine", flatten=flatten)

    @rule()
    def reset(self) -> None:
        self.core.risk.kill_switch.reset("machine")

    @rule()
    def flatten(self) -> None:
        self._quietly(self.om.flatten)

    @rule()
    def poll(self) -> None:
        self._quietly(self.om.poll)

    @rule()
    def reconcile(self) -> None:
        self._quietly(self.om.reconcile)

    def _quietly(self, call: Any, *args: Any) -> None:
        saved = [v.mode for v in self.venues]
        for v in self.venues:  # venue calls other than placing answer normally
            v.mode = "normal"
        try:
            call(*args)
        finally:
            for v, mode in zip(self.venues, saved, strict=True):
                v.mode = mode

    @invariant()
    def each_open_order_holds_one_reservation(self) -> None:
        open_orders = [m for m in self.om.orders() if m.tracked.is_open]
        # A pair of exits shares one reservation. An exit whose pair is over but whose venue refused
        # its cancel is canceled again at every operation; its pair's reservation may have ended.
        stale = self.om._protection.stale
        held = {m.decision.reservation.id for m in open_orders if m.decision and m.decision.reservation}
        sure = {
            m.decision.reservation.id
            for m in open_orders
            if m.decision and m.decision.reservation and m.id not in stale
        }
        assert len(sure) <= self.core.risk.snapshot().open_orders <= len(held)
        for m in open_orders:  # open means something works for it, or a venue may hold it
            working = m.open_legs or m.unknown_legs or m.emulated or m.placing
            assert working, f"{m.id} is {m.status.name} with nothing working for it"

    @invariant()
    def book_and_ledger_agree(self) -> None:
        book = math.fsum(p.quantity for p in self.om.positions() if p.key.symbol == "BTC/USDT")
        ledger = self.core.risk.snapshot().positions.get("BTC/USDT")
        assert abs(book - (ledger.quantity if ledger else 0.0)) < 1e-9

    @invariant()
    def nothing_sent_that_was_not_asked(self) -> None:
        for venue in self.venues:
            seen: set[str] = set()
            for raw in venue._orders.values():
                client_id = raw["clientOrderId"]
                assert client_id not in seen, f"{venue.name} got order {client_id} twice"
                seen.add(client_id)
                assert raw["amount"] <= self.om.get(client_id).tracked.order.quantity * (1 + 1e-9)


class ProtectedOrderMachine(OrderMachine):
    """The same desk with protective exits on every entry (one-cancels-other pairs, emulated stops)."""

    protect = True


OrderMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestOrderManagerAgainstAdversaries = OrderMachine.TestCase
ProtectedOrderMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestProtectedOrdersAgainstAdversaries = ProtectedOrderMachine.TestCase
