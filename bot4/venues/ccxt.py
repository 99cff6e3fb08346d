"""Any ccxt exchange as a bot4 venue (``pip install bot4[ccxt]``).

``CcxtAdapter(ccxt.binance({...}))`` wraps an exchange object: bot4's order manager calls
it through the venue's circuit breaker like any adapter; ccxt's errors become bot4's
(:class:`bot4.ExchangeTimeoutError`, :class:`bot4.ExchangeUnavailableError`,
:class:`bot4.OrderNotFoundError`, :class:`bot4.ExchangeError`); trade fees are converted
to the quote currency. Register the adapter as a plugin to offer it to order managers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import ccxt

from bot4.errors import ExchangeError, ExchangeTimeoutError, ExchangeUnavailableError, OrderNotFoundError
from bot4.orders.status import OrderStatus
from bot4.plugins.hookspecs import hookimpl
from bot4.venues.protocol import CAPABILITIES, Fees

__all__ = ["CcxtAdapter", "order_status"]

T = TypeVar("T")


def order_status(order: Mapping[str, Any]) -> OrderStatus:
    """The bot4 status of a ccxt order structure."""
    status = order.get("status")
    if status == "closed":
        return OrderStatus.FILLED
    if status == "canceled":
        return OrderStatus.CANCELED
    if status == "expired":
        return OrderStatus.EXPIRED
    if status == "rejected":
        return OrderStatus.REJECTED
    return OrderStatus.PARTIALLY_FILLED if (order.get("filled") or 0) > 0 else OrderStatus.ACCEPTED


class CcxtAdapter:
    """A ccxt exchange as a bot4 venue.

    Args:
        exchange: a ccxt exchange instance (with credentials for private calls).
        name: the venue name (default: the exchange id); also its breaker's name.
        fees: fees to route by (default: the exchange's trading fees).
    """

    def __init__(self, exchange: ccxt.Exchange, *, name: str | None = None, fees: Fees | None = None) -> None:
        self.exchange = exchange
        self.name = name or exchange.id
        trading = (exchange.fees or {}).get("trading", {})
        self.fees = fees or Fees(maker=float(trading.get("maker", 0.001)), taker=float(trading.get("taker", 0.001)))
        has = exchange.has or {}
        self.capabilities = {cap: bool(has.get(cap)) for cap in CAPABILITIES}
        if has.get("createOrder"):
            for cap in ("createMarketOrder", "createLimitOrder"):
                self.capabilities[cap] = has.get(cap) is not False

    @hookimpl
    def bot4_exchange_adapters(self) -> list[CcxtAdapter]:
        """This venue, offered to the order manager."""
        return [self]

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except ccxt.RequestTimeout as exc:
            raise ExchangeTimeoutError(self.name, str(exc)) from exc
        except (ccxt.NetworkError, ccxt.ExchangeNotAvailable) as exc:
            raise ExchangeUnavailableError(self.name, str(exc)) from exc
        except ccxt.OrderNotFound as exc:
            raise OrderNotFoundError(self.name, str(exc)) from exc
        except ccxt.BaseError as exc:
            raise ExchangeError(self.name, f"{type(exc).__name__}: {exc}") from exc

    def _order(self, order: dict[str, Any]) -> dict[str, Any]:
        """Normalise a ccxt order: trade fees in the quote currency, trade ids present."""
        symbol = order.get("symbol") or ""
        base, _, quote = symbol.partition("/")
        quote = quote.split(":")[0]
        trades = []
        for i, trade in enumerate(order.get("trades") or ()):
            price, amount = float(trade["price"]), float(trade["amount"])
            fee = dict(trade.get("fee") or {})
            cost = float(fee.get("cost") or 0.0)
            if fee.get("currency") == base:
                cost *= price
            trades.append(
                dict(
                    trade,
                    id=str(trade.get("id") or f"{order.get('id')}-{i}"),
                    price=price,
                    amount=amount,
                    fee={"cost": cost, "currency": quote},
                    takerOrMaker=trade.get("takerOrMaker") or "taker",
                )
            )
        return dict(order, trades=trades)

    def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Place an order through ccxt."""
        return self._order(
            self._call(self.exchange.create_order, symbol, type, side, amount, price, dict(params or {}))
        )

    def cancel_order(self, id: str, symbol: str | None = None) -> dict[str, Any]:
        """Cancel an order through ccxt."""
        return self._order(self._call(self.exchange.cancel_order, id, symbol))

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
        """Amend an order through ccxt."""
        return self._order(
            self._call(self.exchange.edit_order, id, symbol, type, side, amount, price, dict(params or {}))
        )

    def fetch_order(self, id: str, symbol: str | None = None) -> dict[str, Any]:
        """One order through ccxt."""
        return self._order(self._call(self.exchange.fetch_order, id, symbol))

    def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Open orders through ccxt."""
        return [self._order(o) for o in self._call(self.exchange.fetch_open_orders, symbol)]

    def fetch_closed_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Recently finished orders through ccxt."""
        return [self._order(o) for o in self._call(self.exchange.fetch_closed_orders, symbol)]

    def fetch_balance(self) -> dict[str, Any]:
        """Balances through ccxt."""
        return self._call(self.exchange.fetch_balance)

    def fetch_order_book(self, symbol: str, limit: int | None = None) -> dict[str, Any]:
        """The order book through ccxt."""
        return self._call(self.exchange.fetch_order_book, symbol, limit)

    def fetch_ticker(self, symbol: str) -> dict[str, Any]:
        """The ticker through ccxt."""
        return self._call(self.exchange.fetch_ticker, symbol)

    @property
    def markets(self) -> Mapping[str, Any]:
        """The exchange's markets (lot, tick and minimums per symbol), once loaded by ccxt."""
        return self.exchange.markets or {}

    @property
    def precision_mode(self) -> str:
        """How ``markets`` states precision: ``"decimal_places"`` or ``"tick"`` (a step)."""
        return "decimal_places" if self.exchange.precisionMode == ccxt.DECIMAL_PLACES else "tick"

    def __repr__(self) -> str:
        return f"<CcxtAdapter {self.name}>"
