"""Every built-in rule at its limit and just past it; trading states; the kill switch."""

from __future__ import annotations

import random

import pytest

import bot4
from bot4 import Core, ManualClock, Order, Rejection, RiskEngine, TradingState
from tests.risk.conftest import buy, fill, only, sell


def codes(risk: RiskEngine, order: Order) -> tuple[str, ...]:
    return risk.check(order).codes


# ---------------------------------------------------------------- stop-loss


def test_stop_loss_missing(risk: RiskEngine) -> None:
    risk.configure(only(require_stop_loss=True))
    assert codes(risk, buy()) == ("STOP_LOSS_MISSING",)
    assert codes(risk, buy(stop_loss=99)) == ()
    assert codes(risk, buy(reduce_only=True)) == ("REDUCE_ONLY_INCREASES",)  # exempt from the stop, not from that


def test_an_order_that_reduces_needs_no_stop(risk: RiskEngine) -> None:
    fill(risk, buy(quantity=2))
    risk.configure(only(require_stop_loss=True))
    assert codes(risk, sell(quantity=2)) == ()
    assert codes(risk, sell(quantity=2.5)) == ("STOP_LOSS_MISSING",)  # would open a short


def test_stop_loss_wrong_side(risk: RiskEngine) -> None:
    assert codes(risk, buy(stop_loss=100)) == ("STOP_LOSS_WRONG_SIDE",)
    assert codes(risk, buy(stop_loss=101)) == ("STOP_LOSS_WRONG_SIDE",)
    assert codes(risk, sell(stop_loss=100)) == ("STOP_LOSS_WRONG_SIDE",)
    assert codes(risk, sell(stop_loss=101)) == ()


def test_stop_loss_distance_at_and_past_the_limit(risk: RiskEngine) -> None:
    risk.configure(only(max_stop_distance=0.04))
    assert codes(risk, buy(stop_loss=96.0)) == ()
    assert codes(risk, buy(stop_loss=95.99)) == ("STOP_LOSS_TOO_FAR",)
    assert codes(risk, sell(stop_loss=104.0)) == ()
    assert codes(risk, sell(stop_loss=104.01)) == ("STOP_LOSS_TOO_FAR",)


# ---------------------------------------------------------------- position size


def test_position_risk_two_percent_of_equity(risk: RiskEngine) -> None:
    risk.configure(only(max_position_risk=0.02))  # 2% of 10,000 = 200
    assert codes(risk, buy(quantity=100, stop_loss=98)) == ()  # 100 x 2 = 200
    assert codes(risk, buy(quantity=100.01, stop_loss=98)) == ("POSITION_RISK",)


def test_position_notional(risk: RiskEngine) -> None:
    risk.configure(only(max_position_notional=0.5))  # 5,000
    fill(risk, buy(quantity=20))  # 2,000 held
    assert codes(risk, buy(quantity=30)) == ()
    assert codes(risk, buy(quantity=30.01)) == ("POSITION_NOTIONAL",)


def test_market_order_needs_a_price(risk: RiskEngine) -> None:
    market = Order(symbol="ETH/USDT", side="buy", quantity=1)
    assert codes(risk, market) == ("PRICE_UNKNOWN",)
    assert risk.reserve(market).codes == ("PRICE_UNKNOWN",)
    risk.on_price("ETH/USDT", 2000.0)
    assert codes(risk, market) == ()
    assert risk.reserve(market).reservation.price == 2000.0  # type: ignore[union-attr]


# ---------------------------------------------------------------- exposure and flow


def test_gross_exposure_at_and_past(risk: RiskEngine) -> None:
    risk.configure(only(max_gross_exposure=3.0))  # 30,000
    fill(risk, buy("A", quantity=100, price=100))  # 10,000
    risk.reserve(sell("B", quantity=100, price=150)).raise_for_rejection()  # 15,000
    assert risk.snapshot().gross_exposure == pytest.approx(25_000)
    assert codes(risk, buy("C", quantity=50, price=100)) == ()  # exactly 30,000
    assert codes(risk, buy("C", quantity=50.01, price=100)) == ("GROSS_EXPOSURE",)


