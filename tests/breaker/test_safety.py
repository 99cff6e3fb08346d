"""Breakers against what a process can do to them: kills between steps, forks, odd clocks, threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

from bot4 import BreakerConfig, BreakerState, ConfigError, Core, FuseConfig, FuseState, make_plugin_manager
from bot4.shm import layout as L
from tests.helpers import fail, succeed


def test_a_fuse_left_tripped_over_closed_breakers_is_repaired_by_the_next_call(core: Core) -> None:
    core.fuse.configure(FuseConfig(open_ratio=0.5, close_ratio=0.3, min_components=2))
    a, b = core.breaker("a", BreakerConfig(consecutive_failures=1)), core.breaker("b")
    # What a process killed between a breaker's transition and the fuse update leaves:
    core._segment.region.store(L.H_FUSE, FuseState.TRIPPED)
    assert a.state is BreakerState.CLOSED and b.state is BreakerState.CLOSED
    succeed(a)  # passes: the fuse is re-evaluated from the breakers, not trusted
    assert core.fuse.state is FuseState.CLEAR


def test_a_fuse_forced_by_hand_is_not_repaired_away(core: Core) -> None:
    br = core.breaker("a")
    core.fuse.trip("maintenance")
    with pytest.raises(Exception, match="fuse"):
        succeed(br)
    assert core.fuse.state is FuseState.FORCED


class SteppingClock:
    """A clock that a test steps anywhere, backwards and below zero included."""

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def now_ns(self) -> int:
        return self.ns

    def time_ns(self) -> int:
        return self.ns


@pytest.fixture
def stepping() -> Iterator[tuple[Core, SteppingClock]]:
    clock = SteppingClock(10_000_000_000)
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as core:
        yield core, clock


def test_a_clock_stepping_back_never_rejects_a_closed_breaker_nor_strays_rows(
    stepping: tuple[Core, SteppingClock],
) -> None:
    core, clock = stepping
    a, b = core.breaker("a"), core.breaker("b")
    for step in (0, -3_000_000_000, -6_000_000_000, -999_999_999, 5):  # back to 1 ns, then on
        clock.ns += step
        succeed(a)
    assert a.snapshot().calls == 5
    assert b.snapshot().calls == 0  # nothing written into another breaker's cells


def test_a_negative_clock_reading_is_a_clear_error_not_a_rejection(stepping: tuple[Core, SteppingClock]) -> None:
    core, clock = stepping
    br = core.breaker("a")
    clock.ns = -5
    with pytest.raises(ConfigError, match="clock"):
        succeed(br)


def test_a_breaker_replaced_in_the_cache_still_writes_the_childs_row_after_fork(core: Core) -> None:
    old = core.breaker("venue")
    core.breaker("venue", BreakerConfig(consecutive_failures=9))  # replaces the cached object
    parent_slot = core.slot
    pid = os.fork()
    if pid == 0:  # the child: every breaker object it holds must write its own slot's row
        try:
            ok = core.slot != parent_slot and old._gate.slot == core.slot
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_threads_count_exactly_under_the_gil(core: Core) -> None:
    """Each worker slot's cells have one writer: the GIL serialises a process's native calls."""
    br = core.breaker("venue", BreakerConfig(window_seconds=3600, minimum_calls=10**6, consecutive_failures=None))
    start = threading.Barrier(4)

    def hammer() -> None:
        start.wait()
        for _ in range(5000):
            succeed(br)
        fail(br)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = br.snapshot()
    assert (snap.calls, snap.failures) == (4 * 5001, 4)


@pytest.mark.parametrize("name", [["venue"], {"a": 1}, "bad\ud800", "", "x" * 65, "nul\x00", 7])
def test_a_bad_breaker_name_is_a_config_error(core: Core, name: object) -> None:
    with pytest.raises(ConfigError):
        core.breaker(name)  # type: ignore[arg-type]


def test_ctrl_c_from_a_clock_that_closed_the_core_is_not_swallowed() -> None:
    class InterruptingClock(SteppingClock):
        core: Core | None = None
        armed = False

        def now_ns(self) -> int:
            if self.armed and self.core is not None:
                self.armed = False
                self.core.close()  # e.g. a SIGINT handler that shuts down, then interrupts
                raise KeyboardInterrupt
            return self.ns

    clock = InterruptingClock(10_000_000_000)
    core = Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False))
    clock.core = core
    br = core.breaker("a")
    try:
        with pytest.raises(KeyboardInterrupt):
            with br.call():
                clock.armed = True  # the outcome's clock reading closes and interrupts
    finally:
        core.close()
        core.unlink()
