"""What bot4 expects of a venue: the shape of ccxt's unified API.

An adapter is any object with these methods (sync, or ``async def``); the order
structures it returns are ccxt's (``id``, ``clientOrderId``, ``status`` in
``open``/``closed``/``canceled``/``expired``/``rejected``, ``filled``, ``remaining``,
``average``, ``trades``, ``fee``). An adapter may also offer ``fetch_closed_orders(symbol)``
(capability ``fetchClosedOrders``): reconciliation then tells an order that was never placed
from one that already ended; and ``edit_order(id, symbol, type, side, amount, price, params)``
(capability ``editOrder``) for amendments. Adapters reach bot4 through the hook
``bot4_exchange_adapters``; errors are raised as :class:`bot4.ExchangeError` subclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from bot4.errors import ConfigError

__all__ = ["CAPABILITIES", "ExchangeAdapter", "Fees"]

CAPABILITIES = (
    "createOrder",
    "createMarketOrder",
    "createLimitOrder",
    "createStopOrder",
    "createPostOnlyOrder",
    "cancelOrder",
    "editOrder",
    "fetchOrder",
    "fetchOpenOrders",
    "fetchClosedOrders",
    "fetchBalance",
    "fetchOrderBook",
    "fetchTicker",
)
"""The capability names bot4 consults (a subset of ccxt's ``has``)."""


@dataclass(frozen=True, kw_only=True)
class Fees:
    """A venue's trading fees, as fractions of notional (negative: a rebate)."""

    maker: float = 0.001
    taker: float = 0.001

    def __post_init__(self) -> None:
        for name in ("maker", "taker"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -0.01 <= value <= 0.1:
                raise ConfigError(name, f"a fee is a fraction in [-0.01, 0.1], got {value!r}")


@runtime_checkable
class ExchangeAdapter(Protocol):
    """A venue, as bot4 uses it."""

    name: str
    """Unique venue name; also the name of its circuit breaker."""
    fees: Fees
    capabilities: Mapping[str, bool]
    """ccxt-style ``has``: which of :data:`CAPABILITIES` the venue supports."""

    def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Place an order; return its ccxt order structure."""
        ...

    def cancel_order(self, id: str, symbol: str | None = None) -> Any:
        """Cancel an order; return its ccxt order structure."""
        ...

    def fetch_order(self, id: str, symbol: str | None = None) -> Any:
        """One order's ccxt order structure."""
        ...

    def fetch_open_orders(self, symbol: str | None = None) -> Any:
        """The venue's open orders."""
        ...

    def fetch_balance(self) -> Any:
        """Balances: ``{"free": {...}, "used": {...}, "total": {...}}``."""
        ...

    def fetch_order_book(self, symbol: str, limit: int | None = None) -> Any:
        """``{"bids": [[price, amount], ...], "asks": [[price, amount], ...]}``, best first."""
        ...

    def fetch_ticker(self, symbol: str) -> Any:
        """``{"bid": ..., "ask": ..., "last": ...}``."""
        ...
