"""The feed: a venue's market stream, received over WebSocket, into the shared core.

A :class:`Feed` connects to a venue's combined stream, parses every message
(:class:`bot4.streams.binance.BinanceSpot`), writes each symbol's top of book into the
quote table (``core.quotes``, with the venue's and the receive time) and its mid price
into the risk ledger as the symbol's mark (``risk.on_price``, at most every
``mark_seconds`` per symbol: the latest quote wins), so every worker's risk and routing
read fresh prices from shared memory.

Health: the connection is behind its own breaker (``feed:<venue>``); it reconnects with
capped exponential backoff and full jitter; WebSocket pings detect a dead peer and a
stall timeout a silent one; a quote older than the last one of its symbol (update id) is
dropped, as is a malformed message — counted and logged, never fatal to the connection.
While the feed is down its symbols' marks age, and ``RiskLimits(max_price_age=...)``
denies new risk on them (``STALE_PRICE``): stale data fails closed.

Requires the ``streams`` extra (``pip install bot4[streams]``: websockets and orjson).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot4._numbers import is_number
from bot4._symbols import symbol_problem
from bot4.errors import CircuitOpenError, ConfigError, StreamMessageError
from bot4.streams.adapter import StreamAdapter, quote_problem, stream_adapters
from bot4.streams.binance import BinanceSpot, stream_names
from bot4.streams.binance_ws import subscribe
from bot4.streams.connection import Connection, ConnectionConfig, ConnectionStats
from bot4.streams.events import Quote, Trade
from bot4.streams.quotes import MAX_VENUE_BYTES
from bot4.streams.sequence import UpdateIds

if TYPE_CHECKING:
    from bot4.core import Core
    from bot4.workers import WorkerContext

__all__ = ["Feed", "FeedConfig", "FeedStats", "FeedWorker"]

log = logging.getLogger("bot4.streams")


@dataclass(frozen=True, kw_only=True)
class FeedConfig(ConnectionConfig):
    """What a feed follows, and how it keeps its connection (the fields of
    :class:`bot4.streams.connection.ConnectionConfig`; its breaker is ``feed:<venue>``)."""

    url: str = ""
    """The venue's Binance-format WebSocket base, e.g. ``wss://stream.binance.com:9443``; the
    feed asks for ``<url>/stream?streams=...`` (a connection of its own, the fast path)."""
    adapter: str = ""
    """Instead of ``url``: the name of a stream adapter a plugin offers
    (``bot4_stream_adapters``), whose ``watch_ticker`` the feed follows for each symbol."""
    venue: str
    """The venue's name in the quote table (routing finds its quotes by it)."""
    symbols: Mapping[str, str]
    """Desk symbol → the venue's symbol id, e.g. ``{"BTC/USDT": "BTCUSDT"}`` (with an
    ``adapter``, the ids are the adapter's business: a sequence of desk symbols will do)."""
    kinds: tuple[str, ...] = ("bookTicker",)
    """Streams per symbol: ``bookTicker`` and ``trade``."""
    mark: bool = True
    """Write each symbol's mid price into the risk ledger as its mark."""
    mark_seconds: float = 0.05
    """At most one mark per symbol per this many seconds (the latest quote wins)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.adapter, str) or not isinstance(self.url, str) or bool(self.adapter) == bool(self.url):
            raise ConfigError(
                "url", f"expected a url or an adapter name (one of them), got {self.url!r}, {self.adapter!r}"
            )
        if self.adapter:
            if not self.adapter.isprintable():
                raise ConfigError("adapter", f"expected a printable adapter name, got {self.adapter!r}")
            if isinstance(self.symbols, (list, tuple)):
                object.__setattr__(self, "symbols", {symbol: symbol for symbol in self.symbols})
            if self.kinds != ("bookTicker",):
                raise ConfigError("kinds", f"a feed over an adapter follows its tickers only, got {self.kinds!r}")
        elif not self.url.startswith(("ws://", "wss://")):
            raise ConfigError("url", f"expected a ws:// or wss:// URL, got {self.url!r}")
        else:
            try:
                parts = urllib.parse.urlsplit(self.url)
                parts.port  # noqa: B018 - raises for a port out of range
            except ValueError as exc:
                raise ConfigError("url", f"{self.url!r}: {exc}") from None
            if not parts.hostname:
                raise ConfigError("url", f"no host in {self.url!r}")
        if not isinstance(self.venue, str) or not self.venue or not self.venue.isprintable():
            raise ConfigError("venue", f"expected a printable venue name, got {self.venue!r}")
        if len(self.venue.encode(errors="replace")) > MAX_VENUE_BYTES:
            raise ConfigError("venue", f"a venue name is at most {MAX_VENUE_BYTES} bytes, got {self.venue!r}")
        if not isinstance(self.symbols, Mapping) or not self.symbols:
            raise ConfigError("symbols", f"expected a mapping of desk symbol to venue id, got {self.symbols!r}")
        seen: set[str] = set()
        for symbol, venue_id in self.symbols.items():
            problem = symbol_problem(symbol)
            if problem is not None:
                raise ConfigError("symbols", f"desk symbol {symbol!r} {problem}")
            if self.adapter:
                if not isinstance(venue_id, str) or not venue_id or not venue_id.isprintable():
                    raise ConfigError("symbols", f"expected a printable venue id for {symbol!r}, got {venue_id!r}")
            elif not isinstance(venue_id, str) or not venue_id.isascii() or not venue_id.isalnum():
                raise ConfigError("symbols", f"expected an alphanumeric venue id for {symbol!r}, got {venue_id!r}")
            if venue_id.upper() in seen:
                raise ConfigError("symbols", f"venue id {venue_id!r} is given for two desk symbols")
            seen.add(venue_id.upper())
        if not self.kinds or any(kind not in ("bookTicker", "trade") for kind in self.kinds):
            raise ConfigError("kinds", f"expected streams among 'bookTicker' and 'trade', got {self.kinds!r}")
        if not is_number(self.mark_seconds) or self.mark_seconds < 0:
            raise ConfigError("mark_seconds", f"expected a number of seconds >= 0, got {self.mark_seconds!r}")

    @property
    def stream_url(self) -> str:
        """The combined-stream URL the feed connects to ("" with an adapter)."""
        if not self.url:
            return ""
        return f"{self.url.rstrip('/')}/stream?streams={'/'.join(stream_names(self.symbols, self.kinds))}"


@dataclass
class FeedStats(ConnectionStats):
    """What the feed has seen (this process's counts)."""

    messages: int = 0
    quotes: int = 0
    trades: int = 0
    marks: int = 0
    malformed: int = 0
    out_of_order: int = 0
    write_errors: int = 0


class Feed:
    """Runs one venue's market stream into ``core`` (see the module's description)."""

    def __init__(self, core: Core, config: FeedConfig) -> None:
        if not isinstance(config, FeedConfig):
            raise ConfigError("config", f"expected a FeedConfig, got {type(config).__name__}")
        self._core = core
        self.config = config
        self.stats = FeedStats()
        self._parser = BinanceSpot(config.symbols)
        # Streams named in the URL while it stays short; past that, asked for by requests once connected.
        self._by_request = stream_names(config.symbols, config.kinds) if len(config.stream_url) > _MAX_URL else []
        self._request_id = 0
        self._breaker = core.breaker(f"feed:{config.venue}", config.breaker)
        self._connection = (
            None
            if config.adapter
            else Connection(
                f"feed {config.venue}",
                config.stream_url if not self._by_request else f"{config.url.rstrip('/')}/stream",
                config,
                self._breaker,
                self.on_message,
                on_open=self._on_open,
                on_wake=self._on_wake,
                stats=self.stats,
            )
        )
        self.connected = asyncio.Event() if self._connection is None else self._connection.connected
        """Set while connected (and a first message received)."""
        self._quotes = core.quotes
        self._handles: dict[str, int] = {}  # symbol -> its quote record
        self._tickers_only = config.kinds == ("bookTicker",)
        self._now_ns = core.clock.now_ns
        self._raw_book_ticker = self._parser.raw_book_ticker
        self._marking, self._mark_every_ns = config.mark, config.mark_seconds * 1e9
        self._next_due_ns: float = _NEVER  # the soonest a conflated mark falls due
        self._ids = UpdateIds(f"feed {config.venue}")  # the newest update id per symbol of this connection
        self._marked_ns: dict[str, int] = {}
        self._unmarked: dict[str, float] = {}  # symbol -> the latest mid not marked yet (conflated)
        self._complained_ns: dict[str, int] = {}  # symbol -> when its last write error was logged
        self._rng = random.Random()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Receive until ``stop`` is set (or the task is cancelled), reconnecting as needed.

        Raises:
            ConfigError: the ``adapter`` named is not offered by any plugin.
        """
        if self._connection is not None:
            await self._connection.run(stop)
            return
        adapter = stream_adapters(self._core.plugins).get(self.config.adapter)
        if adapter is None:
            raise ConfigError("adapter", f"no plugin offers a stream adapter named {self.config.adapter!r}")
        stop = stop if stop is not None else asyncio.Event()
        watching = [asyncio.ensure_future(self._watch(adapter, symbol, stop)) for symbol in self.config.symbols]
        try:
            while not stop.is_set():  # the conflated marks fall due here
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._on_wake() or self.config.mark_seconds or 0.05)
        finally:
            for task in watching:
                task.cancel()
            await asyncio.gather(*watching, return_exceptions=True)
            self.connected.clear()

    async def _watch(self, adapter: StreamAdapter, symbol: str, stop: asyncio.Event) -> None:
        """Follow ``adapter``'s ticker of ``symbol`` into the quote table, through the feed's breaker."""
        config, stats = self.config, self.stats
        attempt = 0
        while not stop.is_set():
            try:
                with self._breaker.call():  # the adapter failing counts; a quiet market does not
                    try:
                        quote = await asyncio.wait_for(adapter.watch_ticker(symbol), config.stall_seconds)
                    except TimeoutError:
                        quote = None
            except Exception as exc:
                stats.connect_failures += 1
                self.connected.clear()
                self._ids.forget(symbol)  # the adapter may number its updates anew after this
                attempt += 1
                delay = (
                    exc.retry_after
                    if isinstance(exc, CircuitOpenError) and exc.retry_after is not None
                    else self._rng.uniform(
                        0, min(config.backoff_max_seconds, config.backoff_seconds * 2 ** min(attempt, 30))
                    )
                )
                log.warning("feed %s: %s ticker failed: %s; again in %.2fs", config.venue, symbol, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            if quote is None:
                stats.stalls += 1  # a quiet symbol, or an adapter reconnecting: ask again
                continue
            attempt = 0
            stats.messages += 1
            problem = quote_problem(quote, symbol)
            if problem is not None:
                stats.malformed += 1
                log.warning("feed %s: dropped a malformed quote of %s: %s", config.venue, symbol, problem)
                continue
            self.connected.set()
            self._on_quote(quote, self._core.clock.now_ns())

    async def _on_open(self, connection: Connection) -> None:
        self._ids.clear()  # a new connection may number its updates anew (a venue restarted)
        if self._by_request:
            await subscribe(connection, self._by_request, self._next_request_id)

    def _next_request_id(self) -> int:
        self._request_id += 1
        return self._request_id

    def _on_wake(self) -> float | None:
        """Mark the conflated quotes now due; how soon to look again (None: at the next message).
        Called after every message: one comparison until a mark is due."""
        if not self._unmarked:
            return None
        now = self._now_ns()
        if now < self._next_due_ns:
            return (self._next_due_ns - now) / 1e9
        self._mark_due(now)
        return (self._next_due_ns - now) / 1e9 if self._unmarked else None

    def on_message(self, message: str | bytes) -> None:
        """Handle one raw message: parse, drop what is malformed or out of order, write the rest."""
        self.stats.messages += 1
        now = self._now_ns()
        if self._tickers_only or _BOOK_TICKER[type(message) is bytes] in message:  # type: ignore[operator]
            quote = self._raw_book_ticker(message)  # the common case, in one pass
            if quote is not None:
                self._on_quote(quote, now)
                return
        import orjson

        try:
            event = self._parser.parse(orjson.loads(message))
        except (orjson.JSONDecodeError, StreamMessageError) as exc:
            self.stats.malformed += 1
            log.warning("feed %s: dropped a malformed message: %s", self.config.venue, exc)
            return
        if type(event) is Quote:
            self._on_quote(event, now)
        elif type(event) is Trade:
            self.stats.trades += 1
            self._write(event.symbol, now, self._quotes.publish_last, self.config.venue, event.symbol, event.price)

    def _on_quote(self, quote: Quote, now: int) -> None:
        symbol = quote.symbol
        if not self._ids.accept(symbol, quote.update_id):
            self.stats.out_of_order += 1  # older than (or the same as) what we hold: a replay or reordering
            return
        self.stats.quotes += 1
        handle = self._handles.get(symbol)
        if handle is None:
            handle = self._write(symbol, now, self._quotes.handle, self.config.venue, symbol)
            if handle is _FAILED:
                return
            self._handles[symbol] = handle
        try:
            self._quotes.write(handle, quote, now)
        except Exception:
            self._complain(symbol, now, "the quote")
        if self._marking:
            mid = (quote.bid + quote.ask) / 2
            if now - self._marked_ns.get(symbol, -(1 << 62)) >= self._mark_every_ns:
                self._mark(symbol, mid, now)
            else:
                self._unmarked[symbol] = mid  # marked once due, even if no quote follows
                due = self._marked_ns[symbol] + self._mark_every_ns
                if due < self._next_due_ns:
                    self._next_due_ns = due

    def _mark_due(self, now: int) -> None:
        every, marked, soonest = self._mark_every_ns, self._marked_ns, _NEVER
        for symbol, mid in list(self._unmarked.items()):
            due = marked.get(symbol, -(1 << 62)) + every
            if now >= due:
                self._mark(symbol, mid, now)
            else:
                soonest = min(soonest, due)
        self._next_due_ns = soonest

    def _mark(self, symbol: str, mid: float, now: int) -> None:
        self._unmarked.pop(symbol, None)
        self._marked_ns[symbol] = (
            now  # also when the ledger refuses it: retried at the next due mark, not at every quote
        )
        if self._write(symbol, now, self._core.risk.on_price, symbol, mid) is not _FAILED:
            self.stats.marks += 1

    def _write(self, symbol: str, now: int, write: Any, *args: Any) -> Any:
        """``write(*args)``; an error is counted and logged (once per symbol per 10 s), never raised:
        the core refused it (a full table, a full ledger), and the stream goes on."""
        try:
            return write(*args)
        except Exception:
            self._complain(symbol, now, getattr(write, "__name__", "it"))
            return _FAILED

    def _complain(self, symbol: str, now: int, what: str) -> None:
        """Count the write error being handled; log it with its traceback, once per symbol per 10 s."""
        self.stats.write_errors += 1
        if now - self._complained_ns.get(symbol, -(1 << 62)) >= _COMPLAIN_NS:
            self._complained_ns[symbol] = now
            log.exception("feed %s: could not write %s of %s", self.config.venue, what, symbol)

    def status(self) -> dict[str, Any]:
        """The feed's counts and connection state."""
        return {"venue": self.config.venue, "connected": self.connected.is_set(), **vars(self.stats)}


_FAILED = object()


_COMPLAIN_NS = 10_000_000_000
_NEVER = float("inf")
_MAX_URL = 2_000  # characters: a longer combined-stream URL is refused by servers (414)
_BOOK_TICKER = ("@bookTicker", b"@bookTicker")  # in a message of that stream (str, bytes)


@dataclass(frozen=True)
class FeedWorker:
    """A worker target that runs a feed until its supervisor stops it (``run_workers(FeedWorker(config), 1, core=core)``).

    Killed, it is restarted by the supervisor; its symbols' marks age meanwhile, and
    ``max_price_age`` denies new risk on them until the restarted feed marks them again.
    """

    config: FeedConfig
    until: Callable[[], bool] | None = None
    """Also stop (the worker finishing) once this returns True (asked every 50 ms)."""

    def __call__(self, context: WorkerContext) -> None:
        """Run the feed in this worker process."""
        asyncio.run(_until_stopped(Feed(context.core, self.config), context, self.until))


async def _until_stopped(feed: Feed, context: WorkerContext, until: Callable[[], bool] | None) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    while context.running() and not task.done() and not (until is not None and until()):  # heartbeats too
        await asyncio.sleep(0.05)
    stop.set()
    await task
