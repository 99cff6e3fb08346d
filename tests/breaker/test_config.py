"""BreakerConfig validation: every bad value raises ConfigError naming its field."""

from __future__ import annotations

import dataclasses
import math

import pytest

from bot4 import BreakerConfig, ConfigError

BAD = [
    ("failure_rate_threshold", 0.0),
    ("failure_rate_threshold", 1.01),
    ("failure_rate_threshold", math.nan),
    ("failure_rate_threshold", "0.5"),
    ("minimum_calls", 0),
    ("minimum_calls", 2.5),
    ("minimum_calls", True),
    ("window_seconds", 0.0),
    ("window_seconds", math.inf),
    ("consecutive_failures", 0),
    ("slow_call_seconds", 0.0),
    ("slow_call_seconds", -1.0),
    ("slow_call_rate_threshold", 0.0),
    ("open_seconds", 0.0),
    ("open_seconds", -5),
    ("open_backoff", 0.5),
    ("max_open_seconds", 1.0),  # below open_seconds (5)
    ("half_open_calls", 0),
    ("half_open_max_seconds", 0),
    ("record", (ValueError, "nope")),
    ("ignore", 42),
    ("predicate", "not callable"),
]


@pytest.mark.parametrize(("field", "value"), BAD)
def test_bad_values_name_their_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        BreakerConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)


def test_defaults() -> None:
    cfg = BreakerConfig()
    assert (cfg.failure_rate_threshold, cfg.minimum_calls, cfg.window_seconds) == (0.5, 20, 10.0)
    assert (cfg.consecutive_failures, cfg.slow_call_seconds, cfg.slow_call_rate_threshold) == (5, None, 1.0)
    assert (cfg.open_seconds, cfg.half_open_calls) == (5.0, 3)
    assert cfg.record == (Exception,) and cfg.ignore == ()


def test_frozen_and_keyword_only() -> None:
    cfg = BreakerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.minimum_calls = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        BreakerConfig(0.5)  # type: ignore[misc]


def test_single_exception_class_is_accepted() -> None:
    assert BreakerConfig(ignore=KeyError).ignore == (KeyError,)


def test_round_trip_through_the_segment_words() -> None:
    cfg = BreakerConfig(
        failure_rate_threshold=0.25,
        minimum_calls=7,
        window_seconds=3.5,
        consecutive_failures=None,
        slow_call_seconds=0.25,
        slow_call_rate_threshold=0.8,
        open_seconds=2.0,
        open_backoff=1.5,
        max_open_seconds=9.0,
        half_open_calls=4,
        half_open_max_seconds=6.0,
    )
    values = {offset: value for offset, (_, value) in cfg.to_words().items()}
    assert BreakerConfig.from_words(values, cfg) == cfg
