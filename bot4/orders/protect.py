"""Protective orders: stops bot4 emulates, and brackets around every filled entry.

**Emulated stops.** A STOP or STOP_LIMIT order for which no venue declares stop orders is
held here (ACCEPTED, "emulated"), its trigger watched on :meth:`OrderManager.mark`: a buy
stop fires at a mark at or above its trigger, a sell stop at or below. Fired, it is
TRIGGERED and routed as the market (stop) or limit (stop-limit) order it becomes. The
trigger is also written to the segment (:mod:`bot4.orders.triggers`): when the worker that
placed it dies, the next mark that reaches it in any other worker fires it there.

**Brackets** (``OrderManager(protect=True)``). Each fill of an entry order that names a
``stop_loss`` (and optionally a ``take_profit``) gets its exits for the filled quantity: a
reduce-only stop at the stop-loss and a reduce-only limit at the take-profit, sent (or
emulated) as soon as the fill is known, so quantities follow partial fills. The two exits
of a fill are one-cancels-other and hold one reservation (the stop's: only one of them can
execute): when one fills (in part or whole), the other is canceled and, while the first
still has quantity open, replaced by one for that quantity. An exit whose pair is over but
whose cancel its venue refused is canceled again at every later operation; a stop that
fires and fills only in part before it ends is armed again for the rest.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot4.orders.model import Order, OrderType, Side
from bot4.orders.status import OrderStatus

if TYPE_CHECKING:
    from bot4.orders.manager import Flow, ManagedOrder, OrderManager

__all__ = ["Protection", "triggered_form"]

STOP_TYPES = (OrderType.STOP, OrderType.STOP_LIMIT)
log = logging.getLogger("bot4.orders")


def triggered_form(order: Order) -> Order:
    """The order a fired stop becomes: market (stop) or limit (stop-limit), same id and quantity."""
    kind = OrderType.MARKET if order.type is OrderType.STOP else OrderType.LIMIT
    return dataclasses.replace(order, type=kind, stop_price=None)


def _reached(order: Order, price: float) -> bool:
    assert order.stop_price is not None
    return price >= order.stop_price if order.side is Side.BUY else price <= order.stop_price


class Protection:
    """The emulated stops and the bracket links of one order manager."""

    def __init__(self, om: OrderManager, *, brackets: bool) -> None:
        self._om = om
        self._brackets = brackets
        self._held: dict[str, dict[str, tuple[ManagedOrder, Order]]] = {}  # symbol -> id -> (stop, as it fires)
        self._partner: dict[str, str] = {}  # exit id -> the other exit of its pair
        self.due: deque[Callable[[], Flow[object]]] = deque()
        """Protective work made due, run by the order manager's driver after each operation."""
        self.stale: set[str] = set()
        """Exits whose pair is over but whose cancel a venue refused (see :meth:`queue_retries`)."""
        self._stops: set[str] = set()  # the protective stops placed here (re-armed for what they leave)

    # ------------------------------------------------------------------ emulated stops

    def hold(self, managed: ManagedOrder) -> None:
        """Watch ``managed``'s trigger on marks (the order it becomes is made now, off the firing
        path), and write it to the segment for the other workers should this one die."""
        order = managed.tracked.order
        self._held.setdefault(order.symbol, {})[managed.id] = (managed, triggered_form(order))
        managed.emulated = True
        reservation = managed.reservation
        index = self._om._risk._ledger.symbol_index(order.symbol)
        if reservation is not None and index is not None and not managed.trigger:
            managed.trigger = self._om._triggers.hold(order, index, reservation)
            if not managed.trigger:
                log.warning("stop %s is held by this process only: every stop-trigger record is in use", managed.id)

    def release(self, managed: ManagedOrder) -> bool:
        """Stop watching ``managed``; whether it was held."""
        managed.emulated = False
        self._unpublish(managed)
        return self._held.get(managed.tracked.order.symbol, {}).pop(managed.id, None) is not None

    def _unpublish(self, managed: ManagedOrder) -> None:
        if managed.trigger:
            self._om._triggers.free(managed.trigger)
            managed.trigger = 0

    def fired(self, symbol: str, price: float) -> list[tuple[ManagedOrder, Order]]:
        """The held stops of ``symbol`` that ``price`` reaches, with the orders they become (no longer held)."""
        held = self._held.get(symbol)
        if not held:
            return []
        fired = [pair for pair in held.values() if _reached(pair[0].tracked.order, price)]
        for managed, _ in fired:
            del held[managed.id]
            managed.emulated = False
            self._unpublish(managed)
        return fired

    def orphans(self, symbol: str, price: float) -> list[tuple[ManagedOrder, Order]]:
        """The stops of ``symbol`` that workers which died placed and ``price`` reaches, taken
        over by this manager: each a managed order here now (ACCEPTED, its reservation this
        process's; a new one reserved if the old one ended), with the order it becomes."""
        om = self._om
        index = om._risk._ledger.symbol_index(symbol)
        if index is None:
            return []
        taken = []
        for held in om._triggers.orphans(index, price):
            managed = om._adopt_stop(held)
            om._triggers.free(held.handle)
            if managed is not None:
                taken.append((managed, triggered_form(managed.tracked.order)))
        return taken

    # ------------------------------------------------------------------ brackets

    def on_fill(self, managed: ManagedOrder, quantity: float) -> None:
        """``managed`` was filled ``quantity``: protect an entry's fill, or settle an exit's pair."""
        if not self._partner and not self._brackets:
            return
        order = managed.tracked.order
        partner = self._partner.pop(managed.id, None)
        if partner is not None:
            self.due.append(lambda: self._rebalance(managed, partner))
        elif self._brackets and order.stop_loss is not None and not order.reduce_only:
            self.due.append(lambda: self._protect(managed, quantity))

    def on_end(self, managed: ManagedOrder) -> None:
        """``managed`` ended: a protective stop that fired and filled only in part (a thin book)
        is armed again for the rest, so the position it protected never goes without a stop."""
        if managed.id not in self._stops:
            return
        self._stops.discard(managed.id)
        tracked = managed.tracked
        canceled_here = bool(tracked.history) and tracked.history[-1].old is OrderStatus.PENDING_CANCEL
        if 0 < tracked.filled_quantity < tracked.order.quantity and not canceled_here and not tracked.is_open:
            self.due.append(lambda: self._rearm(managed))

    def _rearm(self, stop: ManagedOrder) -> Flow[object]:
        again = dataclasses.replace(
            stop.tracked.order, quantity=stop.tracked.remaining, client_order_id=uuid.uuid4().hex
        )
        self._stops.add(again.client_order_id)
        placed = yield from self._om._submit_flow(again, prefetch=True)
        stop.reason = f"filled {stop.tracked.filled_quantity} of {stop.tracked.order.quantity}; re-armed as {placed.id}"
        return None

    def _exits(self, entry: Order, quantity: float) -> tuple[Order, Order | None]:
        side = Side.SELL if entry.side is Side.BUY else Side.BUY
        common = dict(symbol=entry.symbol, side=side, quantity=quantity, reduce_only=True, strategy=entry.strategy)
        stop = Order(type=OrderType.STOP, stop_price=entry.stop_loss, **common)  # type: ignore[arg-type]
        take = None
        if entry.take_profit is not None:
            take = Order(type=OrderType.LIMIT, price=entry.take_profit, **common)  # type: ignore[arg-type]
        return stop, take

    def _protect(self, entry: ManagedOrder, quantity: float) -> Flow[object]:
        stop, take = self._exits(entry.tracked.order, quantity)
        self._stops.add(stop.client_order_id)
        placed = yield from self._om._submit_flow(stop, prefetch=True)
        entry.protection = (*entry.protection, stop.client_order_id)
        if take is not None and placed.tracked.is_open:  # the pair holds the stop's reservation
            self._link(placed.id, take.client_order_id)  # before the target can fill
            target = yield from self._om._submit_flow(take, prefetch=True, share=placed)
            entry.protection = (*entry.protection, take.client_order_id)
            if not target.tracked.is_open and not target.tracked.filled_quantity:
                self.forget(placed.id)  # the target never worked: the stop stands alone
        return None

    def _link(self, one: str, other: str) -> None:
        self._partner[one], self._partner[other] = other, one

    def forget(self, order_id: str) -> None:
        """Unlink the pair of exit ``order_id`` (it ended, or the user canceled it)."""
        partner = self._partner.pop(order_id, None)
        if partner is not None and self._partner.get(partner) == order_id:
            del self._partner[partner]

    def _rebalance(self, filled: ManagedOrder, partner_id: str) -> Flow[object]:
        """One exit of a pair filled: cancel the other; cover what the first still has open."""
        om = self._om
        self._partner.pop(partner_id, None)
        partner = om._orders.get(partner_id)
        if partner is None:
            return None
        if partner.tracked.is_open:
            yield from om._cancel_flow(partner_id)
            if partner.tracked.is_open:  # the venue refused the cancel
                if filled.tracked.is_open:
                    self._link(filled.id, partner_id)  # keep the pair: its next fill tries again
                else:
                    self.stale.add(partner_id)  # nothing left to protect: canceled again at every operation
                return None
        left = filled.tracked.remaining if filled.tracked.is_open else 0.0
        if left > 0:
            replacement = dataclasses.replace(partner.tracked.order, quantity=left, client_order_id=uuid.uuid4().hex)
            if replacement.type in STOP_TYPES:
                self._stops.add(replacement.client_order_id)
            self._link(filled.id, replacement.client_order_id)  # before it can fill
            placed = yield from om._submit_flow(replacement, prefetch=True, share=filled)
            if not placed.tracked.is_open and not placed.tracked.filled_quantity:
                self.forget(filled.id)
        return None

    def queue_retries(self) -> None:
        """Queue one more cancel of every exit left working after its pair was over."""
        for order_id in list(self.stale):
            managed = self._om._orders.get(order_id)
            if managed is None or not managed.tracked.is_open:
                self.stale.discard(order_id)
            else:
                self.due.append(functools.partial(self._cancel_again, order_id))

    def _cancel_again(self, order_id: str) -> Flow[object]:
        managed = self._om._orders.get(order_id)
        if managed is None or not managed.tracked.is_open:  # ended meanwhile (reconciled, filled)
            self.stale.discard(order_id)
            return None
        yield from self._om._cancel_flow(order_id)
        if not managed.tracked.is_open:
            self.stale.discard(order_id)
        return None
