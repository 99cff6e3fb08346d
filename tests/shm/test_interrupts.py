"""Ctrl-C and the ledger mutex: an interrupt at any call boundary never leaves the lock held.

``KeyboardInterrupt`` arrives when a native call returns. These tests raise it right after
the k-th native call of a ledger operation (a profile hook sees every C return), for every
k, and check that the mutex is free for this thread and for other processes, that the
ledger is consistent, and that nothing half-done became visible.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import multiprocessing as mp
import os
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot4 import Core, ManualClock, RiskEngine, make_plugin_manager
from bot4.shm import _native
from bot4.shm import layout as L
from tests.helpers import interrupt_at, wait_for
from tests.risk.conftest import NO_LIMITS, buy

ctx = mp.get_context("spawn")


def _mutex(core: Core) -> tuple[_native.Region, int]:
    return core._segment.region, core._segment.layout.ledger + L.L_MUTEX


def _desk(clock: ManualClock) -> Core:
    core = Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False))
    core.risk.configure(NO_LIMITS)
    core.risk.set_equity(100_000)
    core.risk.on_price("BTC/USDT", 100.0)
    return core


def _operations(risk: RiskEngine) -> dict[str, Callable[[], Any]]:
    def reserve_fill_release() -> None:
        decision = risk.reserve(buy(quantity=2))
        assert decision.reservation is not None
        risk.on_fill(decision.reservation, 1.0, 100.5)
        risk.release(decision.reservation)

    return {
        "reserve/fill/release": reserve_fill_release,
        "on_price": lambda: risk.on_price("BTC/USDT", 101.0),
        "configure": lambda: risk.configure(NO_LIMITS),
        "snapshot": risk.snapshot,
        "audit": risk.audit,
        "reclaim": risk.reclaim,
    }


@pytest.mark.parametrize("name", ["reserve/fill/release", "on_price", "configure", "snapshot", "audit", "reclaim"])
def test_keyboard_interrupt_after_any_native_call_leaves_the_mutex_free(name: str) -> None:
    clock = ManualClock(1_767_268_800.0)
    core = _desk(clock)
    try:
        risk = core.risk
        region, mutex = _mutex(core)
        operation = _operations(risk)[name]
        k = 1
        while interrupt_at(k, operation):
            # Free for this thread (not "already held by you") ...
            assert region.mutex_lock(mutex, 0.0) == _native.MUTEX_ACQUIRED, f"lock left held after return {k}"
            assert region.mutex_unlock(mutex)
            assert region.busy == 0, "a finished call still counts as inside the mapping"
            # ... and every transaction happened whole or not at all.
            assert risk.audit() == []
            k += 1
        assert k > 3, "the operation made too few native calls to be a meaningful test"
        operation()  # and it still works after all that
    finally:
        core.close()
        core.unlink()


def _lock_and_report(name: str, results: Any) -> None:
    with Core.attach(name) as core:
        region, mutex = _mutex(core)
        got = region.mutex_lock(mutex, 5.0)
        results.put(got)
        if got in (_native.MUTEX_ACQUIRED, _native.MUTEX_FROM_DEAD):
            region.mutex_unlock(mutex)


@pytest.mark.processes
def test_sigint_storm_on_a_worker_never_wedges_the_others() -> None:
    """Real SIGINTs at random instants of a busy worker; the lock is never left held."""
    clock = ManualClock(1_767_268_800.0)
    core = _desk(clock)
    try:
        state = ctx.RawArray("q", 3)  # ready, stop, locks found left held (signal-safe: no semaphores)
        worker = ctx.Process(target=_interrupted_worker, args=(core.name, state), daemon=True)
        worker.start()
        wait_for(lambda: state[0] == 1, 60, "the worker ready")
        for _ in range(300):
            os.kill(worker.pid, signal.SIGINT)
            time.sleep(random.uniform(0, 0.003))  # random instants of its loop
        state[1] = 1
        worker.join(60)
        assert worker.exitcode == 0
        assert state[2] == 0, "an interrupt left the ledger lock held"
        results = ctx.Queue()
        other = ctx.Process(target=_lock_and_report, args=(core.name, results), daemon=True)
        other.start()
        assert results.get(timeout=60) in (_native.MUTEX_ACQUIRED, _native.MUTEX_FROM_DEAD)
        other.join(30)
        assert core.risk.audit() == []
    finally:
        core.close()
        core.unlink()


class _Count(logging.Handler):
    def __init__(self, state: Any) -> None:
        super().__init__(logging.WARNING)
        self.state = state

    def emit(self, record: logging.LogRecord) -> None:
        if "left held" in record.getMessage():
            self.state[2] += 1


def _interrupted_worker(name: str, state: Any) -> None:
    logging.getLogger("bot4.shm").addHandler(_Count(state))
    core = Core.attach(name)
    risk = core.risk
    inside = [False]

    def interrupt(signum: int, frame: Any) -> None:
        if inside[0]:  # Ctrl-C lands inside the ledger operations, not in this test loop
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    state[0] = 1
    while not state[1]:
        inside[0] = True
        try:
            decision = risk.reserve(buy(quantity=1))
            if decision.reservation is not None:
                risk.release(decision.reservation)
            risk.on_price("BTC/USDT", 100.0 + random.random())
        except KeyboardInterrupt:
            pass
        finally:
            inside[0] = False
    core.close()


def _die_holding(name: str, holding: Any) -> None:
    core = Core.attach(name)
    region, mutex = _mutex(core)
    region.mutex_lock(mutex, 5.0)
    holding.set()
    signal.pause()


def _careless_repairer(name: str, results: Any) -> None:
    """Take over a dead holder's mutex (owner-dead) and give it back without making it consistent."""
    core = Core.attach(name)
    seg = core._segment
    address = ctypes.c_void_p(seg.words.ctypes.data + 8 * (seg.layout.ledger + L.L_MUTEX))
    libc = ctypes.CDLL(None)
    results[0] = libc.pthread_mutex_lock(address)
    results[1] = libc.pthread_mutex_unlock(address)


@pytest.mark.processes
def test_an_unrecoverable_mutex_is_reinitialised() -> None:
    """A process that took over a dead holder's mutex and gave it back unrepaired leaves it unrecoverable."""
    clock = ManualClock(1_767_268_800.0)
    core = _desk(clock)
    try:
        holding, results = ctx.Event(), ctx.RawArray("i", 2)
        holder = ctx.Process(target=_die_holding, args=(core.name, holding), daemon=True)
        holder.start()
        assert holding.wait(60)
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(30)
        repairer = ctx.Process(target=_careless_repairer, args=(core.name, results), daemon=True)
        repairer.start()
        repairer.join(60)
        assert list(results) == [errno.EOWNERDEAD, 0]
        region, mutex = _mutex(core)
        assert region.mutex_lock(mutex, 0.0) == _native.MUTEX_UNRECOVERABLE
        decision = core.risk.reserve(buy(quantity=1))  # re-initialised, then it works
        assert decision.approved
        assert core.risk.audit() == []
        assert region.mutex_lock(mutex, 0.0) == _native.MUTEX_ACQUIRED
        assert region.mutex_unlock(mutex)
    finally:
        core.close()
        core.unlink()
