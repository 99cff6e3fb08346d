"""What a stream adapter is: a venue's pushed data, asked for the way ccxt.pro asks.

A plugin offers stream adapters through the ``bot4_stream_adapters`` hook (as venues
through ``bot4_exchange_adapters``). Each ``watch_*`` coroutine subscribes on its first
call and returns the next update after it, as ccxt.pro's do: call it in a loop.

- :class:`bot4.streams.binance_ws.BinanceStreams`: Binance spot, built in (``bot4[streams]``).
- :class:`bot4.venues.ccxtpro.CcxtProStreams`: any ccxt.pro exchange (``bot4[ccxt]``).

Consumers: :class:`bot4.streams.feed.Feed` (quotes into the shared table and marks into the
risk ledger) and :meth:`bot4.OrderManager.follow` (order updates and fills into the order
manager that sent the orders).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from bot4.errors import ConfigError
from bot4.streams.book import BookView
from bot4.streams.events import Balances, OrderUpdate, Quote

if TYPE_CHECKING:
    from bot4.plugins.manager import PluginManager

__all__ = ["StreamAdapter", "quote_problem", "stream_adapters"]

_INF = float("inf")
_MAX_INT = (1 << 63) - 1


@runtime_checkable
class StreamAdapter(Protocol):
    """A venue's streams (see the module's description)."""

    name: str
    """The venue's name: as its exchange adapter's, so order updates find their orders."""

    async def watch_ticker(self, symbol: str) -> Quote:
        """The next best bid and ask of ``symbol``."""
        ...

    async def watch_order_book(self, symbol: str, limit: int | None = None) -> BookView:
        """The book of ``symbol`` after its next update (kept in sync with the venue)."""
        ...

    async def watch_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        """The next order updates of the account (of ``symbol`` only, if given), oldest first."""
        ...

    async def watch_my_trades(self, symbol: str | None = None) -> list[OrderUpdate]:
        """The next order updates that carry a fill (of ``symbol`` only, if given), oldest first."""
        ...

    async def watch_balance(self) -> Balances:
        """The next change of the account's balances."""
        ...

    async def close(self) -> None:
        """Close every connection; a ``watch_*`` call waiting raises :class:`bot4.StreamClosedError`."""
        ...


def stream_adapters(plugins: PluginManager) -> dict[str, StreamAdapter]:
    """Every stream adapter the plugins offer (``bot4_stream_adapters``), by name, in
    registration order.

    Raises:
        ConfigError: an offered object is not a stream adapter, or two share a name.
    """
    adapters: dict[str, StreamAdapter] = {}
    for group in reversed(plugins.hook.bot4_stream_adapters()):  # in registration order
        for adapter in group:
            if not isinstance(adapter, StreamAdapter):
                raise ConfigError("streams", f"{adapter!r} is not a StreamAdapter")
            if adapter.name in adapters:
                raise ConfigError("streams", f"two stream adapters are named {adapter.name!r}")
            adapters[adapter.name] = adapter
    return adapters


def quote_problem(quote: object, symbol: str) -> str | None:
    """What is wrong with ``quote``, an adapter's answer for ``symbol`` (None: nothing)."""
    if not isinstance(quote, Quote):
        return f"expected a bot4 Quote, got {type(quote).__name__}"
    if quote.symbol != symbol:
        return f"a quote of {quote.symbol!r}"
    numbers = (quote.bid, quote.bid_size, quote.ask, quote.ask_size)
    if not all(type(x) is float or type(x) is int for x in numbers):
        return f"prices and sizes are numbers, got {numbers!r}"
    if not (0 < quote.bid <= quote.ask < _INF and 0 <= quote.bid_size < _INF and 0 <= quote.ask_size < _INF):
        return f"not a two-sided book: {numbers!r}"
    for name in ("update_id", "exchange_ms"):
        value = getattr(quote, name)
        if type(value) is not int or not 0 <= value <= _MAX_INT:
            return f"{name} is an integer in [0, 2**63), got {value!r}"
    return None
