"""Order construction: nothing malformed gets past it."""

from __future__ import annotations

import math
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from bot4 import Decision, InvalidOrderError, Order, OrderType, RiskEngine, Side, TimeInForce


def make(**kw: Any) -> Order:
    base: dict[str, Any] = dict(symbol="BTC/USDT", side="buy", quantity=1.0)
    base.update(kw)
    return Order(**base)


def test_strings_become_enums() -> None:
    order = make(side="SELL", type="limit", price=10, time_in_force="ioc")
    assert (order.side, order.type, order.time_in_force) == (Side.SELL, OrderType.LIMIT, TimeInForce.IOC)
    assert order.signed_quantity == -1.0
    assert order.client_order_id and order.strategy == "default"


@pytest.mark.parametrize(
    ("field", "kw"),
    [
        ("quantity", dict(quantity=0)),
        ("quantity", dict(quantity=-1)),
        ("quantity", dict(quantity=math.nan)),
        ("quantity", dict(quantity=math.inf)),
        ("quantity", dict(quantity="1")),
        ("quantity", dict(quantity=True)),
        ("side", dict(side="hold")),
        ("type", dict(type="iceberg")),
        ("price", dict(type="limit")),
        ("price", dict(type="limit", price=0)),
        ("price", dict(type="limit", price=-5)),
        ("price", dict(price=10)),  # a market order has no price
        ("stop_price", dict(type="stop")),
        ("stop_price", dict(type="limit", price=10, stop_price=9)),
        ("stop_loss", dict(stop_loss=math.inf)),
        ("take_profit", dict(take_profit=0)),
        ("expire_at", dict(type="limit", price=10, time_in_force="GTD")),
        ("time_in_force", dict(time_in_force="GTD", expire_at=2e9)),  # a market order is not good-till-date
        ("expire_at", dict(expire_at=1e9)),
        ("time_in_force", dict(time_in_force="forever")),
        ("time_in_force", dict(time_in_force="PO")),  # post-only needs a limit order
        ("symbol", dict(symbol="")),
        ("symbol", dict(symbol="X" * 33)),
        ("symbol", dict(symbol=None)),
        ("client_order_id", dict(client_order_id="")),
        ("strategy", dict(strategy="s" * 65)),
        ("reduce_only", dict(reduce_only="yes")),
    ],
)
def test_invalid_fields_are_named(field: str, kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidOrderError) as info:
        make(**kw)
    assert info.value.field == field


def test_valid_order_types() -> None:
    make(type="stop", stop_price=90)
    make(type="stop_limit", stop_price=90, price=89)
    make(type="limit", price=10, time_in_force="GTD", expire_at=2e9)
    make(type="limit", price=10, time_in_force=TimeInForce.POST_ONLY)


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["buy", "sell", "limit", "market", "stop", "stop_limit", "GTC", "IOC", "FOK", "GTD", "PO"]),
)


@settings(max_examples=400, deadline=None)
@given(
    symbol=values,
    side=values,
    quantity=values,
    type=values,
    price=values,
    stop_price=values,
    stop_loss=values,
    take_profit=values,
    time_in_force=values,
    expire_at=values,
    client_order_id=values,
    strategy=values,
    reduce_only=values,
)
def test_any_field_values_give_an_order_error_or_a_decision(risk_for_hypothesis: RiskEngine, **fields: Any) -> None:
    required = ("symbol", "side", "quantity")
    kwargs = {k: v for k, v in fields.items() if v is not None or k in required or k.endswith("price")}
    try:
        order = Order(**kwargs)
    except InvalidOrderError:
        return
    decision = risk_for_hypothesis.check(order)
    assert isinstance(decision, Decision)
    decision = risk_for_hypothesis.reserve(order)
    assert isinstance(decision, Decision)
    if decision.reservation is not None:
        assert risk_for_hypothesis.release(decision.reservation)
