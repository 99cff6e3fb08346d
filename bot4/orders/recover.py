"""Orders a rebuilt desk held open: taken back from the journal, then reconciled with the venues.

After ``Core.create(journal=...)`` rebuilt a desk, the orders its journal holds open are
somewhere at the venues (or never got there). :func:`adopt_flow` makes each an order of
this manager again: what is left of it reserved again (past the rules: it is already out),
the fills the journal holds applied to its record (not to the ledger, which has them), and
every venue asked for it by client order id, as for a placement whose answer was lost. New
risk waits until every one is found or ruled out; no order is sent again.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from bot4.errors import Bot4Error, InvalidOrderError, JournalError, LockTimeoutError
from bot4.journal.recovery import OpenOrder
from bot4.orders.model import Order, OrderType
from bot4.orders.protect import STOP_TYPES
from bot4.orders.reconcile import Reconciliation, reconcile_flow
from bot4.orders.status import OrderEvent
from bot4.orders.tracked import Fill
from bot4.orders.venue_calls import Flow
from bot4.risk.decision import Decision
from bot4.shm.events import EventRing
from bot4.shm.lock import OwnerLock

if TYPE_CHECKING:
    from bot4.orders.manager import ManagedOrder, OrderManager

__all__ = ["recover_flow"]

log = logging.getLogger("bot4.orders")


def _order(open_order: OpenOrder) -> Order:
    fields = {
        "symbol": open_order.symbol,
        "side": open_order.side,
        "quantity": open_order.quantity,
        "client_order_id": open_order.client_order_id,
        "strategy": open_order.strategy,
    }
    try:
        return Order(
            **fields,  # type: ignore[arg-type]
            type=open_order.type,
            price=open_order.limit_price,
            stop_price=open_order.stop_price,
        )
    except InvalidOrderError:  # a journal of an earlier version: what it became at the venue is asked for
        kind = OrderType.LIMIT if open_order.limit_price is not None else OrderType.MARKET
        return Order(**fields, type=kind, price=open_order.limit_price)  # type: ignore[arg-type]


def _adopt(om: OrderManager, open_order: OpenOrder) -> ManagedOrder | None:
    from bot4.orders.manager import ManagedOrder

    if open_order.client_order_id in om._orders:
        return None  # adopted already (a recovery retried)
    order = _order(open_order)
    reservation = om._risk._restore_reservation(order, open_order.left, open_order.price)
    if reservation is None:
        log.error("recovered order %s: the ledger has no room to reserve it again", order.client_order_id)
    now = om._now_ns()
    tracked = om._tracked(order)
    tracked.apply(OrderEvent.SUBMITTED, now, "recovered from the journal")
    for trade_id, quantity, price, fee in open_order.fills:
        venue = trade_id.partition(":")[0]
        tracked.fill(Fill(trade_id=trade_id, quantity=quantity, price=price, fee=fee, venue=venue), now)
    lost = open_order.quantity - open_order.left - math.fsum(f[1] for f in open_order.fills)
    if lost > 1e-9 * max(1.0, open_order.quantity):  # fills the ledger has whose records were lost
        if len(om.venues) != 1:
            raise JournalError(
                f"{lost} of it filled with records lost (a full journal ring), at a venue the journal cannot "
                "tell: reconcile it by hand"
            )
        venue = om.venues[0]
        fill = Fill(trade_id=f"{venue}:lost-records", quantity=lost, price=open_order.price, fee=0.0, venue=venue)
        tracked.fill(fill, now)  # counted, so the venue's report of those trades is not applied again
    emulated = order.type in STOP_TYPES and not any(
        om._venues[v].capabilities.get("createStopOrder") for v in om.venues
    )
    managed = ManagedOrder(
        tracked,
        decision=Decision((), reservation),
        unknown_legs=frozenset() if emulated else frozenset(om.venues),  # an emulated stop was at no venue
        reason="recovered from the journal",
    )
    om._orders[order.client_order_id] = managed
    if emulated:  # its trigger is watched on marks again, as when it was placed
        tracked.apply(OrderEvent.ACCEPTED, now, "trigger watched on marks (recovered)")
        managed.emulated = True
        om._protection.hold(managed)
    return managed


def recover_flow(om: OrderManager) -> Flow[Reconciliation]:
    """Adopt the recovered orders and reconcile; clear the desk's recovery once none is unknown.

    One order manager adopts them: it keeps the desk's recovery lock until every order is
    accounted for, and only it may call again (after a venue that could not answer); any
    other, in this process or another, is told so. The lock of one that died is taken over.
    """
    journal = om._core.journal
    if journal is None or not journal.recovering:
        return Reconciliation()
    context = om._core._context
    segment = context.segment
    ring = EventRing(segment.region, segment.layout)
    lock = OwnerLock(segment.region, ring.recovery_lock, context.ident, timeout=0.0)
    adopter = context.recovering_manager
    if segment.region.load(ring.recovery_lock) != context.ident or adopter is None:
        try:
            lock.acquire()
        except LockTimeoutError:
            return Reconciliation(errors=("another process is reconciling the recovered orders",))
        context.recovering_manager = adopter = om
    if adopter is not om:
        return Reconciliation(errors=("another order manager of this process is reconciling the recovered orders",))
    done = False
    try:
        if not ring.recovering:
            done = True
            return Reconciliation()
        for open_order in journal.pending_orders():
            try:
                _adopt(om, open_order)
            except Bot4Error as e:
                log.error("recovered order %s cannot be adopted: %s", open_order.client_order_id, e)
                return Reconciliation(errors=(f"{open_order.client_order_id}: {e}",))
        result: Reconciliation = yield from reconcile_flow(om, cancel_foreign=False, sweep=True)
        if not result.still_unknown and not result.errors:
            ring.set_recovering(0)
            done = True
            log.warning("the recovered orders are reconciled: new risk is allowed again")
        return result
    finally:
        if done:
            context.recovering_manager = None
            lock.release()
