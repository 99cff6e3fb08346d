"""The journal against a hostile user: recovered orders that change shape, compaction between
restarts, fills lost to a full ring, long ids, busy ledgers, two desks on one file, closing."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot4 import Core, Fees, ManualClock, Order, OrderManager, OrderStatus, PaperExchange, TradingState
from bot4 import make_plugin_manager as plugins
from bot4.errors import ConfigError, JournalError
from bot4.journal.query import compact
from bot4.journal.recovery import read_state
from bot4.journal.store import JournalStore
from bot4.shm import layout as L
from bot4.shm.mutex import ledger_mutex
from tests.helpers import wait_for
from tests.journal.conftest import journaled_core
from tests.risk.conftest import NO_LIMITS


def _venue(clock: ManualClock, **capabilities: bool) -> PaperExchange:
    venue = PaperExchange("venue-a", fees=Fees(maker=0.0, taker=0.0), clock=clock, capabilities=capabilities)
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    return venue


def _trading(core: Core, venue: PaperExchange) -> OrderManager:
    core.risk.configure(NO_LIMITS)
    core.risk.set_equity(100_000.0)
    core.risk.on_price("BTC/USDT", 100.0)
    core.plugins.register(venue, name="venue-a")
    return OrderManager(core, routing="primary")


def _resting_buy(om: OrderManager) -> None:
    """A limit buy of 2 BTC at 98, resting at the venue."""
    order = Order(symbol="BTC/USDT", side="buy", quantity=2.0, type="limit", price=98.0)
    assert om.submit(order).status is OrderStatus.ACCEPTED


def _restarted(db: Path, clock: ManualClock, venue: PaperExchange) -> tuple[float, int]:
    """Rebuild the desk, reconcile; (its BTC position, how many orders it had to reconcile)."""
    with journaled_core(db, clock) as (core, recorder):
        assert core.journal is not None
        pending = core.journal.recovering
        core.plugins.register(venue, name="venue-a")
        result = OrderManager(core, routing="primary").recover()
        assert not result.errors and not result.still_unknown, result
        recorder.drain()
        return core.risk.snapshot().positions["BTC/USDT"].quantity, pending


def test_a_recovered_stop_that_filled_is_not_applied_again_at_the_next_restart(db: Path, clock: ManualClock) -> None:
    venue = _venue(clock, createStopOrder=True)
    with journaled_core(db, clock) as (core, recorder):
        om = _trading(core, venue)
        stop = Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="stop", stop_price=105.0, client_order_id="stp")
        assert om.submit(stop).status is OrderStatus.ACCEPTED
        recorder.drain()
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(106.0, 5.0)])  # it triggers and fills while the desk is down
    assert _restarted(db, clock, venue) == (1.0, 1)
    assert _restarted(db, clock, venue) == (1.0, 0)  # the journal holds it filled, under its new shape too


def test_compaction_between_restarts_never_brings_a_finished_order_back(db: Path, clock: ManualClock) -> None:
    venue = _venue(clock)
    with journaled_core(db, clock) as (core, recorder):
        _resting_buy(_trading(core, venue))
        recorder.drain()
    venue.set_book("BTC/USDT", bids=[(97.0, 5.0)], asks=[(97.5, 5.0)])
    assert _restarted(db, clock, venue) == (2.0, 1)
    store = JournalStore(db)
    assert compact(store, time.time_ns() + 1) > 0
    store.close()
    assert _restarted(db, clock, venue) == (2.0, 0)


def test_a_fill_lost_to_a_full_ring_is_not_applied_twice(db: Path, clock: ManualClock) -> None:
    venue = _venue(clock)
    with journaled_core(db, clock) as (core, recorder):
        om = _trading(core, venue)
        _resting_buy(om)
        recorder.drain()
        ring = recorder.ring
        while ring.head - ring.tail < L.EVENTS:  # the recorder stalls; marks fill the ring
            core.risk.on_price("BTC/USDT", 100.0)
        venue.set_book("BTC/USDT", bids=[(97.0, 5.0)], asks=[(97.5, 1.5)])  # 1.5 of 2 fills: its FILL is lost
        om.poll()
        assert ring.lost > 0
        recorder.drain()  # the snapshot: positions, and what each reservation still holds
        assert core.risk.snapshot().positions["BTC/USDT"].quantity == 1.5
    venue.set_book("BTC/USDT", bids=[(97.0, 5.0)], asks=[(97.5, 5.0)])  # the rest fills while the desk is down
    assert _restarted(db, clock, venue) == (2.0, 1)
    assert _restarted(db, clock, venue) == (2.0, 0)


def test_long_non_ascii_ids_and_strategies_come_back_whole(db: Path, clock: ManualClock) -> None:
    venue = _venue(clock)
    ids = ["заявка-" + "я" * 50 + "-1", "заявка-" + "я" * 50 + "-2"]  # 64 characters, differing at the end
    strategy = "стратегия-" + "ю" * 54
    with journaled_core(db, clock) as (core, recorder):
        om = _trading(core, venue)
        for cid in ids:
            order = Order(
                symbol="BTC/USDT",
                side="buy",
                quantity=1.0,
                type="limit",
                price=98.0,
                client_order_id=cid,
                strategy=strategy,
            )
            assert om.submit(order).status is OrderStatus.ACCEPTED
        recorder.drain()
    store = JournalStore(db, read_only=True)
    pending = {o.client_order_id: o for o in read_state(store).open_orders}
    store.close()
    assert set(pending) == set(ids)
    assert {o.strategy for o in pending.values()} == {strategy}


def _hold_the_ledger(name: str, held: Any, done: Any) -> None:  # pragma: no cover - runs in a child
    core = Core.attach(name, plugins=plugins(entry_points=False))
    with ledger_mutex(core._segment, core._context.ident):
        held.set()
        done.wait(30)


def test_a_kill_switch_trip_never_waits_for_a_busy_ledger(db: Path, clock: ManualClock) -> None:
    ctx = mp.get_context("fork")
    with journaled_core(db, clock) as (core, recorder):
        held, done = ctx.Event(), ctx.Event()
        holder = ctx.Process(target=_hold_the_ledger, args=(core.name, held, done))
        holder.start()
        try:
            assert held.wait(30)
            started = time.monotonic()
            core.risk.kill_switch.trip("ops: panic")
            assert time.monotonic() - started < 1.0  # the record waits RECORD_WAIT, then is counted missed
            assert core.risk.trading_state is TradingState.HALTED
            assert core.journal is not None and "lost" in (core.journal.problem or "")
        finally:
            done.set()
            holder.join(30)
        recorder.beat()
        recorder.drain()  # the snapshot carries the state and its reason
        assert core.journal.problem is None
    store = JournalStore(db, read_only=True)
    state = read_state(store)
    store.close()
    assert (state.trading_state, state.reason) == (TradingState.HALTED, "ops: panic")


def test_one_desk_per_journal(db: Path, clock: ManualClock) -> None:
    with journaled_core(db, clock):
        with pytest.raises(JournalError, match="in use by another live desk"):
            Core.create(plugins=plugins(entry_points=False), journal=db, journal_recorder=False)
    with journaled_core(db, clock):  # free again once the first desk closed
        pass


def test_after_the_desk_closes_no_process_takes_new_risk(db: Path, clock: ManualClock) -> None:
    with journaled_core(db, clock) as (core, recorder):
        core.risk.configure(NO_LIMITS)
        core.risk.set_equity(1_000.0)
        core.risk.on_price("BTC/USDT", 100.0)
        worker = Core.attach(core.name, plugins=plugins(entry_points=False))
        assert core.journal is not None
        core.journal.close()
        order = Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=100.0)
        decision = worker.risk.reserve(order)
        assert decision.codes == ("JOURNAL",) and "closed" in decision.rejections[0].message
        worker.close()


def _exited(pid: int) -> bool:
    """Whether ``pid`` (not a child of this process) is gone or a zombie nobody reaped yet."""
    try:
        return not Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def test_a_recorder_outlives_no_supervisor(tmp_path: Path) -> None:
    """The creator SIGKILLed: its recorder writes what it has and exits; the desk restarts at once."""
    db = tmp_path / "journal.db"
    name = f"bot4-orphan-{os.getpid()}"
    script = (
        "import sys, time\n"
        "from bot4 import Core\n"
        f"core = Core.create({name!r}, journal={str(db)!r})\n"
        "core.journal.wait_ready(); core.risk.set_equity(1234.0); core.journal.wait_durable()\n"
        "print(core.journal.recorder.pid, flush=True); time.sleep(60)\n"
    )
    creator = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        recorder_pid = int(creator.stdout.readline())  # type: ignore[union-attr]
    finally:
        creator.kill()
        creator.wait()
    wait_for(lambda: _exited(recorder_pid), 10, "the exit of the recorder whose supervisor died")
    with Core.create(name, plugins=plugins(entry_points=False), journal=db, journal_recorder=False) as core:
        assert core.risk.snapshot().equity == 1234.0


def test_limits_are_journaled_as_they_were_set(db: Path, clock: ManualClock) -> None:
    import dataclasses

    with journaled_core(db, clock) as (core, recorder):
        core.risk.configure(dataclasses.replace(NO_LIMITS, daily_loss_limit=None))
        first = recorder.ring.head
        core.risk.configure(dataclasses.replace(NO_LIMITS, daily_loss_limit=0.01))
        recorder.drain()  # both in one batch: each row holds its own limits
    store = JournalStore(db, read_only=True)
    assert read_state(store, first).limits.daily_loss_limit is None  # type: ignore[union-attr]
    assert read_state(store).limits.daily_loss_limit == 0.01  # type: ignore[union-attr]
    store.close()


def test_bad_journals_and_paths_get_clear_errors(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    import sqlite3

    sqlite3.connect(other).execute("CREATE TABLE t(x)").connection.commit()
    with pytest.raises(JournalError, match="something else"):
        JournalStore(other)
    assert {r[0] for r in sqlite3.connect(other).execute("SELECT name FROM sqlite_master")} == {"t"}  # untouched
    with pytest.raises(ConfigError, match="UTF-8"):
        Core.create(plugins=plugins(entry_points=False), journal=os.fsdecode(bytes(tmp_path) + b"/\xff.db"))


def test_a_recorder_that_stopped_in_order_is_succeeded_but_a_closed_desk_stays_closed(db: Path) -> None:
    with Core.create(plugins=plugins(entry_points=False), journal=db, journal_recorder=False) as core:
        core.risk.configure(NO_LIMITS)
        core.risk.set_equity(1_000.0)
        core.risk.on_price("BTC/USDT", 100.0)
        journal = core.journal
        assert journal is not None
        order = Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=100.0)
        for _ in range(2):  # a recorder runs, stops in order; the next one takes over
            recorder = subprocess.Popen([sys.executable, "-m", "bot4.journal", core.name, str(db)])
            try:
                wait_for(lambda: journal.problem is None)  # it started, and took over
                assert core.risk.reserve(order).approved
            finally:
                recorder.terminate()
                assert recorder.wait(30) == 0
            assert "has stopped" in (journal.problem or "")
        journal._ring.close()  # what the creator's close does
        recorder = subprocess.Popen([sys.executable, "-m", "bot4.journal", core.name, str(db)])
        try:
            wait_for(lambda: journal.recorder is None and journal._ring.recorder[1] > 0)
            assert "closed" in (journal.problem or "")  # a new recorder never reopens a closed desk
        finally:
            recorder.terminate()
            recorder.wait(30)


def test_a_desk_is_not_rebuilt_while_a_previous_recorder_still_writes(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from bot4.journal import desk

    monkeypatch.setattr(desk, "_RECORDER_WAIT", 0.2)
    with open(f"{db}.lock", "a+b") as held:  # a paused recorder of a dead desk
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(JournalError, match="previous desk"):
            Core.create(plugins=plugins(entry_points=False), journal=db, journal_recorder=False)
    with Core.create(plugins=plugins(entry_points=False), journal=db, journal_recorder=False):
        pass  # the recorder finished: the desk is rebuilt from all it wrote


def test_an_amended_order_is_recovered_as_itself(db: Path, clock: ManualClock) -> None:
    venue = _venue(clock)
    with journaled_core(db, clock) as (core, recorder):
        om = _trading(core, venue)
        order = Order(symbol="BTC/USDT", side="buy", quantity=2.0, type="limit", price=98.0, client_order_id="amended")
        assert om.submit(order).status is OrderStatus.ACCEPTED
        assert om.amend("amended", price=97.0).status is OrderStatus.ACCEPTED
        recorder.drain()
    with journaled_core(db, clock) as (core, recorder):
        core.plugins.register(venue, name="venue-a")
        om = OrderManager(core, routing="primary")
        result = om.recover()
        assert result.adopted == ("amended",) and not result.foreign and not result.never_placed, result
        assert om.get("amended").status is OrderStatus.ACCEPTED
        assert core.risk.snapshot().open_orders == 1


def test_an_emulated_stop_is_watched_again_after_recovery(db: Path, clock: ManualClock) -> None:
    venue = _venue(clock)  # no stop orders at this venue: bot4 emulates them
    with journaled_core(db, clock) as (core, recorder):
        om = _trading(core, venue)
        stop = Order(symbol="BTC/USDT", side="sell", quantity=1.0, type="stop", stop_price=95.0, client_order_id="sl")
        assert om.submit(stop).status is OrderStatus.ACCEPTED
        recorder.drain()
    with journaled_core(db, clock) as (core, recorder):
        core.plugins.register(venue, name="venue-a")
        om = OrderManager(core, routing="primary")
        result = om.recover()
        assert not result.errors and not result.still_unknown and not result.never_placed, result
        assert om.get("sl").status is OrderStatus.ACCEPTED and om.get("sl").emulated
        om.mark("BTC/USDT", 94.0)  # the trigger is reached: it fires, at the venue
        assert om.get("sl").status is OrderStatus.FILLED
        assert venue.requests > 0


def test_a_client_id_used_again_is_another_order(db: Path, clock: ManualClock) -> None:
    venue = PaperExchange("venue-a", fees=Fees(maker=0.0, taker=0.0), clock=clock, keep_closed=0)  # forgets c1
    venue.set_book("BTC/USDT", bids=[(99.0, 5.0)], asks=[(101.0, 5.0)])
    with journaled_core(db, clock) as (core, recorder):
        om = _trading(core, venue)
        first = Order(symbol="BTC/USDT", side="buy", quantity=1.0, type="limit", price=101.0, client_order_id="c1")
        assert om.submit(first).status is OrderStatus.FILLED
        recorder.drain()
    with journaled_core(db, clock) as (core, recorder):
        core.plugins.register(venue, name="venue-a")
        om = OrderManager(core, routing="primary")
        again = Order(symbol="BTC/USDT", side="buy", quantity=2.0, type="limit", price=98.0, client_order_id="c1")
        assert om.submit(again).status is OrderStatus.ACCEPTED  # the venue forgot c1; a counter restarted
        recorder.drain()
    venue.set_book("BTC/USDT", bids=[(97.0, 5.0)], asks=[(97.5, 5.0)])
    assert _restarted(db, clock, venue) == (3.0, 1)
