"""Smart order routing: which venue(s) an order goes to, decided by strategy plugins."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from bot4.orders.model import Order, OrderType, Side, TimeInForce
from bot4.venues.protocol import Fees

__all__ = ["Leg", "Route", "VenueInfo", "book_cost", "required_capability"]


class Leg(NamedTuple):
    """Part of a route: how much goes to one venue."""

    venue: str
    quantity: float


class Route(NamedTuple):
    """Where an order goes: one leg, or several when split. ``strategy`` names who decided."""

    legs: tuple[Leg, ...]
    strategy: str

    @property
    def venues(self) -> tuple[str, ...]:
        """The venues of the legs, in order."""
        return tuple(leg.venue for leg in self.legs)


@dataclass(eq=False, slots=True)
class VenueInfo:
    """What a routing strategy knows of a venue that could take the order."""

    name: str
    fees: Fees
    capabilities: Mapping[str, bool]
    latency: float | None
    """Measured seconds per request (an average), None before the first."""
    _reader: Callable[[str, str, str], Any] = field(repr=False)
    """Calls (venue, method, symbol) through the venue's breaker."""
    symbol: str = ""
    """The symbol of the order being routed."""
    _cached: Any = field(default=None, repr=False)
    _quoted: Callable[[str, str], dict[str, list[list[float]]] | None] | None = field(default=None, repr=False)
    """Reads (venue, symbol)'s fresh top of book from the shared quote table, None if it has none."""

    def book(self) -> dict[str, list[list[float]]]:
        """The venue's order book for the order's symbol, read once per order.

        When a feed keeps the venue's quote fresh in the shared quote table
        (``OrderManager(quote_max_age=...)``) and its top level holds the whole order, that
        top of book is the book — one level a side, no venue call. Otherwise the venue is
        asked (``fetch_order_book``, through its breaker).
        """
        if self._cached is None:
            quoted = self._quoted
            book = None if quoted is None else quoted(self.name, self.symbol)
            self._cached = self._reader(self.name, "fetch_order_book", self.symbol) if book is None else book
        return self._cached  # type: ignore[no-any-return]


def required_capability(order: Order) -> str:
    """The capability a venue needs to take ``order``."""
    if order.type in (OrderType.STOP, OrderType.STOP_LIMIT):
        return "createStopOrder"
    if order.time_in_force is TimeInForce.POST_ONLY:
        return "createPostOnlyOrder"
    return "createMarketOrder" if order.type is OrderType.MARKET else "createLimitOrder"


def book_cost(order: Order, levels: list[list[float]], fee: float, quantity: float) -> tuple[float, float]:
    """(quantity fillable, fee-adjusted notional) of taking ``quantity`` from ``levels``.

    For a buy the notional is what is paid (price x (1 + fee)); for a sell what is
    received (price x (1 - fee)). A limit order only takes levels within its price.
    """
    filled = notional = 0.0
    buying = order.side is Side.BUY
    limit = order.price if order.type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    for price, amount in levels:
        if filled >= quantity:
            break
        if limit is not None and (price > limit if buying else price < limit):
            break
        take = min(amount, quantity - filled)
        filled += take
        notional += take * price * ((1 + fee) if buying else (1 - fee))
    return filled, notional
