"""Every breaker rule with the manual clock, at and just past its threshold."""

from __future__ import annotations

import pytest

from bot4 import BreakerConfig, BreakerState, CircuitOpenError, Core, ManualClock
from tests.helpers import Boom, fail, rejected, succeed


def rate_only(**kw: object) -> BreakerConfig:
    return BreakerConfig(consecutive_failures=None, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- failure rate


def test_failure_rate_at_threshold_trips(core: Core) -> None:
    br = core.breaker("x", rate_only(minimum_calls=10, failure_rate_threshold=0.5))
    for _ in range(5):
        succeed(br)
    for _ in range(4):
        fail(br)
    assert br.state is BreakerState.CLOSED  # 4/9 and below minimum_calls
    fail(br)  # 5/10 = 0.5: at the threshold
    assert br.state is BreakerState.OPEN


def test_failure_rate_just_below_threshold_stays_closed(core: Core) -> None:
    br = core.breaker("x", rate_only(minimum_calls=10, failure_rate_threshold=0.5))
    for _ in range(6):
        succeed(br)
    for _ in range(5):
        fail(br)  # ends at 5/11 < 0.5
    assert br.state is BreakerState.CLOSED
    snap = br.snapshot()
    assert (snap.calls, snap.failures) == (11, 5)
    assert snap.failure_rate == pytest.approx(5 / 11)


def test_minimum_calls_at_and_below(core: Core) -> None:
    br = core.breaker("x", rate_only(minimum_calls=4))
    for _ in range(3):
        fail(br)  # 3/3 = 100% but only 3 calls
    assert br.state is BreakerState.CLOSED
    fail(br)  # 4 calls: the rule applies
    assert br.state is BreakerState.OPEN


def test_window_slides_old_failures_out(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", rate_only(minimum_calls=4, window_seconds=10))
    for _ in range(3):
        fail(br)
    clock.advance(10.0)  # ten 1 s buckets later the three failures have left the window
    succeed(br)
    fail(br)
    snap = br.snapshot()
    assert (snap.calls, snap.failures) == (2, 1)
    assert br.state is BreakerState.CLOSED


def test_window_keeps_counts_within_its_length(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", rate_only(minimum_calls=4, window_seconds=10))
    for _ in range(3):
        fail(br)
    clock.advance(8.9)  # still inside the window
    fail(br)
    assert br.state is BreakerState.OPEN


# ---------------------------------------------------------------- consecutive failures


def test_consecutive_failures_trip_regardless_of_rate(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=3, minimum_calls=1000))
    for _ in range(50):
        succeed(br)
    fail(br)
    fail(br)
    assert br.state is BreakerState.CLOSED
    fail(br)
    assert br.state is BreakerState.OPEN


def test_a_success_resets_consecutive_failures(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=3, minimum_calls=1000))
    fail(br)
    fail(br)
    succeed(br)
    fail(br)
    fail(br)
    assert br.state is BreakerState.CLOSED
    assert br.snapshot().consecutive_failures == 2


# ---------------------------------------------------------------- slow calls


def test_slow_call_rate_trips(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", rate_only(minimum_calls=4, slow_call_seconds=1.0, slow_call_rate_threshold=0.5))

    def slow_call(seconds: float) -> None:
        with br.call():
            clock.advance(seconds)

    slow_call(0.5)
    slow_call(0.999)  # just under: not slow
    slow_call(1.0)  # at: slow
    assert br.state is BreakerState.CLOSED  # 3 calls < minimum
    slow_call(2.0)  # 2 slow of 4 = 0.5
    assert br.state is BreakerState.OPEN
    assert br.snapshot().slow_calls == 2


def test_slow_calls_below_rate_stay_closed(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", rate_only(minimum_calls=4, slow_call_seconds=1.0, slow_call_rate_threshold=0.6))
    for seconds in (2.0, 2.0, 0.1, 0.1, 0.1):
        with br.call():
            clock.advance(seconds)
    assert br.state is BreakerState.CLOSED
    assert br.snapshot().slow_call_rate == pytest.approx(0.4)


# ---------------------------------------------------------------- open, half-open, backoff


def trip(br):  # type: ignore[no-untyped-def]
    for _ in range(br.config.consecutive_failures or 1):
        fail(br)
    assert br.state is BreakerState.OPEN


def test_open_rejects_with_retry_after_until_period_ends(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=5.0))
    trip(br)
    err = rejected(br)
    assert err.breaker == "x" and err.state is BreakerState.OPEN
    assert err.retry_after == pytest.approx(5.0, abs=0.002)
    clock.advance(4.998)
    assert rejected(br).retry_after == pytest.approx(0.002, abs=0.0015)
    clock.advance(0.002)
    succeed(br)  # first trial call
    assert br.state is BreakerState.HALF_OPEN


def test_half_open_successes_close(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1.0, half_open_calls=3))
    trip(br)
    clock.advance(1.0)
    succeed(br)
    succeed(br)
    assert br.state is BreakerState.HALF_OPEN
    succeed(br)
    assert br.state is BreakerState.CLOSED
    snap = br.snapshot()
    assert (snap.calls, snap.failures, snap.consecutive_failures) == (0, 0, 0)  # window emptied on close


def test_half_open_one_failure_reopens_with_backoff(core: Core, clock: ManualClock) -> None:
    cfg = BreakerConfig(consecutive_failures=1, open_seconds=1.0, open_backoff=2.0, max_open_seconds=3.0)
    br = core.breaker("x", cfg)
    trip(br)
    clock.advance(1.0)
    succeed(br)
    fail(br)
    assert br.state is BreakerState.OPEN
    assert rejected(br).retry_after == pytest.approx(2.0, abs=0.002)  # 1 s * 2
    clock.advance(2.0)
    fail(br)
    assert rejected(br).retry_after == pytest.approx(3.0, abs=0.002)  # 4 s capped at 3
    clock.advance(3.0)
    fail(br)
    assert rejected(br).retry_after == pytest.approx(3.0, abs=0.002)  # stays at the cap
    clock.advance(3.0)
    for _ in range(cfg.half_open_calls):
        succeed(br)
    assert br.state is BreakerState.CLOSED
    trip(br)
    assert rejected(br).retry_after == pytest.approx(1.0, abs=0.002)  # backoff forgotten once closed


def test_half_open_permits_are_a_bounded_budget(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1.0, half_open_calls=2))
    trip(br)
    clock.advance(1.0)
    first, second = br.call(), br.call()
    first.__enter__()
    second.__enter__()
    err = rejected(br)
    assert err.state is BreakerState.HALF_OPEN
    assert br.snapshot().half_open_permits_in_use == 2
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert br.state is BreakerState.CLOSED


