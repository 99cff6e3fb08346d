"""A desk rebuilt from its journal: the state it last recorded, exactly; a torn last write skipped."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot4 import Core, ManualClock, RiskSnapshot, TradingState, make_plugin_manager
from bot4.journal.store import JournalStore, torn_tail
from tests.journal.conftest import journaled_core
from tests.risk.conftest import NO_LIMITS, buy, sell


def state_of(snap: RiskSnapshot) -> dict[str, Any]:
    """What the journal must give back: everything the desk holds but live reservations."""
    return {
        "trading": (snap.trading_state, snap.reason),
        "account": (snap.equity, snap.unrealized_pnl, snap.peak_equity, snap.drawdown, snap.daily_loss),
        "positions": {
            s: (p.quantity, p.average_price, p.mark, p.realized_pnl)
            for s, p in snap.positions.items()
            if p.quantity or p.realized_pnl or p.mark
        },
        "limits": snap.limits,
    }


def _trade(core: Core) -> None:
    """A session: fills on two symbols, fees, a mark up (new peak), a mark down, orders left open."""
    risk = core.risk
    risk.configure(dataclasses.replace(NO_LIMITS, max_drawdown=0.5, daily_loss_limit=0.9))
    risk.set_equity(10_000.0)
    risk.on_price("BTC/USDT", 100.0)
    risk.on_price("ETH/USDT", 20.0)
    res = risk.reserve(buy(quantity=3.0, client_order_id="b1")).reservation
    assert res is not None
    risk.on_fill(res, 1.0, 100.0, fee=0.25, trade_id="paper:1")
    risk.on_fill(res, 1.5, 101.0, fee=0.5, trade_id="paper:2")  # 0.5 left: still open
    eth = risk.reserve(sell("ETH/USDT", quantity=10.0, price=20.0, client_order_id="e1")).reservation
    assert eth is not None
    risk.on_fill(eth, 10.0, 20.5, trade_id="paper:3")  # complete
    risk.on_price("BTC/USDT", 130.0)  # a new peak
    risk.on_price("ETH/USDT", 19.0)
    closing = risk.reserve(sell(quantity=1.0, price=125.0, client_order_id="b2")).reservation
    assert closing is not None
    risk.on_fill(closing, 1.0, 125.0, trade_id="paper:4")
    risk.on_price("BTC/USDT", 90.0)  # below the peak
    risk.reserve(buy("SOL/USDT", quantity=2.0, price=10.0, client_order_id="s1"))  # never filled
    dropped = risk.reserve(buy(quantity=1.0, client_order_id="gone")).reservation
    assert dropped is not None
    risk.release(dropped)  # cancelled: not open


def test_a_rebuilt_desk_holds_what_it_last_recorded_exactly(db: Path, clock: ManualClock) -> None:
    with journaled_core(db, clock) as (core, recorder):
        _trade(core)
        core.risk.set_trading_state(TradingState.HALTED, "ops: maintenance")
        recorder.drain()
        before = state_of(core.risk.snapshot())
    with Core.create(
        clock=clock, plugins=make_plugin_manager(entry_points=False), journal=db, journal_recorder=False
    ) as core:
        assert state_of(core.risk.snapshot()) == before
        assert core.journal is not None and core.journal.recovered is not None
        pending = {o.client_order_id: o for o in core.journal.pending_orders()}
        assert set(pending) == {"b1", "s1"}
        assert (pending["b1"].quantity, pending["b1"].left) == (3.0, 0.5)
        assert [f[0] for f in pending["b1"].fills] == ["paper:1", "paper:2"]
        assert pending["s1"].fills == ()
        assert core.journal.recovering == 2
        assert core.risk.snapshot().open_orders == 0  # held again only when the order manager adopts them


def test_new_risk_waits_for_the_recovered_orders_to_be_reconciled(db: Path, clock: ManualClock) -> None:
    with journaled_core(db, clock) as (core, recorder):
        _trade(core)
        recorder.drain()
    with journaled_core(db, clock) as (core, _):
        decision = core.risk.reserve(buy())
        assert decision.codes == ("JOURNAL",)
        assert "not reconciled" in decision.rejections[0].message


def test_an_empty_journal_starts_a_flat_desk(db: Path, clock: ManualClock) -> None:
    with journaled_core(db, clock) as (core, _):
        assert core.journal is not None and core.journal.recovered is None and core.journal.recovering == 0
        assert core.risk.snapshot().positions == {}


def test_the_last_of_several_epochs_is_what_is_rebuilt(db: Path, clock: ManualClock) -> None:
    with journaled_core(db, clock) as (core, recorder):
        _trade(core)
        recorder.drain()
    for price in (95.0, 99.0):
        with journaled_core(db, clock) as (core, recorder):
            core.journal._ring.set_recovering(0)  # type: ignore[union-attr]  # no venue to reconcile with here
            core.risk.on_price("BTC/USDT", price)
            recorder.drain()
            before = state_of(core.risk.snapshot())
    with journaled_core(db, clock) as (core, _):
        assert state_of(core.risk.snapshot()) == before
        store = JournalStore(db, read_only=True)
        assert store.db.execute("SELECT COUNT(*) FROM epochs").fetchone()[0] == 4
        store.close()


def test_a_torn_last_write_is_skipped_with_a_warning(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "journal.db"
    plugins = make_plugin_manager(entry_points=False)
    with Core.create(clock=clock, plugins=plugins, journal=db, journal_recorder=False) as core:
        recorder = subprocess.Popen([sys.executable, "-m", "bot4.journal", core.name, str(db)])
        try:
            assert core.journal is not None and core.journal.wait_ready()
            _trade(core)
            assert core.journal.wait_durable()
            durable = state_of(core.risk.snapshot())
            os.kill(recorder.pid, signal.SIGSTOP)
            for price in (91.0, 92.0, 93.0):  # one batch, written when the recorder runs again
                core.risk.on_price("BTC/USDT", price)
            os.kill(recorder.pid, signal.SIGCONT)
            assert core.journal.wait_durable()
        finally:
            recorder.kill()  # a power cut: no checkpoint, no close
            recorder.wait()
    wal = Path(f"{db}-wal")
    os.truncate(wal, wal.stat().st_size - 100)  # only part of the last batch's commit frame made it
    assert torn_tail(db) > 0
    caplog.set_level(logging.WARNING, logger="bot4.journal")
    with Core.create(clock=clock, plugins=plugins, journal=db, journal_recorder=False) as core:
        assert any("cut short" in r.getMessage() for r in caplog.records)
        assert state_of(core.risk.snapshot()) == durable  # the state before the torn batch, exactly
        store = JournalStore(db, read_only=True)
        assert store.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert (
            store.db.execute("SELECT COUNT(*) FROM events WHERE kind = 'MARK' AND mark IN (91, 92, 93)").fetchone()[0]
            == 0
        )
        store.close()
