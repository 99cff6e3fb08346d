"""One WebSocket stream kept open: reconnects, pings, a stall timeout, a breaker.

A :class:`Connection` connects to its URL (or to the URL a coroutine gives at every
connect: a venue's user-data stream needs a fresh key), hands every message to its
consumer synchronously, and reconnects when the connection ends:

- each connection attempt goes through the consumer's breaker (a failed one counts);
- reconnects wait a capped exponential backoff with full jitter (hosts spread out);
- WebSocket pings detect a dead peer, and a stall timeout a silent one;
- stopping it (``stop`` set, or its task cancelled) ends it promptly, also mid-handshake.

Over picows, the WebSocket client chosen by measurement (docs/benchmarks.md: it takes
messages about four times faster than websockets, and hands them over by callback, with
no task per message). Requires the ``streams`` extra.
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

__all__ = ["Connection", "ConnectionConfig", "ConnectionStats", "settle"]

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
        on_message: called with every message received (its bytes), in order.
        on_open: awaited with this connection after every connect (e.g. to subscribe with
            :meth:`send`); messages may arrive meanwhile.
        on_wake: called after every message and wake-up; returns in how many seconds it wants
            to be called again without a message (None: only after the next message).
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
        on_open: Callable[[Connection], Awaitable[None]] | None = None,
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
        """The open connection's transport (picows; None between connections)."""
        self._rng = random.Random()
        shown = url if isinstance(url, str) else getattr(url, "__qualname__", "its URL")
        self._shown_url = shown if len(shown) <= 120 else shown[:117] + "..."  # logs stay readable
        self._last_message = 0.0  # loop time of the last message of the connection
        self._received = False  # whether the connection brought a message
        self._wake_at = 0.0  # loop time the watcher wakes at next
        self._poke = asyncio.Event()  # wakes the watcher sooner
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ended: asyncio.Future[None] | None = None  # done when the connection ends

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Stay connected until ``stop`` is set (or the task is cancelled)."""
        stop = stop if stop is not None else asyncio.Event()
        attempt = 0
        config = self.config
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            began = loop.time()
            try:
                received = await self._session(stop)
            except CircuitOpenError as exc:
                delay = exc.retry_after if exc.retry_after is not None else config.backoff_max_seconds
                log.warning("%s: breaker open, next try in %.2fs", self.name, delay)
            else:
                # Only a connection that brought messages and lasted starts the backoff afresh: a
                # peer that answers once and hangs up is not hammered at the first backoff step.
                lasted = loop.time() - began >= config.backoff_max_seconds
                attempt = 0 if received and lasted else attempt + 1
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
                await settle(connecting)

    def send(self, text: str) -> bool:
        """Send ``text`` as a text message on the open connection; False when none is open."""
        transport = self.ws
        if transport is None or transport.is_disconnected or transport.is_close_frame_sent:
            return False
        from picows import WSMsgType

        transport.send(WSMsgType.TEXT, text.encode())
        return True

    async def _open(self) -> Any:
        """A connection to the URL (picows), with the consumer's ``on_open`` done on it."""
        from bot4.streams._picows import Listener, connect

        config = self.config
        loop = asyncio.get_running_loop()
        url = self._url if isinstance(self._url, str) else await asyncio.wait_for(self._url(), config.open_seconds)
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ConfigError("url", f"expected a ws:// or wss:// URL, got {url!r}")
        self._loop, self._received, self._last_message = loop, False, loop.time()
        self._ended = loop.create_future()
        ended = self._ended

        def gone() -> None:
            if not ended.done():
                ended.set_result(None)

        transport, _ = await asyncio.wait_for(
            connect(
                url,
                lambda: Listener(self._deliver, gone, _MAX_MESSAGE),
                config.open_seconds,
                config.ping_seconds,
                _MAX_MESSAGE,
            ),
            config.open_seconds,
        )
        self.ws = transport
        try:
            if self._on_open is not None:
                await asyncio.wait_for(self._on_open(self), config.open_seconds)
        except BaseException:
            self.ws = None
            transport.disconnect(graceful=False)
            raise
        return transport

    def _deliver(self, message: bytes) -> None:
        """A whole message arrived: to the consumer, in order (its error is logged, never fatal)."""
        self._last_message = now = self._loop.time()  # type: ignore[union-attr]  # set before any message
        if not self._received:
            self._received = True
            self.connected.set()
        try:
            self._on_message(message)
        except Exception:
            log.exception("%s: the consumer failed on a message", self.name)
        on_wake = self._on_wake
        if on_wake is not None:
            wake = on_wake()  # the consumer wants a wake-up sooner than the watcher's: poke it
            if wake is not None and now + wake < self._wake_at:
                self._wake_at = now + wake
                self._poke.set()

    async def _receive(self, transport: Any, waiter: asyncio.Future[Any]) -> bool:
        """Receive until the connection ends, stalls, or the stream stops; whether any message came.

        Messages are handed over as they arrive (picows calls back: no task or timer per
        message); this watches for the stop, the end, a stall and the consumer's wake-ups,
        sleeping between them."""
        config, on_wake = self.config, self._on_wake
        loop = asyncio.get_running_loop()
        self._wake_at = loop.time() + config.stall_seconds
        ended = self._ended
        assert ended is not None  # made by _open
        poked: asyncio.Future[Any] | None = None
        try:
            while True:
                timeout = config.stall_seconds - (loop.time() - self._last_message)
                wake = on_wake() if on_wake is not None else None
                if wake is not None:
                    timeout = min(timeout, wake)
                self._wake_at = loop.time() + max(timeout, 0.0)
                self._poke.clear()
                poked = asyncio.ensure_future(self._poke.wait())
                done, _ = await asyncio.wait(
                    {ended, waiter, poked}, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED
                )
                poked.cancel()
                if waiter in done:
                    return self._received
                if ended in done:
                    log.warning("%s: connection lost", self.name)
                    return self._received
                if loop.time() - self._last_message >= config.stall_seconds:
                    self.stats.stalls += 1
                    log.warning("%s: nothing for %.1fs: reconnecting", self.name, config.stall_seconds)
                    return self._received
        finally:  # also on cancellation (Ctrl-C): nothing left pending, the connection closed
            self.ws = None
            if poked is not None and not poked.done():
                poked.cancel()
            self.connected.clear()
            self.stats.disconnects += 1
            if not transport.is_disconnected:
                transport.send_close()
                transport.disconnect()
            await settle(asyncio.ensure_future(asyncio.wait_for(transport.wait_disconnected(), _CLOSE_SECONDS)))


async def settle(*tasks: asyncio.Future[Any]) -> None:
    """Wait until ``tasks`` are done, their own errors and cancellations retrieved and dropped;
    a cancellation of the task that waits is never swallowed (it raises here)."""
    if tasks:
        await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled():
                task.exception()


_MAX_MESSAGE = 1 << 20  # bytes: a longer message ends the connection
_CLOSE_SECONDS = 1.0  # a closing connection's peer gets this long to answer


class _Stopped(asyncio.CancelledError):
    """The stream was stopped while connecting (ignored by the breaker, as a cancellation is)."""
