"""What a venue's streams say, venue-neutral: quotes, trades, order updates, balances.

Every event carries the venue's own time (``exchange_ms``, 0 when the venue gives none)
beside the data; the receiver adds its receive time where it keeps the event.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BalanceDelta", "Balances", "OrderUpdate", "Quote", "Trade"]


class Quote(NamedTuple):
    """The best bid and ask of a symbol."""

    symbol: str
    bid: float
    bid_size: float
    ask: float
    ask_size: float
    update_id: int
    """The venue's book update id (orders quotes of one symbol; 0 when it gives none)."""
    exchange_ms: int = 0


class Trade(NamedTuple):
    """A public trade: the last price."""

    symbol: str
    price: float
    quantity: float
    trade_id: int
    exchange_ms: int = 0


class OrderUpdate(NamedTuple):
    """An order's new state at its venue, and the fill that changed it if any (ccxt's words)."""

    symbol: str
    client_order_id: str
    """The id the order was sent with (for a cancel: the order's, not the cancel request's)."""
    order_id: str
    side: str
    """``buy`` or ``sell``."""
    type: str
    """``limit``, ``market``, ``stop``, ``stop_limit``, ... (lower case)."""
    status: str
    """ccxt's order status: ``open``, ``closed``, ``canceled``, ``rejected``, ``expired``
    ("": not told — an update that tells a fill only)."""
    price: float
    amount: float
    filled: float | None
    """The cumulative filled quantity (None: not told — an update that only reports a fill,
    or only a status)."""
    last_quantity: float
    """The quantity of the fill this update reports (0: no fill)."""
    last_price: float
    fee: float
    fee_currency: str | None
    trade_id: str
    """The fill's trade id, as the venue's REST replies give it ("": no fill): a fill is
    applied once per trade id."""
    exchange_ms: int = 0
    maker: bool = False
    """Whether the fill was the maker's side (False when there is no fill)."""


class Balances(NamedTuple):
    """The account's balances of the assets that changed: ``{asset: (free, locked)}``."""

    balances: dict[str, tuple[float, float]]
    exchange_ms: int = 0


class BalanceDelta(NamedTuple):
    """A deposit, withdrawal or transfer of ``asset`` (negative: out)."""

    asset: str
    delta: float
    exchange_ms: int = 0
