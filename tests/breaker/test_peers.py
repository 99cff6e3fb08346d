"""Behaviour the peers' test suites pin down (resilience4j, Polly, pybreaker), held by bot4.

Each test names the behaviour it ports. Where bot4 differs on purpose, docs/breaker.md says so.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import multiprocessing
import os
import pickle
from collections.abc import AsyncIterator, Iterator

import pytest

from bot4 import BreakerConfig, BreakerState, CallEvent, ConfigError, Core, ManualClock, make_plugin_manager
from tests.helpers import fail, rejected, succeed


def _open(br: object) -> None:
    fail(br)  # type: ignore[arg-type]
    assert br.state is BreakerState.OPEN  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the rate rules on every recorded call


def test_a_success_that_completes_minimum_calls_trips_when_the_rate_is_over(core: Core) -> None:
    """resilience4j: the failure rate is evaluated on each recorded call, successes included."""
    br = core.breaker("x", BreakerConfig(consecutive_failures=None, minimum_calls=4, failure_rate_threshold=0.5))
    fail(br)
    fail(br)
    succeed(br)
    assert br.state is BreakerState.CLOSED  # 3 calls: below minimum_calls
    succeed(br)  # 4 calls, 2 failures: 50% reached on a success
    assert br.state is BreakerState.OPEN


def test_the_rate_is_checked_when_successes_age_out_of_the_window(core: Core, clock: ManualClock) -> None:
    br = core.breaker(
        "x", BreakerConfig(consecutive_failures=None, minimum_calls=4, failure_rate_threshold=0.5, window_seconds=1)
    )
    for _ in range(4):
        succeed(br)
    clock.advance(0.5)
    for _ in range(3):
        fail(br)
    succeed(br)  # 8 calls, 3 failures: 37.5%
    assert br.state is BreakerState.CLOSED
    clock.advance(0.55)  # the first four successes leave the window: 3 of 4 failed
    succeed(br)  # 3 of 5: 60%
    assert br.state is BreakerState.OPEN


def test_a_slow_success_completing_minimum_calls_trips_on_the_slow_rate(core: Core, clock: ManualClock) -> None:
    br = core.breaker(
        "x",
        BreakerConfig(consecutive_failures=None, minimum_calls=3, slow_call_seconds=1, slow_call_rate_threshold=0.5),
    )
    for _ in range(2):
        with br.call():
            clock.advance(2)  # slow
    assert br.state is BreakerState.CLOSED
    succeed(br)  # 3 calls, 2 slow
    assert br.state is BreakerState.OPEN


# ---------------------------------------------------------------- half-open


def test_would_reject_tells_the_truth_in_half_open(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1, half_open_calls=1))
    _open(br)
    assert br.would_reject()
    clock.advance(1)
    assert not br.would_reject()  # the next call is a trial
    trial = br.call()
    trial.__enter__()
    assert br.state is BreakerState.HALF_OPEN
    assert br.would_reject(), "every permit is out: the next call is refused"
    rejected(br)
    trial.__exit__(None, None, None)
    assert br.state is BreakerState.CLOSED and not br.would_reject()


def test_would_reject_when_the_half_open_time_is_up(core: Core, clock: ManualClock) -> None:
    br = core.breaker(
        "x", BreakerConfig(consecutive_failures=1, open_seconds=1, half_open_calls=2, half_open_max_seconds=5)
    )
    _open(br)
    clock.advance(1)
    trial = br.call()
    trial.__enter__()
    assert not br.would_reject()  # a permit is free
    clock.advance(5)
    assert br.would_reject()
    rejected(br)  # and indeed: back to open
    trial.__exit__(None, None, None)


def test_a_late_trial_success_never_counts_in_the_next_episode(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1, half_open_calls=2))
    _open(br)
    clock.advance(1)
    late = br.call()
    late.__enter__()  # a trial of episode 1, still running
    fail(br)  # another trial fails: open again (episode over)
    clock.advance(2)  # open_backoff 2: open for 2 s
    succeed(br)  # episode 2: one success of two
    late.__exit__(None, None, None)  # the late success of episode 1 arrives
    assert br.state is BreakerState.HALF_OPEN
    succeed(br)  # the second success of episode 2 closes it
    assert br.state is BreakerState.CLOSED


def test_a_slow_trial_call_reopens(core: Core, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    cfg = BreakerConfig(consecutive_failures=1, open_seconds=1, half_open_calls=2, slow_call_seconds=0.5)
    br = core.breaker("x", cfg)
    _open(br)
    clock.advance(1)
    with caplog.at_level(logging.WARNING, logger="bot4.events"):
        with br.call():
            clock.advance(0.6)  # answered, but slowly
    assert br.state is BreakerState.OPEN
    assert "HALF_OPEN -> OPEN (trial call was slow (0.600s))" in caplog.text
    br.reconfigure(cfg.replace(slow_trial_fails=False))
    clock.advance(2)
    for _ in range(2):
        with br.call():
            clock.advance(0.6)
    assert br.state is BreakerState.CLOSED  # slow trials count as successes when asked


# ---------------------------------------------------------------- what a breaker can guard


def test_generator_functions_are_refused_at_decoration(core: Core) -> None:
    br = core.breaker("x")

    def pages() -> Iterator[int]:
        yield 1

    async def stream() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        br(pages)
    with pytest.raises(ConfigError, match="generator"):
        br(stream)

    async def guarded_steps() -> list[int]:  # what the error says to do instead
        out = []
        for i in range(2):
            async with br.call():
                await asyncio.sleep(0)
                out.append(i)
        return out

    assert asyncio.run(guarded_steps()) == [0, 1]


# ---------------------------------------------------------------- configuration


def test_slow_call_seconds_below_the_clock_resolution_is_refused() -> None:
    with pytest.raises(ConfigError, match="slow_call_seconds"):
        BreakerConfig(slow_call_seconds=1e-10)
    assert BreakerConfig(slow_call_seconds=1e-9).to_words()  # 1 ns: honoured


def test_replace_keeps_every_field_not_named(core: Core) -> None:
    cfg = BreakerConfig(ignore=(KeyError,), open_seconds=5, predicate=lambda exc: True)
    changed = cfg.replace(open_seconds=30)
    assert changed.open_seconds == 30 and changed.ignore == (KeyError,) and changed.predicate is cfg.predicate
    br = core.breaker("x", cfg)
    br.reconfigure(br.config.replace(open_seconds=30))
    assert br.config.ignore == (KeyError,) and br.config.open_seconds == 30
    with pytest.raises(TypeError):
        cfg.replace(no_such_field=1)


# ---------------------------------------------------------------- results as failures (resilience4j recordResult, Polly HandleResult)


def _status_error(result: object) -> bool:
    return isinstance(result, dict) and result.get("status") == "error"


def test_a_failed_result_counts_as_a_failure_and_is_still_returned(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=3, failed_result=_status_error))

    @br
    def place() -> dict[str, str]:
        return {"status": "error", "msg": "rate limited"}

    for _ in range(3):
        assert place() == {"status": "error", "msg": "rate limited"}  # the caller sees the venue's answer
    assert br.state is BreakerState.OPEN
    assert br.snapshot().failures == 3


def test_good_results_are_successes_and_a_raising_check_counts_as_failure(core: Core) -> None:
    def broken(result: object) -> bool:
        raise RuntimeError("bad check")

    good = core.breaker("good", BreakerConfig(consecutive_failures=1, failed_result=_status_error))
    assert good(lambda: {"status": "ok"})() == {"status": "ok"}
    assert good.state is BreakerState.CLOSED and good.snapshot().failures == 0
    shaky = core.breaker("shaky", BreakerConfig(consecutive_failures=1, failed_result=broken))
    shaky(lambda: 1)()
    assert shaky.state is BreakerState.OPEN


def test_a_failed_result_in_half_open_reopens_and_async_results_count(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1, failed_result=_status_error))

    @br
    async def fetch(status: str) -> dict[str, str]:
        return {"status": status}

    asyncio.run(fetch("error"))
    assert br.state is BreakerState.OPEN
    clock.advance(1)
    asyncio.run(fetch("error"))  # the trial answers with an error
    assert br.state is BreakerState.OPEN
    blocks = core.breaker("blocks", BreakerConfig(consecutive_failures=1, failed_result=lambda result: True))
    with blocks.call():  # a block has no return value: the check is never asked
        pass
    assert blocks.state is BreakerState.CLOSED and blocks.snapshot().calls == 1


# ---------------------------------------------------------------- why is it open?


class VenueTimeout(Exception):
    pass


def _trip_in_another_process(name: str) -> None:
    with Core.attach(name) as core:
        br = core.breaker("venue", BreakerConfig(consecutive_failures=1, open_seconds=60))
        try:
            with br.call():
                raise VenueTimeout("no answer in 10s")
        except VenueTimeout:
            pass


def test_every_process_sees_the_failure_that_opened_the_breaker() -> None:
    ctx = multiprocessing.get_context("spawn")
    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
        br = core.breaker("venue", BreakerConfig(consecutive_failures=1, open_seconds=60))
        assert br.opened_by() is None and br.snapshot().opened_by is None
        child = ctx.Process(target=_trip_in_another_process, args=(core.name,))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert br.state is BreakerState.OPEN
        cause = br.opened_by()
        assert cause == "VenueTimeout: no answer in 10s"
        snap = br.snapshot()
        assert (snap.opened_by, snap.opened_by_pid) == (cause, child.pid)
        error = rejected(br)
        assert error.cause == cause
        copy = pickle.loads(pickle.dumps(error))  # sent to another process: the cause as read
        assert copy.cause == cause and copy.breaker == "venue"


def test_the_cause_of_a_forced_open_a_failed_result_and_a_failed_trial(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1, failed_result=_status_error))
    br.force_open("venue maintenance")
    assert br.opened_by() == "venue maintenance"
    assert br.snapshot().opened_by_pid == os.getpid()
    br.reset()
    br(lambda: {"status": "error"})()
    assert br.opened_by().startswith("failed result {'status': 'error'}")  # type: ignore[union-attr]
    clock.advance(1)
    with pytest.raises(VenueTimeout):
        with br.call():
            raise VenueTimeout("still down")
    assert br.opened_by().startswith("VenueTimeout: still down")  # type: ignore[union-attr]


def test_half_open_progress_is_in_the_snapshot(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1, half_open_calls=3))
    _open(br)
    clock.advance(1)
    succeed(br)
    pending = br.call()
    pending.__enter__()
    snap = br.snapshot()
    assert (snap.state, snap.half_open_permits_in_use, snap.half_open_successes) == (BreakerState.HALF_OPEN, 2, 1)
    pending.__exit__(None, None, None)


# ---------------------------------------------------------------- manual control (resilience4j transitionTo*)


def test_open_for_a_duration_then_trials(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(half_open_calls=1))
    br.open_for(30, "exchange maintenance window")
    error = rejected(br)
    assert error.retry_after == pytest.approx(30, abs=0.002) and error.cause == "exchange maintenance window"
    clock.advance(30)
    succeed(br)  # the trial closes it
    assert br.state is BreakerState.CLOSED


def test_open_until_an_instant_and_half_open_by_hand(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(half_open_calls=2))
    br.open_until(datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1))
    assert 3590 < rejected(br).retry_after <= 3600.001  # type: ignore[operator]
    br.half_open("venue says it is back")
    assert br.state is BreakerState.HALF_OPEN
    succeed(br)
    succeed(br)
    assert br.state is BreakerState.CLOSED


@pytest.mark.parametrize(
    "call",
    [
        lambda br: br.open_for(0),
        lambda br: br.open_for(float("nan")),
        lambda br: br.open_for("5"),
        lambda br: br.open_until(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)),
        lambda br: br.open_until(datetime.datetime(2999, 1, 1)),  # naive
        lambda br: br.force_open(42),
    ],
)
def test_manual_control_refuses_nonsense(core: Core, call: object) -> None:
    br = core.breaker("x")
    with pytest.raises(ConfigError):
        call(br)  # type: ignore[operator]
    assert br.state is BreakerState.CLOSED


# ---------------------------------------------------------------- per-call events (resilience4j EventPublisher, Polly onBreak)


def test_listeners_see_every_call_and_cost_nothing_once_gone(core: Core, clock: ManualClock) -> None:
    br = core.breaker(
        "x", BreakerConfig(consecutive_failures=2, ignore=(KeyError,), failed_result=lambda r: r == "bad")
    )
    seen: list[tuple[str, float | None, str]] = []

    def listen(event: CallEvent) -> None:
        seen.append((event.kind, event.seconds, type(event.error).__name__))

    def broken(event: CallEvent) -> None:
        raise RuntimeError("a listener that raises is skipped")

    unsubscribe = br.subscribe(listen)
    br.subscribe(broken)

    @br
    def call(value: str) -> str:
        clock.advance(0.25)
        return value

    call("ok")
    call("bad")
    with pytest.raises(KeyError):
        with br.call():
            raise KeyError("ignored")
    call("bad")  # second failure in a row: open
    rejected(br)
    assert seen == [
        ("success", 0.25, "NoneType"),
        ("failure", 0.25, "NoneType"),
        ("ignored", 0.0, "KeyError"),
        ("failure", 0.25, "NoneType"),
        ("rejected", None, "CircuitOpenError"),
    ]
    unsubscribe()
    rejected(br)
    assert len(seen) == 5
    with pytest.raises(TypeError):
        br.subscribe("not callable")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the count-based window (resilience4j COUNT_BASED)


def test_a_count_window_holds_the_last_calls_whatever_their_age(core: Core, clock: ManualClock) -> None:
    cfg = BreakerConfig(consecutive_failures=None, window_calls=10, minimum_calls=100, failure_rate_threshold=0.5)
    br = core.breaker("x", cfg)
    for _ in range(6):
        succeed(br)
    clock.advance(86_400)  # a day later the calls are still in the window: it counts calls, not time
    for _ in range(4):
        fail(br)
    snap = br.snapshot()
    assert (snap.calls, snap.failures, snap.state) == (10, 4, BreakerState.CLOSED)
    fail(br)  # the oldest success leaves: 5 of the last 10 failed; minimum_calls is capped at the window
    assert br.state is BreakerState.OPEN
    assert br.opened_by() == "Boom: exchange down"


def test_a_count_window_trips_on_a_success_that_pushes_a_success_out(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=None, window_calls=4, failure_rate_threshold=0.75))
    fail(br)
    succeed(br)
    fail(br)
    fail(br)  # 3 of 4 failed: 75%
    assert br.state is BreakerState.OPEN
    br.reset()
    assert br.snapshot().calls == 0  # reset empties the count window too


def test_changing_the_kind_or_length_of_the_window_empties_it(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=None, minimum_calls=50))
    for _ in range(3):
        fail(br)
    br.reconfigure(br.config.replace(window_calls=20))
    assert br.snapshot().calls == 0
    for _ in range(3):
        fail(br)
    br.reconfigure(br.config.replace(minimum_calls=40))  # same window: kept
    assert br.snapshot().calls == 3
    br.reconfigure(br.config.replace(window_calls=30))
    assert br.snapshot().calls == 0
    br.reconfigure(br.config.replace(window_calls=None))
    assert br.snapshot().calls == 0


@pytest.mark.parametrize("bad", [0, -1, 1025, 2.5, True, "10"])
def test_window_calls_out_of_range_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="window_calls"):
        BreakerConfig(window_calls=bad)  # type: ignore[arg-type]


def test_the_snapshot_counts_transitions_and_trials_per_state(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1, half_open_calls=2))
    fail(br)
    clock.advance(1)
    succeed(br)  # trial 1: HALF_OPEN
    fail(br)  # trial 2 fails: OPEN again
    clock.advance(2)
    succeed(br)
    succeed(br)  # two trials: CLOSED
    br.force_open()
    snap = br.snapshot()
    assert snap.transitions == {
        BreakerState.CLOSED: 1,
        BreakerState.OPEN: 2,
        BreakerState.HALF_OPEN: 2,
        BreakerState.FORCED_OPEN: 1,
        BreakerState.DISABLED: 0,
    }
    assert (snap.trial_calls, snap.trial_failures, snap.trips) == (4, 1, 2)
    clock.advance(3)
    assert br.snapshot().seconds_in_state == pytest.approx(3.0)
