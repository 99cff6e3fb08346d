"""The global fuse."""

from __future__ import annotations

import pytest

import bot4
from bot4 import BreakerConfig, BreakerState, Core, FuseConfig, FuseState, FuseTrippedError, ManualClock
from tests.helpers import fail, rejected, succeed

CFG = BreakerConfig(consecutive_failures=1, open_seconds=1.0, half_open_calls=1)


def test_fuse_trips_at_open_ratio_and_releases_below_close_ratio(core: Core, clock: ManualClock) -> None:
    brs = [core.breaker(f"venue{i}", CFG) for i in range(4)]
    fail(brs[0])
    assert core.fuse.state is FuseState.CLEAR  # 1 of 4 = 25%
    fail(brs[1])
    assert core.fuse.state is FuseState.TRIPPED  # 2 of 4 = 50%
    err = rejected(brs[2])  # a closed breaker rejects too
    assert isinstance(err, FuseTrippedError) and err.state is BreakerState.CLOSED
    clock.advance(1.0)
    succeed(brs[0])  # trial calls still pass while the fuse is tripped: venue0 recovers
    assert brs[0].state is BreakerState.CLOSED
    assert core.fuse.state is FuseState.CLEAR  # 1 of 4 = 25% < 35%
    succeed(brs[2])


def test_fuse_hysteresis_between_ratios(core: Core, clock: ManualClock) -> None:
    core.fuse.configure(FuseConfig(open_ratio=0.5, close_ratio=0.2, min_components=3))
    brs = [core.breaker(f"venue{i}", CFG) for i in range(4)]
    fail(brs[0])
    fail(brs[1])
    assert core.fuse.tripped
    clock.advance(1.0)
    succeed(brs[0])  # 1 of 4 = 25%: below open, not below close
    assert core.fuse.state is FuseState.TRIPPED
    succeed(brs[1])  # 0 of 4
    assert core.fuse.state is FuseState.CLEAR


def test_fuse_needs_min_components(core: Core) -> None:
    brs = [core.breaker(f"venue{i}", CFG) for i in range(2)]
    fail(brs[0])
    fail(brs[1])  # 100% open, but only 2 breakers
    assert core.fuse.state is FuseState.CLEAR
    snap = core.fuse.snapshot()
    assert (snap.open_breakers, snap.counted_breakers) == (2, 2)


def test_disabled_breakers_do_not_count_and_ignore_the_fuse(core: Core) -> None:
    brs = [core.breaker(f"venue{i}", CFG) for i in range(4)]
    brs[3].disable()
    fail(brs[0])
    assert core.fuse.state is FuseState.CLEAR  # 1 of 3
    fail(brs[1])
    assert core.fuse.state is FuseState.TRIPPED  # 2 of 3
    succeed(brs[3])  # a disabled breaker passes calls whatever the fuse


def test_forced_fuse_until_reset(core: Core) -> None:
    events = []

    class Watch:
        @bot4.hookimpl
        def bot4_fuse_changed(self, core, old, new, reason):  # type: ignore[no-untyped-def]
            events.append((old, new, reason))

    core.plugins.register(Watch())
    br = core.breaker("venue", CFG)
    core.fuse.trip("desk halted")
    assert core.fuse.state is FuseState.FORCED
    assert isinstance(rejected(br), FuseTrippedError)
    core.fuse.reset("desk resumed")
    succeed(br)
    assert events == [
        (FuseState.CLEAR, FuseState.FORCED, "desk halted"),
        (FuseState.FORCED, FuseState.CLEAR, "desk resumed"),
    ]
    assert core.fuse.snapshot().trips == 1


def test_fuse_config_validation() -> None:
    with pytest.raises(bot4.ConfigError, match="close_ratio"):
        FuseConfig(open_ratio=0.3, close_ratio=0.3)
    with pytest.raises(bot4.ConfigError, match="min_components"):
        FuseConfig(min_components=0)
    with pytest.raises(bot4.ConfigError, match="open_ratio"):
        FuseConfig(open_ratio=1.5)


def test_fuse_config_is_shared(core: Core) -> None:
    cfg = FuseConfig(open_ratio=0.75, close_ratio=0.25, min_components=5)
    core.fuse.configure(cfg)
    other = Core.attach(core.name)
    try:
        assert other.fuse.config == cfg
    finally:
        other.close()
