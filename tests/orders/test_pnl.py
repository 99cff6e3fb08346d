"""P&L against hand-computed cases."""

from __future__ import annotations

import pytest

from bot4 import ConfigError, FillError, Side
from bot4.orders.pnl import CostMethod, PnlBook

BUY, SELL = Side.BUY, Side.SELL


def view(book: PnlBook, symbol: str = "BTC") -> tuple[float, float, float]:
    (v,) = book.positions(symbol=symbol)
    return v.quantity, v.average_price, v.realized_pnl


def test_average_cost_partial_closes_and_a_flip() -> None:
    book = PnlBook()
    book.on_fill("BTC", BUY, 2, 100)
    book.on_fill("BTC", BUY, 2, 110)
    assert view(book) == (4, 105, 0)
    assert book.on_fill("BTC", SELL, 3, 120) == pytest.approx(45)  # 3 x (120 - 105)
    assert view(book) == pytest.approx((1, 105, 45))
    assert book.on_fill("BTC", SELL, 3, 90) == pytest.approx(-15)  # closes 1 at -15, opens 2 short at 90
    assert view(book) == pytest.approx((-2, 90, 30))


def test_fifo_closes_the_oldest_lots_first() -> None:
    book = PnlBook(CostMethod.FIFO)
    book.on_fill("BTC", BUY, 2, 100)
    book.on_fill("BTC", BUY, 2, 110)
    assert book.on_fill("BTC", SELL, 3, 120) == pytest.approx(50)  # 2 x 20 + 1 x 10
    assert view(book) == pytest.approx((1, 110, 50))  # the 110 lot is what is left
    assert book.on_fill("BTC", SELL, 3, 90) == pytest.approx(-20)
    assert view(book) == pytest.approx((-2, 90, 30))


def test_short_positions_and_unrealized_at_the_mark() -> None:
    book = PnlBook()
    book.on_fill("ETH", SELL, 5, 100)
    assert book.on_fill("ETH", BUY, 2, 90) == pytest.approx(20)
    book.on_mark("ETH", 95)
    (v,) = book.positions()
    assert v.quantity == -3 and v.unrealized_pnl == pytest.approx(15)  # -3 x (95 - 100)
    assert v.net_pnl == pytest.approx(35)


def test_fees_are_netted() -> None:
    book = PnlBook()
    book.on_fill("BTC", BUY, 1, 100, fee=0.1)
    book.on_fill("BTC", SELL, 1, 101, fee=0.1)
    totals = book.totals()
    assert totals.realized == pytest.approx(1.0)
    assert totals.fees == pytest.approx(0.2)
    assert totals.net == pytest.approx(0.8)


def test_positions_net_per_symbol_venue_strategy() -> None:
    book = PnlBook()
    book.on_fill("BTC", BUY, 1, 100, venue="a", strategy="s1")
    book.on_fill("BTC", SELL, 1, 110, venue="b", strategy="s1")  # a separate (short) position
    book.on_fill("BTC", SELL, 1, 110, venue="a", strategy="s1")  # closes the first
    book.on_mark("BTC", 105)
    assert book.net_quantity("BTC") == -1
    by_venue = book.by("venue")
    assert by_venue["a"].realized == pytest.approx(10) and by_venue["a"].unrealized == 0
    assert by_venue["b"].unrealized == pytest.approx(5)  # -1 x (105 - 110)
    assert set(book.by("strategy")) == {"s1"}
    with pytest.raises(ConfigError):
        book.by("colour")


def test_many_partial_fills_add_up() -> None:
    book = PnlBook()
    for _ in range(10):
        book.on_fill("BTC", BUY, 0.1, 100)
    for _ in range(10):
        book.on_fill("BTC", SELL, 0.1, 101)
    qty, avg, realized = view(book)
    assert qty == pytest.approx(0, abs=1e-9) and realized == pytest.approx(1.0)


def test_bad_fills_are_refused() -> None:
    book = PnlBook()
    with pytest.raises(FillError):
        book.on_fill("BTC", BUY, 0, 100)
    with pytest.raises(FillError):
        book.on_fill("BTC", BUY, 1, float("inf"))
    with pytest.raises(FillError):
        book.on_fill("BTC", BUY, 1, 100, fee=float("nan"))
    with pytest.raises(ConfigError):
        PnlBook("fifo")  # type: ignore[arg-type]
