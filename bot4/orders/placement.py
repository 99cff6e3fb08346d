"""Routing and placing an order: the strategy's route, checked and made exact, sent leg by
leg, and what happens when something leaves the flow (a part of the order manager)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from bot4._numbers import is_positive
from bot4.errors import (
    Bot4Error,
    CircuitOpenError,
    ConfigError,
    ExchangeError,
    ExchangeReplyError,
    ExchangeTimeoutError,
)
from bot4.orders.market import Market, market_of
from bot4.orders.model import Order, OrderType, Side, TimeInForce
from bot4.orders.report import parse_report
from bot4.orders.routing import Leg, Route, VenueInfo, required_capability
from bot4.orders.status import OrderEvent, OrderStatus
from bot4.plugins.builtin.routing import STRATEGIES as BUILTIN_STRATEGIES
from bot4.plugins.dispatch import implementations

if TYPE_CHECKING:
    from bot4.core import Core
    from bot4.orders.manager import ManagedOrder
    from bot4.orders.venue_calls import Flow
    from bot4.risk.engine import RiskEngine
    from bot4.streams.quotes import QuoteTable
    from bot4.venues.protocol import ExchangeAdapter

__all__ = ["Placement"]

_new = tuple.__new__  # a NamedTuple without its Python-level __new__
_INF = math.inf
_LEG_TOLERANCE = 1e-9  # relative: legs within it of the order's quantity add up to it; smaller legs are dust


class Placement:
    """Routing and placement (a part of the order manager)."""

    _core: Core
    _risk: RiskEngine
    _routing: str
    _venues: dict[str, ExchangeAdapter]
    _venue_rows: list[tuple[str, ExchangeAdapter, Any]]
    _latency: dict[str, float]
    _quotes: QuoteTable
    _quote_max_age_ns: int | None
    _strategies: list[Callable[..., Route | None]]
    _strategies_gen: int
    _now_ns: Callable[[], int]
    _call: Callable[..., Any]
    _finish: Callable[[ManagedOrder], None]
    _absorb: Callable[..., None]

    def _place(
        self,
        managed: ManagedOrder,
        prefetch: bool,
        in_flight: list[str],
        as_sent: Order | None = None,
        venue: str | None = None,
    ) -> Flow[ManagedOrder]:
        """Route and place a reserved order (in the form ``as_sent``, e.g. a fired stop's):
        venue after venue until one takes it, or none is left (``venue``: the only one)."""
        order, now = as_sent or managed.tracked.order, self._now_ns
        failed: set[str] = set()
        refusals: dict[str, str] = {}  # venue -> why it did not take the order
        barred = set() if venue is None else {name for name in self._venues if name != venue}
        while True:
            candidates = self._candidates(order, failed | barred if barred else failed)
            if len(candidates) == 1:  # nothing to choose: the strategy is not asked, no book is read
                route: Route | None = _new(Route, ((_new(Leg, (candidates[0].name, order.quantity)),), self._routing))
            else:
                if candidates and prefetch:
                    unreadable: set[str] = yield ("books", candidates)
                    if unreadable:
                        failed |= unreadable
                        continue
                route = self._pick(order, candidates, failed | barred) if candidates else None
            if route is None:
                why = "no venue can take the order"
                if failed:
                    why += " (" + "; ".join(refusals.get(v, f"{v}: failed") for v in sorted(failed)) + ")"
                managed.reason = why
                fresh = managed.status is OrderStatus.INITIALIZED
                event = OrderEvent.DENIED if fresh and not failed else OrderEvent.REJECTED
                if fresh and event is OrderEvent.REJECTED:
                    managed.tracked.apply(OrderEvent.SUBMITTED, now(), "routing")
                managed.tracked.apply(event, now(), why)
                self._finish(managed)
                return managed
            managed.route = route
            if managed.status is OrderStatus.INITIALIZED:
                managed.tracked.apply(OrderEvent.SUBMITTED, now(), route.strategy)
            placed_any = False
            split = len(route.legs) > 1
            if split:
                managed.pending_legs = frozenset(route.venues)
            assigned = 0.0  # what the legs before took, on their venues' lots
            for i, leg in enumerate(route.legs):
                if split:
                    if not managed.tracked.is_open:
                        break  # filled (or ended) by the legs before: nothing more is sent
                    managed.pending_legs -= {leg.venue}
                market = market_of(self._venues[leg.venue], order.symbol)
                quantity = leg.quantity
                if split and i == len(route.legs) - 1:
                    quantity = order.quantity - assigned  # the exact remainder, whatever the legs before took
                elif split and market is not None:
                    quantity = market.floor_amount(quantity)  # a leg before the last: whole lots
                if market is not None:
                    refused = market.refuses(quantity, order.price or order.stop_price)
                    if refused is not None:  # refused here, as the venue would: another venue, or released
                        failed.add(leg.venue)
                        managed.reason = refusals[leg.venue] = f"{leg.venue}: {refused}"
                        continue
                assigned += quantity
                in_flight[:] = [leg.venue]  # until the venue answered: anything else leaves the leg unknown
                managed.placing = leg.venue
                try:
                    try:
                        reply = yield ("call", leg.venue, "create_order", self._venue_args(order, quantity, market))
                    finally:
                        managed.placing = None
                    report = parse_report(leg.venue, reply, quantity)
                except (ExchangeTimeoutError, ExchangeReplyError) as exc:
                    # The venue may have placed it: never send it elsewhere too. The order stays
                    # SUBMITTED with its reservation held until it is reconciled.
                    in_flight.clear()
                    managed.unknown_legs |= {leg.venue}
                    managed.reason = f"{exc}: outcome unknown, not sent elsewhere; reconcile with the venue"
                    placed_any = True
                    continue
                except (ExchangeError, CircuitOpenError) as exc:
                    in_flight.clear()
                    failed.add(leg.venue)
                    managed.reason = refusals[leg.venue] = str(exc)
                    continue
                in_flight.clear()
                placed_any = True
                self._absorb(managed, leg.venue, report)
            managed.pending_legs = frozenset()
            if placed_any:
                tracked = managed.tracked
                if not managed.open_legs and not managed.unknown_legs and tracked.is_open:
                    # every leg is over (a market or IOC remainder canceled, a leg refused): so is the order
                    tracked.apply(OrderEvent.CANCELED, now(), managed.reason or "no leg left working")
                    self._finish(managed)
                return managed

    def _abandon(self, managed: ManagedOrder, exc: BaseException, in_flight: list[str]) -> None:
        """An exception left the submit flow: put the order in a state that says where it is.

        A venue call out when it happened (Ctrl-C, a task cancelled, an adapter's own error)
        may have placed the order: that leg is unknown, the reservation held, to be
        reconciled. Nothing sent anywhere: the order ends and its reservation is released.
        """
        tracked, now = managed.tracked, self._now_ns()
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        managed.pending_legs = frozenset()  # the legs not sent yet never will be
        try:
            if in_flight:
                managed.unknown_legs |= {in_flight[0]}
                managed.reason = f"{why} while {in_flight[0]} was placing it: outcome unknown; reconcile with the venue"
                if tracked.status is OrderStatus.INITIALIZED:
                    tracked.apply(OrderEvent.SUBMITTED, now, "routing")
                return
            if (
                managed.legs
                or managed.unknown_legs
                or not tracked.is_open
                and tracked.status is not OrderStatus.INITIALIZED
            ):
                return  # at its venue(s), or already ended: its own state says so
            managed.reason = f"not sent: {why}"
            event = OrderEvent.DENIED if tracked.status is OrderStatus.INITIALIZED else OrderEvent.REJECTED
            tracked.apply(event, now, managed.reason)
            self._finish(managed)
        except BaseException:  # never hide the exception that brought us here
            if managed.decision is not None and managed.decision.reservation is not None and not managed.legs:
                self._risk.release(managed.decision.reservation)

    def _venue_args(self, order: Order, quantity: float, market: Market | None = None) -> tuple[Any, ...]:
        """ccxt's create_order arguments: a stop goes with its trigger (``triggerPrice``), never
        without; prices on the venue's tick (a buy's down, a sell's up: never a worse price)."""
        kind = "market" if order.type is OrderType.MARKET or order.type is OrderType.STOP else "limit"
        params: dict[str, Any] = {"clientOrderId": order.client_order_id}
        price, trigger = order.price, order.stop_price
        if market is not None and market.price_step is not None:
            down = order.side is Side.BUY
            price = None if price is None else market.round_price(price, down=down)
            trigger = None if trigger is None else market.round_price(trigger, down=down)
        if trigger is not None:
            params["triggerPrice"] = trigger
        if order.time_in_force is not TimeInForce.GTC:
            params["timeInForce"] = order.time_in_force.value
        if order.reduce_only:
            params["reduceOnly"] = True
        return (order.symbol, kind, order.side.value, quantity, price, params)

    def _candidates(self, order: Order, excluded: set[str]) -> list[VenueInfo]:
        """Venues that can take ``order`` now: not excluded, capable, breaker not rejecting."""
        capability, symbol, latency, reader = required_capability(order), order.symbol, self._latency, self._call
        quoted = None if self._quote_max_age_ns is None else partial(self._quote_book, order)
        return [  # this order's own: concurrent orders never read each other's books
            VenueInfo(name, adapter.fees, adapter.capabilities, latency.get(name), reader, symbol, None, quoted)
            for name, adapter, breaker in self._venue_rows
            if name not in excluded and adapter.capabilities.get(capability, False) and not breaker.would_reject()
        ]

    def _quote_book(self, order: Order, venue: str, symbol: str) -> dict[str, list[list[float]]] | None:
        """``venue``'s top of book for ``symbol`` from the shared quote table as a one-level book,
        or None: no quote, one older than ``quote_max_age`` (or from the future: another
        clock), one without a two-sided price, or one whose top level is smaller than
        ``order`` (the book beyond the top is the venue's to tell)."""
        quote = self._quotes.get(venue, symbol)
        if quote is None:
            return None
        age = self._now_ns() - quote.receive_ns
        if not 0 <= age <= self._quote_max_age_ns:  # type: ignore[operator]
            return None
        bid, ask, bid_size, ask_size = quote.bid, quote.ask, quote.bid_size, quote.ask_size
        if not (0 < bid <= ask < _INF and 0 < bid_size < _INF and 0 < ask_size < _INF):
            return None  # NaN (never quoted), a crossed or one-sided book: ask the venue
        if (ask_size if order.side is Side.BUY else bid_size) < order.quantity:
            return None
        return {"bids": [[bid, bid_size]], "asks": [[ask, ask_size]]}

    def _pick(self, order: Order, candidates: list[VenueInfo], excluded: set[str]) -> Route | None:
        """The routing strategy's route over ``candidates`` (a venue failing as it is read is dropped)."""
        try:
            route = self._strategy_route(order, candidates)
        except (ExchangeError, CircuitOpenError) as exc:  # a venue failed while the strategy read its book
            failed = exc.venue if isinstance(exc, ExchangeError) else exc.breaker
            excluded = excluded | {failed if failed in self._venues else candidates[0].name}
            remaining = self._candidates(order, excluded)
            return self._pick(order, remaining, excluded) if remaining else None
        if route is None:
            raise ConfigError("routing", f"no routing strategy named {self._routing!r} answered")
        legs = route.legs if type(route) is Route else None
        if not legs:
            raise Bot4Error(f"routing strategy returned an invalid route {route!r}")
        names = [v.name for v in candidates]
        for leg in legs:
            if not (type(leg) is Leg and is_positive(leg.quantity) and leg.venue in names):
                raise Bot4Error(f"routing strategy {route.strategy!r} returned an invalid route {route!r}")
        if len(legs) == 1 and legs[0].quantity == order.quantity:
            return route  # the common case: already exact
        return self._exact(order, route)

    @staticmethod
    def _exact(order: Order, route: Route) -> Route:
        """``route`` with one leg per venue, no dust legs, and quantities that add up to the
        order's exactly (the last leg takes the remainder); a route that asks for another
        quantity than the order's is refused."""
        quantity, legs = order.quantity, route.legs
        total = legs[0].quantity if len(legs) == 1 else math.fsum(leg.quantity for leg in legs)
        if abs(total - quantity) > quantity * _LEG_TOLERANCE:
            raise Bot4Error(f"routing strategy {route.strategy!r} routed {total} for an order of {quantity}: {route!r}")
        if len(legs) == 1:
            return route if total == quantity else Route((Leg(legs[0].venue, quantity),), route.strategy)
        merged: dict[str, float] = {}
        for leg in route.legs:
            merged[leg.venue] = merged.get(leg.venue, 0.0) + leg.quantity
        kept = [(venue, q) for venue, q in merged.items() if q > quantity * _LEG_TOLERANCE]
        exact = [Leg(venue, q) for venue, q in kept[:-1]]
        exact.append(Leg(kept[-1][0], quantity - math.fsum(q for _, q in kept[:-1])))
        return Route(tuple(exact), route.strategy)

    def _strategy_route(self, order: Order, candidates: list[VenueInfo]) -> Route | None:
        """The first answer of the routing hook's implementations, in pluggy's order."""
        pm = self._core.plugins
        if pm.generation != self._strategies_gen:
            # a built-in strategy answers only to its own name: the others need not be asked
            self._strategies = [
                call
                for impl, call, _ in implementations(pm, "bot4_route_order")
                if impl.plugin not in BUILTIN_STRATEGIES or impl.plugin.name == self._routing
            ]
            self._strategies_gen = pm.generation
        for strategy in self._strategies:
            route = strategy(order, candidates, self._routing)
            if route is not None:
                return route
        return None