def test_symbol_exposure_at_and_past(risk: RiskEngine) -> None:
    risk.configure(only(max_symbol_exposure=1.0))  # 10,000 per symbol
    fill(risk, buy(quantity=60))  # 6,000
    assert codes(risk, buy(quantity=40)) == ()
    assert codes(risk, buy(quantity=40.01)) == ("SYMBOL_EXPOSURE",)
    assert codes(risk, sell(quantity=100)) == ()  # ends short 4,000: within
    assert codes(risk, sell(quantity=160)) == ()  # short 10,000: at the limit
    assert codes(risk, sell(quantity=160.01)) == ("SYMBOL_EXPOSURE",)


def test_reducing_order_passes_even_over_exposure(risk: RiskEngine) -> None:
    fill(risk, buy(quantity=100))
    risk.configure(only(max_symbol_exposure=0.5, max_gross_exposure=0.5))  # already over
    assert codes(risk, buy(quantity=1)) == ("SYMBOL_EXPOSURE",)  # one rejection per rule
    assert codes(risk, buy("ETH/USDT", quantity=1)) == ("GROSS_EXPOSURE",)
    assert codes(risk, sell(quantity=50)) == ()


def test_open_orders_limit(risk: RiskEngine) -> None:
    risk.configure(only(max_open_orders=3))
    held = [risk.reserve(buy()).raise_for_rejection().reservation for _ in range(3)]
    assert risk.reserve(buy()).codes == ("OPEN_ORDERS",)
    assert risk.release(held[0])  # type: ignore[arg-type]
    assert risk.reserve(buy()).approved


def test_orders_per_second_sliding_window(risk: RiskEngine, clock: ManualClock) -> None:
    risk.configure(only(max_orders_per_second=5))
    for _ in range(5):
        risk.reserve(buy()).raise_for_rejection()
        clock.advance(0.15)  # 5 orders over 0.6 s
    assert risk.reserve(buy()).codes == ("ORDER_RATE",)
    clock.advance(0.3)  # the first order (t=0) has left the 1 s window
    assert risk.reserve(buy()).approved
    assert risk.reserve(buy()).codes == ("ORDER_RATE",)


# ---------------------------------------------------------------- stale prices


def test_a_stale_or_missing_mark_denies_new_risk(risk: RiskEngine, clock: ManualClock) -> None:
    risk.configure(only(max_price_age=2.0))
    assert codes(risk, buy("ETH/USDT")) == ("STALE_PRICE",)  # never marked: nobody vouches for a price
    risk.on_price("ETH/USDT", 100.0)
    assert risk.reserve(buy("ETH/USDT")).approved
    clock.advance(2.0)
    assert codes(risk, buy("ETH/USDT")) == ()  # at the limit: within it
    clock.advance(0.001)
    rejection = risk.check(buy("ETH/USDT")).rejections[0]
    assert (rejection.rule, rejection.code) == ("bot4.rule.stale_price", "STALE_PRICE")
    assert "2.001s ago" in rejection.message and "max_price_age 2s" in rejection.message
    assert risk.reserve(buy("ETH/USDT")).codes == ("STALE_PRICE",)  # the pass under the mutex too
    risk.on_price("ETH/USDT", 101.0)
    assert codes(risk, buy("ETH/USDT")) == ()  # a fresh mark clears it
    risk.configure(only())
    clock.advance(60.0)
    assert codes(risk, buy("ETH/USDT")) == ()  # off by default


def test_a_stale_mark_still_lets_a_position_be_reduced(risk: RiskEngine, clock: ManualClock) -> None:
    risk.on_price("BTC/USDT", 100.0)
    fill(risk, buy(quantity=2.0))
    risk.configure(only(max_price_age=1.0))
    clock.advance(5.0)
    assert codes(risk, sell(quantity=1.0)) == ()  # closing risk on a stale price is allowed
    assert codes(risk, buy(quantity=1.0)) == ("STALE_PRICE",)
    assert codes(risk, sell(quantity=3.0)) == ("STALE_PRICE",)  # flips the position: new risk


