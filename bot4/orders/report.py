"""A venue's order reply, checked field by field before anything is applied.

An adapter returns ccxt's order structure; :func:`parse_report` turns it into a
:class:`VenueReport` or raises :class:`bot4.ExchangeReplyError` naming the venue and the
field, so garbage (``None``, ``{}``, a negative ``filled``, a trade without an amount)
never reaches the order's state, the P&L book or the risk ledger.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from bot4._numbers import is_number, is_positive
from bot4.errors import ExchangeReplyError

__all__ = ["STATUSES", "VenueReport", "VenueTrade", "parse_report"]

STATUSES = frozenset({"open", "closed", "canceled", "expired", "rejected"})
"""ccxt's order statuses."""

_TOLERANCE = 1e-9  # relative: quantities at the order's amount are within it
_new = tuple.__new__  # a NamedTuple without its Python-level __new__
_INF = math.inf


class VenueTrade(NamedTuple):
    """One trade of a venue's reply."""

    id: str
    quantity: float
    price: float
    fee: float
    """In quote currency."""
    liquidity: str
    """``"maker"`` or ``"taker"``."""


class VenueReport(NamedTuple):
    """A venue's order reply, checked."""

    id: str
    """The venue's order id."""
    status: str
    """One of :data:`STATUSES`."""
    filled: float | None
    """Cumulative filled quantity the venue reports (None: not reported)."""
    trades: tuple[VenueTrade, ...]
    average: float | None = None
    """Average price of what filled (None: not reported)."""
    price: float | None = None
    """The order's limit price at the venue (None: a market order, or not reported)."""


def _text(value: Any) -> str | None:
    if type(value) is str:
        return value if value and value.isprintable() else None
    if type(value) is int:
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if text and text.isprintable() else None


def _trade(venue: str, index: int, raw: Any) -> VenueTrade:
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise ExchangeReplyError(venue, f"trades[{index}]", f"expected a trade structure, got {raw!r:.80}")
    get: Callable[[str], Any] = raw.get
    trade_id, amount, price, fee = get("id"), get("amount"), get("price"), get("fee")
    if type(trade_id) is not str or not trade_id.isprintable() or not trade_id:
        trade_id = _text(trade_id)
    if (
        trade_id is None
        or not (type(amount) is float and 0.0 < amount < _INF or is_positive(amount))
        or not (type(price) is float and 0.0 < price < _INF or is_positive(price))
    ):
        for name, ok in (("id", trade_id is not None), ("amount", is_positive(amount)), ("price", is_positive(price))):
            if not ok:
                wanted = "a trade id" if name == "id" else "a number > 0"
                raise ExchangeReplyError(venue, f"trades[{index}].{name}", f"expected {wanted}, got {get(name)!r:.80}")
    cost: Any = 0.0
    if fee is not None:
        if type(fee) is not dict and not isinstance(fee, Mapping):
            raise ExchangeReplyError(venue, f"trades[{index}].fee", f"expected a fee structure, got {fee!r:.80}")
        cost = fee.get("cost")
        if cost is None:
            cost = 0.0
        elif type(cost) is not float and not is_number(cost) or cost != cost or cost in (_INF, -_INF):
            raise ExchangeReplyError(venue, f"trades[{index}].fee.cost", f"expected a number, got {cost!r:.80}")
    liquidity = get("takerOrMaker") or "taker"
    if liquidity != "taker" and liquidity != "maker":
        raise ExchangeReplyError(
            venue, f"trades[{index}].takerOrMaker", f"expected taker or maker, got {liquidity!r:.80}"
        )
    return _new(VenueTrade, (trade_id, float(amount), float(price), float(cost), liquidity))


def parse_report(venue: str, reply: Any, amount: float) -> VenueReport:
    """Check ``reply`` (ccxt's order structure) from ``venue`` for an order of ``amount``.

    Raises:
        ExchangeReplyError: a field is missing or wrong; its ``field`` names it.
    """
    if type(reply) is not dict and not isinstance(reply, Mapping):
        raise ExchangeReplyError(venue, "reply", f"expected an order structure, got {reply!r:.80}")
    get = reply.get
    order_id = get("id")
    if type(order_id) is not str or not order_id.isprintable() or not order_id:
        order_id = _text(order_id)
    if order_id is None:
        raise ExchangeReplyError(venue, "id", f"expected the venue's order id, got {get('id')!r:.80}")
    status = get("status")
    if status not in STATUSES:
        raise ExchangeReplyError(venue, "status", f"expected one of {sorted(STATUSES)}, got {status!r:.80}")
    limit = amount * (1 + _TOLERANCE)
    filled = get("filled")
    if (
        filled is not None
        and not (type(filled) is float and 0.0 <= filled <= limit)
        and not (is_number(filled) and 0 <= filled <= limit)
    ):
        raise ExchangeReplyError(venue, "filled", f"expected a number in [0, {amount}], got {filled!r:.80}")
    raw_trades = get("trades")
    if not raw_trades:
        trades: tuple[VenueTrade, ...] = ()
    elif type(raw_trades) is list or (not isinstance(raw_trades, (str, bytes)) and isinstance(raw_trades, Sequence)):
        trades = tuple([_trade(venue, i, t) for i, t in enumerate(raw_trades)])
        if len(trades) > 1 and math.fsum(t.quantity for t in trades) > limit or trades[0].quantity > limit:
            raise ExchangeReplyError(venue, "trades", f"trades add up to more than the order's {amount}")
    else:
        raise ExchangeReplyError(venue, "trades", f"expected a list of trades, got {raw_trades!r:.80}")
    prices = []
    for key in ("average", "price"):
        value = get(key)
        if value is not None and not (type(value) is float and 0.0 < value < _INF) and not is_positive(value):
            if value == 0:  # ccxt's "nothing filled yet" / a market order's price
                value = None
            else:
                raise ExchangeReplyError(venue, key, f"expected a price > 0, got {value!r:.80}")
        prices.append(None if value is None else float(value))
    return _new(VenueReport, (order_id, status, None if filled is None else float(filled), trades, *prices))
