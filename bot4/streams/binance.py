"""Binance spot's WebSocket messages, parsed and checked field by field.

Market streams: ``<symbol>@bookTicker`` (best bid/ask with the book's update id),
``<symbol>@depth`` / ``@depth@100ms`` (depth diffs with first and final update ids, kept
in sync with a REST snapshot by :class:`bot4.streams.book.DepthBook`) and ``<symbol>@trade``;
a combined stream wraps each message as ``{"stream": name, "data": message}``. The user
data stream: ``executionReport`` (order updates and fills), ``outboundAccountPosition``
(balances) and ``balanceUpdate`` (transfers).

:class:`BinanceSpot` turns one decoded message into an event of
:mod:`bot4.streams.events` (or a :class:`~bot4.streams.book.DepthDiff`), naming the symbol
the desk's way (``BTC/USDT``) from the ids it was given. A message that is not what its
kind must be raises :class:`bot4.StreamMessageError` naming the field; one of a kind it
does not handle (or a subscription reply) gives None. Numbers arrive as strings and must
be finite and not negative (prices positive).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from bot4.errors import StreamMessageError
from bot4.streams.book import DepthDiff, DepthSnapshot, Level
from bot4.streams.events import BalanceDelta, Balances, OrderUpdate, Quote, Trade

__all__ = ["STATUSES", "TYPES", "BinanceSpot", "stream_names"]

_INF = math.inf
_new = tuple.__new__  # a NamedTuple made without its Python-level __new__ (the hot path)
_MAX_INT = (1 << 63) - 1  # ids and times are kept in 64-bit words

Event = Quote | Trade | DepthDiff | OrderUpdate | Balances | BalanceDelta

STATUSES = {
    "NEW": "open",
    "PARTIALLY_FILLED": "open",
    "PENDING_NEW": "open",
    "PENDING_CANCEL": "canceling",
    "FILLED": "closed",
    "CANCELED": "canceled",
    "REJECTED": "rejected",
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",
}
"""Binance's order status → ccxt's."""

TYPES = {
    "LIMIT": "limit",
    "LIMIT_MAKER": "limit",
    "MARKET": "market",
    "STOP_LOSS": "stop",
    "STOP_LOSS_LIMIT": "stop_limit",
    "TAKE_PROFIT": "take_profit",
    "TAKE_PROFIT_LIMIT": "take_profit_limit",
}
"""Binance's order type → bot4's (lower case)."""


def stream_names(symbols: Mapping[str, str], kinds: tuple[str, ...] = ("bookTicker",)) -> list[str]:
    """The combined-stream names for ``symbols`` (desk symbol → Binance id), e.g. ``btcusdt@bookTicker``."""
    return [f"{venue_id.lower()}@{kind}" for venue_id in symbols.values() for kind in kinds]


class BinanceSpot:
    """Parses Binance spot stream messages for the symbols it is given.

    Args:
        symbols: desk symbol → Binance symbol id, e.g. ``{"BTC/USDT": "BTCUSDT"}``. A
            message about a symbol not listed is refused (:class:`bot4.StreamMessageError`).
    """

    def __init__(self, symbols: Mapping[str, str]) -> None:
        self._desk = {venue_id.upper(): symbol for symbol, venue_id in symbols.items()}

    def parse(self, message: Any) -> Event | None:
        """The event ``message`` (decoded JSON) carries; None for a kind not handled."""
        if not isinstance(message, dict):
            raise StreamMessageError("stream", "message", f"expected a JSON object, got {type(message).__name__}")
        if "stream" in message and "data" in message:  # a combined stream's envelope
            message = message["data"]
            if not isinstance(message, dict):
                raise StreamMessageError("stream", "data", f"expected a JSON object, got {type(message).__name__}")
        kind = message.get("e")
        if kind is None:
            if "b" in message and "a" in message and "u" in message:
                return self.book_ticker(message)
            return None  # a subscription reply ({"result": null, "id": 1}) and the like
        parser = _PARSERS.get(kind) if isinstance(kind, str) else None
        return None if parser is None else parser(self, message)

    def raw_book_ticker(self, raw: str | bytes) -> Quote | None:
        """A combined stream's ``bookTicker`` message, straight from its JSON text: decoded
        into typed fields in one pass (msgspec) and checked as :meth:`book_ticker` checks.
        None when it is not a clean one (another kind, a reply, anything unusual): then
        :meth:`parse` of the decoded message says what it is, or what is wrong."""
        try:
            data = _decoder(raw).data
            u, e = int(data.u), data.E  # a JSON integer only: a quoted or fractional one raises
            e = 0 if e is _NO_TIME else int(e)
        except (ValueError, TypeError):  # msgspec's errors are ValueErrors
            return None
        bid, bid_size, ask, ask_size, symbol = data.b, data.B, data.a, data.A, self._desk.get(data.s)
        if (
            symbol
            and 0 < bid <= ask < _INF
            and 0 <= bid_size < _INF
            and 0 <= ask_size < _INF
            and 0 <= u <= _MAX_INT
            and 0 <= e <= _MAX_INT
        ):
            return _new(Quote, (symbol, bid, bid_size, ask, ask_size, u, e))
        return None

    def book_ticker(self, m: Mapping[str, Any]) -> Quote:
        """A ``bookTicker`` message: the best bid and ask."""
        try:  # the common case in one go; anything unusual is checked field by field below
            b, bq, a, aq, u, e = m["b"], m["B"], m["a"], m["A"], m["u"], m.get("E", 0)
            if type(b) is str and type(bq) is str and type(a) is str and type(aq) is str and type(u) is type(e) is int:
                bid, bid_size, ask, ask_size = float(b), float(bq), float(a), float(aq)
                symbol = self._desk.get(m["s"])
                ok = 0 < bid <= ask < _INF and 0 <= bid_size < _INF and 0 <= ask_size < _INF
                ok = ok and 0 <= u <= _MAX_INT and 0 <= e <= _MAX_INT
                if ok and symbol:
                    return _new(Quote, (symbol, bid, bid_size, ask, ask_size, u, e))
        except (KeyError, ValueError, TypeError):
            pass
        return self._book_ticker_checked(m)

    def _book_ticker_checked(self, m: Mapping[str, Any]) -> Quote:
        kind = "bookTicker"
        bid, ask = _price(m, "b", kind), _price(m, "a", kind)
        if bid > ask:
            raise StreamMessageError(kind, "b", f"bid {bid} above ask {ask}")
        return Quote(
            self._symbol(m, kind),
            bid,
            _amount(m, "B", kind),
            ask,
            _amount(m, "A", kind),
            _int(m, "u", kind),
            _time(m, "E", kind),
        )

    def depth_update(self, m: Mapping[str, Any]) -> DepthDiff:
        """A ``depthUpdate`` message: the levels changed between update ids ``U`` and ``u``."""
        kind = "depthUpdate"
        first, final = _int(m, "U", kind), _int(m, "u", kind)
        if first > final:
            raise StreamMessageError(kind, "U", f"first update id {first} after the final one {final}")
        return DepthDiff(
            self._symbol(m, kind), first, final, _levels(m, "b", kind), _levels(m, "a", kind), _time(m, "E", kind)
        )

    def trade(self, m: Mapping[str, Any]) -> Trade:
        """A ``trade`` message: the last price."""
        kind = "trade"
        return Trade(
            self._symbol(m, kind), _price(m, "p", kind), _amount(m, "q", kind), _int(m, "t", kind), _time(m, "T", kind)
        )

    def execution_report(self, m: Mapping[str, Any]) -> OrderUpdate:
        """An ``executionReport``: an order's new state, with the fill that changed it if any."""
        kind = "executionReport"
        status = _choice(m, "X", STATUSES, kind)
        order_type = _choice(m, "o", TYPES, kind)
        side = _choice(m, "S", {"BUY": "buy", "SELL": "sell"}, kind)
        client_id = m.get("c")
        if m.get("x") == "CANCELED" or status == "canceled":
            original = m.get("C")
            if isinstance(original, str) and original:
                client_id = original  # c is the cancel request's own id then
        if not isinstance(client_id, str) or not client_id:
            raise StreamMessageError(kind, "c", f"expected a client order id, got {client_id!r}")
        amount, filled = _amount(m, "q", kind), _amount(m, "z", kind)
        last_qty = _amount(m, "l", kind)
        trade_id = _int(m, "t", kind, minimum=-1)
        if last_qty > 0 and trade_id < 0:
            raise StreamMessageError(kind, "t", "a fill without a trade id")
        if filled > amount * (1 + 1e-9) and amount > 0:
            raise StreamMessageError(kind, "z", f"filled {filled} more than the order's {amount}")
        fee_currency = m.get("N")
        maker = m.get("m", False)
        if type(maker) is not bool:
            raise StreamMessageError(kind, "m", f"expected true or false, got {maker!r:.80}")
        return OrderUpdate(
            self._symbol(m, kind),
            client_id,
            str(_int(m, "i", kind)),
            side,
            order_type,
            status,
            _amount(m, "p", kind),
            amount,
            filled,
            last_qty,
            _amount(m, "L", kind),
            _amount(m, "n", kind),
            fee_currency if isinstance(fee_currency, str) else None,
            str(trade_id) if last_qty > 0 else "",
            _time(m, "T", kind) or _time(m, "E", kind),
            maker and last_qty > 0,
        )

    def account_position(self, m: Mapping[str, Any]) -> Balances:
        """An ``outboundAccountPosition``: the balances of the assets that changed."""
        kind = "outboundAccountPosition"
        rows = m.get("B")
        if not isinstance(rows, list):
            raise StreamMessageError(kind, "B", f"expected a list of balances, got {type(rows).__name__}")
        balances: dict[str, tuple[float, float]] = {}
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("a"), str) or not row["a"]:
                raise StreamMessageError(kind, "B", f"expected {{a, f, l}} rows, got {row!r}")
            balances[row["a"]] = (_amount(row, "f", kind), _amount(row, "l", kind))
        return Balances(balances, _time(m, "E", kind))

    def balance_update(self, m: Mapping[str, Any]) -> BalanceDelta:
        """A ``balanceUpdate``: a deposit, withdrawal or transfer."""
        kind = "balanceUpdate"
        asset = m.get("a")
        if not isinstance(asset, str) or not asset:
            raise StreamMessageError(kind, "a", f"expected an asset, got {asset!r}")
        return BalanceDelta(asset, _number(m, "d", kind), _time(m, "T", kind) or _time(m, "E", kind))

    @staticmethod
    def snapshot(m: Any) -> DepthSnapshot:
        """A REST depth snapshot (``GET /api/v3/depth``): ``lastUpdateId``, ``bids``, ``asks``."""
        kind = "depth snapshot"
        if not isinstance(m, dict):
            raise StreamMessageError(kind, "message", f"expected a JSON object, got {type(m).__name__}")
        return DepthSnapshot(_int(m, "lastUpdateId", kind), _levels(m, "bids", kind), _levels(m, "asks", kind))

    def _symbol(self, m: Mapping[str, Any], kind: str) -> str:
        venue_id = m.get("s")
        symbol = self._desk.get(venue_id) if isinstance(venue_id, str) else None
        if symbol is None:
            raise StreamMessageError(kind, "s", f"symbol {venue_id!r} is not one this stream follows")
        return symbol


