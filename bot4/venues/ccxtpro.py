"""Any ccxt.pro exchange's streams as a bot4 stream adapter (``pip install bot4[ccxt]``).

``CcxtProStreams(ccxt.pro.binance({...}))`` wraps an exchange object of ccxt.pro (shipped in
the ccxt package) behind bot4's :class:`bot4.streams.adapter.StreamAdapter` surface, and
turns what it gives into bot4's events:

- :meth:`~CcxtProStreams.watch_ticker`: the best bid and ask (ccxt.pro's
  ``watch_bids_asks`` where the exchange has it — Binance's ``bookTicker`` — else
  ``watch_ticker``), with the venue's update id where it sends one;
- :meth:`~CcxtProStreams.watch_order_book`: ccxt.pro's book, kept in sync by it;
- :meth:`~CcxtProStreams.watch_orders`: the account's fills (ccxt.pro's ``watch_my_trades``,
  each with its trade id) and the orders that ended without filling (``watch_orders``:
  canceled, expired, rejected), as order updates. ccxt's order structure carries no trade of
  its own, so a fill is told only by its trade — never twice, never made up from a
  cumulative quantity — and an order is filled when its fills add up to it;
- :meth:`~CcxtProStreams.watch_balance`: the total and used balance of each asset.

ccxt's errors become bot4's: a network error :class:`bot4.StreamClosedError` (ask again:
ccxt.pro reconnects), any other :class:`bot4.StreamError`. Register the adapter as a
plugin to offer it to feeds and order managers.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import ccxt

from bot4.errors import ConfigError, StreamClosedError, StreamError
from bot4.orders.report import STATUSES
from bot4.orders.updates import fee_in_quote
from bot4.plugins.hookspecs import hookimpl
from bot4.streams.adapter import UpdateQueues
from bot4.streams.book import BookView
from bot4.streams.events import Balances, OrderUpdate, Quote

__all__ = ["CcxtProStreams"]

T = TypeVar("T")
_ENDED_UNFILLED = frozenset({"canceled", "expired", "rejected"})
_MAX_INT = (1 << 63) - 1
_PAUSE, _PAUSE_MAX = 0.1, 5.0  # seconds before asking a failed account stream again


class CcxtProStreams:
    """A ccxt.pro exchange's streams (see the module's description).

    Args:
        exchange: a ccxt.pro exchange instance (with credentials for the account's streams).
        name: the venue's name (default: the exchange id), as its exchange adapter's.
        max_queued: order updates kept between two ``watch_orders`` calls.
    """

    def __init__(self, exchange: Any, *, name: str | None = None, max_queued: int = 10_000) -> None:
        if not hasattr(exchange, "watch_ticker"):
            raise ConfigError("exchange", f"expected a ccxt.pro exchange, got {type(exchange).__name__}")
        if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1:
            raise ConfigError("max_queued", f"expected an integer >= 1, got {max_queued!r}")
        self.exchange = exchange
        self.name = name or exchange.id
        self._counters: dict[str, itertools.count[int]] = {}  # symbol -> update ids where the venue sends none
        self._updates = UpdateQueues(max_queued)  # each consumer's order updates
        self._followers: list[asyncio.Task[None]] = []
        self._closed = False

    @hookimpl
    def bot4_stream_adapters(self) -> list[CcxtProStreams]:
        """This adapter, offered to feeds and order managers."""
        return [self]

    async def _call(self, method: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            return await method(*args)
        except ccxt.NetworkError as exc:
            raise StreamClosedError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        except ccxt.BaseError as exc:
            raise StreamError(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ market data

    async def watch_ticker(self, symbol: str) -> Quote:
        """The next best bid and ask of ``symbol``."""
        exchange = self.exchange
        if exchange.has.get("watchBidsAsks"):
            tickers = await self._call(exchange.watch_bids_asks, [symbol])
            ticker = tickers.get(symbol) if isinstance(tickers, Mapping) else None
        else:
            ticker = await self._call(exchange.watch_ticker, symbol)
        if not isinstance(ticker, Mapping):
            raise StreamError(f"{self.name}: no ticker of {symbol!r} in {ticker!r:.80}")
        info = ticker.get("info")
        update_id = (
            info.get("u") if isinstance(info, Mapping) else None
        )  # Binance's book update id; other venues: counted here
        if type(update_id) is not int or not 0 <= update_id <= _MAX_INT:
            update_id = next(self._counters.setdefault(symbol, itertools.count(1)))
        timestamp = ticker.get("timestamp")
        return Quote(
            symbol,
            _float(ticker.get("bid")),
            _float(ticker.get("bidVolume"), 0.0),
            _float(ticker.get("ask")),
            _float(ticker.get("askVolume"), 0.0),
            update_id,
            timestamp if type(timestamp) is int and 0 <= timestamp <= _MAX_INT else 0,
        )

    async def watch_order_book(self, symbol: str, limit: int | None = None) -> BookView:
        """The book of ``symbol`` after its next update (ccxt.pro keeps it in sync)."""
        book = await self._call(self.exchange.watch_order_book, symbol)
        bids = [(float(p), float(q)) for p, q, *_ in book["bids"][:limit]]
        asks = [(float(p), float(q)) for p, q, *_ in book["asks"][:limit]]
        nonce = book.get("nonce")
        return BookView(symbol, bids, asks, nonce if type(nonce) is int else 0)

    # ------------------------------------------------------------------ the account

    async def watch_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        """The fills and the unfilled ends of the account's orders since the last call (waits for
        one if none), oldest first (of ``symbol`` only, if given)."""
        self._follow()
        return await self._updates.take(symbol)

    async def watch_my_trades(self, symbol: str | None = None) -> list[OrderUpdate]:
        """The account's next fills (of ``symbol`` only, if given), each as an order update."""
        trades = await self._call(self.exchange.watch_my_trades, symbol)
        return [u for u in map(self._fill, trades) if u is not None]

    async def watch_balance(self) -> Balances:
        """The account's next balances: ``{asset: (free, used)}``."""
        balance = await self._call(self.exchange.watch_balance)
        free, used = balance.get("free") or {}, balance.get("used") or {}
        assets = {a: (_float(free.get(a), 0.0), _float(used.get(a), 0.0)) for a in set(free) | set(used)}
        timestamp = balance.get("timestamp")
        return Balances(assets, timestamp if type(timestamp) is int else 0)

    async def close(self) -> None:
        """Stop following the account and close the exchange's connections; waiting calls raise
        :class:`bot4.StreamClosedError`."""
        self._closed = True
        followers, self._followers = self._followers, []
        for task in followers:
            task.cancel()
        if followers:
            await asyncio.wait(followers)
        self._updates.fail(StreamClosedError(f"{self.name}: the stream adapter was closed"))
        await self.exchange.close()

    @property
    def dropped_updates(self) -> int:
        """Order updates dropped from a full queue."""
        return self._updates.dropped

    def _follow(self) -> None:
        """Follow the account's trades and orders in the background (from the first call on)."""
        if self._closed:
            raise StreamClosedError(f"{self.name}: the stream adapter was closed")
        if self._followers and not any(task.done() for task in self._followers):
            return
        for task in self._followers:
            task.cancel()
        self._followers = [
            asyncio.ensure_future(self._follow_trades()),
            asyncio.ensure_future(self._follow_orders()),
        ]

    async def _follow_trades(self) -> None:
        pause = _PAUSE
        while True:
            try:
                self._queue(await self.watch_my_trades())
                pause = _PAUSE
            except Exception as exc:
                pause = await self._fail(exc, pause)

    async def _follow_orders(self) -> None:
        pause = _PAUSE
        while True:
            try:
                orders = await self._call(self.exchange.watch_orders)
                pause = _PAUSE
            except Exception as exc:
                pause = await self._fail(exc, pause)
                continue
            self._queue([u for u in map(self._ended, orders) if u is not None])

    async def _fail(self, exc: Exception, pause: float) -> float:
        """A stream of the account failed: the waiting ``watch_orders`` calls raise it; ask ccxt.pro
        again after ``pause`` (doubled for the next failure in a row, up to a cap)."""
        self._updates.fail(exc if isinstance(exc, StreamError) else StreamError(f"{self.name}: {exc}"))
        await asyncio.sleep(pause)
        return min(pause * 2, _PAUSE_MAX)

    def _queue(self, updates: list[OrderUpdate]) -> None:
        for update in updates:
            self._updates.put(update)

    def _fill(self, trade: Any) -> OrderUpdate | None:
        """A ccxt trade structure as a fill-only order update (None: not a usable trade)."""
        if not isinstance(trade, Mapping):
            return None
        trade_id, symbol, amount, price = trade.get("id"), trade.get("symbol"), trade.get("amount"), trade.get("price")
        if type(trade_id) is int and not isinstance(trade_id, bool):
            trade_id = str(trade_id)
        if not isinstance(trade_id, str) or not trade_id or not trade_id.isprintable():
            return None
        if not isinstance(symbol, str) or not _positive(amount) or not _positive(price):
            return None
        fee: Mapping[str, Any] = trade["fee"] if isinstance(trade.get("fee"), Mapping) else {}
        info = trade.get("info")
        client_id = info.get("c") if isinstance(info, Mapping) else None
        client_id = client_id if isinstance(client_id, str) else ""
        timestamp = trade.get("timestamp")
        return OrderUpdate(
            symbol,
            client_id,
            str(trade.get("order") or ""),
            str(trade.get("side") or ""),
            str(trade.get("type") or ""),
            "",  # a fill says nothing of the order's status: its fills do
            0.0,
            0.0,
            None,
            float(amount),  # type: ignore[arg-type]
            float(price),  # type: ignore[arg-type]
            fee_in_quote(symbol, _float(fee.get("cost"), 0.0), fee.get("currency"), float(price)),  # type: ignore[arg-type]
            None,
            trade_id,
            timestamp if type(timestamp) is int else 0,
            trade.get("takerOrMaker") == "maker",
        )

    @staticmethod
    def _ended(order: Any) -> OrderUpdate | None:
        """A ccxt order structure that ended without filling in full, as a status update."""
        if not isinstance(order, Mapping) or order.get("status") not in _ENDED_UNFILLED:
            return None
        status, symbol = order["status"], order.get("symbol")
        if status not in STATUSES or not isinstance(symbol, str):
            return None
        timestamp = order.get("lastUpdateTimestamp") or order.get("timestamp")
        return OrderUpdate(
            symbol,
            order.get("clientOrderId") or "",
            str(order.get("id") or ""),
            str(order.get("side") or ""),
            str(order.get("type") or ""),
            status,
            _float(order.get("price"), 0.0),
            _float(order.get("amount"), 0.0),
            None,
            0.0,
            0.0,
            0.0,
            None,
            "",
            timestamp if type(timestamp) is int else 0,
        )

    def __repr__(self) -> str:
        return f"<CcxtProStreams {self.name}>"


def _positive(value: Any) -> bool:
    return (type(value) is float or type(value) is int) and 0 < value < math.inf


def _float(value: Any, default: float = math.nan) -> float:
    return float(value) if type(value) is float or type(value) is int else default
