"""Binance spot's stream messages in the exchange's documented format: parsed, or refused by field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot4 import StreamMessageError
from bot4.streams.binance import BinanceSpot, stream_names
from bot4.streams.book import DepthDiff
from bot4.streams.events import BalanceDelta, Balances, OrderUpdate, Quote, Trade

SYMBOLS = {"BNB/USDT": "BNBUSDT", "BNB/BTC": "BNBBTC", "ETH/BTC": "ETHBTC"}

# Samples in the documented format (Binance spot API docs, WebSocket streams and user data stream).
BOOK_TICKER = b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}'
DEPTH_UPDATE = (
    b'{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}'
)
TRADE = (
    b'{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":true,"M":true}'
)
SNAPSHOT = b'{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}'
EXECUTION_NEW = (
    b'{"e":"executionReport","E":1499405658658,"s":"ETHBTC","c":"mUvoqJxFIILMdfAW5iGSOW","S":"BUY",'
    b'"o":"LIMIT","f":"GTC","q":"1.00000000","p":"0.10264410","P":"0.00000000","F":"0.00000000","g":-1,'
    b'"C":"","x":"NEW","X":"NEW","r":"NONE","i":4293153,"l":"0.00000000","z":"0.00000000","L":"0.00000000",'
    b'"n":"0","N":null,"T":1499405658657,"t":-1,"v":3,"I":8641984,"w":true,"m":false,"M":false,'
    b'"O":1499405658657,"Z":"0.00000000","Y":"0.00000000","Q":"0.00000000","W":1499405658657,"V":"NONE"}'
)
ACCOUNT = (
    b'{"e":"outboundAccountPosition","E":1564034571105,"u":1564034571073,'
    b'"B":[{"a":"ETH","f":"10000.000000","l":"0.000000"}]}'
)
BALANCE_UPDATE = b'{"e":"balanceUpdate","E":1573200697110,"a":"BTC","d":"100.00000000","T":1573200697068}'


def parse(raw: bytes | dict[str, Any]) -> Any:
    return BinanceSpot(SYMBOLS).parse(json.loads(raw) if isinstance(raw, bytes) else raw)


def test_book_ticker() -> None:
    assert parse(BOOK_TICKER) == Quote("BNB/USDT", 25.3519, 31.21, 25.3652, 40.66, 400900217, 0)


def test_a_combined_stream_envelope_is_opened() -> None:
    wrapped = {"stream": "bnbusdt@bookTicker", "data": json.loads(BOOK_TICKER)}
    assert parse(wrapped) == parse(BOOK_TICKER)
    assert stream_names({"BNB/USDT": "BNBUSDT"}, ("bookTicker", "depth@100ms")) == [
        "bnbusdt@bookTicker",
        "bnbusdt@depth@100ms",
    ]


def test_depth_update_trade_and_snapshot() -> None:
    assert parse(DEPTH_UPDATE) == DepthDiff("BNB/BTC", 157, 160, [(0.0024, 10.0)], [(0.0026, 100.0)], 1672515782136)
    assert parse(TRADE) == Trade("BNB/BTC", 0.001, 100.0, 12345, 1672515782136)
    snap = BinanceSpot.snapshot(json.loads(SNAPSHOT))
    assert snap.last_update_id == 1027024 and snap.bids == [(4.0, 431.0)] and snap.asks == [(4.000002, 12.0)]


def test_execution_reports_new_fill_and_cancel() -> None:
    new = parse(EXECUTION_NEW)
    assert isinstance(new, OrderUpdate)
    assert (new.symbol, new.client_order_id, new.order_id, new.side, new.type, new.status) == (
        "ETH/BTC",
        "mUvoqJxFIILMdfAW5iGSOW",
        "4293153",
        "buy",
        "limit",
        "open",
    )
    assert new.last_quantity == 0 and new.trade_id == "" and new.fee_currency is None
    fill = json.loads(EXECUTION_NEW)
    fill.update(x="TRADE", X="PARTIALLY_FILLED", l="0.4", z="0.4", L="0.1026", n="0.0004", N="BNB", t=77)
    partial = parse(fill)
    assert (partial.status, partial.last_quantity, partial.filled, partial.trade_id, partial.fee_currency) == (
        "open",
        0.4,
        0.4,
        "77",
        "BNB",
    )
    cancel = json.loads(EXECUTION_NEW)
    cancel.update(x="CANCELED", X="CANCELED", c="cancelRequestId", C="mUvoqJxFIILMdfAW5iGSOW")
    assert parse(cancel).client_order_id == "mUvoqJxFIILMdfAW5iGSOW"  # the order's id, not the cancel's
    assert parse(cancel).status == "canceled"


def test_balances() -> None:
    assert parse(ACCOUNT) == Balances({"ETH": (10000.0, 0.0)}, 1564034571105)
    assert parse(BALANCE_UPDATE) == BalanceDelta("BTC", 100.0, 1573200697068)


def test_replies_and_unknown_kinds_are_not_events() -> None:
    assert parse({"result": None, "id": 1}) is None
    assert parse({"e": "kline", "E": 1, "s": "BNBUSDT"}) is None


@pytest.mark.parametrize(
    ("raw", "field", "change"),
    [
        (BOOK_TICKER, "b", {"b": "abc"}),
        (BOOK_TICKER, "b", {"b": "NaN"}),
        (BOOK_TICKER, "a", {"a": "-1"}),
        (BOOK_TICKER, "b", {"b": "30", "a": "25"}),  # crossed
        (BOOK_TICKER, "u", {"u": "400900217"}),
        (BOOK_TICKER, "u", {"u": 1 << 63}),  # more than a 64-bit word holds
        (BOOK_TICKER, "s", {"s": "DOGEUSDT"}),  # not followed
        (BOOK_TICKER, "B", {"B": None}),
        (DEPTH_UPDATE, "U", {"U": 161}),  # first after final
        (DEPTH_UPDATE, "b", {"b": [["0.0024"]]}),
        (DEPTH_UPDATE, "a", {"a": "none"}),
        (DEPTH_UPDATE, "b", {"b": [["inf", "1"]]}),
        (DEPTH_UPDATE, "u", {"u": True}),
        (EXECUTION_NEW, "X", {"X": "WEIRD"}),
        (EXECUTION_NEW, "c", {"c": ""}),
        (EXECUTION_NEW, "t", {"x": "TRADE", "l": "0.5", "z": "0.5", "t": -1}),
        (EXECUTION_NEW, "z", {"z": "2"}),
        (EXECUTION_NEW, "S", {"S": "HOLD"}),
        (ACCOUNT, "B", {"B": [{"a": "", "f": "1", "l": "0"}]}),
        (ACCOUNT, "B", {"B": {}}),
        (BALANCE_UPDATE, "d", {"d": "1e999"}),
    ],
)
def test_a_malformed_message_is_refused_naming_the_field(raw: bytes, field: str, change: dict[str, Any]) -> None:
    message = json.loads(raw)
    message.update(change)
    with pytest.raises(StreamMessageError) as info:
        parse(message)
    assert info.value.field == field, info.value
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("raw", [BOOK_TICKER, DEPTH_UPDATE, TRADE, EXECUTION_NEW, ACCOUNT, BALANCE_UPDATE])
def test_a_venue_answering_empty_or_garbage_never_crashes(raw: bytes) -> None:
    for garbage in ({}, [], "text", 3, None, {"stream": "x", "data": []}, {"e": 5}):
        try:
            parse(garbage)  # type: ignore[arg-type]
        except StreamMessageError:
            pass
    message = json.loads(raw)
    for key in list(message):
        cut = copy.deepcopy(message)
        del cut[key]
        try:
            parse(cut)
        except StreamMessageError:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.sampled_from([BOOK_TICKER, DEPTH_UPDATE, TRADE, EXECUTION_NEW, ACCOUNT, BALANCE_UPDATE]),
    field=st.text(min_size=1, max_size=2),
    value=json_values,
)
def test_any_field_set_to_anything_parses_or_is_refused_cleanly(raw: bytes, field: str, value: Any) -> None:
    message = json.loads(raw)
    key = field if field in message or not message else sorted(message)[hash(field) % len(message)]
    message[key] = value
    try:
        parse(message)
    except StreamMessageError:
        pass


numbers_as_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-5, 10**20).map(str),
    st.sampled_from(["", "abc", "1e999", "-0", "0", "0.0", " 1", "1_0"]),
)
field_values = st.one_of(numbers_as_text, st.integers(-3, 2**64), st.booleans(), st.none(), st.floats())


@settings(max_examples=500, deadline=None)
@given(
    b=field_values,
    bq=field_values,
    a=field_values,
    aq=field_values,
    u=field_values,
    e=st.one_of(st.just("absent"), field_values),
    s=st.sampled_from(["BNBUSDT", "DOGEUSDT", 5]),
)
def test_the_book_ticker_fast_path_agrees_with_the_checked_one(
    b: Any, bq: Any, a: Any, aq: Any, u: Any, e: Any, s: Any
) -> None:
    message = {"u": u, "s": s, "b": b, "B": bq, "a": a, "A": aq}
    if e != "absent":
        message["E"] = e
    spot = BinanceSpot(SYMBOLS)

    def outcome(parse: Any) -> Any:
        try:
            return parse(message)
        except StreamMessageError as exc:
            return ("refused", exc.field)

    fast, checked = outcome(spot.book_ticker), outcome(spot._book_ticker_checked)
    if isinstance(fast, tuple) and fast and fast[0] == "refused":
        assert isinstance(checked, tuple) and checked[0] == "refused"
    else:
        assert fast == checked


TRICKY: list[Any] = [
    "25.35190000", "25.3519", 25.3519, 25, "0", "-1", "NaN", "nan", "Infinity", "inf", "1e400", "1e-400",
    " 25.3 ", "2_5.3", "0x1p3", "", "abc", None, True, [], {}, 400900217, "400900217", 400900217.0,
    1 << 63, (1 << 63) - 1, -1, "BNBUSDT", "bnbusdt", "DOGEUSDT", 0, 1e308,
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(
    fields=st.dictionaries(st.sampled_from(["u", "s", "b", "B", "a", "A", "E"]), st.sampled_from(TRICKY), max_size=4),
    drop=st.sets(st.sampled_from(["u", "s", "b", "B", "a", "A"]), max_size=2),
    as_text=st.booleans(),
)
def test_the_raw_ticker_path_agrees_with_the_checked_one(fields: dict[str, Any], drop: set[str], as_text: bool) -> None:
    """The one-pass decode is a shortcut, never another answer: it gives the checked parse's
    quote, or nothing (and the checked parse decides)."""
    data = json.loads(BOOK_TICKER)
    data.update(fields)
    for key in drop:
        data.pop(key, None)
    raw = json.dumps({"stream": "bnbusdt@bookTicker", "data": data})
    parser = BinanceSpot(SYMBOLS)
    fast = parser.raw_book_ticker(raw if as_text else raw.encode())
    try:
        checked = parser.parse(json.loads(raw))
    except StreamMessageError:
        checked = None
    assert fast is None or fast == checked, (fast, checked)
    if not fields and not drop:
        assert fast is not None  # a clean message takes the short way