_PARSERS: dict[str, Callable[[BinanceSpot, Mapping[str, Any]], Event]] = {
    "depthUpdate": BinanceSpot.depth_update,
    "trade": BinanceSpot.trade,
    "executionReport": BinanceSpot.execution_report,
    "outboundAccountPosition": BinanceSpot.account_position,
    "balanceUpdate": BinanceSpot.balance_update,
    "bookTicker": BinanceSpot.book_ticker,
}


_NO_TIME: Any = None  # the decoder's "no event time" (set on first use)


def _first_decode(raw: str | bytes) -> Any:
    """Decodes the first bookTicker message: imports the decoder, which replaces this."""
    return _ticker_decoder().decode(raw)


_decoder: Callable[[str | bytes], Any] = _first_decode


def _ticker_decoder() -> Any:
    """msgspec's decoder of a combined stream's bookTicker message (imported on first use)."""
    global _decoder, _NO_TIME
    from bot4.streams._ticker import DECODER
    from bot4.streams._ticker import NO_TIME as no_time

    _decoder, _NO_TIME = DECODER.decode, no_time
    return DECODER


def _number(m: Mapping[str, Any], field: str, kind: str) -> float:
    raw = m.get(field)
    if isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            raise StreamMessageError(kind, field, f"expected a number, got {raw!r}") from None
    elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    else:
        raise StreamMessageError(kind, field, f"expected a number, got {raw!r}")
    if not math.isfinite(value):
        raise StreamMessageError(kind, field, f"expected a finite number, got {raw!r}")
    return value


