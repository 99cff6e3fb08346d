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

import asyncio
import weakref
from collections import deque
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from bot4.errors import ConfigError
from bot4.streams.book import BookView
from bot4.streams.events import Balances, OrderUpdate, Quote

if TYPE_CHECKING:
    from bot4.plugins.manager import PluginManager

__all__ = ["StreamAdapter", "UpdateQueues", "quote_problem", "stream_adapters"]

_INF = float("inf")
_MAX_INT = (1 << 63) - 1
_PRUNE_AT = 64


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


class UpdateQueues:
    """Order updates kept for each consumer between two of its ``watch_orders`` calls.

    Every task that asks (``take``) has queues of its own, one per symbol it asks for (or
    for all): each consumer gets every update from its first call on, none is handed to
    one consumer and lost to another, and a consumer's updates of other symbols are not
    dropped by its asking for one. At most ``max_queued`` are kept per queue: past it the
    oldest are dropped and counted (``dropped``). A consumer's queues go with its task.
    """

    def __init__(self, max_queued: int) -> None:
        self._max = max_queued
        self._queues: dict[str, weakref.WeakKeyDictionary[asyncio.Task[object], deque[OrderUpdate]]] = {}
        self._waiting: list[asyncio.Future[None]] = []  # a future per waiting call: an update ends it, or a failure
        self.dropped = 0

    def put(self, update: OrderUpdate) -> None:
        """Queue ``update`` for every consumer of its symbol or of all."""
        for key in ("", update.symbol):
            consumers = self._queues.get(key)
            if consumers:
                for queue in consumers.values():
                    if len(queue) == self._max:
                        self.dropped += 1
                    queue.append(update)
        self._ring(None)

    def fail(self, error: BaseException) -> None:
        """Consumers waiting now (with nothing queued) raise ``error``."""
        self._ring(error)

    def _ring(self, error: BaseException | None) -> None:
        waiting, self._waiting = self._waiting, []
        for future in waiting:
            if not future.done():  # (a call cancelled meanwhile: done, skipped)
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    async def take(self, symbol: str | None) -> list[OrderUpdate]:
        """This task's updates (of ``symbol``, or all) since its last call, oldest first;
        waits for one when there is none (and raises what :meth:`fail` is given meanwhile)."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("UpdateQueues.take runs in a task")
        consumers = self._queues.setdefault(symbol or "", weakref.WeakKeyDictionary())
        queue = consumers.get(task)
        if queue is None:
            queue = consumers[task] = deque(maxlen=self._max)
        while not queue:
            future = asyncio.get_running_loop().create_future()
            if len(self._waiting) >= _PRUNE_AT:  # calls cancelled (timed out) meanwhile: not kept
                self._waiting = [f for f in self._waiting if not f.done()]
            self._waiting.append(future)
            await future
        updates = list(queue)
        queue.clear()
        return updates
