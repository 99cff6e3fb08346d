"""Orders: what a strategy asks for, validated at construction."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any

from bot4._numbers import is_positive
from bot4._symbols import symbol_problem
from bot4.errors import InvalidOrderError

__all__ = ["Order", "OrderType", "Side", "TimeInForce"]


class Side(enum.Enum):
    """Order side."""

    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self is Side.BUY else -1


class OrderType(enum.Enum):
    """Order type."""

    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(enum.Enum):
    """How long an order stays working."""

    GTC = "GTC"
    """Good till cancelled."""
    IOC = "IOC"
    """Immediate or cancel: fill what you can now, cancel the rest."""
    FOK = "FOK"
    """Fill or kill: all now, or nothing."""
    GTD = "GTD"
    """Good till ``expire_at``."""
    POST_ONLY = "PO"
    """Maker only: rejected by the venue if it would take liquidity."""


MAX_ID_CHARS = 64


def _enum(field_name: str, cls: type[enum.Enum], value: Any) -> Any:
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        for member in cls:
            if value.lower() in (str(member.value).lower(), member.name.lower()):
                return member
    allowed = ", ".join(str(m.value) for m in cls)
    raise InvalidOrderError(field_name, f"must be one of {allowed}, got {value!r}")


def _price(field_name: str, value: Any, *, required: bool = False) -> float | None:
    if value is None:
        if required:
            raise InvalidOrderError(field_name, "is required for this order type")
        return None
    if not is_positive(value):
        raise InvalidOrderError(field_name, f"must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class Order:
    """An order request. Invalid fields raise :class:`bot4.InvalidOrderError` naming the field.

    ``side``, ``type`` and ``time_in_force`` accept their enum or its value as a string
    (``"buy"``, ``"limit"``, ``"IOC"``). Prices are in quote currency per unit.
    """

    symbol: str
    side: Side
    quantity: float
    type: OrderType = OrderType.MARKET
    price: float | None = None
    """Limit price (LIMIT, STOP_LIMIT)."""
    stop_price: float | None = None
    """Trigger price (STOP, STOP_LIMIT)."""
    stop_loss: float | None = None
    """Protective stop for the position this order opens."""
    take_profit: float | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    expire_at: float | None = None
    """Expiry for GTD, in seconds since the epoch."""
    client_order_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    strategy: str = "default"
    reduce_only: bool = False

    def __post_init__(self) -> None:
        problem = symbol_problem(self.symbol)
        if problem is not None:
            raise InvalidOrderError("symbol", problem)
        set_ = object.__setattr__
        set_(self, "side", _enum("side", Side, self.side))
        kind = _enum("type", OrderType, self.type)
        set_(self, "type", kind)
        quantity = _price("quantity", self.quantity, required=True)
        set_(self, "quantity", quantity)
        needs_price = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_stop = kind in (OrderType.STOP, OrderType.STOP_LIMIT)
        set_(self, "price", _price("price", self.price, required=needs_price))
        if kind is OrderType.MARKET and self.price is not None:
            raise InvalidOrderError("price", "a market order has no price; use a limit order")
        set_(self, "stop_price", _price("stop_price", self.stop_price, required=needs_stop))
        if not needs_stop and self.stop_price is not None:
            raise InvalidOrderError("stop_price", f"a {kind.value} order has no trigger price")
        set_(self, "stop_loss", _price("stop_loss", self.stop_loss))
        set_(self, "take_profit", _price("take_profit", self.take_profit))
        tif = _enum("time_in_force", TimeInForce, self.time_in_force)
        set_(self, "time_in_force", tif)
        if tif is TimeInForce.GTD:
            if kind is OrderType.MARKET:
                raise InvalidOrderError("time_in_force", "a market order cannot be good-till-date")
            set_(self, "expire_at", _price("expire_at", self.expire_at, required=True))
        elif self.expire_at is not None:
            raise InvalidOrderError("expire_at", "only a GTD order has an expiry")
        if tif is TimeInForce.POST_ONLY and kind is not OrderType.LIMIT:
            raise InvalidOrderError("time_in_force", "post-only applies to limit orders")
        for name, limit in (("client_order_id", MAX_ID_CHARS), ("strategy", MAX_ID_CHARS)):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
                raise InvalidOrderError(name, f"must be 1-{limit} printable characters, got {value!r}")
        if not isinstance(self.reduce_only, bool):
            raise InvalidOrderError("reduce_only", f"must be True or False, got {self.reduce_only!r}")

    @property
    def signed_quantity(self) -> float:
        """Quantity with the sign of the side (+ buy, - sell)."""
        return self.quantity if self.side is Side.BUY else -self.quantity
