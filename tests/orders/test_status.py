"""The order state machine: every status x event pair, and random event sequences."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from bot4 import FillError, InvalidTransitionError, Order
from bot4.orders import Fill, OrderEvent, OrderStatus, TrackedOrder
from bot4.orders.status import TERMINAL_STATUSES, TRANSITIONS

S, E = OrderStatus, OrderEvent


def order(qty: float = 10.0, **kind: object) -> TrackedOrder:
    kind = kind or {"type": "stop_limit", "price": 100, "stop_price": 99}  # every event applies to a stop-limit
    return TrackedOrder(Order(symbol="BTC/USDT", side="buy", quantity=qty, **kind))  # type: ignore[arg-type]


def in_status(status: OrderStatus, resume: OrderStatus = S.ACCEPTED, filled: float = 0.0) -> TrackedOrder:
    o = order()
    o.status = status
    o._resume = resume
    o.filled_quantity = filled
    return o


def fill(trade: str, qty: float, price: float = 100.0) -> Fill:
    return Fill(trade_id=trade, quantity=qty, price=price)


# What each allowed pair leads to, written out by hand (partial fill of 4, full fill of 10).
EXPECTED = {
    (S.INITIALIZED, E.DENIED): S.DENIED,
    (S.INITIALIZED, E.SUBMITTED): S.SUBMITTED,
    (S.INITIALIZED, E.REJECTED): S.REJECTED,
    (S.INITIALIZED, E.CANCELED): S.CANCELED,
    (S.SUBMITTED, E.ACCEPTED): S.ACCEPTED,
    (S.SUBMITTED, E.REJECTED): S.REJECTED,
    (S.SUBMITTED, E.PENDING_UPDATE): S.PENDING_UPDATE,
    (S.SUBMITTED, E.PENDING_CANCEL): S.PENDING_CANCEL,
    (S.SUBMITTED, E.CANCELED): S.CANCELED,
    (S.SUBMITTED, E.EXPIRED): S.EXPIRED,
    (S.ACCEPTED, E.ACCEPTED): S.ACCEPTED,
    (S.ACCEPTED, E.REJECTED): S.REJECTED,
    (S.ACCEPTED, E.TRIGGERED): S.TRIGGERED,
    (S.ACCEPTED, E.UPDATED): S.ACCEPTED,
    (S.ACCEPTED, E.PENDING_UPDATE): S.PENDING_UPDATE,
    (S.ACCEPTED, E.PENDING_CANCEL): S.PENDING_CANCEL,
    (S.ACCEPTED, E.CANCELED): S.CANCELED,
    (S.ACCEPTED, E.EXPIRED): S.EXPIRED,
    (S.TRIGGERED, E.REJECTED): S.REJECTED,
    (S.TRIGGERED, E.UPDATED): S.TRIGGERED,
    (S.TRIGGERED, E.PENDING_UPDATE): S.PENDING_UPDATE,
    (S.TRIGGERED, E.PENDING_CANCEL): S.PENDING_CANCEL,
    (S.TRIGGERED, E.CANCELED): S.CANCELED,
    (S.TRIGGERED, E.EXPIRED): S.EXPIRED,
    (S.PENDING_UPDATE, E.PENDING_UPDATE): S.PENDING_UPDATE,
    (S.PENDING_UPDATE, E.UPDATED): S.ACCEPTED,  # resumes
    (S.PENDING_UPDATE, E.UPDATE_REJECTED): S.ACCEPTED,  # resumes
    (S.PENDING_UPDATE, E.ACCEPTED): S.ACCEPTED,
    (S.PENDING_UPDATE, E.TRIGGERED): S.TRIGGERED,
    (S.PENDING_UPDATE, E.PENDING_CANCEL): S.PENDING_CANCEL,
    (S.PENDING_UPDATE, E.CANCELED): S.CANCELED,
    (S.PENDING_UPDATE, E.EXPIRED): S.EXPIRED,
    (S.PENDING_UPDATE, E.REJECTED): S.REJECTED,
    (S.PENDING_CANCEL, E.PENDING_CANCEL): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, E.CANCEL_REJECTED): S.ACCEPTED,  # resumes
    (S.PENDING_CANCEL, E.ACCEPTED): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, E.CANCELED): S.CANCELED,
    (S.PENDING_CANCEL, E.EXPIRED): S.EXPIRED,
    (S.PENDING_CANCEL, E.REJECTED): S.REJECTED,  # the venue refused the order the cancel was for
    (S.PARTIALLY_FILLED, E.UPDATED): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, E.PENDING_UPDATE): S.PENDING_UPDATE,
    (S.PARTIALLY_FILLED, E.PENDING_CANCEL): S.PENDING_CANCEL,
    (S.PARTIALLY_FILLED, E.CANCELED): S.CANCELED,
    (S.PARTIALLY_FILLED, E.EXPIRED): S.EXPIRED,
}
# Fills: (status) -> (after a partial fill, after a completing fill); None: not allowed.
FILLS = {
    S.INITIALIZED: None,
    S.DENIED: None,
    S.REJECTED: None,
    S.FILLED: None,
    S.SUBMITTED: (S.PARTIALLY_FILLED, S.FILLED),
    S.ACCEPTED: (S.PARTIALLY_FILLED, S.FILLED),
    S.TRIGGERED: (S.PARTIALLY_FILLED, S.FILLED),
    S.PARTIALLY_FILLED: (S.PARTIALLY_FILLED, S.FILLED),
    S.PENDING_UPDATE: (S.PENDING_UPDATE, S.FILLED),  # the amendment is still in flight
    S.PENDING_CANCEL: (S.PENDING_CANCEL, S.FILLED),  # the cancel is still in flight
    S.CANCELED: (S.CANCELED, S.FILLED),  # late fills
    S.EXPIRED: (S.EXPIRED, S.FILLED),
}
NON_FILL_EVENTS = [e for e in OrderEvent if e is not E.FILLED]


@pytest.mark.parametrize(("status", "event"), list(itertools.product(OrderStatus, NON_FILL_EVENTS)))
def test_every_status_event_pair(status: OrderStatus, event: OrderEvent) -> None:
    o = in_status(status)
    expected = EXPECTED.get((status, event))
    if expected is None:
        with pytest.raises(InvalidTransitionError):
            o.apply(event, 1)
        assert o.status is status and o.history == []  # unchanged
    else:
        assert o.apply(event, 1) is expected
        assert o.history[-1].old is status and o.history[-1].new is expected and o.history[-1].time_ns == 1


@pytest.mark.parametrize("status", list(OrderStatus))
def test_fills_in_every_status(status: OrderStatus) -> None:
    expected = FILLS[status]
    partial, complete = in_status(status), in_status(status)
    if expected is None:
        for o, qty in ((partial, 4.0), (complete, 10.0)):
            with pytest.raises(InvalidTransitionError):
                o.fill(fill("t1", qty), 1)
            assert o.status is status and o.filled_quantity == 0 and o.fills == []
        return
    partial.fill(fill("t1", 4.0), 1)
    complete.fill(fill("t1", 10.0), 1)
    assert (partial.status, complete.status) == expected
    assert partial.filled_quantity == 4.0 and complete.filled_quantity == 10.0


@pytest.mark.parametrize("kind", [{"type": "market"}, {"type": "limit", "price": 100}])
def test_only_stop_orders_are_triggered(kind: dict[str, object]) -> None:
    o = order(**kind)
    o.apply(E.SUBMITTED, 1)
    o.apply(E.ACCEPTED, 2)
    with pytest.raises(InvalidTransitionError, match="no trigger"):
        o.apply(E.TRIGGERED, 3)
    assert o.status is S.ACCEPTED


@pytest.mark.parametrize("pending", [E.PENDING_UPDATE, E.PENDING_CANCEL])
def test_an_acknowledgement_arriving_while_a_request_is_in_flight_is_kept(pending: OrderEvent) -> None:
    o = order()
    o.apply(E.SUBMITTED, 1)
    o.apply(pending, 2)  # asked before the venue acknowledged the order
    o.apply(E.ACCEPTED, 3)
    if pending is E.PENDING_UPDATE:
        assert o.status is S.ACCEPTED  # the acknowledgement ends the wait, as in NautilusTrader
    else:
        assert o.status is S.PENDING_CANCEL  # the cancel is still in flight ...
        o.apply(E.CANCEL_REJECTED, 4)
        assert o.status is S.ACCEPTED  # ... and a refused one returns to the acknowledged order


def test_a_market_order_cannot_be_good_till_date() -> None:
    from bot4 import InvalidOrderError

    with pytest.raises(InvalidOrderError, match="good-till-date"):
        Order(symbol="BTC/USDT", side="buy", quantity=1, time_in_force="GTD", expire_at=2e9)


def test_the_table_and_the_hand_written_spec_agree() -> None:
    from_table = {k for k, v in TRANSITIONS.items() if k[1] is not E.FILLED}
    assert from_table == set(EXPECTED)
    assert {k[0] for k, v in TRANSITIONS.items() if k[1] is E.FILLED} == {s for s, v in FILLS.items() if v}


def test_a_refused_cancel_returns_to_the_open_status_it_left() -> None:
    o = in_status(S.PARTIALLY_FILLED, filled=3.0)
    o.apply(E.PENDING_CANCEL, 1)
    o.apply(E.PENDING_CANCEL, 2)  # repeated
    assert o.apply(E.CANCEL_REJECTED, 3) is S.PARTIALLY_FILLED
    o = in_status(S.ACCEPTED)
    o.apply(E.PENDING_CANCEL, 1)
    o.fill(fill("t1", 2.0), 2)  # partly filled while the cancel was in flight
    assert o.status is S.PENDING_CANCEL
    assert o.apply(E.CANCEL_REJECTED, 3) is S.PARTIALLY_FILLED


def test_duplicate_trade_ids_are_ignored_and_overfills_refused() -> None:
    o = in_status(S.ACCEPTED)
    assert o.fill(fill("t1", 4.0, 100.0), 1)
    assert not o.fill(fill("t1", 4.0, 100.0), 2)
    assert o.filled_quantity == 4.0 and len(o.fills) == 1
    with pytest.raises(FillError, match="would fill"):
        o.fill(fill("t2", 6.5), 3)
    assert o.filled_quantity == 4.0 and o.status is S.PARTIALLY_FILLED
    o.fill(fill("t3", 6.0, 110.0), 4)
    assert o.status is S.FILLED
    assert o.average_fill_price == pytest.approx(106.0)


def test_duplicates_are_found_among_many_fills() -> None:
    o = in_status(S.ACCEPTED)  # an order of 10
    for i in range(20):
        assert o.fill(fill(f"t{i}", 0.25), i)
    for i in (0, 7, 8, 19):  # before and after the order has more fills than a scan covers
        assert not o.fill(fill(f"t{i}", 0.25), 100 + i)
    assert len(o.fills) == 20 and o.filled_quantity == pytest.approx(5.0)
    assert o.fill(fill("t20", 0.25), 200)


def test_a_late_fill_after_cancel() -> None:
    o = in_status(S.ACCEPTED)
    o.fill(fill("t1", 6.0), 1)
    o.apply(E.PENDING_CANCEL, 2)
    o.apply(E.CANCELED, 3)
    o.fill(fill("t2", 1.0), 4)  # traded before the cancel, reported after
    assert o.status is S.CANCELED and o.filled_quantity == 7.0
    o.fill(fill("t3", 3.0), 5)
    assert o.status is S.FILLED


def test_bad_fills_are_refused_at_construction() -> None:
    with pytest.raises(FillError):
        Fill(trade_id="t", quantity=0, price=1)
    with pytest.raises(FillError):
        Fill(trade_id="", quantity=1, price=1)
    with pytest.raises(FillError):
        Fill(trade_id="t", quantity=1, price=float("nan"))


events = st.one_of(
    st.sampled_from(NON_FILL_EVENTS),
    st.tuples(st.sampled_from(["t1", "t2", "t3", "t4", "t5"]), st.floats(0.1, 6.0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=40))
def test_random_event_sequences_stay_in_declared_states(sequence: list[object]) -> None:
    o = order()
    for step, event in enumerate(sequence):
        before = (o.status, o.filled_quantity, len(o.history), len(o.fills))
        try:
            if isinstance(event, OrderEvent):
                o.apply(event, step)
            else:
                trade, qty = event  # type: ignore[misc]
                o.fill(fill(trade, qty), step)
        except (InvalidTransitionError, FillError):
            assert (o.status, o.filled_quantity, len(o.history), len(o.fills)) == before  # unchanged
        assert o.status in OrderStatus
        assert 0 <= o.filled_quantity <= o.order.quantity
        assert o.filled_quantity == pytest.approx(sum(f.quantity for f in o.fills))
        if o.status is S.FILLED:
            assert o.filled_quantity == o.order.quantity
        if o.status in TERMINAL_STATUSES and o.status not in (S.CANCELED, S.EXPIRED):
            assert o.history[-1].new is o.status
