"""A venue's order reply, checked field by field before anything is applied.

An adapter returns ccxt's order structure; :func:`parse_report` turns it into a
:class:`VenueReport` or raises :class:`bot4.ExchangeReplyError` naming the venue and the
field, so garbage (``None``, ``{}``, a negative ``filled``, a trade without an amount)
never reaches the order's state, the P&L book or the risk ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot4._numbers import is_number, is_positive
from bot4.errors import ExchangeReplyError

__all__ = ["STATUSES", "VenueReport", "VenueTrade", "parse_report"]

STATUSES = frozenset({"open", "closed", "canceled", "expired", "rejected"})
"""ccxt's order statuses."""

_TOLERANCE = 1e-9  # relative: quantities at the order's amount are within it


@dataclass(frozen=True, slots=True)
class VenueTrade:
    """One trade of a venue's reply."""

    id: str
    quantity: float
    price: float
    fee: float
    """In quote currency."""
    liquidity: str
    """``"maker"`` or ``"taker"``."""


@dataclass(frozen=True, slots=True)
class VenueReport:
    """A venue's order reply, checked."""

    id: str
    """The venue's order id."""
    status: str
    """One of :data:`STATUSES`."""
    filled: float | None
    """Cumulative filled quantity the venue reports (None: not reported)."""
    trades: tuple[VenueTrade, ...]


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if text and text.isprintable() else None


def _trade(venue: str, index: int, raw: Any) -> VenueTrade:
    where = f"trades[{index}]"
    if not isinstance(raw, Mapping):
        raise ExchangeReplyError(venue, where, f"expected a trade structure, got {raw!r:.80}")
    trade_id = _text(raw.get("id"))
    if trade_id is None:
        raise ExchangeReplyError(venue, f"{where}.id", f"expected a trade id, got {raw.get('id')!r:.80}")
    for name in ("amount", "price"):
        if not is_positive(raw.get(name)):
            raise ExchangeReplyError(venue, f"{where}.{name}", f"expected a number > 0, got {raw.get(name)!r:.80}")
    fee = raw.get("fee")
    cost: Any = 0.0
    if fee is not None:
        if not isinstance(fee, Mapping):
            raise ExchangeReplyError(venue, f"{where}.fee", f"expected a fee structure, got {fee!r:.80}")
        cost = fee.get("cost")
        cost = 0.0 if cost is None else cost
        if not is_number(cost):
            raise ExchangeReplyError(venue, f"{where}.fee.cost", f"expected a number, got {cost!r:.80}")
    liquidity = raw.get("takerOrMaker") or "taker"
    if liquidity not in ("taker", "maker"):
        raise ExchangeReplyError(venue, f"{where}.takerOrMaker", f"expected taker or maker, got {liquidity!r:.80}")
    return VenueTrade(trade_id, float(raw["amount"]), float(raw["price"]), float(cost), liquidity)


def parse_report(venue: str, reply: Any, amount: float) -> VenueReport:
    """Check ``reply`` (ccxt's order structure) from ``venue`` for an order of ``amount``.

    Raises:
        ExchangeReplyError: a field is missing or wrong; its ``field`` names it.
    """
    if not isinstance(reply, Mapping):
        raise ExchangeReplyError(venue, "reply", f"expected an order structure, got {reply!r:.80}")
    order_id = _text(reply.get("id"))
    if order_id is None:
        raise ExchangeReplyError(venue, "id", f"expected the venue's order id, got {reply.get('id')!r:.80}")
    status = reply.get("status")
    if status not in STATUSES:
        raise ExchangeReplyError(venue, "status", f"expected one of {sorted(STATUSES)}, got {status!r:.80}")
    limit = amount * (1 + _TOLERANCE)
    filled = reply.get("filled")
    if filled is not None and not (is_number(filled) and 0 <= filled <= limit):
        raise ExchangeReplyError(venue, "filled", f"expected a number in [0, {amount}], got {filled!r:.80}")
    raw_trades = reply.get("trades")
    if raw_trades is None:
        raw_trades = ()
    if isinstance(raw_trades, (str, bytes)) or not isinstance(raw_trades, Sequence):
        raise ExchangeReplyError(venue, "trades", f"expected a list of trades, got {raw_trades!r:.80}")
    trades = tuple(_trade(venue, i, t) for i, t in enumerate(raw_trades))
    if sum(t.quantity for t in trades) > limit:
        raise ExchangeReplyError(venue, "trades", f"trades add up to more than the order's {amount}")
    return VenueReport(order_id, status, None if filled is None else float(filled), trades)
