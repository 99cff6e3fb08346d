"""The ccxt adapter, offline: a real ccxt exchange object answering from canned HTTP responses.

ccxt's own request building, signing and response parsing run; only the transport
(``exchange.fetch``) is replaced.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ccxt
import pytest

from bot4 import (
    Core,
    ExchangeError,
    ExchangeTimeoutError,
    ExchangeUnavailableError,
    ManualClock,
    Order,
    OrderManager,
    OrderNotFoundError,
    OrderStatus,
)
from bot4.venues.ccxt import CcxtAdapter, order_status
from tests.risk.conftest import EPOCH, open_desk

MARKET = {
    "id": "BTCUSDT",
    "symbol": "BTC/USDT",
    "base": "BTC",
    "quote": "USDT",
    "baseId": "BTC",
    "quoteId": "USDT",
    "type": "spot",
    "spot": True,
    "margin": False,
    "swap": False,
    "future": False,
    "option": False,
    "active": True,
    "contract": False,
    "linear": None,
    "inverse": None,
    "contractSize": None,
    "precision": {"amount": 0.00001, "price": 0.01},
    "limits": {"amount": {"min": 0.00001, "max": 9000}, "price": {"min": 0.01, "max": 1e6}, "cost": {"min": 5}},
    "info": {"orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER", "STOP_LOSS_LIMIT"]},
    "taker": 0.001,
    "maker": 0.001,
}
FILLED = {
    "symbol": "BTCUSDT",
    "orderId": 28,
    "clientOrderId": "c1",
    "transactTime": 1507725176595,
    "price": "0.00",
    "origQty": "0.50000000",
    "executedQty": "0.50000000",
    "cummulativeQuoteQty": "50000.00",
    "status": "FILLED",
    "timeInForce": "GTC",
    "type": "MARKET",
    "side": "BUY",
    "fills": [
        {"price": "100000.00", "qty": "0.50000000", "commission": "0.0005", "commissionAsset": "BTC", "tradeId": 56}
    ],
}
RESTING = {
    "symbol": "BTCUSDT",
    "orderId": 29,
    "clientOrderId": "c2",
    "transactTime": 1507725176595,
    "price": "99000.00",
    "origQty": "0.50000000",
    "executedQty": "0.00000000",
    "cummulativeQuoteQty": "0.00",
    "status": "NEW",
    "timeInForce": "GTC",
    "type": "LIMIT",
    "side": "BUY",
    "fills": [],
}
CANCELED = dict(RESTING, status="CANCELED")
DEPTH = {"lastUpdateId": 1, "bids": [["99000.00", "1.0"]], "asks": [["100000.00", "2.0"]]}


class Venue:
    """Canned answers by (method, path fragment); records every request."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Any] = {}
        self.requests: list[tuple[str, str, str]] = []

    def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        self.requests.append((method, url, body or ""))
        for (m, fragment), answer in self.answers.items():
            if m == method and fragment in url:
                if isinstance(answer, Exception):
                    raise answer
                return answer
        raise ccxt.ExchangeError(f"no canned answer for {method} {url}")


@pytest.fixture
def venue() -> Venue:
    return Venue()


@pytest.fixture
def adapter(venue: Venue) -> CcxtAdapter:
    exchange = ccxt.binance({"apiKey": "key", "secret": "secret"})
    exchange.set_markets([MARKET])
    exchange.fetch = venue.fetch
    return CcxtAdapter(exchange)


def test_capabilities_and_fees_come_from_the_exchange(adapter: CcxtAdapter) -> None:
    assert adapter.name == "binance"
    assert adapter.capabilities["createOrder"] and adapter.capabilities["fetchOrderBook"]
    assert adapter.fees.taker == pytest.approx(0.001)


def test_market_order_round_trip_with_fee_in_quote(adapter: CcxtAdapter, venue: Venue) -> None:
    venue.answers[("POST", "/api/v3/order")] = FILLED
    order = adapter.create_order("BTC/USDT", "market", "buy", 0.5)
    assert order_status(order) is OrderStatus.FILLED
    (trade,) = order["trades"]
    assert (trade["price"], trade["amount"]) == (100000.0, 0.5)
    assert trade["fee"] == {"cost": pytest.approx(50.0), "currency": "USDT"}  # 0.0005 BTC at 100,000
    method, url, body = venue.requests[-1]
    assert method == "POST" and url.endswith("/api/v3/order")
    assert "symbol=BTCUSDT" in body and "quantity=0.5" in body and "signature=" in body  # ccxt signed it


def test_order_book_and_cancel(adapter: CcxtAdapter, venue: Venue) -> None:
    venue.answers[("GET", "/depth")] = DEPTH
    venue.answers[("POST", "/api/v3/order")] = RESTING
    venue.answers[("DELETE", "/api/v3/order")] = CANCELED
    book = adapter.fetch_order_book("BTC/USDT")
    assert book["bids"][0][:2] == [99000.0, 1.0] and book["asks"][0][:2] == [100000.0, 2.0]
    resting = adapter.create_order("BTC/USDT", "limit", "buy", 0.5, 99000.0)
    assert order_status(resting) is OrderStatus.ACCEPTED
    assert order_status(adapter.cancel_order(resting["id"], "BTC/USDT")) is OrderStatus.CANCELED


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ccxt.RequestTimeout("slow"), ExchangeTimeoutError),
        (ccxt.NetworkError("down"), ExchangeUnavailableError),
        (ccxt.OrderNotFound("gone"), OrderNotFoundError),
        (ccxt.InsufficientFunds("poor"), ExchangeError),
    ],
)
def test_ccxt_errors_become_bot4_errors(adapter: CcxtAdapter, venue: Venue, error: Exception, expected: type) -> None:
    venue.answers[("POST", "/api/v3/order")] = error
    with pytest.raises(expected) as info:
        adapter.create_order("BTC/USDT", "market", "buy", 0.5)
    assert info.value.venue == "binance"


@pytest.fixture
def core() -> Iterator[Core]:
    with open_desk(ManualClock(EPOCH), equity=1_000_000.0, prices={"BTC/USDT": 100000.0}) as c:
        yield c


def test_through_the_order_manager(core: Core, adapter: CcxtAdapter, venue: Venue) -> None:
    venue.answers[("POST", "/api/v3/order")] = FILLED
    core.plugins.register(adapter, name="binance")
    om = OrderManager(core, routing="primary")
    done = om.submit(Order(symbol="BTC/USDT", side="buy", quantity=0.5))
    assert done.status is OrderStatus.FILLED and done.tracked.venue == "binance"
    (pos,) = om.positions()
    assert (pos.quantity, pos.average_price, pos.fees) == (0.5, 100000.0, pytest.approx(50.0))
    assert core.risk.snapshot().positions["BTC/USDT"].quantity == 0.5
    assert core.breaker("binance").snapshot().calls == 1


def test_market_rules_come_from_the_exchange_s_markets(adapter: CcxtAdapter) -> None:
    from bot4.orders.market import Market, market_of

    assert market_of(adapter, "BTC/USDT") == Market(
        amount_step=0.00001, price_step=0.01, min_amount=0.00001, min_notional=5.0
    )
    assert market_of(adapter, "ETH/USDT") is None
    adapter.exchange.precisionMode = ccxt.DECIMAL_PLACES  # precision as a number of decimals
    adapter.exchange.markets["BTC/USDT"]["precision"] = {"amount": 5, "price": 2}
    rules = market_of(adapter, "BTC/USDT")
    assert rules is not None and rules.amount_step == pytest.approx(1e-5) and rules.price_step == pytest.approx(0.01)
