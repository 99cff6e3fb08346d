"""Clocks: the shared simulated clock seen by spawned workers."""

from __future__ import annotations

import pytest

from bot4 import ConfigError, Core, SharedClock, Supervisor
from tests.worker_targets import read_shared_clock


def test_shared_clock_moves_forward_only() -> None:
    clock = SharedClock(5.0, epoch=1_000.0)
    assert clock.now_ns() == 5_000_000_000
    assert clock.time_ns() == 1_005_000_000_000
    clock.advance(1.5)
    assert clock.now() == 6.5
    with pytest.raises(ConfigError, match="backwards"):
        clock.set(6.0)
    with pytest.raises(ConfigError):
        clock.advance(-1)


def test_workers_read_the_supervisors_shared_clock() -> None:
    clock = SharedClock(100.0)
    with Core.create(clock=clock) as core:
        clock.set(250.0)  # after creation: the workers read the moved value, not a copy
        assert Supervisor(core, read_shared_clock, 1, clock=clock).run(duration=60) == 0
        # opened at 250 s of the shared clock for 10 s: 10 s left at 250 s, 4 s left at 256 s
        assert core.breaker("clocked").snapshot().seconds_until_half_open == pytest.approx(10.0, abs=0.01)
        clock.set(256.0)
        assert core.breaker("clocked").snapshot().seconds_until_half_open == pytest.approx(4.0, abs=0.01)


def test_supervisor_refuses_a_non_clock() -> None:
    with Core.create() as core, pytest.raises(ConfigError, match="clock"):
        Supervisor(core, read_shared_clock, 1, clock=object())  # type: ignore[arg-type]
