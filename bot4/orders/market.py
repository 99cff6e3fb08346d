"""A venue's market rules for a symbol: lot size, price tick, minimum amount and notional.

Read from an adapter's ``markets`` (ccxt's ``exchange.markets`` shape:
``markets[symbol]["precision"]["amount"|"price"]`` and
``markets[symbol]["limits"]["amount"|"cost"]["min"]``). Precision is a step (ccxt's
``TICK_SIZE`` mode, e.g. ``0.001``) unless the adapter says ``precision_mode =
"decimal_places"`` (a number of decimals, e.g. ``3``). A venue without ``markets``, or
without the symbol, has no rules bot4 checks (the venue still checks its own).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot4._numbers import is_positive

__all__ = ["Market", "market_of"]

_TOLERANCE = 1e-9  # relative: minimums this close are met
_STEPS = 1e-6  # a quantity or price within this many millionths of a step of a multiple is on it


@dataclass(frozen=True, slots=True)
class Market:
    """What a venue accepts for one symbol (None: no rule)."""

    amount_step: float | None = None
    price_step: float | None = None
    min_amount: float | None = None
    min_notional: float | None = None

    def on_step(self, quantity: float) -> bool:
        """Whether ``quantity`` is a whole number of lots."""
        step = self.amount_step
        if step is None:
            return True
        lots = quantity / step
        return abs(lots - round(lots)) <= _STEPS

    def floor_amount(self, quantity: float) -> float:
        """``quantity`` rounded down to whole lots (as the nearest float to the multiple)."""
        step = self.amount_step
        if step is None:
            return quantity
        lots = math.floor(quantity / step + _STEPS)
        return min(quantity, round(lots * step, 12))

    def round_price(self, price: float, *, down: bool) -> float:
        """``price`` on the tick: down for a buy (never pays more), up for a sell (never receives less)."""
        step = self.price_step
        if step is None:
            return price
        ticks = price / step
        whole = math.floor(ticks + _STEPS) if down else math.ceil(ticks - _STEPS)
        rounded = round(whole * step, 12)
        return min(price, rounded) if down else max(price, rounded)  # never a worse price, even by an ulp

    def refuses(self, quantity: float, price: float | None) -> str | None:
        """Why an order of ``quantity`` at ``price`` breaks these rules, or None."""
        if quantity <= 0:
            return f"amount {quantity} is less than one lot of {self.amount_step}"
        if not self.on_step(quantity):
            return f"amount {quantity} is not a multiple of the lot {self.amount_step}"
        if self.min_amount is not None and quantity < self.min_amount * (1 - _TOLERANCE):
            return f"amount {quantity} is below the minimum {self.min_amount}"
        if self.min_notional is not None and price is not None and quantity * price < self.min_notional:
            return f"notional {quantity * price:.8g} is below the minimum {self.min_notional}"
        return None


def _number(value: Any) -> float | None:
    return float(value) if is_positive(value) else None


def market_of(adapter: object, symbol: str) -> Market | None:
    """The rules ``adapter`` publishes for ``symbol``, or None."""
    markets = getattr(adapter, "markets", None)
    if type(markets) is dict and not markets:  # the common case of a venue without rules, cheaply
        return None
    if not isinstance(markets, Mapping):
        return None
    market = markets.get(symbol)
    if not isinstance(market, Mapping):
        return None
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    decimals = getattr(adapter, "precision_mode", "tick") == "decimal_places"

    def step(key: str) -> float | None:
        value = precision.get(key) if isinstance(precision, Mapping) else None
        if decimals and isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(10.0 ** -float(value))
        return _number(value)

    def minimum(key: str) -> float | None:
        entry = limits.get(key) if isinstance(limits, Mapping) else None
        return _number(entry.get("min")) if isinstance(entry, Mapping) else None

    rules = Market(
        amount_step=step("amount"),
        price_step=step("price"),
        min_amount=minimum("amount"),
        min_notional=minimum("cost"),
    )
    return None if rules == Market() else rules
