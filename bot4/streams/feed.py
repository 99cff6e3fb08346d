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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot4._numbers import is_number
from bot4._symbols import symbol_problem
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
            if not isinstance(venue_id, str) or not venue_id.isascii() or not venue_id.isalnum():
                raise ConfigError("symbols", f"expected an alphanumeric venue id for {symbol!r}, got {venue_id!r}")
            if venue_id.upper() in seen:
                raise ConfigError("symbols", f"venue id {venue_id!r} is given for two desk symbols")
            seen.add(venue_id.upper())
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
        self._quotes = core.quotes
        self._handles: dict[str, int] = {}  # symbol -> its quote record
        self._last_update: dict[str, int] = {}  # symbol -> the newest update id of this connection
        self._behind: dict[str, int] = {}  # symbol -> quotes in a row older than _last_update
        self._marked_ns: dict[str, int] = {}
        self._unmarked: dict[str, float] = {}  # symbol -> the latest mid not marked yet (conflated)
        self._complained_ns: dict[str, int] = {}  # symbol -> when its last write error was logged
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
        waiter = asyncio.ensure_future(stop.wait())
        try:
            ws = await self._connect(waiter)
            if ws is None:
                return False
            self.stats.connects += 1
            self._last_update.clear()  # a new connection may number its updates anew (a venue restarted)
            self._behind.clear()
            return await self._receive(ws, waiter)
        finally:
            if not waiter.done():
                waiter.cancel()

    async def _connect(self, waiter: asyncio.Future[Any]) -> Any:
        """A connection through the breaker (refused while it is open), or None: failed, or stopped meanwhile."""
        from websockets.asyncio.client import connect

        config = self.config
        connecting: asyncio.Future[Any] | None = None
        try:
            with self._breaker.call():  # a failed connection counts against the breaker
                connecting = asyncio.ensure_future(
                    connect(
                        config.stream_url,
                        open_timeout=config.open_seconds,
                        ping_interval=config.ping_seconds,
                        ping_timeout=config.ping_seconds,
                        close_timeout=1.0,
                        compression=None,
                        proxy=None,
                        max_size=1 << 20,
                    )
                )
                done, _ = await asyncio.wait({connecting, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if connecting not in done:
                    raise _Stopped  # neither a success nor a failure of the venue (the breaker ignores it)
                return connecting.result()
        except _Stopped:
            return None
        except CircuitOpenError:
            raise
        except Exception as exc:  # refused, unreachable, a bad handshake or redirect: back off and retry
            log.warning("feed %s: cannot connect to %s: %s", config.venue, config.stream_url, exc)
            self.stats.connect_failures += 1
            return None
        finally:
            if connecting is not None and not connecting.done():
                connecting.cancel()
                with contextlib.suppress(BaseException):
                    await connecting

    async def _receive(self, ws: Any, waiter: asyncio.Future[Any]) -> bool:
        """Receive until the connection ends, stalls, or the feed stops; whether any message came."""
        config = self.config
        loop = asyncio.get_running_loop()
        received = False
        last_message = loop.time()
        receive: asyncio.Future[Any] | None = None
        try:
            while True:
                if receive is None:
                    receive = asyncio.ensure_future(ws.recv())
                idle = loop.time() - last_message
                timeout = config.stall_seconds - idle
                if self._unmarked:
                    timeout = min(timeout, config.mark_seconds)  # to mark a conflated quote once it is due
                done, _ = await asyncio.wait(
                    {receive, waiter}, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED
                )
                if waiter in done:
                    return received
                if receive in done:
                    message = receive.result()
                    receive = None
                    received = True
                    last_message = loop.time()
                    self.connected.set()
                    self.on_message(message)
                elif loop.time() - last_message >= config.stall_seconds:
                    self.stats.stalls += 1
                    log.warning("feed %s: nothing for %.1fs: reconnecting", config.venue, config.stall_seconds)
                    return received
                if self._unmarked:
                    self._mark_due(self._core.clock.now_ns())
        except Exception as exc:  # the connection closed or broke: reconnect
            log.warning("feed %s: connection lost: %s", config.venue, exc)
            return received
        finally:  # also on cancellation (Ctrl-C): nothing left pending, nothing unretrieved
            if receive is not None and not receive.done():
                receive.cancel()
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
        if type(event) is Quote:
            self._on_quote(event, now)
        elif type(event) is Trade:
            self.stats.trades += 1
            self._write(event.symbol, now, self._quotes.publish_last, self.config.venue, event.symbol, event.price)

    def _on_quote(self, quote: Quote, now: int) -> None:
        symbol = quote.symbol
        if quote.update_id <= self._last_update.get(symbol, -1):
            behind = self._behind[symbol] = self._behind.get(symbol, 0) + 1
            if behind < _RENUMBERED:
                self.stats.out_of_order += 1  # older than (or the same as) what we hold: a replay or reordering
                return
            log.warning(
                "feed %s: %s update ids went back and stayed back: taken as renumbered", self.config.venue, symbol
            )
        self._behind.pop(symbol, None)
        self._last_update[symbol] = quote.update_id
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
        if self.config.mark:
            mid = (quote.bid + quote.ask) / 2
            if now - self._marked_ns.get(symbol, -(1 << 62)) >= self.config.mark_seconds * 1e9:
                self._mark(symbol, mid, now)
            else:
                self._unmarked[symbol] = mid  # marked once due, even if no quote follows

    def _mark_due(self, now: int) -> None:
        due = self.config.mark_seconds * 1e9
        for symbol, mid in list(self._unmarked.items()):
            if now - self._marked_ns.get(symbol, -(1 << 62)) >= due:
                self._mark(symbol, mid, now)

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


class _Stopped(asyncio.CancelledError):
    """The feed was stopped while connecting (ignored by the breaker, as a cancellation is)."""


_FAILED = object()


_RENUMBERED = 50  # quotes in a row older than the newest of this connection: the venue renumbered them
_COMPLAIN_NS = 10_000_000_000


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