def test_a_mark_set_in_one_process_ages_for_every_process(core: Core, clock: ManualClock) -> None:
    risk = core.risk
    risk.configure(only(max_price_age=1.0))
    risk.set_equity(10_000.0)
    with Core.attach(core.name, clock=clock) as other:
        other.risk.on_price("SOL/USDT", 20.0)
        assert codes(risk, buy("SOL/USDT", price=20.0)) == ()
        clock.advance(1.5)
        assert other.risk.ledger.mark_age("SOL/USDT") == pytest.approx(1.5)
        assert codes(risk, buy("SOL/USDT", price=20.0)) == ("STALE_PRICE",)


# ---------------------------------------------------------------- account: equity, drawdown, daily loss


def test_equity_unknown_fails_closed(core: Core) -> None:
    risk = core.risk
    assert "EQUITY_UNKNOWN" in risk.check(buy(stop_loss=99)).codes


def test_drawdown_trips_the_kill_switch_past_the_limit(risk: RiskEngine) -> None:
    risk.configure(only(max_drawdown=0.15))
    trips: list[str] = []

    class Watch:
        @bot4.hookimpl
        def bot4_kill_switch_tripped(self, reason: str) -> None:
            trips.append(reason)

    risk._ctx.plugins.register(Watch())
    risk.set_equity(12_000)  # new peak
    risk.set_equity(10_200)  # exactly 15% below: at the limit
    assert not risk.kill_switch.active
    assert codes(risk, buy()) == ()
    risk.set_equity(10_199)
    assert risk.kill_switch.active
    assert "drawdown" in risk.kill_switch.reason
    assert codes(risk, buy()) == ("KILL_SWITCH",)
    assert trips == [risk.kill_switch.reason]
    assert risk.kill_switch.tripped_at is not None


def test_drawdown_from_marks_of_open_positions(risk: RiskEngine) -> None:
    risk.configure(only(max_drawdown=0.15))
    fill(risk, buy(quantity=100, price=100))  # 10,000 of BTC on 10,000 equity
    risk.on_price("BTC/USDT", 85.0)  # -1,500: 15%
    assert not risk.kill_switch.active
    risk.on_price("BTC/USDT", 84.99)
    assert risk.kill_switch.active
    snap = risk.snapshot()
    assert snap.equity == pytest.approx(8_499.0)
    assert snap.unrealized_pnl == pytest.approx(-1_501.0)
    assert snap.trading_state is TradingState.HALTED


def test_daily_loss_limit_and_day_reset(risk: RiskEngine, clock: ManualClock) -> None:
    risk.configure(only(daily_loss_limit=0.05))
    risk.set_equity(9_500)  # 5%: at the limit
    assert not risk.kill_switch.active
    clock.advance(12 * 3600)  # next UTC day: the day starts at 9,500
    risk.set_equity(9_100)  # 4.2% of 9,500
    assert not risk.kill_switch.active
    assert risk.snapshot().daily_loss == pytest.approx(400 / 9_500)
    risk.set_equity(9_024)  # 5.0105%
    assert risk.kill_switch.active and "daily loss" in risk.kill_switch.reason


# ---------------------------------------------------------------- trading states


def test_halted_denies_everything_with_one_rejection(risk: RiskEngine) -> None:
    risk.kill_switch.trip("exchange hack")
    for order in (buy(), sell(), buy(reduce_only=True)):
        decision = risk.check(order)
        assert decision.codes == ("KILL_SWITCH",)
        assert "exchange hack" in decision.rejections[0].message
    assert risk.reserve(buy()).codes == ("KILL_SWITCH",)
    risk.kill_switch.reset("all clear")
    assert not risk.kill_switch.active
    assert risk.check(buy()).approved


