"""Errors: one base class, readable messages, and they cross process boundaries intact."""

from __future__ import annotations

import pickle

import pytest

import bot4
from bot4 import BreakerState, CircuitOpenError, ConfigError, FuseTrippedError, SegmentNotFoundError


@pytest.mark.parametrize(
    "error",
    [
        CircuitOpenError("venue", BreakerState.OPEN, 1.5, ""),
        FuseTrippedError("venue", BreakerState.CLOSED, None, "global fuse tripped"),
        ConfigError("minimum_calls", "must be in [1, 2147483647], got 0"),
        SegmentNotFoundError("desk", "no segment named 'desk'"),
        bot4.ExchangeReplyError("venue-a", "trades[0].amount", "expected a number > 0, got None"),
    ],
)
def test_errors_pickle_round_trip(error: bot4.Bot4Error) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert isinstance(back, bot4.Bot4Error)


def test_circuit_open_error_fields_and_message() -> None:
    err = CircuitOpenError("venue", BreakerState.HALF_OPEN, 0.25, "trial permits in use")
    assert (err.breaker, err.state, err.retry_after, err.detail) == (
        "venue",
        BreakerState.HALF_OPEN,
        0.25,
        "trial permits in use",
    )
    assert str(err) == "circuit 'venue' is HALF_OPEN (trial permits in use); retry after 0.250s"


def test_every_public_error_is_a_bot4_error() -> None:
    for name in bot4.__all__:
        obj = getattr(bot4, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, bot4.Bot4Error), name


def test_public_api_is_sorted_and_documented() -> None:
    assert list(bot4.__all__) == sorted(bot4.__all__)
    for name in bot4.__all__:
        assert getattr(bot4, name).__doc__, name
