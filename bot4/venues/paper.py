"""A deterministic simulated venue with the ccxt-shaped adapter interface.

Each symbol has an order book of price levels; market and limit orders take liquidity
level by level (partial fills when the book runs out), limit remainders rest and fill as
maker when a later book crosses them. Maker and taker fees apply. Faults are injected on
purpose and reproducibly (a seeded generator): latency, an error rate, a timeout rate, and
outage windows on the venue's clock. Register an instance as a plugin and it offers itself
through ``bot4_exchange_adapters``.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bot4._numbers import is_number, is_positive
from bot4.clock import Clock, MonotonicClock
from bot4.errors import (
    ConfigError,
    ExchangeError,
    ExchangeTimeoutError,
    ExchangeUnavailableError,
    OrderNotFoundError,
)
from bot4.orders.market import market_of
from bot4.plugins.hookspecs import hookimpl
from bot4.venues.protocol import CAPABILITIES, Fees

__all__ = ["Faults", "PaperExchange", "PaperListener"]

Level = list[float]  # [price, amount]


@dataclass(frozen=True, kw_only=True)
class Faults:
    """What goes wrong at a :class:`PaperExchange`, on purpose."""

    latency_seconds: float = 0.0
    """Every request sleeps this long (real time) before it is served."""
    error_rate: float = 0.0
    """Share of requests refused with :class:`bot4.ExchangeError`."""
    timeout_rate: float = 0.0
    """Share of requests failing with :class:`bot4.ExchangeTimeoutError` (nothing is done)."""
    outages: tuple[tuple[float, float], ...] = field(default_factory=tuple)
    """``(start, end)`` windows, in seconds of the venue's clock, when every request fails
    with :class:`bot4.ExchangeUnavailableError`."""

    def __post_init__(self) -> None:
        for name in ("latency_seconds", "error_rate", "timeout_rate"):
            value = getattr(self, name)
            if not is_number(value) or value < 0:
                raise ConfigError(name, f"must be a finite number >= 0, got {value!r}")
        if self.error_rate + self.timeout_rate > 1:
            raise ConfigError("error_rate", "error_rate + timeout_rate must not exceed 1")
        for window in self.outages:
            if len(window) != 2 or not window[0] < window[1]:
                raise ConfigError("outages", f"each outage is (start, end) with start < end, got {window!r}")


def _levels(levels: Sequence[tuple[float, float]], *, reverse: bool) -> list[Level]:
    """A side of a book: one level per price (amounts at one price added), best first."""
    merged: dict[float, float] = {}
    for price, amount in levels:
        if amount > 0:
            merged[float(price)] = merged.get(float(price), 0.0) + float(amount)
    return [[p, merged[p]] for p in sorted(merged, reverse=reverse)]


@runtime_checkable
class PaperListener(Protocol):
    """What a paper venue tells of its changes (see :meth:`PaperExchange.listen`). Called in
    the thread that changed the venue, with the venue's own records: read them, copy what
    is kept, change nothing."""

    def book_changed(self, venue: str, symbol: str, book: Mapping[str, list[list[float]]]) -> None:
        """``symbol``'s book is now ``book`` (``bids`` and ``asks``, best first)."""

    def order_changed(
        self, venue: str, order: Mapping[str, Any], execution: str, trade: Mapping[str, Any] | None, filled: float
    ) -> None:
        """``order`` (ccxt's structure, as it is now) changed: ``execution`` is Binance's
        execution type (``NEW``, ``TRADE``, ``CANCELED``, ``EXPIRED``, ``REJECTED``,
        ``REPLACED``); ``trade`` is the fill of a ``TRADE``, and ``filled`` the quantity
        filled as of it (the trades of one match are told one by one after it)."""


