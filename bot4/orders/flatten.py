"""Flattening: what an order manager does while the kill switch is tripped to flatten.

While the desk's trading state is FLATTENING (``risk.kill_switch.trip(reason,
flatten=True)``, or a drawdown or daily-loss trip with ``RiskLimits(flatten_on_kill=True)``),
every operation of an order manager — a submit, a mark, a poll, a cancel, a reconcile, or
:meth:`bot4.OrderManager.flatten` itself — first takes one flattening step (one at a
time: an operation that starts while a step is under way does not start another):

1. every open order it sent, other than its closing orders, is canceled at its venue(s)
   (entries, resting exits, emulated stops); an order whose cancel its venue refuses is
   fetched, in case it ended there unseen;
2. for each position it holds at a venue (per symbol and venue, netted over its
   strategies), a reduce-only market order for the whole quantity is sent to that venue,
   unless a closing order for it is still working (one whose placement went unanswered is
   looked for at its venue first). The close is booked to the strategy that holds the
   position (to ``bot4.flatten`` when several strategies hold parts of it).

The step is level-triggered: a cancel a venue refused, or a close that was rejected or
only partly filled, is tried again at the next operation, until the manager holds nothing;
a step stops as soon as the kill switch is reset. Closing orders pass the risk check as
orders that reduce a position (FLATTENING admits those and nothing else, whatever rules
are registered), against the desk-wide position with what is already reserved, so
managers in several processes closing one position never sell more than it together. A
close the risk check denies (positions at two venues that offset each other leave the
desk nothing net to reduce) is not sent again until the desk's position in that symbol
changes: such positions are left for the operator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot4.errors import CircuitOpenError, ExchangeError
from bot4.orders.model import Order, OrderType, Side
from bot4.orders.reconcile import conclude, find_leg_flow
from bot4.orders.status import OrderStatus

if TYPE_CHECKING:
    from bot4.orders.manager import Flow, ManagedOrder, OrderManager

__all__ = ["flatten_flow"]

_DUST = 1e-12  # a position this small (in units) is flat
_SHARED = "bot4.flatten"  # the strategy of a close of a position several strategies hold


def flatten_flow(om: OrderManager, *, prefetch: bool, by_hand: bool) -> Flow[list[ManagedOrder]]:
    """One flattening step of ``om`` (see the module); returns the closing orders it sent.
    ``by_hand``: asked for (:meth:`OrderManager.flatten`), so taken whatever the trading state."""
    closing = om._closing
    closing_ids = set(closing.values())
    for managed in om.open_orders():
        if not (by_hand or om._flattening()):
            return []  # the kill switch was reset meanwhile
        if managed.id in closing_ids:
            continue
        yield from om._cancel_flow(managed.id)
        if managed.tracked.is_open and managed.legs:  # refused: ended at its venue unseen?
            yield from om._poll_order_flow(managed)
    sent: list[ManagedOrder] = []
    for (symbol, venue), (quantity, strategy) in _held(om).items():
        working = om._orders.get(closing.get((symbol, venue), ""))
        if working is not None and working.tracked.is_open:
            for unknown in sorted(working.unknown_legs):  # its placement went unanswered: is it there?
                try:
                    yield from find_leg_flow(om, working, unknown)
                except (ExchangeError, CircuitOpenError):
                    pass
            conclude(om, working)  # ended, if nothing is left working for it
            if working.tracked.is_open:
                continue
        desk = om._risk._ledger.position(symbol)
        if working is not None and working.status is OrderStatus.DENIED and om._denied_at.get(symbol) == desk:
            continue  # denied by risk, and nothing has changed since
        if not (by_hand or om._flattening()):
            break
        current = _held(om).get((symbol, venue))  # the steps before may have changed it
        if current is None:
            continue
        quantity = current[0]
        close = Order(
            symbol=symbol,
            side=Side.SELL if quantity > 0 else Side.BUY,
            quantity=abs(quantity),
            type=OrderType.MARKET,
            reduce_only=True,
            strategy=strategy,
        )
        closing[(symbol, venue)] = close.client_order_id
        placed = yield from om._submit_flow(close, prefetch=prefetch, venue=venue)
        if placed.status is OrderStatus.DENIED:
            om._denied_at[symbol] = desk
        sent.append(placed)
    return sent


def _held(om: OrderManager) -> dict[tuple[str, str], tuple[float, str]]:
    """(symbol, venue) -> (net quantity, the strategy to book its close to), for positions not flat."""
    held: dict[tuple[str, str], tuple[float, str]] = {}
    for view in om.positions():
        if abs(view.quantity) <= _DUST:
            continue
        key = (view.key.symbol, view.key.venue)
        quantity, owner = held.get(key, (0.0, view.key.strategy))
        held[key] = (quantity + view.quantity, owner if owner == view.key.strategy else _SHARED)
    return {key: value for key, value in held.items() if abs(value[0]) > _DUST}
