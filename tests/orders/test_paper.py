"""The paper exchange: matching, partial fills, fees, time in force, faults."""

from __future__ import annotations

import pytest

from bot4 import (
    ConfigError,
    ExchangeAdapter,
    ExchangeError,
    ExchangeTimeoutError,
    ExchangeUnavailableError,
    Faults,
    Fees,
    ManualClock,
    OrderNotFoundError,
    PaperExchange,
    make_plugin_manager,
)


@pytest.fixture
def venue() -> PaperExchange:
    v = PaperExchange("paper", fees=Fees(maker=0.0002, taker=0.001))
    v.set_book("BTC/USDT", bids=[(99, 1), (98, 2)], asks=[(101, 1), (102, 2), (103, 5)])
    return v


def test_it_is_an_adapter_offered_through_the_hook(venue: PaperExchange) -> None:
    assert isinstance(venue, ExchangeAdapter)
    pm = make_plugin_manager(entry_points=False)
    pm.register(venue, name="paper")
    assert pm.hook.bot4_exchange_adapters() == [[venue]]


def test_market_order_walks_the_book(venue: PaperExchange) -> None:
    order = venue.create_order("BTC/USDT", "market", "buy", 2.5)
    assert order["status"] == "closed" and order["filled"] == 2.5
    assert [(t["price"], t["amount"]) for t in order["trades"]] == [(101, 1), (102, 1.5)]
    assert order["average"] == pytest.approx((101 + 153) / 2.5)
    assert order["fee"]["cost"] == pytest.approx((101 + 153) * 0.001)
    assert venue.fetch_order_book("BTC/USDT")["asks"][0] == [102, 0.5]


def test_market_order_larger_than_the_book_fills_partly(venue: PaperExchange) -> None:
    order = venue.create_order("BTC/USDT", "market", "sell", 5)
    assert order["status"] == "canceled" and order["filled"] == 3 and order["remaining"] == 2


def test_limit_order_rests_then_fills_as_maker(venue: PaperExchange) -> None:
    order = venue.create_order("BTC/USDT", "limit", "buy", 2, 100)
    assert order["status"] == "open" and order["filled"] == 0
    assert [o["id"] for o in venue.fetch_open_orders()] == [order["id"]]
    venue.set_book("BTC/USDT", bids=[(98, 1)], asks=[(99.5, 1.5)])  # the market comes down
    done = venue.fetch_order(order["id"])
    assert done["filled"] == 1.5 and done["status"] == "open"
    assert done["trades"][0]["takerOrMaker"] == "maker" and done["trades"][0]["price"] == 100
    assert done["fee"]["cost"] == pytest.approx(1.5 * 100 * 0.0002)
    canceled = venue.cancel_order(order["id"])
    assert canceled["status"] == "canceled" and canceled["remaining"] == 0.5
    with pytest.raises(ExchangeError, match="not open"):
        venue.cancel_order(order["id"])
    with pytest.raises(OrderNotFoundError):
        venue.fetch_order("nope")


def test_crossing_limit_takes_up_to_its_price(venue: PaperExchange) -> None:
    order = venue.create_order("BTC/USDT", "limit", "buy", 5, 102)
    assert order["filled"] == 3 and order["status"] == "open"  # 1 at 101, 2 at 102, 2 rest at 102


def test_time_in_force(venue: PaperExchange) -> None:
    ioc = venue.create_order("BTC/USDT", "limit", "buy", 2, 101, {"timeInForce": "IOC"})
    assert (ioc["filled"], ioc["status"]) == (1, "canceled")
    fok = venue.create_order("BTC/USDT", "limit", "buy", 10, 103, {"timeInForce": "FOK"})
    assert (fok["filled"], fok["status"]) == (0, "canceled")
    post = venue.create_order("BTC/USDT", "limit", "buy", 1, 105, {"timeInForce": "PO"})
    assert post["status"] == "rejected"


def test_unknown_market_and_bad_orders(venue: PaperExchange) -> None:
    with pytest.raises(ExchangeError, match="no market"):
        venue.create_order("DOGE/USDT", "market", "buy", 1)
    with pytest.raises(ExchangeError):
        venue.create_order("BTC/USDT", "limit", "buy", 1, None)
    with pytest.raises(ExchangeError):
        venue.create_order("BTC/USDT", "market", "buy", -1)


def test_outage_windows_on_the_venue_clock() -> None:
    clock = ManualClock(0.0)
    venue = PaperExchange("flaky", faults=Faults(outages=((10.0, 20.0),)), clock=clock)
    venue.set_book("BTC/USDT", bids=[(99, 10)], asks=[(101, 10)])
    venue.fetch_ticker("BTC/USDT")
    clock.set(10.0)
    with pytest.raises(ExchangeUnavailableError):
        venue.fetch_ticker("BTC/USDT")
    clock.set(20.0)
    assert venue.fetch_ticker("BTC/USDT")["last"] == 100


def test_injected_errors_are_reproducible() -> None:
    def outcomes(seed: int) -> list[str]:
        venue = PaperExchange("x", faults=Faults(error_rate=0.2, timeout_rate=0.1), seed=seed)
        venue.set_book("BTC/USDT", bids=[(99, 1e9)], asks=[(101, 1e9)])
        out = []
        for _ in range(1000):
            try:
                venue.fetch_ticker("BTC/USDT")
                out.append("ok")
            except ExchangeTimeoutError:
                out.append("timeout")
            except ExchangeError:
                out.append("error")
        return out

    first = outcomes(7)
    assert first == outcomes(7)
    assert 250 <= first.count("error") + first.count("timeout") <= 350
    assert 60 <= first.count("timeout") <= 140


def test_fault_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        Faults(error_rate=-0.1)
    with pytest.raises(ConfigError):
        Faults(error_rate=0.7, timeout_rate=0.5)
    with pytest.raises(ConfigError):
        Faults(outages=((5.0, 1.0),))
    with pytest.raises(ConfigError):
        Fees(taker=0.5)