def test_ignored_trial_gives_its_permit_back(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1.0, half_open_calls=1, ignore=KeyError))
    trip(br)
    clock.advance(1.0)
    fail(br, KeyError("no such order"))
    assert br.state is BreakerState.HALF_OPEN
    assert br.snapshot().half_open_permits_in_use == 0
    succeed(br)
    assert br.state is BreakerState.CLOSED


def test_half_open_without_verdict_goes_back_to_open(core: Core, clock: ManualClock) -> None:
    cfg = BreakerConfig(consecutive_failures=1, open_seconds=1.0, half_open_calls=1, half_open_max_seconds=2.0)
    br = core.breaker("x", cfg)
    trip(br)
    clock.advance(1.0)
    stuck = br.call()
    stuck.__enter__()  # a trial call that never reports (its process hangs or dies)
    clock.advance(1.999)
    assert rejected(br).state is BreakerState.HALF_OPEN
    clock.advance(0.001)
    err = rejected(br)  # the episode ended: back to open, permits reclaimed
    assert err.state is BreakerState.OPEN
    assert err.retry_after == pytest.approx(1.0, abs=0.002)
    clock.advance(1.0)
    succeed(br)
    assert br.state is BreakerState.CLOSED
    stuck.__exit__(None, None, None)  # its late verdict belongs to an old episode: no effect
    assert br.state is BreakerState.CLOSED


def test_late_failure_of_an_old_trial_does_not_reopen(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1.0, half_open_calls=2))
    trip(br)
    clock.advance(1.0)
    late = br.call()
    late.__enter__()
    succeed(br)
    clock.advance(40.0)  # half_open_max_seconds passes: reopen, then a new episode closes it
    rejected(br)
    clock.advance(1.0)
    succeed(br)
    succeed(br)
    assert br.state is BreakerState.CLOSED
    late.__exit__(Boom, Boom("late"), None)
    assert br.state is BreakerState.CLOSED


# ---------------------------------------------------------------- classification


def test_ignored_exceptions_count_as_neither(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=2, ignore=(KeyError,)))
    fail(br)
    fail(br, KeyError("x"))
    snap = br.snapshot()
    assert (snap.calls, snap.failures, snap.consecutive_failures) == (1, 1, 1)
    fail(br)
    assert br.state is BreakerState.OPEN


