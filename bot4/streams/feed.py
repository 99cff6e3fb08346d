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
import logging
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot4._numbers import is_number
from bot4.breaker.config import BreakerConfig
from bot4.errors import CircuitOpenError, ConfigError, StreamMessageError
from bot4.streams.binance import BinanceSpot, stream_names
from bot4.streams.events import Quote, Trade
from bot4.streams.quotes import MAX_VENUE_BYTES

if TYPE_CHECKING:
    from bot4.core import Core
    from bot4.workers import WorkerContext

__all__ = ["Feed", "FeedConfig", "FeedStats", "FeedWorker"]

log = logging.getLogger("bot4.streams")


@dataclass(frozen=True, kw_only=True)
class FeedConfig:
    """What a feed follows and how it keeps its connection."""

    url: str
    """The venue's WebSocket base, e.g. ``wss://stream.binance.com:9443``; the feed asks for
    ``<url>/stream?streams=...``."""
    venue: str
    """The venue's name in the quote table (routing finds its quotes by it)."""
    symbols: Mapping[str, str]
    """Desk symbol → the venue's symbol id, e.g. ``{"BTC/USDT": "BTCUSDT"}``."""
    kinds: tuple[str, ...] = ("bookTicker",)
    """Streams per symbol: ``bookTicker`` and ``trade``."""
    mark: bool = True
    """Write each symbol's mid price into the risk ledger as its mark."""
    mark_seconds: float = 0.05
    """At most one mark per symbol per this many seconds (the latest quote wins)."""
    stall_seconds: float = 5.0
    """No message for this long: the connection is dead; reconnect."""
    ping_seconds: float = 5.0
    """WebSocket ping interval, and how long a pong may take."""
    backoff_seconds: float = 0.1
    """The first reconnect waits up to this long (full jitter), doubling up to ``backoff_max_seconds``."""
    backoff_max_seconds: float = 5.0
    open_seconds: float = 5.0
    """How long opening a connection may take."""
    breaker: BreakerConfig = field(default_factory=lambda: BreakerConfig(consecutive_failures=5, open_seconds=2.0))
    """The connection's breaker (``feed:<venue>``): open after this many failed connections in a row."""

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("ws://", "wss://")):
            raise ConfigError("url", f"expected a ws:// or wss:// URL, got {self.url!r}")
        if not isinstance(self.venue, str) or not self.venue or len(self.venue.encode()) > MAX_VENUE_BYTES:
            raise ConfigError("venue", f"expected a venue name of 1 to {MAX_VENUE_BYTES} bytes, got {self.venue!r}")
        if not isinstance(self.symbols, Mapping) or not self.symbols:
            raise ConfigError(
                "symbols", f"expected a non-empty mapping of desk symbol to venue id, got {self.symbols!r}"
            )
        for symbol, venue_id in self.symbols.items():
            if not isinstance(symbol, str) or not isinstance(venue_id, str) or not venue_id.isalnum():
                raise ConfigError(
                    "symbols", f"expected desk symbol -> alphanumeric venue id, got {symbol!r}: {venue_id!r}"
                )
        if not self.kinds or any(kind not in ("bookTicker", "trade") for kind in self.kinds):
            raise ConfigError("kinds", f"expected streams among 'bookTicker' and 'trade', got {self.kinds!r}")
        for name in (
            "mark_seconds",
            "stall_seconds",
            "ping_seconds",
            "backoff_seconds",
            "backoff_max_seconds",
            "open_seconds",
        ):
            value = getattr(self, name)
            if not is_number(value) or value < 0 or (value == 0 and name != "mark_seconds"):
                raise ConfigError(name, f"expected a positive number of seconds, got {value!r}")
        if self.backoff_max_seconds < self.backoff_seconds:
            raise ConfigError("backoff_max_seconds", "must not be below backoff_seconds")

    @property
    def stream_url(self) -> str:
        """The combined-stream URL the feed connects to."""
        return f"{self.url.rstrip('/')}/stream?streams={'/'.join(stream_names(self.symbols, self.kinds))}"


@dataclass
class FeedStats:
    """What the feed has seen (this process's counts)."""

    messages: int = 0
    quotes: int = 0
    trades: int = 0
    marks: int = 0
    malformed: int = 0
    out_of_order: int = 0
    connects: int = 0
    connect_failures: int = 0
    write_errors: int = 0
    disconnects: int = 0
    stalls: int = 0


