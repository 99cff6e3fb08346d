"""Real processes sharing breakers: rates across workers, half-open budget, SIGKILL, exact counts."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from typing import Any

import pytest

from bot4 import BreakerConfig, BreakerState, CircuitOpenError, Core
from bot4.shm import _native
from tests.helpers import Boom, wait_for

pytestmark = pytest.mark.processes

ctx = mp.get_context("spawn")


def start(target: Any, *args: Any) -> mp.process.BaseProcess:
    p = ctx.Process(target=target, args=args, daemon=True)
    p.start()
    return p


def join_all(procs: list[mp.process.BaseProcess], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, "a worker hung"
    assert [p.exitcode for p in procs] == [0] * len(procs)


# ---------------------------------------------------------------- (a) rate crossed only together

RATE_CFG = BreakerConfig(minimum_calls=40, failure_rate_threshold=0.5, consecutive_failures=None, window_seconds=120)


def _rate_worker(name: str, barrier: Any, results: Any) -> None:
    with Core.attach(name) as core:
        br = core.breaker("venue", RATE_CFG)

        def call(ok: bool) -> None:
            with br.call():
                if not ok:
                    raise Boom("down")

        for ok in [True] * 5 + [False] * 4:  # alone: 9 calls, 44% failed
            try:
                call(ok)
            except Boom:
                pass
        barrier.wait()  # parent checks the breaker is still closed
        barrier.wait()
        try:
            call(False)  # together: 40 calls, 20 failed
        except Boom:
            pass
        barrier.wait()
        try:
            call(True)
            results.put("passed")
        except CircuitOpenError as exc:
            results.put(exc.state.name)


def test_failures_that_only_together_cross_the_rate_open_the_breaker_for_all() -> None:
    with Core.create() as core:
        br = core.breaker("venue", RATE_CFG)
        barrier, results = ctx.Barrier(5, timeout=60), ctx.Queue()
        procs = [start(_rate_worker, core.name, barrier, results) for _ in range(4)]
        barrier.wait()
        snap = br.snapshot()
        assert (snap.calls, snap.failures, snap.state) == (36, 16, BreakerState.CLOSED)
        barrier.wait()
        barrier.wait()
        assert br.state is BreakerState.OPEN
        assert sorted(results.get(timeout=60) for _ in procs) == ["OPEN"] * 4
        join_all(procs)


# ---------------------------------------------------------------- (b) half-open budget across 8 processes

HALF_CFG = BreakerConfig(consecutive_failures=1, open_seconds=0.3, half_open_calls=3, half_open_max_seconds=30)


def _half_open_worker(name: str, entered: Any, ready: Any, go: Any, release: Any) -> None:
    with Core.attach(name) as core:
        br = core.breaker("venue", HALF_CFG)

        @br
        def protected() -> None:
            with entered.get_lock():
                entered.value += 1
            release.wait(60)

        with ready.get_lock():
            ready.value += 1
        assert go.wait(60)
        while not release.is_set():
            try:
                protected()
            except CircuitOpenError:
                time.sleep(0.0005)


def test_half_open_budget_holds_across_8_processes() -> None:
    with Core.create() as core:
        br = core.breaker("venue", HALF_CFG)
        with pytest.raises(Boom):
            with br.call():
                raise Boom("down")
        assert br.state is BreakerState.OPEN
        entered, ready, go, release = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Event(), ctx.Event()
        procs = [start(_half_open_worker, core.name, entered, ready, go, release) for _ in range(8)]
        wait_for(lambda: ready.value == 8, 120, "eight workers attached")
        wait_for(lambda: br.snapshot().seconds_until_half_open == 0, 10, "the open period to end")
        go.set()  # all eight hammer at once
        wait_for(lambda: entered.value >= HALF_CFG.half_open_calls, 30, "the trial budget in use")
        rejections = br.snapshot().rejections
        wait_for(lambda: br.snapshot().rejections >= rejections + 200, 30, "more calls refused")
        in_flight = entered.value
        assert br.state is BreakerState.HALF_OPEN
        assert br.snapshot().half_open_permits_in_use == in_flight
        release.set()
        join_all(procs)
        assert in_flight == HALF_CFG.half_open_calls  # never more, and the budget was used
        assert br.state is BreakerState.CLOSED


# ---------------------------------------------------------------- (c) SIGKILL holding a permit / mid-transition

KILL_CFG = BreakerConfig(consecutive_failures=1, open_seconds=0.2, half_open_calls=1, half_open_max_seconds=1.0)


def _hold_permit(name: str, holding: Any) -> None:
    core = Core.attach(name)
    guard = core.breaker("venue", KILL_CFG).call()
    guard.__enter__()
    holding.set()
    time.sleep(600)


def _caller(name: str, stop: Any, results: Any, ready: Any) -> None:
    with Core.attach(name) as core:
        br = core.breaker("venue", KILL_CFG)
        with ready.get_lock():
            ready.value += 1
        slowest, passed_at = 0.0, None
        while not stop.is_set():
            t = time.monotonic()
            try:
                with br.call():
                    pass
                if passed_at is None:
                    passed_at = time.time()
            except CircuitOpenError:
                pass
            slowest = max(slowest, time.monotonic() - t)
            time.sleep(0.001)
        results.put((slowest, passed_at))


def test_sigkill_while_holding_a_half_open_permit() -> None:
    with Core.create() as core:
        br = core.breaker("venue", KILL_CFG)
        with pytest.raises(Boom):
            with br.call():
                raise Boom("down")
        time.sleep(KILL_CFG.open_seconds)
        holding = ctx.Event()
        holder = start(_hold_permit, core.name, holding)
        assert holding.wait(60)
        assert br.snapshot().half_open_permits_in_use == 1
        stop, results, ready = ctx.Event(), ctx.Queue(), ctx.Value("i", 0)
        callers = [start(_caller, core.name, stop, results, ready) for _ in range(3)]
        wait_for(lambda: ready.value == 3, 120, "three callers attached")
        killed_at = time.time()
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        deadline = time.monotonic() + 10
        while br.state is not BreakerState.CLOSED and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        outcomes = [results.get(timeout=60) for _ in callers]
        join_all(callers)
        assert br.state is BreakerState.CLOSED
        slowest = max(s for s, _ in outcomes)
        assert slowest < 0.5, f"a caller waited {slowest:.3f}s: callers must never hang"
        first_pass = min(p for _, p in outcomes if p is not None)
        # The stuck episode ends half_open_max_seconds after it began (before the kill),
        # then the breaker is open for open_seconds before a new trial is admitted.
        # (1 s of slack for scheduling on a loaded machine: stuck would be open_backoff-long or forever)
        assert first_pass - killed_at < KILL_CFG.half_open_max_seconds + KILL_CFG.open_seconds + 1.0


def _churn(name: str, ready: Any) -> None:
    core = Core.attach(name)
    br = core.breaker("venue")
    a = BreakerConfig(minimum_calls=11, window_seconds=5.0)
    b = BreakerConfig(minimum_calls=22, window_seconds=7.0)
    ready.set()
    while True:
        br.reconfigure(a)
        br.force_open()
        br.reconfigure(b)
        br.reset()
        try:
            with br.call():
                raise Boom("x")
        except Boom:
            pass


def test_sigkill_mid_transition_and_mid_reconfigure_never_wedges() -> None:
    rng = random.Random(7)
    with Core.create() as core:
        br = core.breaker("venue")
        for _ in range(8):
            ready = ctx.Event()
            p = start(_churn, core.name, ready)
            assert ready.wait(60)
            time.sleep(rng.uniform(0.005, 0.05))
            os.kill(p.pid, signal.SIGKILL)
            p.join(10)
            t = time.monotonic()
            cfg = br.config  # never torn: one of the two configs written whole, or the original
            assert (cfg.minimum_calls, cfg.window_seconds) in {(20, 10.0), (11, 5.0), (22, 7.0)}
            br.reconfigure(BreakerConfig(minimum_calls=33))  # takes over a lock the dead process held
            br.reset()
            with br.call():
                pass
            assert time.monotonic() - t < 1.0
            assert br.config.minimum_calls == 33
            assert br.state is BreakerState.CLOSED
            lock_word = core._segment.layout.record(0) + _native.REC_CFG_LOCK
            assert core._segment.region.load(lock_word) == 0  # released after the takeover


# ---------------------------------------------------------------- (d) exact counts


COUNT_CFG = BreakerConfig(
    minimum_calls=10**9, failure_rate_threshold=1.0, consecutive_failures=None, window_seconds=300
)


def _count_worker(name: str, calls: int, every: int) -> None:
    with Core.attach(name) as core:
        br = core.breaker("venue", COUNT_CFG)

        @br
        def call(i: int) -> None:
            if i % every == 0:
                raise Boom("down")

        for i in range(calls):
            try:
                call(i)
            except Boom:
                pass


def test_window_counts_add_up_exactly_across_processes() -> None:
    calls, every = 20_000, 7
    with Core.create() as core:
        br = core.breaker("venue", COUNT_CFG)
        procs = [start(_count_worker, core.name, calls, every) for _ in range(4)]
        join_all(procs, timeout=120)
        snap = br.snapshot()
        assert snap.calls == 4 * calls
        assert snap.failures == 4 * len(range(0, calls, every))


RING_CFG = COUNT_CFG.replace(window_calls=1000)


def _ring_worker(name: str, index: int, barrier: Any) -> None:
    with Core.attach(name) as core:
        br = core.breaker("ring", RING_CFG)

        @br
        def call(fails: bool) -> None:
            if fails:
                raise Boom("down")

        for i in range(5_000):  # every other call fails: no 1,000 calls in a row all failed
            try:
                call(i % 2 == index % 2)
            except Boom:
                pass
        call(False)  # the desk's last call before the barrier succeeded
        barrier.wait()
        for _ in range(250):  # then the last 1,000 calls of the desk, all failed: the last one trips it
            try:
                call(True)
            except Boom:
                pass


def test_the_count_window_holds_exactly_the_last_calls_of_every_process() -> None:
    with Core.create() as core:
        br = core.breaker("ring", RING_CFG)
        barrier = ctx.Barrier(4)
        procs = [start(_ring_worker, core.name, i, barrier) for i in range(4)]
        join_all(procs, timeout=120)
        snap = br.snapshot()
        assert (snap.calls, snap.failures) == (1000, 1000)
        assert snap.state is BreakerState.OPEN and snap.rejections == 0
        assert core._segment.region.load(core._segment.layout.record(0) + _native.REC_TICKET) == 4 * 5_251


def _create_many(name: str, names: list[str]) -> None:
    with Core.attach(name) as core:
        for n in names:
            core.breaker(n)


def test_concurrent_get_or_create_makes_each_breaker_once() -> None:
    names = [f"venue{i}" for i in range(20)]
    with Core.create() as core:
        procs = [start(_create_many, core.name, random.Random(i).sample(names, len(names))) for i in range(6)]
        join_all(procs)
        assert sorted(core.breaker_names()) == sorted(names)
