"""One WebSocket stream kept open: reconnects, pings, a stall timeout, a breaker.

A :class:`Connection` connects to its URL (or to the URL a coroutine gives at every
connect: a venue's user-data stream needs a fresh key), hands every message to its
consumer synchronously, and reconnects when the connection ends:

- each connection attempt goes through the consumer's breaker (a failed one counts);
- reconnects wait a capped exponential backoff with full jitter (hosts spread out);
- WebSocket pings detect a dead peer, and a stall timeout a silent one;
- stopping it (``stop`` set, or its task cancelled) ends it promptly, also mid-handshake.

Requires the ``streams`` extra (websockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot4._numbers import is_number
from bot4.breaker.config import BreakerConfig
from bot4.errors import CircuitOpenError, ConfigError

if TYPE_CHECKING:
    from bot4.breaker.breaker import CircuitBreaker

__all__ = ["Connection", "ConnectionConfig", "ConnectionStats"]

log = logging.getLogger("bot4.streams")


@dataclass(frozen=True, kw_only=True)
class ConnectionConfig:
    """How a stream keeps its connection."""

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
    """The connection's breaker: open after this many failed connections in a row."""

    def __post_init__(self) -> None:
        for name in ("stall_seconds", "ping_seconds", "backoff_seconds", "backoff_max_seconds", "open_seconds"):
            value = getattr(self, name)
            if not is_number(value) or value <= 0:
                raise ConfigError(name, f"expected a positive number of seconds, got {value!r}")
        if self.backoff_max_seconds < self.backoff_seconds:
            raise ConfigError("backoff_max_seconds", "must not be below backoff_seconds")
        if not isinstance(self.breaker, BreakerConfig):
            raise ConfigError("breaker", f"expected a bot4.BreakerConfig, got {type(self.breaker).__name__}")


@dataclass
class ConnectionStats:
    """What a connection has been through (this process's counts)."""

    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    stalls: int = 0


