"""The native pass over the built-in rules agrees with an independent model, code for code,
and each built-in rule plugin words what the native pass decides."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings

from bot4 import Core, ManualClock, Order, RiskLimits, TradingState, make_plugin_manager
from bot4.plugins.builtin.rules import CODES, RULES
from bot4.risk._kernel import RULE_BITS
from tests.risk.conftest import EPOCH
from tests.risk.rule_model import MODEL

SYMBOLS = ["A", "B", "C"]
MASK = sum(1 << bit for bit in RULE_BITS.values())

prices = st.floats(1.0, 200.0)
quantities = st.floats(0.01, 50.0)
optional_fraction = st.one_of(st.none(), st.floats(0.005, 1.0))
optional_multiple = st.one_of(st.none(), st.floats(0.05, 5.0))


@st.composite
def limits(draw: Any) -> RiskLimits:
    return RiskLimits(
        require_stop_loss=draw(st.booleans()),
        max_stop_distance=draw(optional_fraction),
        max_position_risk=draw(optional_fraction),
        max_position_notional=draw(optional_multiple),
        max_correlation=draw(st.one_of(st.none(), st.floats(0.05, 1.0))),
        correlation_min_samples=draw(st.integers(1, 5)),
        correlation_sample_seconds=1.0,
        max_drawdown=draw(optional_fraction),
        daily_loss_limit=draw(optional_fraction),
        max_gross_exposure=draw(optional_multiple),
        max_symbol_exposure=draw(optional_multiple),
        max_open_orders=draw(st.one_of(st.none(), st.integers(1, 6))),
        max_orders_per_second=draw(st.one_of(st.none(), st.integers(1, 6))),
        max_price_age=draw(st.one_of(st.none(), st.floats(0.05, 3.0))),
    )


@st.composite
def orders(draw: Any) -> Order:
    kind = draw(st.sampled_from(["market", "limit", "stop", "stop_limit"]))
    price = draw(prices)
    kw: dict[str, Any] = {}
    if kind in ("limit", "stop_limit"):
        kw["price"] = price
    if kind in ("stop", "stop_limit"):
        kw["stop_price"] = draw(prices)
    return Order(
        symbol=draw(st.sampled_from(SYMBOLS + ["NEW"])),
        side=draw(st.sampled_from(["buy", "sell"])),
        quantity=draw(quantities),
        type=kind,
        stop_loss=draw(st.one_of(st.none(), prices)),
        reduce_only=draw(st.booleans()),
        **kw,
    )


actions = st.lists(
    st.one_of(
        st.tuples(st.just("price"), st.sampled_from(SYMBOLS), prices),
        st.tuples(st.just("fill"), st.sampled_from(SYMBOLS), st.sampled_from([1, -1]), quantities, prices),
        st.tuples(st.just("reserve"), st.sampled_from(SYMBOLS), st.sampled_from([1, -1]), quantities, prices),
        st.tuples(st.just("equity"), st.floats(100.0, 10_000.0)),
        st.tuples(st.just("tick"), st.floats(0.0, 2.0)),
    ),
    max_size=25,
)


@settings(max_examples=250, deadline=None)
@given(
    book=actions,
    final_limits=limits(),
    state=st.sampled_from(list(TradingState)),
    order=orders(),
    flow=st.one_of(st.none(), st.tuples(st.sampled_from([-1, 0, 1]), st.sampled_from([-1, 0, 1]))),
)
def test_native_verdicts_match_the_rule_plugins(
    book: list[tuple[Any, ...]],
    final_limits: RiskLimits,
    state: TradingState,
    order: Order,
    flow: tuple[int, int] | None,
) -> None:
    clock = ManualClock(EPOCH)
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as core:
        risk = core.risk
        open_limits = dataclasses.replace(RiskLimits(), correlation_min_samples=1, correlation_sample_seconds=1.0)
        risk.configure(dataclasses.replace(open_limits, require_stop_loss=False, **{f: None for f in _LIMITS_OFF}))
        risk.set_equity(5_000.0)
        for action in book:
            kind = action[0]
            if kind == "price":
                risk.on_price(action[1], action[2])
            elif kind == "equity":
                risk.set_equity(action[1])
            elif kind == "tick":
                clock.advance(action[1])
            else:
                _, symbol, sign, qty, price = action
                side = "buy" if sign > 0 else "sell"
                res = risk.reserve(Order(symbol=symbol, side=side, quantity=qty, type="limit", price=price))
                if kind == "fill" and res.reservation is not None:
                    risk.on_fill(res.reservation, qty, price)
        if flow is not None:  # put the flow limits right at, under or over the book's own numbers
            snap = risk.snapshot()
            final_limits = dataclasses.replace(
                final_limits,
                max_open_orders=max(1, snap.open_orders + flow[0]),
                max_orders_per_second=max(1, snap.orders_last_second + flow[1]),
            )
        risk.configure(final_limits)
        risk.set_trading_state(state, "parity")
        kind = order.type.value
        entry = order.price if kind in ("limit", "stop_limit") else order.stop_price if kind == "stop" else math.nan
        index = risk.ledger.symbol_index(order.symbol)
        fails = risk._kernel.evaluate(
            MASK,
            -1 if index is None else index,
            1 if order.side.value == "buy" else -1,
            order.quantity,
            entry,
            math.nan if order.stop_loss is None else order.stop_loss,
            order.reduce_only,
            clock.now_ns(),
        )
        ledger = risk.ledger
        ledger.prime(order)
        try:
            native = {CODES[bit].rule: CODES[bit].code for bit in range(len(CODES)) if fails >> bit & 1}
            assert len(native) == bin(fails).count("1")  # at most one code per rule
            for rule in RULES:
                expected = MODEL[rule.kernel](order, ledger)
                assert native.get(rule.kernel) == expected, (rule.name, native, expected)
                rejection = rule.bot4_check_order(order, ledger)  # the plugin words the same verdict
                assert (rejection and rejection.code) == expected, (rule.name, rejection, expected)
                if rejection is not None:
                    assert rejection.rule == rule.name and rejection.message
        finally:
            ledger.unprime()


_LIMITS_OFF = (
    "max_stop_distance",
    "max_position_risk",
    "max_position_notional",
    "max_correlation",
    "max_drawdown",
    "daily_loss_limit",
    "max_gross_exposure",
    "max_symbol_exposure",
    "max_open_orders",
    "max_orders_per_second",
    "max_price_age",
)