def test_unrecorded_exceptions_count_as_success(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=2, record=(ConnectionError,)))
    fail(br, ConnectionError("down"))
    fail(br, ValueError("bad symbol"))  # a business error: the venue answered
    snap = br.snapshot()
    assert (snap.calls, snap.failures, snap.consecutive_failures) == (2, 1, 0)


def test_predicate_decides_recorded_exceptions(core: Core) -> None:
    def is_failure(exc: BaseException) -> bool:
        return "5xx" in str(exc)

    br = core.breaker("x", BreakerConfig(consecutive_failures=None, predicate=is_failure))
    fail(br, Boom("5xx gateway"))
    fail(br, Boom("4xx insufficient funds"))
    snap = br.snapshot()
    assert (snap.calls, snap.failures) == (2, 1)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(1), GeneratorExit()])
def test_base_exceptions_are_never_failures(core: Core, exc: BaseException) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1))
    fail(br, exc)
    snap = br.snapshot()
    assert (snap.calls, snap.failures) == (0, 0)
    assert br.state is BreakerState.CLOSED


# ---------------------------------------------------------------- manual control


def test_force_open_disable_reset(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1))
    br.force_open()
    err = rejected(br)
    assert err.state is BreakerState.FORCED_OPEN and err.retry_after is None
    br.disable()
    for _ in range(5):
        fail(br)  # passes through, recorded nowhere
    assert br.state is BreakerState.DISABLED
    assert br.snapshot().calls == 0
    br.reset()
    assert br.state is BreakerState.CLOSED
    fail(br)
    assert br.state is BreakerState.OPEN
    br.reset()
    succeed(br)
    assert br.snapshot().calls == 1


def test_reconfigure_takes_effect_at_next_call(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=5))
    other = Core.attach(core.name, clock=clock)  # a second view, as another process would have
    try:
        br_other = other.breaker("x")
        fail(br)
        fail(br)
        br_other.reconfigure(BreakerConfig(consecutive_failures=3, open_seconds=2.0))
        assert br.config.consecutive_failures == 3
        fail(br)
        assert br.state is BreakerState.OPEN
        assert rejected(br).retry_after == pytest.approx(2.0, abs=0.002)
    finally:
        other.close()


def test_reconfigure_window_empties_it(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=None))
    fail(br)
    br.reconfigure(BreakerConfig(consecutive_failures=None))
    assert br.snapshot().calls == 1  # same window: kept
    br.reconfigure(BreakerConfig(consecutive_failures=None, window_seconds=30))
    assert br.snapshot().calls == 0


def test_get_or_create_returns_the_same_breaker(core: Core) -> None:
    a = core.breaker("venue", BreakerConfig(minimum_calls=7))
    b = core.breaker("venue")
    assert a is b
    assert core.breaker_names() == ["venue"]
    assert b.config.minimum_calls == 7


def test_existing_breaker_keeps_shared_config(core: Core, caplog: pytest.LogCaptureFixture) -> None:
    core.breaker("venue", BreakerConfig(minimum_calls=7))
    again = core.breaker("venue", BreakerConfig(minimum_calls=9))
    assert again.config.minimum_calls == 7
    assert "different configuration" in caplog.text


def test_snapshot_seconds_until_half_open(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=3.0))
    assert br.snapshot().seconds_until_half_open is None
    fail(br)
    clock.advance(1.0)
    snap = br.snapshot()
    assert snap.state is BreakerState.OPEN and snap.trips == 1
    assert snap.seconds_until_half_open == pytest.approx(2.0, abs=0.002)


def test_rejections_are_counted(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1))
    fail(br)
    with pytest.raises(CircuitOpenError):
        succeed(br)
    with pytest.raises(CircuitOpenError):
        succeed(br)
    assert br.snapshot().rejections == 2


def test_body_exception_propagates_unchanged(core: Core) -> None:
    br = core.breaker("x")
    err = Boom("original")
    with pytest.raises(Boom) as info:
        with br.call():
            raise err
    assert info.value is err


def test_deadlines_work_with_any_clock_origin() -> None:
    from bot4 import make_plugin_manager

    clock = ManualClock(1_767_268_800.0)  # a wall-clock epoch: beyond 2**39 ms
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as core:
        br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=5.0, half_open_calls=1))
        fail(br)
        assert rejected(br).retry_after == pytest.approx(5.0, abs=0.002)
        clock.advance(4.0)
        assert rejected(br).retry_after == pytest.approx(1.0, abs=0.002)
        clock.advance(1.0)
        succeed(br)
        assert br.state is BreakerState.CLOSED
