"""The built-in routing strategies, each a plugin named ``bot4.route.<name>``.

A strategy answers only when the order manager asks for it by name (its ``routing``
setting); a user's strategy plugin may answer for any name, and runs first.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

from bot4.orders.model import Order, Side, TimeInForce
from bot4.orders.routing import Leg, Route, VenueInfo, book_cost
from bot4.plugins.hookspecs import hookimpl

__all__ = ["STRATEGIES"]


class BestPrice:
    """The venue whose book fills the whole order at the best fee-adjusted average price."""

    name = "best_price"

    @hookimpl(trylast=True)
    def bot4_route_order(self, order: Order, venues: list[VenueInfo], strategy: str) -> Route | None:
        if strategy != self.name or not venues:
            return None
        best: tuple[float, float, str] | None = None
        for v in venues:
            book = v.book()
            levels = book["asks"] if order.side is Side.BUY else book["bids"]
            filled, notional = book_cost(order, levels, v.fees.taker, order.quantity)
            if filled <= 0:
                continue
            unit = notional / filled
            score = (-filled, unit if order.side is Side.BUY else -unit, v.name)  # fill most, then price
            if best is None or score < best:
                best = score
        if best is None:
            return Route((Leg(venues[0].name, order.quantity),), self.name)
        return Route((Leg(best[2], order.quantity),), self.name)


class LowestFee:
    """The venue with the lowest fee for the order (maker fee for post-only orders)."""

    name = "lowest_fee"

    @hookimpl(trylast=True)
    def bot4_route_order(self, order: Order, venues: list[VenueInfo], strategy: str) -> Route | None:
        if strategy != self.name or not venues:
            return None
        maker = order.time_in_force is TimeInForce.POST_ONLY
        best = min(venues, key=lambda v: v.fees.maker if maker else v.fees.taker)
        return Route((Leg(best.name, order.quantity),), self.name)


class Fastest:
    """The venue with the lowest measured latency (one not measured yet counts as fastest, to learn it)."""

    name = "fastest"

    @hookimpl(trylast=True)
    def bot4_route_order(self, order: Order, venues: list[VenueInfo], strategy: str) -> Route | None:
        if strategy != self.name or not venues:
            return None
        best = min(venues, key=lambda v: -1.0 if v.latency is None else v.latency)
        return Route((Leg(best.name, order.quantity),), self.name)


class Split:
    """Across venues by depth: the cheapest fee-adjusted levels first, wherever they are."""

    name = "split"

    @hookimpl(trylast=True)
    def bot4_route_order(self, order: Order, venues: list[VenueInfo], strategy: str) -> Route | None:
        if strategy != self.name or not venues:
            return None
        buying = order.side is Side.BUY
        offers: list[tuple[float, str, float]] = []
        for v in venues:
            book = v.book()
            levels = book["asks"] if buying else book["bids"]
            for price, amount in levels:
                _, adjusted = book_cost(order, [[price, 1.0]], v.fees.taker, 1.0)
                if adjusted > 0:
                    offers.append((adjusted if buying else -adjusted, v.name, amount))
        offers.sort()
        left, legs = order.quantity, defaultdict[str, float](float)
        for _, venue, amount in offers:
            if left <= 0:
                break
            take = min(amount, left)
            legs[venue] += take
            left -= take
        if not legs:
            return Route((Leg(venues[0].name, order.quantity),), self.name)
        if left > 0:  # the books ran out: the rest goes where the best level was
            legs[offers[0][1]] += left
        order_of_venues = [v.name for v in venues]
        return Route(tuple(Leg(n, legs[n]) for n in order_of_venues if legs.get(n)), self.name)


class RoundRobin:
    """Each order to the next venue in turn."""

    name = "round_robin"

    def __init__(self) -> None:
        self._turn = itertools.count()

    @hookimpl(trylast=True)
    def bot4_route_order(self, order: Order, venues: list[VenueInfo], strategy: str) -> Route | None:
        if strategy != self.name or not venues:
            return None
        return Route((Leg(venues[next(self._turn) % len(venues)].name, order.quantity),), self.name)


class Primary:
    """The first venue (in the order manager's venue order) that can take the order."""

    name = "primary"

    @hookimpl(trylast=True)
    def bot4_route_order(self, order: Order, venues: list[VenueInfo], strategy: str) -> Route | None:
        if strategy != self.name or not venues:
            return None
        return Route((Leg(venues[0].name, order.quantity),), self.name)


STRATEGIES = (BestPrice(), LowestFee(), Fastest(), Split(), RoundRobin(), Primary())
"""One instance of every built-in routing strategy."""
