"""A paper venue's streams on loopback, in Binance spot's format.

:class:`PaperStream` listens to a :class:`bot4.PaperExchange` and serves what it does as
Binance spot serves its streams, so the same clients — bot4's feed
(:class:`bot4.streams.feed.Feed`), its stream adapter
(:class:`bot4.streams.binance_ws.BinanceStreams`), ccxt.pro — consume a paper venue as
they would the real one:

- ``/stream`` (combined, ``{"stream": ..., "data": ...}``) and ``/ws`` (raw): subscribed by
  the URL's ``?streams=a/b`` or by ``SUBSCRIBE`` requests; ``<id>@bookTicker`` (best bid and
  ask) and ``<id>@depth`` / ``<id>@depth@100ms`` (diffs with their update ids), published
  at every change of the venue's book (every update, no batching);
- ``GET /api/v3/depth?symbol=<id>&limit=<n>``: the book's snapshot with its ``lastUpdateId``;
- ``/ws/<any listen key>`` (raw) and ``/ws-api/v3`` (after a ``userDataStream.subscribe``
  or ``userDataStream.subscribe.signature`` request; events wrapped as
  ``{"subscriptionId": 0, "event": ...}``): ``executionReport`` at every change of an order
  and for every fill, with its trade id — the ids the venue's REST replies carry.

It binds 127.0.0.1 on a free port by default. Venue changes are told in the thread that
made them and published from the server's event loop, in the order they happened; a
client that falls ``max_queued`` messages behind is disconnected (as a venue does).
Run it in a running event loop (:meth:`PaperStream.start`) or in a thread of its own
(:meth:`PaperStream.start_thread`) beside a synchronous desk.

Requires the ``streams`` extra (websockets and orjson).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from bot4.errors import ConfigError
from bot4.streams.connection import settle
from bot4.venues.paper import PaperExchange

__all__ = ["PaperStream"]

_STATUS = {"closed": "FILLED", "canceled": "CANCELED", "rejected": "REJECTED", "expired": "EXPIRED"}
_START_SECONDS = 10.0
_STOP_SECONDS = 1.0


def _text(x: float) -> str:
    return f"{x:.12f}"


def _venue_id(symbol: str) -> str:
    """Binance's id of a desk symbol: ``BTC/USDT`` → ``BTCUSDT``."""
    return symbol.partition(":")[0].replace("/", "").upper()


class _Client:
    """One connection and what it is subscribed to."""

    def __init__(self, connection: Any, kind: str, streams: set[str], max_queued: int) -> None:
        self.connection = connection
        self.kind = kind  # "combined", "raw", "user" or "api"
        self.streams = streams
        self.user = kind == "user"  # user data flows (an api connection: once subscribed)
        self.queue: asyncio.Queue[str] = asyncio.Queue(max_queued)


