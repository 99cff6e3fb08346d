"""Positions and P&L: per symbol, venue and strategy, by average cost or FIFO, net of fees."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from bot4._numbers import is_number, is_positive
from bot4.errors import ConfigError, FillError
from bot4.orders.model import Side

__all__ = ["CostMethod", "PnlBook", "PnlTotals", "PositionKey", "PositionView"]

_EPS = 1e-12


class CostMethod(enum.Enum):
    """How the cost of what is closed is measured."""

    AVERAGE = "average"
    """Average cost of the open position."""
    FIFO = "fifo"
    """The oldest open lots close first."""


class PositionKey(NamedTuple):
    """A position is netted per symbol, venue and strategy."""

    symbol: str
    venue: str
    strategy: str


@dataclass(frozen=True, kw_only=True)
class PositionView:
    """A position at one instant."""

    key: PositionKey
    quantity: float
    """Signed: + long, - short."""
    average_price: float
    """Cost per unit of the open quantity (0 when flat)."""
    mark: float | None
    realized_pnl: float
    """Gross of fees."""
    fees: float
    unrealized_pnl: float

    @property
    def net_pnl(self) -> float:
        """realized - fees + unrealized."""
        return self.realized_pnl - self.fees + self.unrealized_pnl


class PnlTotals(NamedTuple):
    """Sums over a set of positions."""

    realized: float
    fees: float
    unrealized: float

    @property
    def net(self) -> float:
        """realized - fees + unrealized."""
        return self.realized - self.fees + self.unrealized


class _Position:
    __slots__ = ("quantity", "lots", "realized", "fees", "cost")

    def __init__(self) -> None:
        self.quantity = 0.0
        self.cost = 0.0  # signed quantity x price of what is open (average cost)
        self.lots: deque[list[float]] = deque()  # [signed quantity, price], kept for FIFO only
        self.realized = 0.0
        self.fees = 0.0

    def average(self, method: CostMethod) -> float:
        if abs(self.quantity) <= _EPS:
            return 0.0
        if method is CostMethod.AVERAGE:
            return self.cost / self.quantity
        return sum(q * p for q, p in self.lots) / self.quantity

    def apply(self, qty: float, price: float, method: CostMethod) -> float:
        """Apply a signed fill; return the realized P&L (gross of fees)."""
        position = self.quantity
        fifo = method is CostMethod.FIFO
        if position == 0 or (position > 0) == (qty > 0):
            self.quantity = position + qty
            self.cost += qty * price
            if fifo:
                self.lots.append([qty, price])
            return 0.0
        sign = 1.0 if position > 0 else -1.0
        closing = min(abs(qty), abs(position))
        if not fifo:
            realized = closing * (price - self.cost / position) * sign
        else:
            realized, left = 0.0, closing
            while left > _EPS and self.lots:
                lot = self.lots[0]
                take = min(left, abs(lot[0]))
                realized += take * (price - lot[1]) * sign
                lot[0] -= take * sign
                left -= take
                if abs(lot[0]) <= _EPS:
                    self.lots.popleft()
        rest = abs(qty) - closing
        if abs(position) - closing <= _EPS * max(1.0, abs(position)):
            self.quantity, self.cost = 0.0, 0.0
            self.lots.clear()
            if rest > _EPS:  # flipped: the remainder opens at the fill price
                self.quantity = -sign * rest
                self.cost = self.quantity * price
                if fifo:
                    self.lots.append([self.quantity, price])
        else:
            average = self.cost / position
            self.quantity = position + qty
            self.cost = sum(q * p for q, p in self.lots) if fifo else self.quantity * average
        self.realized += realized
        return float(realized)


class PnlBook:
    """Positions and P&L from fills and marks.

    Args:
        method: :attr:`CostMethod.AVERAGE` (default) or :attr:`CostMethod.FIFO`.
    """

    def __init__(self, method: CostMethod = CostMethod.AVERAGE) -> None:
        if not isinstance(method, CostMethod):
            raise ConfigError("method", f"expected a CostMethod, got {method!r}")
        self.method = method
        self._positions: dict[PositionKey, _Position] = {}
        self._marks: dict[str, float] = {}

    def on_fill(
        self,
        symbol: str,
        side: Side,
        quantity: float,
        price: float,
        *,
        fee: float = 0.0,
        venue: str = "",
        strategy: str = "default",
    ) -> float:
        """Apply a fill; return its realized P&L (gross of the fee). The fill price becomes the mark."""
        if not is_positive(quantity):
            raise FillError(f"quantity must be a finite number > 0, got {quantity!r}")
        if not is_positive(price):
            raise FillError(f"price must be a finite number > 0, got {price!r}")
        if not is_number(fee):
            raise FillError(f"fee must be a finite number, got {fee!r}")
        signed = float(quantity) if side is Side.BUY else -float(quantity)
        return self._fill(symbol, signed, float(price), float(fee), venue, strategy)

    def _fill(self, symbol: str, signed: float, price: float, fee: float, venue: str, strategy: str) -> float:
        """:meth:`on_fill` of checked floats (``signed``: + bought, - sold)."""
        position = self._positions.get((symbol, venue, strategy))  # type: ignore[call-overload]  # a tuple finds its PositionKey
        if position is None:
            position = self._positions[PositionKey(symbol, venue, strategy)] = _Position()
        realized: float = position.apply(signed, price, self.method)
        position.fees += fee
        self._marks[symbol] = price
        return realized

    def on_mark(self, symbol: str, price: float) -> None:
        """Set the mark of ``symbol`` (for unrealized P&L)."""
        if not is_positive(price):
            raise ConfigError("price", f"must be a finite number > 0, got {price!r}")
        self._marks[symbol] = float(price)

    def mark(self, symbol: str) -> float | None:
        """The mark of ``symbol``, None before any price or fill."""
        return self._marks.get(symbol)

    def _view(self, key: PositionKey, p: _Position) -> PositionView:
        mark = self._marks.get(key.symbol)
        average = p.average(self.method)
        unrealized = p.quantity * (mark - average) if mark is not None and p.quantity else 0.0
        return PositionView(
            key=key,
            quantity=p.quantity,
            average_price=average,
            mark=mark,
            realized_pnl=p.realized,
            fees=p.fees,
            unrealized_pnl=unrealized,
        )

    def positions(
        self, *, symbol: str | None = None, venue: str | None = None, strategy: str | None = None
    ) -> list[PositionView]:
        """Every position (open or closed), optionally filtered."""
        return [
            self._view(key, p)
            for key, p in self._positions.items()
            if (symbol is None or key.symbol == symbol)
            and (venue is None or key.venue == venue)
            and (strategy is None or key.strategy == strategy)
        ]

    def net_quantity(self, symbol: str) -> float:
        """The position in ``symbol`` summed over venues and strategies."""
        return sum(p.quantity for key, p in self._positions.items() if key.symbol == symbol)

    def totals(self, *, symbol: str | None = None, venue: str | None = None, strategy: str | None = None) -> PnlTotals:
        """Realized, fees and unrealized summed over the matching positions."""
        views = self.positions(symbol=symbol, venue=venue, strategy=strategy)
        return PnlTotals(
            realized=sum(v.realized_pnl for v in views),
            fees=sum(v.fees for v in views),
            unrealized=sum(v.unrealized_pnl for v in views),
        )

    def by(self, field: str) -> dict[str, PnlTotals]:
        """Totals grouped by ``"symbol"``, ``"venue"`` or ``"strategy"``."""
        if field not in PositionKey._fields:
            raise ConfigError("field", f"group by one of {PositionKey._fields}, got {field!r}")
        names = sorted({getattr(key, field) for key in self._positions})
        return {name: self.totals(**{field: name}) for name in names}