def test_reducing_only_reductions_pass(risk: RiskEngine) -> None:
    fill(risk, buy(quantity=10))
    risk.set_trading_state(TradingState.REDUCING, "end of day")
    assert codes(risk, buy(quantity=1)) == ("REDUCING_ONLY",)
    assert codes(risk, sell(quantity=10)) == ()
    assert codes(risk, sell(quantity=10.5)) == ("REDUCING_ONLY",)  # would flip short
    held = risk.reserve(sell(quantity=6)).raise_for_rejection()
    assert codes(risk, sell(quantity=5)) == ("REDUCING_ONLY",)  # with the live 6, more than the 10 held
    assert codes(risk, sell(quantity=4)) == ()
    assert held.reservation is not None


def test_reduce_only_order_that_would_increase(risk: RiskEngine) -> None:
    assert codes(risk, buy(reduce_only=True)) == ("REDUCE_ONLY_INCREASES",)
    fill(risk, buy(quantity=3))
    assert codes(risk, sell(quantity=3, reduce_only=True)) == ()


def test_check_reports_every_rejection(risk: RiskEngine) -> None:
    risk.configure(only(require_stop_loss=True, max_open_orders=1, max_symbol_exposure=0.001))
    decision = risk.check(buy(quantity=10))
    assert set(decision.codes) == {"STOP_LOSS_MISSING", "SYMBOL_EXPOSURE"}
    with pytest.raises(bot4.OrderRejectedError, match="STOP_LOSS_MISSING"):
        decision.raise_for_rejection()


# ---------------------------------------------------------------- correlation


def correlated_series(clock: ManualClock, risk: RiskEngine, steps: int = 200) -> None:
    rng = random.Random(42)
    prices = {"A": 100.0, "B": 50.0, "C": 20.0}
    for _ in range(steps):
        common = rng.gauss(0, 0.01)
        prices["A"] *= 1 + common + rng.gauss(0, 0.002)
        prices["B"] *= 1 + common + rng.gauss(0, 0.002)  # moves with A
        prices["C"] *= 1 + rng.gauss(0, 0.01)  # independent
        for symbol, price in prices.items():
            risk.on_price(symbol, price)
        clock.advance(1.0)


def mark_of(risk: RiskEngine, symbol: str) -> float:
    mark = risk.snapshot().positions[symbol].mark
    assert mark is not None
    return mark


def test_correlation_rejects_same_direction_only(risk: RiskEngine, clock: ManualClock) -> None:
    risk.configure(only(max_correlation=0.7))
    correlated_series(clock, risk)
    fill(risk, buy("A", quantity=1, price=mark_of(risk, "A")))
    corr_ab, other = risk.ledger.max_correlation("B", bot4.Side.BUY)
    assert other == "A" and corr_ab > 0.9
    corr_cb, _ = risk.ledger.max_correlation("C", bot4.Side.BUY)
    assert abs(corr_cb) < 0.3
    assert codes(risk, buy("B", price=50)) == ("CORRELATION",)
    assert codes(risk, sell("B", price=50)) == ()  # opposite direction: a hedge
    assert codes(risk, buy("C", price=20)) == ()  # independent
    assert codes(risk, buy("A")) == ()  # the same symbol is not a correlation


def test_correlation_at_and_past_the_limit(risk: RiskEngine, clock: ManualClock) -> None:
    correlated_series(clock, risk)
    fill(risk, buy("A", quantity=1, price=mark_of(risk, "A")))
    value, _ = risk.ledger.max_correlation("B", bot4.Side.BUY)
    risk.configure(only(max_correlation=value))
    assert codes(risk, buy("B", price=50)) == ()
    risk.configure(only(max_correlation=value - 1e-6))
    assert codes(risk, buy("B", price=50)) == ("CORRELATION",)


def test_correlation_needs_min_samples(risk: RiskEngine, clock: ManualClock) -> None:
    risk.configure(only(max_correlation=0.7, correlation_min_samples=30))
    correlated_series(clock, risk, steps=20)
    fill(risk, buy("A", quantity=1, price=mark_of(risk, "A")))
    assert codes(risk, buy("B", price=50)) == ()  # too few samples to judge
    correlated_series(clock, risk, steps=20)
    assert codes(risk, buy("B", price=50)) == ("CORRELATION",)


