"""Amending an open order's quantity or limit price (ccxt's ``edit_order``).

The order goes PENDING_UPDATE while the venue is asked, then UPDATED (or UPDATE_REJECTED,
back to where it was). Risk first: an amendment that raises the quantity or changes the
price is checked by a new reservation for what may still fill, taken while the old one is
still held (so it is never looser than the two together), and the old one is released
only once the venue has confirmed. An amendment that only lowers the quantity keeps the
old reservation (it covers more than the order can now fill; it is released when the
order ends). An emulated stop is amended here alone; a split order, or one whose placement
is unknown somewhere, cannot be amended (cancel it instead).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from bot4._numbers import is_positive
from bot4.errors import CircuitOpenError, ConfigError, ExchangeError
from bot4.orders.market import market_of
from bot4.orders.model import OrderType
from bot4.orders.report import parse_report
from bot4.orders.status import OrderEvent, OrderStatus

if TYPE_CHECKING:
    from bot4.orders.manager import Flow, ManagedOrder, OrderManager

__all__ = ["amend_flow"]


def amend_flow(om: OrderManager, order_id: str, quantity: float | None, price: float | None) -> Flow[ManagedOrder]:
    """The amendment of ``order_id`` (see the module); yields venue requests."""
    managed = om.get(order_id)
    tracked = managed.tracked
    order = tracked.order
    if not tracked.is_open:
        raise ConfigError("order_id", f"order {order_id!r} is {tracked.status.name}: only an open order is amended")
    if quantity is not None and not (is_positive(quantity) and quantity > tracked.filled_quantity):
        raise ConfigError("quantity", f"must be a number above the {tracked.filled_quantity} filled, got {quantity!r}")
    if price is not None and (order.type not in (OrderType.LIMIT, OrderType.STOP_LIMIT) or not is_positive(price)):
        raise ConfigError("price", f"a {order.type.value} order's limit price cannot become {price!r}")
    if managed.unknown_legs or managed.shares_with or managed.placing is not None or managed.pending_legs:
        raise ConfigError("order_id", f"order {order_id!r} is paired, being placed or unknown at a venue: cancel it")
    if not managed.emulated and len(managed.legs) != 1:
        raise ConfigError("order_id", f"order {order_id!r} is not at exactly one venue: cancel it instead")
    if not managed.emulated and order.type in (OrderType.STOP, OrderType.STOP_LIMIT):
        raise ConfigError("order_id", "a stop at its venue is not amended (an edit may drop its trigger): cancel it")
    amended = dataclasses.replace(
        order,
        quantity=order.quantity if quantity is None else float(quantity),
        price=order.price if price is None else float(price),
    )
    if amended == order:
        return managed
    now = om._now_ns
    tracked.apply(OrderEvent.PENDING_UPDATE, now(), "amend requested")
    only_lower = amended.price == order.price and amended.quantity < order.quantity
    decision = None
    if not only_lower:
        left = dataclasses.replace(amended, quantity=amended.quantity - tracked.filled_quantity)
        decision = om._risk.reserve(left, continues="amended")  # the journal knows it as the same order
        if not decision.approved:
            managed.reason = "amendment denied by risk: " + ", ".join(decision.codes)
            tracked.apply(OrderEvent.UPDATE_REJECTED, now(), managed.reason)
            return managed
    report = venue = None
    if not managed.emulated:
        ((venue, venue_id),) = managed.legs.items()
        try:
            if not om._venues[venue].capabilities.get("editOrder") or not hasattr(om._venues[venue], "edit_order"):
                raise ExchangeError(venue, "the venue does not amend orders")
            args = (venue_id, *om._venue_args(amended, amended.quantity, market_of(om._venues[venue], amended.symbol)))
            managed.placing = venue  # a venue may cancel and replace it: its stream's cancel ends nothing meanwhile
            try:
                reply = yield ("call", venue, "edit_order", args)
            finally:
                managed.placing = None
            report = parse_report(venue, reply, amended.quantity)
        except (ExchangeError, CircuitOpenError) as exc:
            if decision is not None and decision.reservation is not None:
                om._risk.release(decision.reservation)
            managed.reason = f"amendment refused: {exc}"
            if tracked.status is OrderStatus.PENDING_UPDATE:  # (it may have ended meanwhile)
                tracked.apply(OrderEvent.UPDATE_REJECTED, now(), managed.reason)
            return managed
        except BaseException:
            if decision is not None and decision.reservation is not None:
                om._risk.release(decision.reservation)
            raise
    if tracked.status is not OrderStatus.PENDING_UPDATE:  # ended (or changed) while the venue was asked
        if decision is not None and decision.reservation is not None:
            om._risk.release(decision.reservation)
        return managed
    # What the reservation holds may now exceed what the order can fill (lowered, or filled
    # while the venue was asked): it is given back when the order ends, filled or not.
    managed.over_reserved = True
    if decision is not None:
        old = managed.decision
        if old is not None and old.reservation is not None:
            om._risk.release(old.reservation)
        managed.decision = decision
    tracked.order = amended
    if managed.emulated:
        om._protection.hold(managed)  # what it becomes when it fires follows the amendment
    tracked.apply(OrderEvent.UPDATED, now(), f"quantity {amended.quantity}, price {amended.price}")
    if report is not None and venue is not None:
        om._absorb(managed, venue, report)
    return managed
