"""Reconciliation: what the venues hold, brought into the order manager's view.

For every open order it asks the venues of its legs: a leg whose placement is unknown (a
timeout, a garbage reply, an exception while it was being placed) is looked for by client
order id among the venue's open orders, then among its recently closed ones (when the
adapter offers ``fetch_closed_orders``); found, it is adopted with its fills; found in
neither, it was never placed. Known legs are fetched, so fills missed meanwhile are
applied. An order with nothing left working at any venue ends, and what it still holds
in the risk ledger is released. Open orders a venue holds that no order here sent are
reported (and canceled, if asked). Such orders may be another order manager's on the
same venue account (another worker of the desk): cancel them only where one manager
trades each account.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot4.errors import CircuitOpenError, ConfigError, ExchangeError, ExchangeReplyError
from bot4.orders.report import parse_report
from bot4.orders.status import OrderEvent, OrderStatus

if TYPE_CHECKING:
    from bot4.orders.manager import Flow, ManagedOrder, OrderManager

__all__ = ["Reconciliation", "conclude", "find_leg_flow", "reconcile_flow"]


@dataclass(frozen=True, kw_only=True)
class Reconciliation:
    """What :meth:`bot4.OrderManager.reconcile` found and did."""

    adopted: tuple[str, ...] = ()
    """Orders with a leg whose placement was unknown and that the venue holds (or held)."""
    never_placed: tuple[str, ...] = ()
    """Orders with a leg the venue never placed."""
    still_unknown: tuple[str, ...] = ()
    """Orders with a leg the venue could not tell about (unreachable, or no closed-order history)."""
    ended: tuple[str, ...] = ()
    """Orders that ended because nothing was left working for them."""
    fills: int = 0
    """Fills applied that had not been seen."""
    foreign: tuple[tuple[str, str], ...] = ()
    """(venue, venue order id) of open orders no order here sent."""
    canceled_foreign: tuple[tuple[str, str], ...] = ()
    """Those of them canceled (``cancel_foreign=True``)."""
    errors: tuple[str, ...] = field(default=())
    """Venues that could not be asked, with why."""


def _listing(venue: str, reply: Any, what: str) -> list[Mapping[str, Any]]:
    if isinstance(reply, (str, bytes)) or not isinstance(reply, Sequence):
        raise ExchangeReplyError(venue, what, f"expected a list of orders, got {reply!r:.80}")
    return [raw for raw in reply if isinstance(raw, Mapping)]


def reconcile_flow(om: OrderManager, *, cancel_foreign: bool, sweep: bool = False) -> Flow[Reconciliation]:
    """The reconciliation of ``om`` (see the module); yields venue requests. ``sweep``: list the
    open orders of every venue for every symbol the desk's ledger knows, not only for the
    symbols of this manager's open orders (a start-up finds what an earlier run left)."""
    for name, value in (("cancel_foreign", cancel_foreign), ("sweep", sweep)):
        if not isinstance(value, bool):
            raise ConfigError(name, f"expected True or False, got {value!r}")
    adopted: list[str] = []
    never: list[str] = []
    unknown: list[str] = []
    ended: list[str] = []
    errors: list[str] = []
    foreign: list[tuple[str, str]] = []
    canceled: list[tuple[str, str]] = []
    fills_before = sum(len(m.tracked.fills) for m in om.orders())
    open_orders = om.open_orders()
    known_ids = {m.id for m in om.orders()}
    symbols_by_venue: dict[str, set[str]] = {}
    if sweep:
        desk_symbols = set(om._risk.snapshot().positions)
        for venue in om.venues:
            symbols_by_venue[venue] = set(desk_symbols)
    for managed in open_orders:
        for venue in (*managed.legs, *managed.unknown_legs):
            symbols_by_venue.setdefault(venue, set()).add(managed.tracked.order.symbol)
    listed: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for venue, symbols in symbols_by_venue.items():
        for symbol in sorted(symbols):
            try:
                reply = yield ("call", venue, "fetch_open_orders", (symbol,))
                listed[venue, symbol] = _listing(venue, reply, "open orders")
            except (ExchangeError, CircuitOpenError) as exc:
                errors.append(f"{venue}: {exc}")
    for managed in open_orders:
        order = managed.tracked.order
        for venue in sorted(managed.unknown_legs):
            if (venue, order.symbol) not in listed:
                unknown.append(managed.id)  # its venue could not list its open orders
                continue
            try:
                outcome = yield from find_leg_flow(om, managed, venue, listed[venue, order.symbol])
            except (ExchangeError, CircuitOpenError) as exc:
                errors.append(f"{venue}: {exc}")
                outcome = "unknown"
            {"adopted": adopted, "never": never, "unknown": unknown}[outcome].append(managed.id)
        for venue, venue_id in list(managed.legs.items()):
            if not managed.tracked.is_open or venue not in managed.open_legs:
                continue
            try:
                reply = yield ("call", venue, "fetch_order", (venue_id, order.symbol))
                om._absorb(managed, venue, parse_report(venue, reply, order.quantity))
            except (ExchangeError, CircuitOpenError) as exc:
                errors.append(f"{venue}: {exc}")
        if conclude(om, managed):
            ended.append(managed.id)
    for (venue, _symbol), rows in listed.items():
        for raw in rows:
            if raw.get("clientOrderId") in known_ids:
                continue
            venue_id = str(raw.get("id"))
            foreign.append((venue, venue_id))
            if cancel_foreign:
                try:
                    yield ("call", venue, "cancel_order", (venue_id, raw.get("symbol")))
                    canceled.append((venue, venue_id))
                except (ExchangeError, CircuitOpenError) as exc:
                    errors.append(f"{venue}: cancel {venue_id}: {exc}")
    return Reconciliation(
        adopted=tuple(adopted),
        never_placed=tuple(never),
        still_unknown=tuple(dict.fromkeys(unknown)),
        ended=tuple(ended),
        fills=sum(len(m.tracked.fills) for m in om.orders()) - fills_before,
        foreign=tuple(foreign),
        canceled_foreign=tuple(canceled),
        errors=tuple(errors),
    )


