"""Order updates pushed by a venue's stream, turned into the venue report the order manager
applies (a part of the order manager: :meth:`bot4.OrderManager.on_order_update`).

A stream's :class:`bot4.streams.events.OrderUpdate` says an order's status at its venue,
the cumulative quantity filled, and the fill that changed it, if any. It becomes the same
checked :class:`~bot4.orders.report.VenueReport` a REST reply becomes, so one set of rules
applies whichever arrives first: a fill counts once per trade id (the stream's and the
REST reply's ids are the venue's own), fills the stream skipped are made up from the
cumulative quantity, and a report about an order that has ended changes nothing.

Fees are kept in the quote currency: a fee charged in the base asset is converted at the
fill's price; one charged in a third asset (a venue's own token) cannot be converted here
and is not counted (logged once per asset).
"""

from __future__ import annotations

import logging
from typing import Any

from bot4._numbers import is_number
from bot4.errors import ExchangeReplyError
from bot4.orders.report import VenueReport, parse_report
from bot4.streams.events import OrderUpdate

__all__ = ["check_update", "fee_in_quote", "update_report"]

log = logging.getLogger("bot4.orders")
_unconverted: set[str] = set()  # fee assets already logged as not converted


def fee_in_quote(symbol: str, fee: float, currency: str | None, price: float) -> float:
    """``fee`` charged in ``currency`` for a fill of ``symbol`` at ``price``, in the quote currency
    (0 for a third asset, which cannot be converted here)."""
    if not fee:
        return 0.0
    base, _, rest = symbol.partition("/")
    quote = rest.partition(":")[0]
    if currency is None or currency == quote:
        return fee
    if currency == base:
        return fee * price
    if currency not in _unconverted:
        _unconverted.add(currency)
        log.warning("fees charged in %s are not counted in P&L (no %s price to convert them)", currency, currency)
    return 0.0


_TEXT_FIELDS = ("symbol", "client_order_id", "order_id", "side", "type", "status", "trade_id")
_NUMBER_FIELDS = ("price", "amount", "last_quantity", "last_price", "fee")


def check_update(venue: str, update: OrderUpdate) -> None:
    """Every field of ``update`` of the type it must have.

    Raises:
        ExchangeReplyError: naming the first field that is not.
    """
    for name in _TEXT_FIELDS:
        if type(getattr(update, name)) is not str:
            raise ExchangeReplyError(venue, name, f"expected text, got {getattr(update, name)!r:.80}")
    for name in _NUMBER_FIELDS:
        if not is_number(getattr(update, name)):
            raise ExchangeReplyError(venue, name, f"expected a finite number, got {getattr(update, name)!r:.80}")
    if update.filled is not None and not is_number(update.filled):
        raise ExchangeReplyError(venue, "filled", f"expected a finite number or None, got {update.filled!r:.80}")
    if update.fee_currency is not None and type(update.fee_currency) is not str:
        raise ExchangeReplyError(venue, "fee_currency", f"expected text or None, got {update.fee_currency!r:.80}")
    if type(update.exchange_ms) is not int or type(update.maker) is not bool:
        raise ExchangeReplyError(venue, "exchange_ms", f"expected an int and a bool, got {update[-2:]!r:.80}")


def update_report(venue: str, update: OrderUpdate, amount: float) -> VenueReport:
    """``update`` from ``venue``'s stream as a checked report for an order of ``amount`` (an
    update without a status — one that tells a fill only — reads as ``open``).

    Raises:
        ExchangeReplyError: a field is wrong (named as in ccxt's order structure).
    """
    check_update(venue, update)
    trades: list[dict[str, Any]] = []
    if update.trade_id and update.last_quantity > 0:
        trades.append(
            {
                "id": update.trade_id,
                "amount": update.last_quantity,
                "price": update.last_price,
                "fee": {"cost": fee_in_quote(update.symbol, update.fee, update.fee_currency, update.last_price)},
                "takerOrMaker": "maker" if update.maker else "taker",
            }
        )
    reply = {
        "id": update.order_id,
        "status": "open" if update.status in ("canceling", "") else update.status,  # a cancel under way: open
        "filled": update.filled,
        "price": update.price or None,
        "trades": trades,
    }
    return parse_report(venue, reply, amount)
