"""The risk engine under hostile conditions: slow plugins, big desks, torn state, bad names."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import bot4
from bot4 import (
    ConfigError,
    Core,
    InvalidOrderError,
    ManualClock,
    Order,
    Rejection,
    SegmentStateError,
    TradingState,
    make_plugin_manager,
)
from bot4.risk._kernel import RULE_BITS
from bot4.shm import _native
from bot4.shm import layout as L
from tests.helpers import wait_for
from tests.risk.conftest import EPOCH, NO_LIMITS, buy, only, sell

ctx = mp.get_context("spawn")


@pytest.fixture
def desk() -> Iterator[Core]:
    """A desk with every limit off, equity and a BTC mark; unlinked after the test."""
    with Core.create(clock=ManualClock(EPOCH), plugins=make_plugin_manager(entry_points=False)) as core:
        core.risk.configure(NO_LIMITS)
        core.risk.set_equity(1_000_000)
        core.risk.on_price("BTC/USDT", 100.0)
        yield core


# ---------------------------------------------------------------- a slow rule never delays the kill switch


def test_a_blocking_user_rule_holds_no_lock_and_the_kill_switch_trips_at_once(desk: Core) -> None:
    core = desk
    entered, release = threading.Event(), threading.Event()
    locked_from_another_thread: list[int] = []
    seg = core._segment
    mutex = seg.layout.ledger + L.L_MUTEX

    class Stalls:
        @bot4.hookimpl
        def bot4_check_order(self, order: Order) -> None:
            entered.set()
            release.wait(30)

    try:
        core.plugins.register(Stalls(), name="desk.stalls")
        decisions: list[bot4.Decision] = []
        reserving = threading.Thread(target=lambda: decisions.append(core.risk.reserve(buy())))
        reserving.start()
        assert entered.wait(30)

        def try_lock() -> None:
            got = seg.region.mutex_lock(mutex, 0.0)
            locked_from_another_thread.append(got)
            if got == _native.MUTEX_ACQUIRED:
                seg.region.mutex_unlock(mutex)

        other = threading.Thread(target=try_lock)
        other.start()
        other.join(30)
        assert locked_from_another_thread == [_native.MUTEX_ACQUIRED], "a user rule ran under the ledger mutex"
        # Another process trips the kill switch while the rule still stalls.
        code = (
            "import sys, time, bot4\n"
            "core = bot4.Core.attach(sys.argv[1])\n"
            "t = time.monotonic(); core.risk.kill_switch.trip('incident'); print(time.monotonic() - t)\n"
            "core.close()\n"
        )
        done = subprocess.run([sys.executable, "-c", code, core.name], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert float(done.stdout) < 0.5, f"the trip took {done.stdout.strip()}s"
        assert core.risk.kill_switch.active
        assert core.risk.kill_switch.reason == "incident"
        release.set()
        reserving.join(30)
        assert decisions[0].codes == ("KILL_SWITCH",), "tripped while the rule ran: the reserve must be refused"
        assert core.risk.snapshot().open_orders == 0
    finally:
        release.set()


def test_the_kill_switch_trips_while_a_dead_process_holds_the_ledger(desk: Core) -> None:
    core = desk
    holding = ctx.Event()
    holder = ctx.Process(target=_hold_ledger, args=(core.name, holding), daemon=True)
    holder.start()
    assert holding.wait(60)
    t = time.monotonic()
    core.risk.kill_switch.trip("while the ledger is held")
    assert time.monotonic() - t < 0.1
    assert core.risk.check(buy()).codes == ("KILL_SWITCH",)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    assert core.risk.reserve(buy()).codes == ("KILL_SWITCH",)


def _hold_ledger(name: str, holding: Any) -> None:
    core = Core.attach(name)
    region = core._segment.region
    region.mutex_lock(core._segment.layout.ledger + L.L_MUTEX, 5.0)
    holding.set()
    signal.pause()


def test_reasons_of_rapid_trips_and_resets_never_tear(desk: Core) -> None:
    core = desk
    risk = core.risk
    stop = threading.Event()
    reasons = [f"reason {i} " + "x" * (i % 90) for i in range(40)]

    def flip() -> None:
        i = 0
        while not stop.is_set():
            risk.kill_switch.trip(reasons[i % 40])
            risk.kill_switch.reset(reasons[(i + 1) % 40])
            i += 1

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        for _ in range(3000):
            reason = risk.state_reason
            assert reason in reasons or reason == "(reason not recorded)" or reason.startswith("reason ")
    finally:
        stop.set()
        flipper.join(30)
    # cut to its 128 bytes, never mixed with another reason
    assert all(r in {x.encode()[: 8 * L.REASON_WORDS].decode() for x in reasons} for r in [risk.state_reason])


# ---------------------------------------------------------------- built-in rules off are explicit


def test_unblocking_a_builtin_rule_turns_it_back_on_and_status_shows_it_off(desk: Core) -> None:
    core = desk
    risk, pm = core.risk, core.plugins
    risk.configure(only(require_stop_loss=True))
    off_word = core._segment.layout.slot(core.slot) + L.S_RULES_OFF
    assert risk.check(buy()).codes == ("STOP_LOSS_MISSING",)
    assert core._segment.region.load(off_word) == 0
    pm.set_blocked("bot4.rule.stop_loss")
    assert risk.check(buy()).approved
    assert core._segment.region.load(off_word) == 1 << RULE_BITS["stop_loss"]
    from bot4._cli.status import status_of

    workers = {w["slot"]: w for w in status_of(core.name)["workers"]}
    assert list(workers[core.slot]["rules_off"]) == ["bot4.rule.stop_loss"]
    pm.unblock("bot4.rule.stop_loss")
    assert risk.check(buy()).codes == ("STOP_LOSS_MISSING",)  # on again: no silent gap
    assert core._segment.region.load(off_word) == 0


# ---------------------------------------------------------------- capacities at their maximum


def test_every_operation_at_the_maximum_symbols() -> None:
    n = L.MAX_SYMBOLS_LIMIT
    clock = ManualClock(EPOCH)
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False), max_symbols=n) as core:
        risk = core.risk
        risk.configure(only(max_drawdown=0.15, correlation_sample_seconds=60.0))
        risk.set_equity(10_000_000)
        symbols = [f"S{i:04d}/USDT" for i in range(n)]
        for i, symbol in enumerate(symbols):
            risk.on_price(symbol, 100.0 + i)
        clock.advance(61)
        risk.on_price(symbols[0], 101.0)  # a correlation sample over every priced symbol: n journal pairs
        assert risk.ledger.symbols() == symbols
        with pytest.raises(bot4.CapacityError):
            risk.on_price("ONE/MORE", 1.0)
        last = symbols[-1]
        decision = risk.reserve(buy(symbol=last, quantity=10, price=100.0 + n - 1))
        assert decision.reservation is not None
        risk.on_fill(decision.reservation, 4, 100.0 + n - 1)
        assert risk.release(decision.reservation)
        assert risk.check(sell(symbol=last, quantity=4, price=90.0)).approved
        snap = risk.snapshot()
        assert len(snap.positions) == n and snap.positions[last].quantity == 4
        assert risk.audit() == []
        risk.set_equity(8_000_000)  # 20% down: the kill switch trips by itself
        assert risk.kill_switch.active
        assert "drawdown" in risk.kill_switch.reason


# ---------------------------------------------------------------- torn state is repaired or reported, never waited on


def _leave_limits_torn(core: Core, *, committed: bool) -> None:
    """What a writer killed in the middle of configure() leaves: the limits generation odd."""
    r, lay = core._segment.region, core._segment.layout
    gen_i = lay.ledger + L.L_LIMITS_GEN
    gen = r.load(gen_i)
    if committed:  # its journal was published: the next holder finishes it
        j = lay.journal
        r.store(j + 2, gen_i)
        r.store(j + 3, gen + 2)
        r.store(j, 1)
    r.store(gen_i, gen + 1)


def test_limits_left_torn_by_a_killed_writer_are_repaired_by_the_next_reader(desk: Core) -> None:
    core = desk
    core.risk.configure(only(max_open_orders=7))
    _leave_limits_torn(core, committed=True)
    other = Core.attach(core.name)  # a newly attached worker reads them too
    t = time.monotonic()
    assert other.risk.limits.max_open_orders == 7
    assert core.risk.check(buy()).approved
    assert time.monotonic() - t < 1.0
    other.close()
    done = subprocess.run(
        [sys.executable, "-m", "bot4", "status", core.name], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_limits_torn_with_nothing_to_replay_raise_a_clear_error_within_a_bound(desk: Core) -> None:
    core = desk
    _leave_limits_torn(core, committed=False)
    t = time.monotonic()
    with pytest.raises(SegmentStateError, match="limits"):
        core.risk.check(buy())
    with pytest.raises(SegmentStateError, match="limits"):
        Core.attach(core.name).risk.limits  # noqa: B018
    assert time.monotonic() - t < 2.0


def _churn(name: str, stop: Any) -> None:
    core = Core.attach(name)
    risk, k = core.risk, 0
    while not stop.is_set():
        k += 1
        decision = risk.reserve(buy(symbol=("BTC/USDT", "ETH/USDT")[k % 2], quantity=1 + k % 5))
        risk.on_price("ETH/USDT", 50.0 + k % 11)
        if decision.reservation is not None and k % 3:
            risk.release(decision.reservation)
    core.close()


@pytest.mark.processes
def test_snapshots_are_consistent_under_a_concurrent_writer(desk: Core) -> None:
    core = desk
    core.risk.on_price("ETH/USDT", 50.0)
    stop = ctx.Event()
    writer = ctx.Process(target=_churn, args=(core.name, stop), daemon=True)
    writer.start()
    wait_for(lambda: core.risk.ledger.open_orders > 0 or core.risk.snapshot().open_orders > 0, 60, "writes")
    torn = 0
    for _ in range(1500):
        snap = core.risk.snapshot()
        total = sum(p.exposure for p in snap.positions.values())
        torn += not math.isclose(snap.gross_exposure, total, rel_tol=1e-9, abs_tol=1e-9)
    stop.set()
    writer.join(60)
    assert torn == 0, f"{torn} of 1500 snapshots were torn"


# ---------------------------------------------------------------- one validation, one encoding of a symbol


@pytest.mark.parametrize("bad", ["abc\x00", "x" * 33, "\ud800", "", "tab\there", 7, None])
def test_a_symbol_that_orders_refuse_is_refused_everywhere(bad: Any, desk: Core) -> None:
    core = desk
    with pytest.raises(ConfigError):
        core.risk.on_price(bad, 1.0)
    with pytest.raises(InvalidOrderError):
        buy(symbol=bad)
    assert core.risk.ledger.symbols() == ["BTC/USDT"]


@pytest.mark.parametrize(
    "call",
    [
        lambda risk: risk.on_price("BTC/USDT", 10**400),
        lambda risk: risk.on_price("BTC/USDT", float("nan")),
        lambda risk: risk.set_equity("lots"),
        lambda risk: risk.configure({"max_drawdown": 0.1}),
        lambda risk: risk.set_trading_state("HALTED", "x"),
        lambda risk: risk.kill_switch.trip(None),
        lambda risk: risk.release(("not", "a", "reservation")),
        lambda risk: risk.reserve("BTC/USDT"),
    ],
)
def test_garbage_gets_a_bot4_error(call: Any, desk: Core) -> None:
    core = desk
    with pytest.raises(bot4.Bot4Error):
        call(core.risk)
    assert core.risk.trading_state is TradingState.ACTIVE


def test_a_rule_returning_garbage_still_fails_closed_outside_the_mutex(desk: Core) -> None:
    core = desk

    class Garbage:
        @bot4.hookimpl
        def bot4_check_order(self) -> object:
            return {"not": "a rejection"}

    core.plugins.register(Garbage(), name="desk.garbage")
    decision = core.risk.reserve(buy())
    assert decision.codes == ("RULE_ERROR",)
    assert isinstance(decision.rejections[0], Rejection)
    assert core.risk.snapshot().open_orders == 0


def _reconfigure_forever(name: str, running: Any) -> None:
    core = Core.attach(name)
    risk, br = core.risk, core.breaker("venue")
    running.set()
    k = 0
    while True:
        k += 1
        risk.configure(only(max_open_orders=1 + k % 50, max_drawdown=0.1 + (k % 5) / 100))
        br.reconfigure(bot4.BreakerConfig(consecutive_failures=1 + k % 9, open_seconds=1 + k % 3))


@pytest.mark.processes
def test_sigkill_storm_during_configure_never_stalls_a_reader(desk: Core) -> None:
    core = desk
    br = core.breaker("venue")
    stop = threading.Event()
    slowest: list[float] = [0.0]
    errors: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            t = time.monotonic()
            try:
                core.risk.limits  # noqa: B018 - a read of the limits
                core.risk.check(buy())
                br.snapshot()
                core.risk.snapshot()
            except BaseException as exc:  # no error at all is expected: repaired, not reported
                errors.append(exc)
                return
            slowest[0] = max(slowest[0], time.monotonic() - t)

    reader = threading.Thread(target=read)
    reader.start()
    rng = random.Random(7)
    for _ in range(12):
        running = ctx.Event()
        writer = ctx.Process(target=_reconfigure_forever, args=(core.name, running), daemon=True)
        writer.start()
        assert running.wait(60)
        time.sleep(rng.uniform(0.0, 0.05))  # a random instant of its loop
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(30)
    stop.set()
    reader.join(60)
    assert not errors, errors
    assert slowest[0] < 1.0, f"a reader waited {slowest[0]:.3f}s"
    assert core.risk.audit() == []
    assert core.risk.limits.max_open_orders is not None  # one of the written configurations, whole