def find_leg_flow(
    om: OrderManager, managed: ManagedOrder, venue: str, open_rows: list[Mapping[str, Any]] | None = None
) -> Flow[str]:
    """Look for ``managed``'s leg at ``venue``, whose placement went unanswered, by client order
    id: among the venue's open orders (``open_rows``, if listed already), then among its
    recently closed ones (when the adapter offers them). Found, it is adopted with its fills;
    in neither, it was never placed. Returns ``"adopted"``, ``"never"`` or ``"unknown"``
    (the venue keeps no closed orders to ask).

    Raises:
        ExchangeError, CircuitOpenError: the venue could not be asked.
    """
    order = managed.tracked.order
    if open_rows is None:
        reply = yield ("call", venue, "fetch_open_orders", (order.symbol,))
        open_rows = _listing(venue, reply, "open orders")
    found = _by_client_id(open_rows, order.client_order_id)
    if found is None:
        if not om._closed_orders_known(venue):
            return "unknown"
        reply = yield ("call", venue, "fetch_closed_orders", (order.symbol,))
        found = _by_client_id(_listing(venue, reply, "closed orders"), order.client_order_id)
        if found is None:
            managed.unknown_legs -= {venue}
            managed.reason = f"{venue} never placed it"
            return "never"
    om._absorb(managed, venue, parse_report(venue, found, order.quantity))
    return "adopted"


def _by_client_id(rows: list[Mapping[str, Any]] | None, client_order_id: str) -> Mapping[str, Any] | None:
    for raw in rows or ():
        if raw.get("clientOrderId") == client_order_id:
            return raw
    return None


def conclude(om: OrderManager, managed: ManagedOrder) -> bool:
    """End an open order with nothing working for it at any venue; True if it ended."""
    tracked = managed.tracked
    if (
        not tracked.is_open
        or managed.open_legs
        or managed.unknown_legs
        or managed.pending_legs
        or managed.emulated
        or managed.placing is not None
    ):
        return False
    now = om._now_ns()
    if tracked.status is OrderStatus.SUBMITTED and not managed.legs:
        tracked.apply(OrderEvent.REJECTED, now, managed.reason or "no venue holds it")
    else:
        tracked.apply(OrderEvent.CANCELED, now, managed.reason or "no leg left working")
    om._finish(managed)
    return True