class Feed:
    """Runs one venue's market stream into ``core`` (see the module's description)."""

    def __init__(self, core: Core, config: FeedConfig) -> None:
        if not isinstance(config, FeedConfig):
            raise ConfigError("config", f"expected a FeedConfig, got {type(config).__name__}")
        self._core = core
        self.config = config
        self.stats = FeedStats()
        self.connected = asyncio.Event()
        """Set while connected (and a first message received)."""
        self._parser = BinanceSpot(config.symbols)
        self._breaker = core.breaker(f"feed:{config.venue}", config.breaker)
        self._last_update: dict[str, int] = {}
        self._quotes = core.quotes
        self._handles: dict[str, int] = {}  # symbol -> its quote record
        self._marked_ns: dict[str, int] = {}
        self._rng = random.Random()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Receive until ``stop`` is set (or the task is cancelled), reconnecting as needed."""
        stop = stop if stop is not None else asyncio.Event()
        attempt = 0
        while not stop.is_set():
            try:
                received = await self._session(stop)
            except CircuitOpenError as exc:
                delay = exc.retry_after if exc.retry_after is not None else self.config.backoff_max_seconds
                log.warning("feed %s: breaker open, next try in %.2fs", self.config.venue, delay)
            else:
                attempt = 0 if received else attempt + 1
                cap = min(self.config.backoff_max_seconds, self.config.backoff_seconds * 2 ** min(attempt, 30))
                delay = self._rng.uniform(0, cap)  # full jitter: reconnecting hosts spread out
            if stop.is_set():
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _session(self, stop: asyncio.Event) -> bool:
        """One connection: connect through the breaker, receive until it ends; whether any message came."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake

        config = self.config
        try:
            with self._breaker.call():  # a failed connection counts against the breaker; an open one refuses
                ws = await connect(
                    config.stream_url,
                    open_timeout=config.open_seconds,
                    ping_interval=config.ping_seconds,
                    ping_timeout=config.ping_seconds,
                    close_timeout=1.0,
                    compression=None,
                    proxy=None,
                    max_size=1 << 20,
                )
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            log.warning("feed %s: cannot connect to %s: %s", config.venue, config.stream_url, exc)
            self.stats.connect_failures += 1
            return False
        self.stats.connects += 1
        received = False
        waiter = asyncio.ensure_future(stop.wait())
        receive: asyncio.Future[Any] | None = None
        try:
            while True:
                receive = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait(
                    {receive, waiter}, timeout=config.stall_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                if waiter in done:
                    return received
                if not done:
                    self.stats.stalls += 1
                    log.warning("feed %s: nothing for %.1fs: reconnecting", config.venue, config.stall_seconds)
                    return received
                message = receive.result()
                received = True
                self.connected.set()
                self.on_message(message)
        except Exception as exc:  # the connection closed or broke: reconnect
            log.warning("feed %s: connection lost: %s", config.venue, exc)
            return received
        finally:  # also on cancellation (Ctrl-C): nothing left pending, nothing unretrieved
            for future in (waiter, receive):
                if future is not None and not future.done():
                    future.cancel()
            self.connected.clear()
            self.stats.disconnects += 1
            await asyncio.shield(ws.close())

    def on_message(self, message: str | bytes) -> None:
        """Handle one raw message: parse, drop what is malformed or out of order, write the rest."""
        import orjson

        self.stats.messages += 1
        now = self._core.clock.now_ns()
        try:
            event = self._parser.parse(orjson.loads(message))
        except (orjson.JSONDecodeError, StreamMessageError) as exc:
            self.stats.malformed += 1
            log.warning("feed %s: dropped a malformed message: %s", self.config.venue, exc)
            return
        try:
            if type(event) is Quote:
                self._on_quote(event, now)
            elif type(event) is Trade:
                self.stats.trades += 1
                self._quotes.publish_last(self.config.venue, event.symbol, event.price)
        except Exception:  # the core refused it (a full table, say): logged; the stream goes on
            self.stats.write_errors += 1
            log.exception("feed %s: could not write %r", self.config.venue, event)

    def _on_quote(self, quote: Quote, now: int) -> None:
        symbol = quote.symbol
        if quote.update_id <= self._last_update.get(symbol, -1):
            self.stats.out_of_order += 1  # older than (or the same as) what we hold: a replay or reordering
            return
        self._last_update[symbol] = quote.update_id
        self.stats.quotes += 1
        handle = self._handles.get(symbol)
        if handle is None:
            handle = self._handles[symbol] = self._quotes.handle(self.config.venue, symbol)
        self._quotes.write(handle, quote, now)
        if self.config.mark and now - self._marked_ns.get(symbol, -(1 << 62)) >= self.config.mark_seconds * 1e9:
            mid = (quote.bid + quote.ask) / 2
            if math.isfinite(mid) and mid > 0:
                self._core.risk.on_price(symbol, mid)
                self._marked_ns[symbol] = now
                self.stats.marks += 1

    def status(self) -> dict[str, Any]:
        """The feed's counts and connection state."""
        return {"venue": self.config.venue, "connected": self.connected.is_set(), **vars(self.stats)}


@dataclass(frozen=True)
class FeedWorker:
    """A worker target that runs a feed until its supervisor stops it (``run_workers(FeedWorker(config), 1, core=core)``).

    Killed, it is restarted by the supervisor; its symbols' marks age meanwhile, and
    ``max_price_age`` denies new risk on them until the restarted feed marks them again.
    """

    config: FeedConfig

    def __call__(self, context: WorkerContext) -> None:
        """Run the feed in this worker process."""
        asyncio.run(_until_stopped(Feed(context.core, self.config), context))


async def _until_stopped(feed: Feed, context: WorkerContext) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    while context.running() and not task.done():  # heartbeats, and hears the supervisor's stop
        await asyncio.sleep(0.05)
    stop.set()
    await task