class PaperStream:
    """Serves ``venue``'s books and order changes (see the module's description).

    Args:
        venue: the paper venue to publish.
        symbols: desk symbol → Binance id; symbols not given are named by dropping the
            slash (``BTC/USDT`` → ``BTCUSDT``).
        host, port: where to listen (port 0: a free one).
        max_queued: messages a client may fall behind before it is disconnected.
    """

    def __init__(
        self,
        venue: PaperExchange,
        symbols: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_queued: int = 100_000,
    ) -> None:
        if not isinstance(venue, PaperExchange):
            raise ConfigError("venue", f"expected a bot4.PaperExchange, got {type(venue).__name__}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError("port", f"expected 0..65535, got {port!r}")
        if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1:
            raise ConfigError("max_queued", f"expected an integer >= 1, got {max_queued!r}")
        self.venue = venue
        self._ids_of = {s: i.upper() for s, i in (symbols or {}).items()}
        self._symbol_of = {i: s for s, i in self._ids_of.items()}
        self.host, self.port = host, port
        self._max_queued = max_queued
        self._lock = threading.Lock()  # venue changes may come from any thread
        self._update_ids: dict[str, int] = {}  # symbol -> its book's update id
        self._sides: dict[str, tuple[dict[float, float], dict[float, float]]] = {}  # symbol -> last published book
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.published = 0
        """Messages published (each counted once, whoever receives it)."""
        self.disconnected_slow = 0
        """Clients disconnected for falling behind."""
        for symbol, book in venue.books().items():  # the books it has now: the first snapshot's
            self.book_changed(venue.name, symbol, book)
        venue.listen(self)

    # ------------------------------------------------------------------ running

    @property
    def url(self) -> str:
        """The market streams' base (``<url>/stream``, ``<url>/ws``)."""
        return f"ws://{self.host}:{self.port}"

    @property
    def user_url(self) -> str:
        """A user-data stream's URL (with a listen key of its own)."""
        return f"{self.url}/ws/paper-listen-key"

    @property
    def rest_url(self) -> str:
        """The REST base: ``<rest_url>/api/v3/depth?symbol=...``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen (in the running event loop)."""
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._http,
            compression=None,
            ping_interval=None,
            max_size=1 << 20,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        server, self._server = self._server, None
        self._loop = None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):  # a plain HTTP client may hold its connection open
                await asyncio.wait_for(server.wait_closed(), _STOP_SECONDS)

    def start_thread(self) -> None:
        """Serve from a thread of its own (for a synchronous desk); :meth:`stop_thread` ends it."""
        if self._thread is not None:
            raise ConfigError("thread", "the stream is served from a thread already")
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop())
                loop.close()

        self._thread = threading.Thread(target=serve, name=f"paper-stream-{self.venue.name}", daemon=True)
        self._thread.start()
        if not ready.wait(_START_SECONDS) or failure:
            self._thread = None
            raise ConfigError("port", f"the paper stream could not listen on {self.host}:{self.port}: {failure}")

    def stop_thread(self) -> None:
        """Stop a stream served by :meth:`start_thread` (waits for its thread)."""
        thread, self._thread = self._thread, None
        loop = self._loop
        if thread is None:
            return
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(loop.stop)
        thread.join(_START_SECONDS)

    # ------------------------------------------------------------------ the venue tells

    def book_changed(self, venue: str, symbol: str, book: Mapping[str, list[list[float]]]) -> None:
        """Publish ``symbol``'s new book: its best bid and ask, and the levels that changed."""
        bids = {p: q for p, q in book["bids"]}
        asks = {p: q for p, q in book["asks"]}
        with self._lock:
            old_bids, old_asks = self._sides.get(symbol, ({}, {}))
            changed_bids = _changes(old_bids, bids)
            changed_asks = _changes(old_asks, asks)
            if not changed_bids and not changed_asks:
                return
            update_id = self._update_ids.get(symbol, 0) + 1
            self._update_ids[symbol] = update_id
            self._sides[symbol] = (bids, asks)
            venue_id = self._ids_of.get(symbol) or _venue_id(symbol)
            self._symbol_of.setdefault(venue_id, symbol)
            stream = venue_id.lower()
            now_ms = int(time.time() * 1000)
            if book["bids"] and book["asks"]:
                (bid, bid_size), (ask, ask_size) = book["bids"][0], book["asks"][0]
                ticker = {
                    "u": update_id,
                    "s": venue_id,
                    "b": _text(bid),
                    "B": _text(bid_size),
                    "a": _text(ask),
                    "A": _text(ask_size),
                }
                self._publish(f"{stream}@bookTicker", ticker)
            diff = {
                "e": "depthUpdate",
                "E": now_ms,
                "s": venue_id,
                "U": update_id,
                "u": update_id,
                "b": [[_text(p), _text(q)] for p, q in changed_bids],
                "a": [[_text(p), _text(q)] for p, q in changed_asks],
            }
            self._publish(f"{stream}@depth", diff)
            self._publish(f"{stream}@depth@100ms", diff)

    def order_changed(
        self, venue: str, order: Mapping[str, Any], execution: str, trade: Mapping[str, Any] | None, filled: float
    ) -> None:
        """Publish an ``executionReport`` of ``order``."""
        now_ms = int(time.time() * 1000)
        symbol, amount = order["symbol"], order["amount"]
        if trade is not None:
            status = "FILLED" if filled >= amount * (1 - 1e-12) else "PARTIALLY_FILLED"
        elif order["status"] == "open":
            status = "PARTIALLY_FILLED" if filled > 0 else "NEW"
        else:
            status = "EXPIRED" if execution == "EXPIRED" else _STATUS[order["status"]]
        kind = order["type"].upper()
        if order.get("triggerPrice") is not None:
            kind = "STOP_LOSS_LIMIT" if order["type"] == "limit" else "STOP_LOSS"
        client_id = order.get("clientOrderId") or f"paper-{order['id']}"
        report = {
            "e": "executionReport",
            "E": now_ms,
            "s": self._ids_of.get(symbol) or _venue_id(symbol),
            "c": client_id,
            "S": order["side"].upper(),
            "o": kind,
            "f": order.get("timeInForce") or "GTC",
            "q": _text(amount),
            "p": _text(order["price"] or 0.0),
            "P": _text(order.get("triggerPrice") or 0.0),
            "F": "0.000000000000",
            "g": -1,
            "C": client_id if execution == "CANCELED" else "",
            "x": execution,
            "X": status,
            "r": "NONE",
            "i": int(order["id"]),
            "l": _text(trade["amount"] if trade else 0.0),
            "z": _text(filled),
            "L": _text(trade["price"] if trade else 0.0),
            "n": _text(trade["fee"]["cost"] if trade else 0.0),
            "N": trade["fee"]["currency"] if trade else None,
            "T": now_ms,
            "t": int(trade["id"]) if trade else -1,
            "I": 0,
            "w": status in ("NEW", "PARTIALLY_FILLED"),
            "m": bool(trade and trade.get("takerOrMaker") == "maker"),
            "M": False,
            "O": now_ms,
            "Z": _text(order.get("cost") or 0.0),
            "Y": _text(trade["amount"] * trade["price"] if trade else 0.0),
            "Q": "0.000000000000",
        }
        with self._lock:
            self._publish(None, report)

    def _publish(self, stream: str | None, data: dict[str, Any]) -> None:
        """Send ``data`` to the clients of ``stream`` (None: the user-data clients), from the loop."""
        loop = self._loop
        if loop is None:
            return  # not serving: nobody to tell
        self.published += 1
        try:
            loop.call_soon_threadsafe(self._send, stream, data)
        except RuntimeError:
            pass  # the loop closed meanwhile

    def _send(self, stream: str | None, data: dict[str, Any]) -> None:
        import orjson

        raw = combined = wrapped = None
        for client in list(self._clients):
            if stream is None:
                if not client.user:
                    continue
                if client.kind == "api":
                    wrapped = wrapped or orjson.dumps({"subscriptionId": 0, "event": data}).decode()
                    text = wrapped
                else:
                    raw = raw or orjson.dumps(data).decode()
                    text = raw
            elif stream in client.streams:
                if client.kind == "combined":
                    combined = combined or orjson.dumps({"stream": stream, "data": data}).decode()
                    text = combined
                else:
                    raw = raw or orjson.dumps(data).decode()
                    text = raw
            else:
                continue
            try:
                client.queue.put_nowait(text)
            except asyncio.QueueFull:  # a client this far behind is cut off, as a venue does
                self.disconnected_slow += 1
                self._clients.discard(client)
                client.connection.transport.abort()

    # ------------------------------------------------------------------ connections

    async def _handler(self, connection: Any) -> None:
        import orjson

        parts = urllib.parse.urlsplit(connection.request.path if connection.request else "/")
        path = parts.path
        if path.startswith("/stream"):
            kind = "combined"
        elif path == "/ws":
            kind = "raw"
        elif path.startswith("/ws-api/"):
            kind = "api"
        elif path.startswith("/ws/"):
            kind = "user"
        else:
            await connection.close(1008, "unknown stream path")
            return
        streams = set(filter(None, urllib.parse.parse_qs(parts.query).get("streams", [""])[0].split("/")))
        client = _Client(connection, kind, streams, self._max_queued)
        self._clients.add(client)
        writer = asyncio.ensure_future(self._write(client))
        try:
            async for message in connection:
                try:
                    request = orjson.loads(message)
                except orjson.JSONDecodeError:
                    await connection.close(1003, "not JSON")
                    return
                reply = self._answer(client, request)
                if reply is not None:
                    client.queue.put_nowait(orjson.dumps(reply).decode())
        except Exception:  # noqa: S110 - a client gone mid-message: its connection is over
            pass
        finally:
            self._clients.discard(client)
            writer.cancel()
            await settle(writer)

    @staticmethod
    async def _write(client: _Client) -> None:
        connection, queue = client.connection, client.queue
        with contextlib.suppress(Exception):
            while True:
                await connection.send(await queue.get())

    def _answer(self, client: _Client, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return {"error": {"code": 2, "msg": "invalid request"}}
        method, request_id, params = request.get("method"), request.get("id"), request.get("params")
        if method in ("userDataStream.subscribe", "userDataStream.subscribe.signature") and client.kind == "api":
            client.user = True
            return {"id": request_id, "status": 200, "result": {"subscriptionId": 0}}
        if method == "SUBSCRIBE" and isinstance(params, list):
            client.streams.update(str(p) for p in params)
            return {"result": None, "id": request_id}
        if method == "UNSUBSCRIBE" and isinstance(params, list):
            client.streams.difference_update(str(p) for p in params)
            return {"result": None, "id": request_id}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(client.streams), "id": request_id}
        return {"error": {"code": 2, "msg": f"unknown method {method!r}"}, "id": request_id}

    def _http(self, connection: Any, request: Any) -> Any:
        """Plain HTTP requests (no WebSocket upgrade): the REST depth snapshot."""
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        import orjson
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        parts = urllib.parse.urlsplit(request.path)
        query = urllib.parse.parse_qs(parts.query)
        status, body = http.HTTPStatus.NOT_FOUND, {"code": -1, "msg": "not found"}
        if parts.path == "/api/v3/ping":
            status, body = http.HTTPStatus.OK, {}
        elif parts.path == "/api/v3/depth":
            venue_id = query.get("symbol", [""])[0].upper()
            symbol = self._symbol_of.get(venue_id)
            try:
                limit = int(query.get("limit", ["100"])[0])
            except ValueError:
                limit = -1
            if symbol is None or not 1 <= limit <= 5000:
                status, body = http.HTTPStatus.BAD_REQUEST, {"code": -1121, "msg": "Invalid symbol or limit."}
            else:
                with self._lock:
                    bids, asks = self._sides.get(symbol, ({}, {}))
                    update_id = self._update_ids.get(symbol, 0)
                    status, body = (
                        http.HTTPStatus.OK,
                        {
                            "lastUpdateId": update_id,
                            "bids": [[_text(p), _text(q)] for p, q in sorted(bids.items(), reverse=True)[:limit]],
                            "asks": [[_text(p), _text(q)] for p, q in sorted(asks.items())[:limit]],
                        },
                    )
        payload = orjson.dumps(body)
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return Response(status.value, status.phrase, headers, payload)


def _changes(old: dict[float, float], new: dict[float, float]) -> list[tuple[float, float]]:
    """The levels of ``new`` that differ from ``old``, and ``old``'s gone ones at quantity 0."""
    changed = [(p, q) for p, q in new.items() if old.get(p) != q]
    changed.extend((p, 0.0) for p in old if p not in new)
    return changed
