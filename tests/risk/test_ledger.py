"""Reservations, fills, positions and P&L in the shared ledger."""

from __future__ import annotations

import pytest

from bot4 import Core, ManualClock, ReservationError, RiskEngine, Side
from tests.risk.conftest import buy, fill, sell


def test_reserve_release_round_trip(risk: RiskEngine) -> None:
    decision = risk.reserve(buy(quantity=2, price=100))
    res = decision.reservation
    assert res is not None and res.side is Side.BUY and res.notional == 200
    snap = risk.snapshot()
    assert snap.open_orders == 1 and snap.gross_exposure == pytest.approx(200)
    assert snap.positions["BTC/USDT"].reserved_buy == 2
    assert risk.release(res) is True
    assert risk.release(res) is False  # already given back
    snap = risk.snapshot()
    assert snap.open_orders == 0 and snap.gross_exposure == 0
    assert risk.audit() == []


def test_partial_fills_then_done(risk: RiskEngine) -> None:
    res = risk.reserve(buy(quantity=3, price=100)).reservation
    assert res is not None
    risk.on_fill(res, 1, 99.0)
    risk.on_fill(res, 1.5, 101.0)
    pos = risk.snapshot().positions["BTC/USDT"]
    assert pos.quantity == pytest.approx(2.5)
    assert pos.average_price == pytest.approx((99 + 1.5 * 101) / 2.5)
    assert pos.reserved_buy == pytest.approx(0.5)
    with pytest.raises(ReservationError, match="exceeds"):
        risk.on_fill(res, 0.6, 100.0)
    risk.on_fill(res, 0.5, 100.0)
    snap = risk.snapshot()
    assert snap.open_orders == 0 and snap.positions["BTC/USDT"].reserved_buy == 0
    with pytest.raises(ReservationError, match="not live"):
        risk.on_fill(res, 0.1, 100.0)
    assert risk.release(res) is False
    assert risk.audit() == []


def test_realized_pnl_average_cost_and_flip(risk: RiskEngine) -> None:
    fill(risk, buy(quantity=2, price=100))
    fill(risk, buy(quantity=2, price=110))  # avg 105
    fill(risk, sell(quantity=3, price=120))  # realize 3 x 15 = 45
    pos = risk.snapshot().positions["BTC/USDT"]
    assert pos.quantity == pytest.approx(1) and pos.average_price == pytest.approx(105)
    assert pos.realized_pnl == pytest.approx(45)
    fill(risk, sell(quantity=3, price=90))  # close 1 at -15, open 2 short at 90
    pos = risk.snapshot().positions["BTC/USDT"]
    assert pos.quantity == pytest.approx(-2) and pos.average_price == pytest.approx(90)
    assert pos.realized_pnl == pytest.approx(30)
    assert risk.snapshot().equity == pytest.approx(10_030)


def test_fees_and_unrealized_in_equity(risk: RiskEngine) -> None:
    res = risk.reserve(buy(quantity=10, price=100)).reservation
    assert res is not None
    risk.on_fill(res, 10, 100.0, fee=2.5)
    assert risk.snapshot().equity == pytest.approx(9_997.5)
    risk.on_price("BTC/USDT", 103.0)
    snap = risk.snapshot()
    assert snap.unrealized_pnl == pytest.approx(30)
    assert snap.equity == pytest.approx(10_027.5)
    assert snap.peak_equity == pytest.approx(10_027.5)
    risk.set_equity(20_000)  # the account says so: unrealized stays, cash adjusts
    assert risk.snapshot().equity == pytest.approx(20_000)


def test_bad_inputs_are_bot4_errors(risk: RiskEngine) -> None:
    res = risk.reserve(buy()).reservation
    assert res is not None
    from bot4 import ConfigError, InvalidOrderError

    with pytest.raises(ConfigError):
        risk.on_fill(res, -1, 100)
    with pytest.raises(ConfigError):
        risk.on_fill(res, 1, float("nan"))
    with pytest.raises(ConfigError):
        risk.on_price("BTC/USDT", 0)
    with pytest.raises(ConfigError):
        risk.on_price("", 10)
    with pytest.raises(ConfigError):
        risk.set_equity(-5)
    with pytest.raises(InvalidOrderError):
        risk.check("buy 1 BTC")  # type: ignore[arg-type]
    with pytest.raises(ReservationError):
        risk.release("not a reservation")  # type: ignore[arg-type]
    with pytest.raises(ReservationError):
        risk.release(res._replace(slot=10**9))


def test_symbols_full_is_a_rejection_not_a_crash(clock: ManualClock) -> None:
    with Core.create(clock=clock, max_symbols=2) as core:
        risk = core.risk
        risk.set_equity(1e6)
        from tests.risk.conftest import NO_LIMITS

        risk.configure(NO_LIMITS)
        assert risk.reserve(buy("A")).approved
        assert risk.reserve(buy("B")).approved
        assert risk.reserve(buy("C")).codes == ("SYMBOLS_FULL",)
        from bot4 import CapacityError

        with pytest.raises(CapacityError, match="max_symbols"):
            risk.on_price("D", 1.0)


def test_reservations_full_is_a_rejection(clock: ManualClock) -> None:
    with Core.create(clock=clock, max_reservations=2) as core:
        risk = core.risk
        risk.set_equity(1e6)
        from tests.risk.conftest import NO_LIMITS

        risk.configure(NO_LIMITS)
        held = [risk.reserve(buy()).reservation for _ in range(2)]
        assert risk.reserve(buy()).codes == ("RESERVATIONS_FULL",)
        assert risk.release(held[0])  # type: ignore[arg-type]
        again = risk.reserve(buy()).reservation
        assert again is not None and again.slot == held[0].slot  # type: ignore[union-attr]


def test_kill_switch_survives_reattach(core: Core, risk: RiskEngine, clock: ManualClock) -> None:
    risk.kill_switch.trip("maintenance")
    other = Core.attach(core.name, clock=clock)
    try:
        assert other.risk.kill_switch.active
        assert other.risk.kill_switch.reason == "maintenance"
        assert other.risk.check(buy()).codes == ("KILL_SWITCH",)
    finally:
        other.close()
