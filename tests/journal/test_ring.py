"""The event ring: a record is visible exactly when its transaction commits, with the state it left."""

from __future__ import annotations

import math
import multiprocessing as mp
import multiprocessing.synchronize
import os
import signal
from pathlib import Path

import pytest

from bot4 import Core, ManualClock, make_plugin_manager
from bot4.journal.recorder import Recorder
from bot4.shm import layout as L
from bot4.shm.events import ROOM_FOR_RISK as ROOM
from bot4.shm.events import EventKind, EventRing
from bot4.shm.mutex import ledger_mutex
from tests.journal.conftest import journaled_core
from tests.risk.conftest import NO_LIMITS, buy, sell


def _ring(core: Core) -> EventRing:
    return EventRing(core._segment.region, core._segment.layout)


def test_a_record_carries_the_state_its_transaction_left(desk: tuple[Core, Recorder]) -> None:
    core, recorder = desk
    ring = _ring(core)
    start = ring.head
    decision = core.risk.reserve(buy(quantity=2.0))
    core.risk.on_fill(decision.reservation, 0.5, 101.0, 0.25, trade_id="venue-a:77")
    snap = core.risk.snapshot()
    records = ring.read(start, ring.head)
    assert [r.kind for r in records] == [EventKind.RESERVE, EventKind.FILL]
    fill = records[1]
    assert fill.figures == (0.5, 101.0, 0.25, 1.5)
    assert fill.text == "venue-a:77"
    position = snap.positions["BTC/USDT"]
    assert fill.post_symbol[:3] == (position.quantity, position.average_price, position.realized_pnl)
    assert fill.post_symbol[3] == position.mark == 101.0
    assert fill.cash + fill.unrealized == snap.equity
    assert fill.peak == snap.peak_equity
    assert fill.pid == os.getpid()


def test_an_aborted_transaction_leaves_no_record(desk: tuple[Core, Recorder]) -> None:
    core, _ = desk
    ring = _ring(core)
    mutex = ledger_mutex(core._segment, core._context.ident)
    from bot4.shm.events import bind

    bind(mutex, core._segment.layout)
    head = ring.head
    with pytest.raises(RuntimeError), mutex as tx:
        assert tx.record(EventKind.OPERATOR, 0, -1, 0, math.nan, math.nan, math.nan, math.nan, "x") == head
        raise RuntimeError("abort")
    assert ring.head == head
    with mutex as tx:  # the slot is simply written again by the next record
        tx.record(EventKind.OPERATOR, 0, -1, 0, math.nan, math.nan, math.nan, math.nan, "kept")
    assert ring.head == head + 1
    assert ring.read(head, head + 1)[0].text == "kept"


def test_record_outside_a_section_is_refused(desk: tuple[Core, Recorder]) -> None:
    core, _ = desk
    mutex = ledger_mutex(core._segment, core._context.ident)
    from bot4.shm.events import bind

    bind(mutex, core._segment.layout)
    with pytest.raises(RuntimeError, match="outside the section"):
        mutex.record(EventKind.OPERATOR, 0, -1, 0, 0.0, 0.0, 0.0, 0.0, "x")


def test_without_a_journal_nothing_is_recorded(clock: ManualClock) -> None:
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as core:
        core.risk.configure(NO_LIMITS)
        core.risk.set_equity(1000.0)
        core.risk.on_price("BTC/USDT", 100.0)
        assert core.risk.reserve(buy()).approved
        assert _ring(core).head == 0
        assert core.journal is None


def test_text_is_cut_at_a_whole_character(desk: tuple[Core, Recorder]) -> None:
    core, _ = desk
    ring = _ring(core)
    head = ring.head
    room = L.EV_TEXT_WORDS * 8  # 592 bytes
    core.risk.record_operator("x" + "é" * room)  # 1 + 2 x 592 bytes: never half a character kept
    assert ring.read(head, head + 1)[0].text == "x" + "é" * ((room - 1) // 2)
    core.risk.record_operator("ok \udcff")  # a character UTF-8 cannot hold is replaced, not an error
    assert ring.read(head + 1, head + 2)[0].text == "ok ?"


def test_a_full_ring_counts_what_it_could_not_take_and_refuses_new_risk(desk: tuple[Core, Recorder]) -> None:
    core, recorder = desk
    ring = _ring(core)
    for _ in range(L.EVENTS - ROOM - ring.head + ring.tail + 1):  # past the room kept for what cannot be refused
        core.risk.on_price("BTC/USDT", 100.0)
    decision = core.risk.reserve(buy())
    assert decision.codes == ("JOURNAL",)
    assert "behind" in decision.rejections[0].message
    while ring.head - ring.tail < L.EVENTS:  # marks are never refused: they fill the ring
        core.risk.on_price("BTC/USDT", 100.5)
    core.risk.on_price("BTC/USDT", 102.0)  # not appended: counted lost
    assert ring.lost == 1
    assert "lost" in (core.journal.problem or "")
    recorder.drain()  # everything appended, then a snapshot of the ledger as it is
    assert core.journal.problem is None
    last = recorder.store.db.execute(
        "SELECT kind, symbol, mark FROM events WHERE symbol IS NOT NULL ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert last == ("SNAPSHOT", "BTC/USDT", 102.0)
    assert core.risk.reserve(buy()).approved


def _hammer(name: str, ready: mp.synchronize.Event) -> None:  # pragma: no cover - runs in a child
    core = Core.attach(name, plugins=make_plugin_manager(entry_points=False))
    ready.set()
    while True:
        decision = core.risk.reserve(buy(quantity=0.01))
        if decision.reservation is not None:
            core.risk.on_fill(decision.reservation, 0.005, 100.0, trade_id="t")
            core.risk.release(decision.reservation)
        core.risk.reserve(sell(quantity=0.01))


@pytest.mark.parametrize("round_", range(6))
def test_a_process_killed_mid_transaction_never_leaves_a_state_change_unrecorded(tmp_path: Path, round_: int) -> None:
    """Every reservation the ledger made has its record, however the writer died."""
    ctx = mp.get_context("fork")
    with journaled_core(tmp_path / "j.db") as (core, recorder):
        core.risk.configure(NO_LIMITS)
        core.risk.set_equity(1e9)
        core.risk.on_price("BTC/USDT", 100.0)
        ready = ctx.Event()
        child = ctx.Process(target=_hammer, args=(core.name, ready))
        child.start()
        try:
            assert ready.wait(30)
            seen = _ring(core).head
            while _ring(core).head < seen + 200 + 37 * round_:
                recorder.drain()
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.join(30)
        core.risk.reclaim()  # takes the mutex: a dead holder's committed journal is replayed first
        recorder.drain()
        db = recorder.store.db
        last_id = core._segment.region.load(core._segment.layout.ledger + L.L_RES_SEQ)
        reserved = db.execute("SELECT COUNT(*) FROM events WHERE kind = 'RESERVE'").fetchone()[0]
        assert reserved == last_id
        snap = core.risk.snapshot()
        row = db.execute(
            "SELECT position, cash FROM events WHERE symbol = 'BTC/USDT' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        assert row == (snap.positions["BTC/USDT"].quantity, snap.equity - snap.unrealized_pnl)
        assert snap.open_orders == 0
