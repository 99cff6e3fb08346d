"""Property: replaying any prefix of the journal gives the state the live desk had at that point."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot4 import Core, ManualClock, Reservation, TradingState, make_plugin_manager
from bot4.journal.desk import restore
from bot4.journal.query import compact
from bot4.journal.recovery import JournalState, read_state
from bot4.journal.store import JournalStore
from tests.journal.conftest import journaled_core
from tests.journal.test_recovery import state_of
from tests.risk.conftest import EPOCH, NO_LIMITS, buy, sell

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
prices = st.sampled_from([50.0, 80.0, 99.5, 100.0, 101.0, 120.0, 180.0])
ops = st.one_of(
    st.tuples(st.just("price"), st.sampled_from(SYMBOLS), prices),
    st.tuples(st.just("reserve"), st.sampled_from(SYMBOLS), st.booleans(), st.sampled_from([0.5, 1.0, 3.0]), prices),
    st.tuples(st.just("fill"), st.integers(0, 7), st.sampled_from([0.25, 0.5, 1.0]), prices),
    st.tuples(st.just("release"), st.integers(0, 7)),
    st.tuples(st.just("equity"), st.sampled_from([5_000.0, 10_000.0, 20_000.0])),
    st.tuples(st.just("state"), st.sampled_from(list(TradingState)), st.sampled_from(["ops", "drill", ""])),
    st.tuples(st.just("limits"), st.sampled_from([None, 0.05, 0.2])),
    st.tuples(st.just("day"), st.sampled_from([3_600.0, 86_400.0])),
)


def _live(core: Core, open_: dict[str, tuple[Reservation, float]]) -> dict[str, Any]:
    snap = core.risk.snapshot()
    return {**state_of(snap), "open": {cid: left for cid, (_, left) in open_.items()}}


def _replayed(state: JournalState) -> dict[str, Any]:
    acc = state.account
    assert acc is not None
    return {
        "trading": (state.trading_state, state.reason),
        "account": (acc.equity, acc.unrealized_pnl, acc.peak_equity, acc.drawdown, acc.daily_loss),
        "positions": {
            s: (p.position, p.average_price, p.mark, p.realized_pnl)
            for s, p in state.symbols.items()
            if p.position or p.realized_pnl or p.mark
        },
        "limits": state.limits,
        "open": {o.client_order_id: o.left for o in state.open_orders},
    }


def _apply(
    core: Core, clock: ManualClock, op: tuple[Any, ...], open_: dict[str, tuple[Reservation, float]], n: int
) -> None:
    risk = core.risk
    kind = op[0]
    if kind == "price":
        risk.on_price(op[1], op[2])
    elif kind == "reserve":
        cid = f"o{n}"
        order = (buy if op[2] else sell)(op[1], quantity=op[3], price=op[4], client_order_id=cid)
        reservation = risk.reserve(order).reservation
        if reservation is not None:
            open_[cid] = (reservation, op[3])
    elif kind in ("fill", "release") and open_:
        cid = sorted(open_)[op[1] % len(open_)]
        reservation, left = open_[cid]
        if kind == "release":
            risk.release(reservation)
            del open_[cid]
            return
        quantity = left if op[2] == 1.0 else left * op[2]
        risk.on_fill(reservation, quantity, op[3], fee=0.01, trade_id=f"t{n}")
        left -= quantity
        if left <= 1e-12:
            del open_[cid]
        else:
            open_[cid] = (reservation, left)
    elif kind == "equity":
        risk.set_equity(op[1])
    elif kind == "state":
        risk.set_trading_state(op[1], op[2])
    elif kind == "limits":
        risk.configure(dataclasses.replace(NO_LIMITS, max_drawdown=op[1]))
    elif kind == "day":
        clock.advance(op[1])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, min_size=1, max_size=40), st.data())
def test_every_prefix_replays_to_the_live_state(program: list[tuple[Any, ...]], data: st.DataObject) -> None:
    clock = ManualClock(EPOCH)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "journal.db"
        seen: list[tuple[int, dict[str, Any]]] = []
        with journaled_core(db, clock) as (core, recorder):
            core.risk.configure(NO_LIMITS)
            core.risk.set_equity(10_000.0)
            open_: dict[str, tuple[Reservation, float]] = {}
            for n, op in enumerate(program):
                _apply(core, clock, op, open_, n)
                recorder.drain()
                seen.append((recorder.store.last_id(), _live(core, open_)))
        store = JournalStore(db, read_only=True)
        try:
            for last_id, live in seen:
                assert _replayed(read_state(store, last_id)) == live, last_id
            last_id, live = data.draw(st.sampled_from(seen), label="rebuilt at")
            state = read_state(store, last_id)
        finally:
            store.close()
        with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as fresh:
            restore(fresh.risk, state)
            assert state_of(fresh.risk.snapshot()) == {k: v for k, v in live.items() if k != "open"}
        store = JournalStore(db)  # compaction at any point keeps what the state depends on
        try:
            final = _replayed(read_state(store))
            times = [t for (t,) in store.db.execute("SELECT time_ns FROM events ORDER BY id")]
            compact(store, data.draw(st.sampled_from(times), label="compacted before") + 1)
            assert _replayed(read_state(store)) == final == seen[-1][1]
        finally:
            store.close()
