"""Binance spot's streams as a stream adapter (:class:`bot4.streams.adapter.StreamAdapter`).

:class:`BinanceStreams` keeps two connections, each opened at the first ``watch_*`` call
that needs it and kept open (reconnects, pings, a stall timeout, a breaker:
:mod:`bot4.streams.connection`):

- **market data**: ``<url>/stream``, subscribed per stream with Binance's ``SUBSCRIBE``
  request (and again after every reconnect): ``<symbol>@bookTicker`` for
  :meth:`~BinanceStreams.watch_ticker`, ``<symbol>@depth@100ms`` for
  :meth:`~BinanceStreams.watch_order_book`, whose book is kept by
  :class:`bot4.streams.book.DepthBook` from a REST snapshot (``snapshot``) and the diffs —
  fetched again after a gap;
- **user data**: ``user_url`` (the URL with the account's listen key; a coroutine function
  is asked for a fresh one at every connect): execution reports for
  :meth:`~BinanceStreams.watch_orders` and :meth:`~BinanceStreams.watch_my_trades`, account
  positions for :meth:`~BinanceStreams.watch_balance`.

As ccxt.pro's, each ``watch_*`` call waits for the next update. Tickers, books and
balances: the latest wins. Order updates are queued from the first ``watch_orders`` (or
``watch_my_trades``) call on, so a consumer busy between two calls loses none; each call
returns every update queued, oldest first (at most ``max_queued`` are kept: past it the
oldest are dropped and counted). A call waiting when its connection fails or ends raises
:class:`bot4.StreamClosedError` (updates may have been missed: reconcile); the next call
waits on the next connection. Malformed and out-of-order messages are counted, logged
and dropped.

Requires the ``streams`` extra (websockets and orjson).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot4.errors import ConfigError, StreamClosedError, StreamGapError, StreamMessageError
from bot4.plugins.hookspecs import hookimpl
from bot4.streams.adapter import UpdateQueues
from bot4.streams.binance import BinanceSpot
from bot4.streams.book import BookView, DepthBook, DepthDiff
from bot4.streams.connection import Connection, ConnectionConfig, ConnectionStats, settle
from bot4.streams.events import Balances, OrderUpdate, Quote
from bot4.streams.sequence import UpdateIds

if TYPE_CHECKING:
    from bot4.breaker.breaker import CircuitBreaker

__all__ = ["BinanceStreams", "StreamStats", "subscribe"]

log = logging.getLogger("bot4.streams")

_ALL = ""  # the key of the watchers of every symbol
_QUIET_ACCOUNT_SECONDS = 86_400.0
_PER_REQUEST = 200  # stream names per SUBSCRIBE request
_REQUEST_GAP = 0.25  # seconds between two requests: Binance takes at most 5 messages per second


async def subscribe(connection: Connection, names: list[str], next_id: Callable[[], int]) -> None:
    """Ask for the streams ``names`` on ``connection`` with Binance's ``SUBSCRIBE`` requests: at
    most 200 names a request, at most four requests a second (Binance drops a connection that
    sends more than five messages a second)."""
    import orjson

    for start in range(0, len(names), _PER_REQUEST):
        if start:
            await asyncio.sleep(_REQUEST_GAP)
        request = {"method": "SUBSCRIBE", "params": names[start : start + _PER_REQUEST], "id": next_id()}
        if not connection.send(orjson.dumps(request).decode()):
            return  # closed meanwhile: the next connection asks for all of them


@dataclass
class StreamStats:
    """What the adapter has seen (this process's counts; each connection's own are in its ``stats``)."""

    messages: int = 0
    malformed: int = 0
    out_of_order: int = 0
    gaps: int = 0
    """Depth updates lost (the book was fetched again)."""
    order_updates: int = 0
    """Order updates received (``executionReport``)."""
    fills: int = 0
    """Of them, those that told a fill."""
    dropped_updates: int = 0
    """Order updates dropped from a full queue."""


class BinanceStreams:
    """Binance spot's streams (see the module's description).

    Args:
        name: the venue's name (as its exchange adapter's).
        url: the market streams' base, e.g. ``wss://stream.binance.com:9443``.
        symbols: desk symbol → Binance symbol id, e.g. ``{"BTC/USDT": "BTCUSDT"}``.
        user_url: the user-data stream's URL (``wss://.../ws/<listenKey>``), or a coroutine
            function returning a fresh one; None: no user data.
        snapshot: a coroutine function giving a symbol's REST depth snapshot (the JSON of
            ``GET /api/v3/depth?symbol=<id>``, given the Binance id); None: no books.
        connection: how connections are kept.
        breaker: the breaker connection attempts go through (e.g. ``core.breaker("stream:binance")``).
        max_queued: order updates kept per watch between two calls.
    """

    def __init__(
        self,
        name: str,
        url: str,
        symbols: Mapping[str, str],
        *,
        user_url: str | Callable[[], Awaitable[str]] | None = None,
        snapshot: Callable[[str], Awaitable[Any]] | None = None,
        connection: ConnectionConfig | None = None,
        breaker: CircuitBreaker | None = None,
        max_queued: int = 10_000,
    ) -> None:
        if not isinstance(name, str) or not name or not name.isprintable():
            raise ConfigError("name", f"expected a printable venue name, got {name!r}")
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ConfigError("url", f"expected a ws:// or wss:// URL, got {url!r}")
        if (
            user_url is not None
            and not callable(user_url)
            and not (isinstance(user_url, str) and user_url.startswith(("ws://", "wss://")))
        ):
            raise ConfigError("user_url", f"expected a ws:// or wss:// URL or a coroutine function, got {user_url!r}")
        if snapshot is not None and not callable(snapshot):
            raise ConfigError("snapshot", f"expected a coroutine function, got {snapshot!r}")
        if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1:
            raise ConfigError("max_queued", f"expected an integer >= 1, got {max_queued!r}")
        if not isinstance(symbols, Mapping) or not symbols:
            raise ConfigError("symbols", f"expected a mapping of desk symbol to Binance id, got {symbols!r}")
        self.name = name
        self.stats = StreamStats()
        self._ids_of = {symbol: venue_id.upper() for symbol, venue_id in symbols.items()}
        self._parser = BinanceSpot(symbols)
        self._snapshot = snapshot
        config = connection if connection is not None else ConnectionConfig()
        if not isinstance(config, ConnectionConfig):
            raise ConfigError("connection", f"expected a ConnectionConfig, got {type(config).__name__}")
        self.market = Connection(
            f"{name} market streams",
            f"{url.rstrip('/')}/stream",
            config,
            breaker,
            self._on_market,
            on_open=self._subscribe_all,
            on_close=lambda: self._fail(self._market_waiters, "the market stream connection ended"),
            stats=ConnectionStats(),
        )
        self.user = (
            None
            if user_url is None
            else Connection(
                f"{name} user data",
                user_url,
                # an idle account sends nothing for hours: pings (not silence) tell a dead connection
                dataclasses.replace(config, stall_seconds=_QUIET_ACCOUNT_SECONDS),
                breaker,
                self._on_user,
                on_close=lambda: self._fail_user("the user data connection ended"),
                stats=ConnectionStats(),
            )
        )
        self._stop = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self._streams: list[str] = []  # subscribed stream names, in order
        self._unsent: list[str] = []  # of them, those added since the last request
        self._request_id = 0
        self._ids = UpdateIds(f"{name} market streams")
        self._books: dict[str, DepthBook] = {}
        self._fetching: dict[str, asyncio.Task[None]] = {}  # symbol -> its snapshot fetch
        self._market_waiters: dict[tuple[str, str], list[asyncio.Future[Any]]] = {}
        self._user_waiters: dict[tuple[str, str], list[asyncio.Future[Any]]] = {}
        self._orders = UpdateQueues(max_queued)  # each consumer's order updates
        self._fills = UpdateQueues(max_queued)  # each consumer's updates with a fill

    @hookimpl
    def bot4_stream_adapters(self) -> list[BinanceStreams]:
        """This adapter, offered to feeds and order managers."""
        return [self]

    # ------------------------------------------------------------------ the watch_* surface

    async def watch_ticker(self, symbol: str) -> Quote:
        """The next best bid and ask of ``symbol`` (its ``bookTicker``)."""
        self._stream(symbol, "bookTicker")
        return await self._wait(self._market_waiters, ("ticker", symbol))  # type: ignore[no-any-return]

    async def watch_order_book(self, symbol: str, limit: int | None = None) -> BookView:
        """The book of ``symbol`` after its next update, its best ``limit`` levels each side."""
        if self._snapshot is None:
            raise ConfigError("snapshot", "watch_order_book needs the snapshot coroutine function")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError("limit", f"expected an integer >= 1 or None, got {limit!r}")
        self._stream(symbol, "depth@100ms")
        self._books.setdefault(symbol, DepthBook(symbol))
        book: DepthBook = await self._wait(self._market_waiters, ("book", symbol))
        return book.view(limit)

    async def watch_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        """The order updates since the last call (waits for one if none), oldest first."""
        return await self._take(self._orders, symbol)

    async def watch_my_trades(self, symbol: str | None = None) -> list[OrderUpdate]:
        """The order updates that carry a fill since the last call (waits for one if none)."""
        return await self._take(self._fills, symbol)

    async def watch_balance(self) -> Balances:
        """The next change of the account's balances (``outboundAccountPosition``)."""
        self._user()
        return await self._wait(self._user_waiters, ("balance", _ALL))  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Close both connections; waiting calls raise :class:`bot4.StreamClosedError`."""
        self._closed = True
        self._stop.set()
        tasks = [t for t in (*self._tasks.values(), *self._fetching.values()) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await settle(*tasks)
        self._fail(self._market_waiters, "the stream adapter was closed")
        self._fail_user("the stream adapter was closed")

    # ------------------------------------------------------------------ subscriptions

    def _start(self, connection: Connection) -> None:
        if self._closed:
            raise StreamClosedError(f"{self.name}: the stream adapter was closed")
        task = self._tasks.get(connection.name)
        if task is None or task.done():
            self._tasks[connection.name] = asyncio.get_running_loop().create_task(connection.run(self._stop))

    def _stream(self, symbol: str, kind: str) -> None:
        venue_id = self._ids_of.get(symbol) if isinstance(symbol, str) else None
        if venue_id is None:
            raise ConfigError("symbol", f"{symbol!r} is not a symbol of {self.name} (given: {sorted(self._ids_of)})")
        self._start(self.market)
        name = f"{venue_id.lower()}@{kind}"
        if name not in self._streams:
            self._streams.append(name)
            self._unsent.append(name)  # asked for with the others of this moment, in one request
            if len(self._unsent) == 1:
                asyncio.get_running_loop().call_soon(self._subscribe_unsent)

    def _user(self) -> None:
        if self.user is None:
            raise ConfigError("user_url", f"{self.name} has no user data stream (user_url)")
        self._start(self.user)

    async def _subscribe_all(self, connection: Connection) -> None:
        self._ids.clear()  # a new connection may number its updates anew
        for book in self._books.values():
            book.desync()  # diffs were missed between the connections: a new snapshot follows the next diff
        self._unsent.clear()
        await subscribe(connection, self._streams, self._next_id)

    def _subscribe_unsent(self) -> None:
        """Ask for the streams added since the last request, in one request (none open: they are
        asked for on connecting)."""
        names, self._unsent = self._unsent, []
        if names and self.market.ws is not None:
            asyncio.get_running_loop().create_task(subscribe(self.market, names, self._next_id))

    def _next_id(self) -> int:
        self._request_id += 1
        return self._request_id

    # ------------------------------------------------------------------ messages

    def _decode(self, message: str | bytes) -> Any:
        import orjson

        self.stats.messages += 1
        try:
            return self._parser.parse(orjson.loads(message))
        except (orjson.JSONDecodeError, StreamMessageError) as exc:
            self.stats.malformed += 1
            log.warning("%s: dropped a malformed message: %s", self.name, exc)
            return None

    def _on_market(self, message: str | bytes) -> None:
        event = self._parser.raw_book_ticker(message)  # the common case, in one pass
        if event is None:
            event = self._decode(message)
        else:
            self.stats.messages += 1
        if type(event) is Quote:
            if not self._ids.accept(event.symbol, event.update_id):
                self.stats.out_of_order += 1
                return
            self._wake(self._market_waiters, ("ticker", event.symbol), event)
        elif type(event) is DepthDiff:
            self._on_diff(event)

    def _on_diff(self, diff: DepthDiff) -> None:
        book = self._books.get(diff.symbol)
        if book is None:
            return
        try:
            changed = book.on_diff(diff)
        except StreamGapError as exc:
            self.stats.gaps += 1
            log.warning("%s: %s", self.name, exc)
            changed = False
        if not book.synced:
            self._fetch(book)
        elif changed:
            self._wake(self._market_waiters, ("book", diff.symbol), book)

    def _fetch(self, book: DepthBook) -> None:
        """Fetch a snapshot for ``book`` unless one is being fetched."""
        task = self._fetching.get(book.symbol)
        if task is None or task.done():
            self._fetching[book.symbol] = asyncio.get_running_loop().create_task(self._sync(book))

    async def _sync(self, book: DepthBook) -> None:
        """Snapshots until the book is in sync (a snapshot older than the buffered diffs: again)."""
        assert self._snapshot is not None
        pause = 0.05
        while not book.synced and not self._closed:
            try:
                raw = await asyncio.wait_for(self._snapshot(self._ids_of[book.symbol]), self.market.config.open_seconds)
                if book.on_snapshot(self._parser.snapshot(raw)):
                    self._wake(self._market_waiters, ("book", book.symbol), book)
                    return
            except StreamMessageError as exc:
                self.stats.malformed += 1
                log.warning("%s: a malformed %s snapshot: %s", self.name, book.symbol, exc)
            except Exception as exc:
                log.warning("%s: could not fetch the %s snapshot: %s", self.name, book.symbol, exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.market.config.backoff_max_seconds)

    def _on_user(self, message: str | bytes) -> None:
        event = self._decode(message)
        if type(event) is OrderUpdate:
            self.stats.order_updates += 1
            self._orders.put(event)
            if event.trade_id:
                self.stats.fills += 1
                self._fills.put(event)
            self.stats.dropped_updates = self._orders.dropped + self._fills.dropped
        elif type(event) is Balances:
            self._wake(self._user_waiters, ("balance", _ALL), event)

    async def _take(self, queues: UpdateQueues, symbol: str | None) -> list[OrderUpdate]:
        if symbol is not None and symbol not in self._ids_of:
            raise ConfigError("symbol", f"{symbol!r} is not a symbol of {self.name} (given: {sorted(self._ids_of)})")
        self._user()
        return await queues.take(symbol)

    # ------------------------------------------------------------------ waiting

    async def _wait(self, waiters: dict[tuple[str, str], list[asyncio.Future[Any]]], key: tuple[str, str]) -> Any:
        if self._closed:
            raise StreamClosedError(f"{self.name}: the stream adapter was closed")
        future = asyncio.get_running_loop().create_future()
        waiting = waiters.setdefault(key, [])
        waiting[:] = [f for f in waiting if not f.done()]  # calls cancelled meanwhile
        waiting.append(future)
        return await future

    @staticmethod
    def _wake(waiters: dict[tuple[str, str], list[asyncio.Future[Any]]], key: tuple[str, str], value: Any) -> None:
        for future in waiters.pop(key, ()):
            if not future.done():
                future.set_result(value)

    def _fail_user(self, why: str) -> None:
        """Calls waiting on the user data raise :class:`bot4.StreamClosedError` (updates queued stay)."""
        self._fail(self._user_waiters, why)
        for queues in (self._orders, self._fills):
            queues.fail(StreamClosedError(f"{self.name}: {why}"))

    def _fail(self, waiters: dict[tuple[str, str], list[asyncio.Future[Any]]], why: str) -> None:
        error = StreamClosedError(f"{self.name}: {why}")
        for waiting in waiters.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(error)
        waiters.clear()