class Connection:
    """A stream's connection, kept open until stopped (see the module's description).

    Args:
        name: what logs call it.
        url: the ``ws://`` or ``wss://`` URL, or a coroutine function giving it at every connect.
        config: timings and breaker settings.
        breaker: the breaker connection attempts go through (None: none).
        on_message: called with every message received, in order.
        on_open: awaited after every connect, before the first message (e.g. to subscribe).
        on_wake: called after every message and wake-up; returns in how many seconds it wants
            to be called again without a message (None: only on the next message).
        on_close: called when a connection attempt failed or a connection ended.
        stats: where the counts go.
    """

    def __init__(
        self,
        name: str,
        url: str | Callable[[], Awaitable[str]],
        config: ConnectionConfig,
        breaker: CircuitBreaker | None,
        on_message: Callable[[str | bytes], None],
        *,
        on_open: Callable[[Any], Awaitable[None]] | None = None,
        on_wake: Callable[[], float | None] | None = None,
        on_close: Callable[[], None] | None = None,
        stats: ConnectionStats | None = None,
    ) -> None:
        self.name = name
        self._url = url
        self.config = config
        self._breaker = breaker
        self._on_message = on_message
        self._on_open = on_open
        self._on_wake = on_wake
        self._on_close = on_close
        self.stats = stats if stats is not None else ConnectionStats()
        self.connected = asyncio.Event()
        """Set while connected (and a first message received)."""
        self.ws: Any = None
        """The open connection (None between connections)."""
        self._rng = random.Random()
        self._shown_url = url if isinstance(url, str) else getattr(url, "__qualname__", "its URL")

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Stay connected until ``stop`` is set (or the task is cancelled)."""
        stop = stop if stop is not None else asyncio.Event()
        attempt = 0
        config = self.config
        while not stop.is_set():
            try:
                received = await self._session(stop)
            except CircuitOpenError as exc:
                delay = exc.retry_after if exc.retry_after is not None else config.backoff_max_seconds
                log.warning("%s: breaker open, next try in %.2fs", self.name, delay)
            else:
                attempt = 0 if received else attempt + 1
                cap = min(config.backoff_max_seconds, config.backoff_seconds * 2 ** min(attempt, 30))
                delay = self._rng.uniform(0, cap)  # full jitter: reconnecting hosts spread out
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _session(self, stop: asyncio.Event) -> bool:
        """One connection: connect through the breaker, receive until it ends; whether any message came."""
        waiter = asyncio.ensure_future(stop.wait())
        try:
            ws = await self._connect(waiter)
            if ws is None:
                return False
            self.stats.connects += 1
            return await self._receive(ws, waiter)
        finally:
            if not waiter.done():
                waiter.cancel()
            if self._on_close is not None:
                self._on_close()

    async def _connect(self, waiter: asyncio.Future[Any]) -> Any:
        """A connection through the breaker (refused while it is open), or None: failed, or stopped meanwhile."""
        connecting: asyncio.Future[Any] | None = None
        try:
            with self._breaker.call() if self._breaker is not None else contextlib.nullcontext():
                connecting = asyncio.ensure_future(self._open())
                done, _ = await asyncio.wait({connecting, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if connecting not in done:
                    raise _Stopped  # neither a success nor a failure of the venue (the breaker ignores it)
                return connecting.result()
        except _Stopped:
            return None
        except CircuitOpenError:
            raise
        except Exception as exc:  # refused, unreachable, a bad handshake or redirect: back off and retry
            log.warning("%s: cannot connect to %s: %s", self.name, self._shown_url, exc)
            self.stats.connect_failures += 1
            return None
        finally:
            if connecting is not None and not connecting.done():
                connecting.cancel()
                with contextlib.suppress(BaseException):
                    await connecting

    async def _open(self) -> Any:
        """A connection to the URL, with the consumer's ``on_open`` done on it."""
        from websockets.asyncio.client import connect

        config = self.config
        url = self._url if isinstance(self._url, str) else await asyncio.wait_for(self._url(), config.open_seconds)
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ConfigError("url", f"expected a ws:// or wss:// URL, got {url!r}")
        ws = await connect(
            url,
            open_timeout=config.open_seconds,
            ping_interval=config.ping_seconds,
            ping_timeout=config.ping_seconds,
            close_timeout=1.0,
            compression=None,
            proxy=None,
            max_size=1 << 20,
        )
        try:
            if self._on_open is not None:
                await asyncio.wait_for(self._on_open(ws), config.open_seconds)
        except BaseException:
            await asyncio.shield(ws.close())
            raise
        return ws

    async def _receive(self, ws: Any, waiter: asyncio.Future[Any]) -> bool:
        """Receive until the connection ends, stalls, or the stream stops; whether any message came."""
        config, on_message, on_wake = self.config, self._on_message, self._on_wake
        loop = asyncio.get_running_loop()
        received = False
        last_message = loop.time()
        receive: asyncio.Future[Any] | None = None
        wake: float | None = None
        self.ws = ws
        try:
            while True:
                if receive is None:
                    receive = asyncio.ensure_future(ws.recv())
                timeout = config.stall_seconds - (loop.time() - last_message)
                if wake is not None:
                    timeout = min(timeout, wake)
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
                    on_message(message)
                elif loop.time() - last_message >= config.stall_seconds:
                    self.stats.stalls += 1
                    log.warning("%s: nothing for %.1fs: reconnecting", self.name, config.stall_seconds)
                    return received
                if on_wake is not None:
                    wake = on_wake()
        except Exception as exc:  # the connection closed or broke: reconnect
            log.warning("%s: connection lost: %s", self.name, exc)
            return received
        finally:  # also on cancellation (Ctrl-C): nothing left pending, nothing unretrieved
            self.ws = None
            if receive is not None and not receive.done():
                receive.cancel()
            self.connected.clear()
            self.stats.disconnects += 1
            await asyncio.shield(ws.close())


class _Stopped(asyncio.CancelledError):
    """The stream was stopped while connecting (ignored by the breaker, as a cancellation is)."""