class PaperExchange:
    """A simulated venue. ``name`` is also the name of its circuit breaker.

    Args:
        name: the venue's name.
        fees: maker and taker fees.
        faults: injected faults (none by default).
        clock: the clock outage windows are read on (default: monotonic).
        seed: seed of the fault generator (the same seed, the same faults).
        capabilities: overrides of the capability map (e.g. ``{"createStopOrder": True}``).
        keep_closed: how many finished orders ``fetch_order`` still finds (oldest forgotten first).
    """

    def __init__(
        self,
        name: str,
        *,
        fees: Fees | None = None,
        faults: Faults | None = None,
        clock: Clock | None = None,
        seed: int = 0,
        capabilities: Mapping[str, bool] | None = None,
        keep_closed: int = 10_000,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError("name", f"a venue name is a non-empty string, got {name!r}")
        self.name = name
        self.fees = fees if fees is not None else Fees()
        self.faults = faults if faults is not None else Faults()
        self._clock = clock if clock is not None else MonotonicClock()
        self._rng = random.Random(seed)
        self.capabilities: dict[str, bool] = {cap: True for cap in CAPABILITIES}
        self.capabilities["createStopOrder"] = False
        self.capabilities.update(capabilities or {})
        self._books: dict[str, dict[str, list[Level]]] = {}
        self.markets: dict[str, dict[str, Any]] = {}
        """Market rules by symbol, in ccxt's shape (see :meth:`set_market`)."""
        self._orders: dict[str, dict[str, Any]] = {}
        self._closed: deque[str] = deque()
        self._keep_closed = keep_closed
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self.requests = 0
        """Requests received (including those that failed)."""
        self._listeners: list[PaperListener] = []

    def listen(self, listener: PaperListener) -> None:
        """Tell ``listener`` of every change of a book and of an order from now on (a paper
        venue's stream publishes them: :class:`bot4.venues.paper_stream.PaperStream`)."""
        if not isinstance(listener, PaperListener):
            raise ConfigError("listener", f"expected a PaperListener, got {type(listener).__name__}")
        self._listeners.append(listener)

    def books(self) -> dict[str, dict[str, list[Level]]]:
        """Every symbol's book now (``bids`` and ``asks``, best first), a copy."""
        return {s: {side: [list(lv) for lv in levels] for side, levels in b.items()} for s, b in self._books.items()}

    def _book_changed(self, symbol: str) -> None:
        book = self._books[symbol]
        for listener in self._listeners:
            listener.book_changed(self.name, symbol, book)

    def _order_changed(self, order: dict[str, Any], execution: str, trade: dict[str, Any] | None = None) -> None:
        filled = order["filled"]
        if trade is not None:  # the filled quantity as of this trade (a match may have made several)
            trades = order["trades"]
            later = trades[trades.index(trade) + 1 :] if trades[-1] is not trade else ()
            filled -= sum(t["amount"] for t in later)
        for listener in self._listeners:
            listener.order_changed(self.name, order, execution, trade, filled)

    @hookimpl
    def bot4_exchange_adapters(self) -> list[PaperExchange]:
        """This venue, offered to the order manager."""
        return [self]

    # ------------------------------------------------------------------ market data

    def set_book(self, symbol: str, bids: Sequence[tuple[float, float]], asks: Sequence[tuple[float, float]]) -> None:
        """Replace the book of ``symbol`` (levels at one price are one level); resting orders the
        new book crosses fill as maker."""
        book = {"bids": _levels(bids, reverse=True), "asks": _levels(asks, reverse=False)}
        self._books[symbol] = book
        for order in list(self._orders.values()):
            if order["symbol"] == symbol and order["status"] == "open":
                if order["triggerPrice"] is not None and not order["triggered"]:
                    self._trigger(order, book)  # a stop the new book reaches becomes a taker order
                else:
                    self._match(order, book, maker=True)
        if self._listeners:
            self._book_changed(symbol)

    @staticmethod
    def _reached(order: dict[str, Any], book: dict[str, list[Level]]) -> bool:
        """Whether a stop's trigger is reached: a buy at an ask at or above it, a sell at a bid at or below."""
        trigger = order["triggerPrice"]
        if order["side"] == "buy":
            return bool(book["asks"]) and book["asks"][0][0] >= trigger
        return bool(book["bids"]) and book["bids"][0][0] <= trigger

    def _trigger(self, order: dict[str, Any], book: dict[str, list[Level]]) -> None:
        if not self._reached(order, book):
            return
        order["triggered"] = True
        self._match(order, book, maker=False)
        if order["status"] == "open" and order["type"] == "market":
            order["status"] = "canceled"  # a stop-market's remainder the book could not take
            if self._listeners:
                self._order_changed(order, "EXPIRED")
        if order["status"] != "open":
            self._closed_order(order["id"])

    def set_market(
        self,
        symbol: str,
        *,
        amount_step: float | None = None,
        price_step: float | None = None,
        min_amount: float | None = None,
        min_notional: float | None = None,
    ) -> None:
        """Publish (in ``markets``, ccxt's shape) and enforce market rules for ``symbol``: orders
        off the lot or tick, or below the minimum amount or notional, are refused."""
        for name, value in (
            ("amount_step", amount_step),
            ("price_step", price_step),
            ("min_amount", min_amount),
            ("min_notional", min_notional),
        ):
            if value is not None and not is_positive(value):
                raise ConfigError(name, f"expected a number > 0 or None, got {value!r}")
        self.markets[symbol] = {
            "symbol": symbol,
            "precision": {"amount": amount_step, "price": price_step},
            "limits": {"amount": {"min": min_amount}, "cost": {"min": min_notional}},
        }

    def _check_market(self, symbol: str, amount: float, price: float | None) -> None:
        rules = market_of(self, symbol)
        if rules is None:
            return
        if price is not None and rules.price_step is not None:
            ticks = price / rules.price_step
            if abs(ticks - round(ticks)) > 1e-9 * max(1.0, ticks):
                raise ExchangeError(self.name, f"PRICE_FILTER: price {price} is not on the tick {rules.price_step}")
        book = self._books.get(symbol)
        reference = price if price is not None else (book["asks"][0][0] if book and book["asks"] else None)
        why = rules.refuses(amount, reference)
        if why is not None:
            raise ExchangeError(self.name, f"LOT_SIZE/NOTIONAL: {why}")

    def _book(self, symbol: str) -> dict[str, list[Level]]:
        book = self._books.get(symbol)
        if book is None:
            raise ExchangeError(self.name, f"no market {symbol!r}")
        return book

    # ------------------------------------------------------------------ faults

    @property
    def faults(self) -> Faults:
        """The faults injected now (assign a new :class:`Faults` to change them)."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise ConfigError("faults", f"expected a Faults, got {type(faults).__name__}")
        self._faults = faults
        self._faulty = faults != Faults()

    def _request(self) -> None:
        self.requests += 1
        if self._faulty:
            self._inject()

    def _inject(self) -> None:
        faults = self._faults
        if faults.latency_seconds:
            time.sleep(faults.latency_seconds)
        if faults.outages:
            now = self._clock.now_ns() / 1e9
            for start, end in faults.outages:
                if start <= now < end:
                    raise ExchangeUnavailableError(self.name, f"outage until {end:.3f}s")
        if not (faults.timeout_rate or faults.error_rate):
            return
        draw = self._rng.random()
        if draw < faults.timeout_rate:
            raise ExchangeTimeoutError(self.name, "request timed out")
        if draw < faults.timeout_rate + faults.error_rate:
            raise ExchangeError(self.name, "internal error (injected)")

    # ------------------------------------------------------------------ orders

    def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Place an order; market and crossing limit orders fill at once against the book."""
        self._request()
        if type not in ("market", "limit") or side not in ("buy", "sell"):
            raise ExchangeError(self.name, f"unsupported order {type} {side}")
        params = params or {}
        trigger = params.get("triggerPrice")
        if trigger is not None:
            if not self.capabilities.get("createStopOrder"):
                raise ExchangeError(self.name, "stop orders are not supported here")
            if not is_positive(trigger):
                raise ExchangeError(self.name, f"invalid triggerPrice {trigger!r}")
        if not is_positive(amount):
            raise ExchangeError(self.name, f"invalid amount {amount!r}")
        if type == "limit" and not is_positive(price):
            raise ExchangeError(self.name, f"invalid price {price!r}")
        if self.markets:
            self._check_market(symbol, float(amount), price if type == "limit" else None)
        book = self._book(symbol)
        tif = params.get("timeInForce")
        tif = "GTC" if tif is None else str(tif).upper()
        amount = float(amount)
        order_id = str(next(self._ids))  # numeric, as a venue's own (its stream sends them as numbers)
        order: dict[str, Any] = {
            "id": order_id,
            "clientOrderId": params.get("clientOrderId"),
            "symbol": symbol,
            "type": type,
            "side": side,
            "price": price,
            "amount": amount,
            "filled": 0.0,
            "remaining": amount,
            "cost": 0.0,
            "average": None,
            "status": "open",
            "timeInForce": tif,
            "trades": [],
            "fee": {"cost": 0.0, "currency": symbol.rpartition("/")[2]},
            "triggerPrice": None if trigger is None else float(trigger),
            "triggered": trigger is None,
        }
        self._orders[order_id] = order
        listened = bool(self._listeners)
        if listened:
            self._order_changed(order, "NEW")
        if not order["triggered"]:  # a stop rests until the book reaches its trigger
            self._trigger(order, book)
            return self._report(order)
        opposite = book["asks" if side == "buy" else "bids"]
        if tif == "PO" or tif == "FOK":
            crosses = bool(opposite) and (
                type == "market" or (opposite[0][0] <= price if side == "buy" else opposite[0][0] >= price)  # type: ignore[operator]
            )
            if tif == "PO" and crosses:
                order["status"] = "rejected"
            elif tif == "FOK" and self._available(opposite, side, price if type == "limit" else None) < amount:
                order["status"] = "canceled"
        if order["status"] == "open":
            self._match(order, book, maker=False)
            if order["status"] == "open" and (type == "market" or tif == "IOC" or tif == "FOK"):
                order["status"] = "canceled"  # what could not fill now is canceled
                if listened:
                    self._order_changed(order, "EXPIRED")
        elif listened:
            self._order_changed(order, "REJECTED" if order["status"] == "rejected" else "EXPIRED")
        if order["status"] != "open":
            self._closed_order(order_id)
        return self._report(order)

    @staticmethod
    def _report(order: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``order`` for the caller (the venue's own record stays untouched)."""
        report = order.copy()
        report["trades"] = order["trades"].copy()
        return report

    def _closed_order(self, order_id: str) -> None:
        self._closed.append(order_id)
        while len(self._closed) > self._keep_closed:
            old = self._orders.get(self._closed.popleft())
            if old is not None and old["status"] != "open":
                del self._orders[old["id"]]

    def _available(self, levels: list[Level], side: str, limit: float | None) -> float:
        total = 0.0
        for price, amount in levels:
            if limit is not None and (price > limit if side == "buy" else price < limit):
                break
            total += amount
        return total

    def _match(self, order: dict[str, Any], book: dict[str, list[Level]], *, maker: bool) -> None:
        side, amount = order["side"], order["amount"]
        limit = order["price"] if order["type"] == "limit" else None
        buying = side == "buy"
        levels = book["asks" if buying else "bids"]
        fee_rate = self.fees.maker if maker else self.fees.taker
        liquidity = "maker" if maker else "taker"
        trades, order_fee = order["trades"], order["fee"]
        traded = len(trades)
        filled, cost, fees = order["filled"], order["cost"], order_fee["cost"]
        remaining = order["remaining"]
        while remaining > 1e-12 and levels:
            level = levels[0]
            level_price, level_amount = level
            if limit is not None and (level_price > limit if buying else level_price < limit):
                break
            take = remaining if remaining < level_amount else level_amount
            price = limit if maker and limit is not None else level_price
            fee = take * price * fee_rate
            trades.append(
                {
                    "id": str(next(self._trade_ids)),
                    "order": order["id"],
                    "price": price,
                    "amount": take,
                    "cost": take * price,
                    "takerOrMaker": liquidity,
                    "fee": {"cost": fee, "currency": order_fee["currency"]},
                }
            )
            filled += take
            cost += take * price
            fees += fee
            remaining = max(0.0, amount - filled)
            level_amount -= take
            if level_amount <= 1e-12:
                levels.pop(0)
            else:
                level[1] = level_amount
        order["filled"], order["cost"], order_fee["cost"] = filled, cost, fees
        if filled > 0:
            order["average"] = cost / filled
        if remaining <= 1e-12 * amount:
            remaining = 0.0
            order["status"] = "closed"
        order["remaining"] = remaining
        if self._listeners and len(trades) > traded:
            for trade in trades[traded:]:
                self._order_changed(order, "TRADE", trade)
            self._book_changed(order["symbol"])

    def cancel_order(self, id: str, symbol: str | None = None) -> dict[str, Any]:
        """Cancel an open order."""
        self._request()
        order = self._orders.get(id)
        if order is None:
            raise OrderNotFoundError(self.name, f"no order {id!r}")
        if order["status"] != "open":
            raise ExchangeError(self.name, f"order {id!r} is {order['status']}, not open")
        order["status"] = "canceled"
        if self._listeners:
            self._order_changed(order, "CANCELED")
        return self._report(order)

    def edit_order(
        self,
        id: str,
        symbol: str,
        type: str,
        side: str,
        amount: float | None = None,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Amend an open order's amount and/or limit price (ccxt's ``edit_order``); a new price
        that crosses the book trades at once."""
        self._request()
        order = self._orders.get(id)
        if order is None:
            raise OrderNotFoundError(self.name, f"no order {id!r}")
        if order["status"] != "open":
            raise ExchangeError(self.name, f"order {id!r} is {order['status']}, not open")
        if amount is not None:
            if not is_positive(amount) or amount < order["filled"]:
                raise ExchangeError(self.name, f"invalid amount {amount!r} (filled {order['filled']})")
            order["amount"] = float(amount)
            order["remaining"] = float(amount) - order["filled"]
        if price is not None:
            if order["type"] != "limit" or not is_positive(price):
                raise ExchangeError(self.name, f"invalid price {price!r}")
            order["price"] = float(price)
        if self._listeners:
            self._order_changed(order, "REPLACED")
        if order["triggered"]:
            self._match(order, self._book(order["symbol"]), maker=False)
        if order["remaining"] <= 1e-12 * order["amount"]:
            order["remaining"], order["status"] = 0.0, "closed"
        if order["status"] != "open":
            self._closed_order(id)
        return self._report(order)

    def fetch_order(self, id: str, symbol: str | None = None) -> dict[str, Any]:
        """One order."""
        self._request()
        order = self._orders.get(id)
        if order is None:
            raise OrderNotFoundError(self.name, f"no order {id!r}")
        return self._report(order)

    def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Open orders (of ``symbol``)."""
        self._request()
        return [
            self._report(o)
            for o in self._orders.values()
            if o["status"] == "open" and (symbol is None or o["symbol"] == symbol)
        ]

    def fetch_closed_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Finished orders (of ``symbol``) the venue still remembers (``keep_closed``)."""
        self._request()
        return [
            self._report(o)
            for o in self._orders.values()
            if o["status"] != "open" and (symbol is None or o["symbol"] == symbol)
        ]

    def fetch_balance(self) -> dict[str, Any]:
        """Net traded amounts per currency (the venue starts everyone at zero)."""
        self._request()
        total: dict[str, float] = {}
        for o in self._orders.values():
            base, quote = o["symbol"].split("/") if "/" in o["symbol"] else (o["symbol"], "QUOTE")
            sign = 1 if o["side"] == "buy" else -1
            total[base] = total.get(base, 0.0) + sign * o["filled"]
            total[quote] = total.get(quote, 0.0) - sign * o["cost"] - o["fee"]["cost"]
        return {"total": total, "free": dict(total), "used": {k: 0.0 for k in total}}

    def fetch_order_book(self, symbol: str, limit: int | None = None) -> dict[str, Any]:
        """The book, best levels first."""
        self._request()
        book = self._book(symbol)
        bids, asks = book["bids"], book["asks"]
        if limit is not None:
            bids, asks = bids[:limit], asks[:limit]
        return {"symbol": symbol, "bids": [[p, a] for p, a in bids], "asks": [[p, a] for p, a in asks]}

    def fetch_ticker(self, symbol: str) -> dict[str, Any]:
        """Best bid, best ask, and their mid as ``last``."""
        self._request()
        book = self._book(symbol)
        bid = book["bids"][0][0] if book["bids"] else None
        ask = book["asks"][0][0] if book["asks"] else None
        last = (bid + ask) / 2 if bid is not None and ask is not None else bid or ask
        return {"symbol": symbol, "bid": bid, "ask": ask, "last": last}

    def __repr__(self) -> str:
        return f"<PaperExchange {self.name}>"