def test_pending_orders_count_as_held_for_correlation(risk: RiskEngine, clock: ManualClock) -> None:
    risk.configure(only(max_correlation=0.7))
    correlated_series(clock, risk)
    risk.reserve(buy("A", price=100)).raise_for_rejection()  # not filled yet
    assert risk.reserve(buy("B", price=50)).codes == ("CORRELATION",)


# ---------------------------------------------------------------- rules are plugins


def test_user_rule_runs_first_and_can_reject(risk: RiskEngine) -> None:
    class NoDoge:
        @bot4.hookimpl
        def bot4_check_order(self, order: Order, ledger: bot4.RiskLedger) -> Rejection | None:
            if order.symbol == "DOGE/USDT":
                return Rejection("no-doge", "SYMBOL_BANNED", "closed for new risk")
            return None

    risk._ctx.plugins.register(NoDoge(), name="no-doge")
    assert risk.rule_names()[0] == "no-doge"
    assert codes(risk, buy("DOGE/USDT")) == ("SYMBOL_BANNED",)
    assert codes(risk, buy()) == ()


@pytest.mark.parametrize("outcome", ["raise", "wrong type"])
def test_a_broken_rule_fails_closed(risk: RiskEngine, outcome: str) -> None:
    class Broken:
        @bot4.hookimpl
        def bot4_check_order(self, order: Order) -> object:
            if outcome == "raise":
                raise ZeroDivisionError("oops")
            return "looks fine to me"

    risk._ctx.plugins.register(Broken(), name="broken")
    decision = risk.reserve(buy())
    assert decision.codes == ("RULE_ERROR",)
    assert decision.rejections[0].rule == "broken"
    assert "broken" in decision.rejections[0].message
    assert risk.snapshot().open_orders == 0


def test_builtin_rules_can_be_disabled_and_replaced_by_name(risk: RiskEngine) -> None:
    pm = risk._ctx.plugins
    risk.configure(only(require_stop_loss=True))
    assert codes(risk, buy()) == ("STOP_LOSS_MISSING",)
    pm.set_blocked("bot4.rule.stop_loss")
    assert codes(risk, buy()) == ()

    class StrictStops:
        @bot4.hookimpl(trylast=True)
        def bot4_check_order(self, order: Order) -> Rejection | None:
            return None if order.stop_loss else Rejection("bot4.rule.stop_loss", "MY_STOP_RULE", "no stop")

    pm.unblock("bot4.rule.stop_loss")  # the built-in rule is back at once
    assert codes(risk, buy()) == ("STOP_LOSS_MISSING",)
    pm.unregister(name="bot4.rule.stop_loss")
    pm.register(StrictStops(), name="bot4.rule.stop_loss")
    assert codes(risk, buy()) == ("MY_STOP_RULE",)
    assert risk.rule_names().count("bot4.rule.stop_loss") == 1


def test_order_rejected_event_fires_on_reserve_not_check(risk: RiskEngine) -> None:
    seen: list[tuple[str, ...]] = []

    class Watch:
        @bot4.hookimpl
        def bot4_order_rejected(self, order: Order, decision: bot4.Decision) -> None:
            seen.append(decision.codes)

    risk._ctx.plugins.register(Watch())
    risk.configure(only(require_stop_loss=True))
    risk.check(buy())
    assert seen == []
    risk.reserve(buy())
    assert seen == [("STOP_LOSS_MISSING",)]


def test_limits_are_validated() -> None:
    with pytest.raises(bot4.ConfigError) as info:
        bot4.RiskLimits(max_position_risk=0)
    assert info.value.field == "max_position_risk"
    with pytest.raises(bot4.ConfigError):
        bot4.RiskLimits(max_open_orders=0)
    with pytest.raises(bot4.ConfigError):
        bot4.RiskLimits(require_stop_loss="yes")  # type: ignore[arg-type]


def test_limits_are_shared(core: Core, risk: RiskEngine, clock: ManualClock) -> None:
    limits = only(max_open_orders=7, max_correlation=0.5)
    risk.configure(limits)
    other = Core.attach(core.name, clock=clock)
    try:
        assert other.risk.limits == limits
    finally:
        other.close()
