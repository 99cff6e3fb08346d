"""Flattening: what an order manager does while the kill switch is tripped to flatten.

While the desk's trading state is FLATTENING (``risk.kill_switch.trip(reason,
flatten=True)``, or a drawdown or daily-loss trip with ``RiskLimits(flatten_on_kill=True)``),
every operation of an order manager — a submit, a mark, a poll, a cancel, a reconcile, or
:meth:`bot4.OrderManager.flatten` itself — first takes one flattening step:

1. every open order it sent, other than its closing orders, is canceled at its venue(s)
   (entries, resting exits, emulated stops);
2. for each position it holds at a venue (per symbol and venue, netted over its
   strategies), a reduce-only market order for the whole quantity is sent to that venue,
   unless a closing order for it is still working. The close is booked to the strategy
   that holds the position (to ``bot4.flatten`` when several strategies hold parts of it).

The step is level-triggered: a cancel a venue refused, or a close that was denied,
rejected or only partly filled, is tried again at the next operation, until the manager
holds nothing. Closing orders pass the risk check as orders that reduce a position
(FLATTENING admits those and nothing else), against the desk-wide position with what is
already reserved, so managers in several processes closing one position never sell more
than it together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot4.order import Order, OrderType, Side

if TYPE_CHECKING:
    from bot4.orders.manager import Flow, ManagedOrder, OrderManager

__all__ = ["flatten_flow"]

_DUST = 1e-12  # a position this small (in units) is flat
_SHARED = "bot4.flatten"  # the strategy of a close of a position several strategies hold


def flatten_flow(om: OrderManager, *, prefetch: bool) -> Flow[list[ManagedOrder]]:
    """One flattening step of ``om`` (see the module); returns the closing orders it sent."""
    closing = om._closing
    closing_ids = set(closing.values())
    for managed in om.open_orders():
        if managed.id not in closing_ids:
            yield from om._cancel_flow(managed.id)
    held: dict[tuple[str, str], float] = {}
    owner: dict[tuple[str, str], str] = {}
    for view in om.positions():
        if abs(view.quantity) <= _DUST:
            continue
        key = (view.key.symbol, view.key.venue)
        held[key] = held.get(key, 0.0) + view.quantity
        owner[key] = view.key.strategy if owner.get(key, view.key.strategy) == view.key.strategy else _SHARED
    sent: list[ManagedOrder] = []
    for (symbol, venue), quantity in held.items():
        working = om._orders.get(closing.get((symbol, venue), ""))
        if abs(quantity) <= _DUST or working is not None and working.tracked.is_open:
            continue
        close = Order(
            symbol=symbol,
            side=Side.SELL if quantity > 0 else Side.BUY,
            quantity=abs(quantity),
            type=OrderType.MARKET,
            reduce_only=True,
            strategy=owner[symbol, venue],
        )
        closing[(symbol, venue)] = close.client_order_id
        sent.append((yield from om._submit_flow(close, prefetch=prefetch, venue=venue)))
    return sent