def _amount(m: Mapping[str, Any], field: str, kind: str) -> float:
    value = _number(m, field, kind)
    if value < 0:
        raise StreamMessageError(kind, field, f"expected a quantity of 0 or more, got {value}")
    return value


def _price(m: Mapping[str, Any], field: str, kind: str) -> float:
    value = _number(m, field, kind)
    if value <= 0:
        raise StreamMessageError(kind, field, f"expected a positive price, got {value}")
    return value


def _int(m: Mapping[str, Any], field: str, kind: str, minimum: int = 0) -> int:
    raw = m.get(field)
    if type(raw) is not int or not minimum <= raw <= _MAX_INT:
        raise StreamMessageError(kind, field, f"expected an integer in {minimum}..2**63-1, got {raw!r}")
    return raw


def _time(m: Mapping[str, Any], field: str, kind: str) -> int:
    """A venue time in ms; 0 when the message has none."""
    if field not in m:
        return 0
    return _int(m, field, kind)


def _choice(m: Mapping[str, Any], field: str, choices: Mapping[str, str], kind: str) -> str:
    raw = m.get(field)
    value = choices.get(raw) if isinstance(raw, str) else None
    if value is None:
        raise StreamMessageError(kind, field, f"expected one of {sorted(choices)}, got {raw!r}")
    return value


def _levels(m: Mapping[str, Any], field: str, kind: str) -> list[Level]:
    rows = m.get(field)
    if not isinstance(rows, list):
        raise StreamMessageError(kind, field, f"expected a list of [price, quantity], got {type(rows).__name__}")
    levels: list[Level] = []
    for row in rows:
        if not isinstance(row, list) or len(row) < 2:
            raise StreamMessageError(kind, field, f"expected [price, quantity], got {row!r}")
        levels.append((_price({field: row[0]}, field, kind), _amount({field: row[1]}, field, kind)))
    return levels
