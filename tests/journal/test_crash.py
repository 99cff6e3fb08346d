"""The whole desk crashes (every process SIGKILLed, the segment removed) while it trades; the
journal brings it back to its last committed state, and reconciliation with the venue (which
went on filling orders meanwhile) to the venue's truth, with no order sent twice."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import multiprocessing as mp
import os
import random
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot4 import Core, Order, OrderManager, TradingState, make_plugin_manager
from bot4.errors import SegmentNotFoundError
from bot4.journal.recovery import read_state
from bot4.journal.store import JournalStore
from bot4.shm._proc import identity
from bot4.shm.segment import unlink
from tests.helpers import wait_for
from tests.journal.remote_venue import RemoteVenue, VenueServer
from tests.journal.test_recovery import state_of
from tests.journal.test_replay import _replayed
from tests.risk.conftest import NO_LIMITS

ROUNDS = int(os.environ.get("BOT4_CRASH_ROUNDS", "8"))
SYMBOL = "BTC/USDT"
EQUITY = 100_000.0
LIMITS = dataclasses.replace(NO_LIMITS, max_drawdown=0.5)


def _book(mid: float) -> dict[str, list[tuple[float, float]]]:
    return {"bids": [(mid - 0.5, 2.0), (mid - 1.5, 5.0)], "asks": [(mid + 0.5, 2.0), (mid + 1.5, 5.0)]}


def _desk(name: str, db: str, server: tuple[tuple[str, int], bytes], round_: int, progress: Any, recorder: Any) -> None:
    """One desk's life: rebuilt from the journal, reconciled, then trading until it is killed.
    It tells the test its recorder's pid and identity (the recorder runs in a session of its own)."""
    core = Core.create(name, plugins=make_plugin_manager(entry_points=False), journal=db)
    journal = core.journal
    assert journal is not None and journal.recorder is not None

    def tell_recorder() -> None:
        pid = journal.recorder.pid if journal.recorder is not None else None
        if pid is not None and pid != recorder[0]:
            recorder[1] = identity(pid) or 0
            recorder[0] = pid

    tell_recorder()
    venue = RemoteVenue(*server)
    core.plugins.register(venue, name="venue-a")
    om = OrderManager(core, routing="primary", durable=10.0)
    if round_ == 0:
        core.risk.configure(LIMITS)
        core.risk.set_equity(EQUITY)
    assert journal.wait_ready() and journal.wait_durable()
    while journal.recovering:
        om.recover()
    rng = random.Random(round_)
    n = 0
    while True:
        n += 1
        mid = round(95 + rng.random() * 10, 1)
        core.risk.on_price(SYMBOL, mid)
        roll = rng.random()
        if roll < 0.45:
            side = rng.choice(("buy", "sell"))
            offset = rng.choice((-2.0, -1.0, 1.0))  # some cross the book, some rest
            price = round(mid - offset if side == "buy" else mid + offset, 1)
            om.submit(
                Order(
                    symbol=SYMBOL,
                    side=side,
                    quantity=rng.choice((0.5, 1.0, 2.5)),
                    type="limit",
                    price=price,
                    client_order_id=f"r{round_}-{n}",
                )
            )
        elif roll < 0.6 and om.open_orders():
            om.cancel(rng.choice(om.open_orders()).id)
        elif roll < 0.85:
            venue.set_book(SYMBOL, **_book(mid))  # resting orders it crosses fill at the venue
            om.poll()
        elif roll < 0.9:
            core.risk.set_trading_state(TradingState.HALTED, f"drill {round_}-{n}")
        else:
            core.risk.set_trading_state(TradingState.ACTIVE, f"resumed {round_}-{n}")
        tell_recorder()
        progress.value = n


def _worker(name: str, progress: Any) -> None:
    """Another process of the desk: marks and reservations it never sends."""
    core = Core.attach(name, plugins=make_plugin_manager(entry_points=False))
    rng = random.Random(os.getpid())
    n = 0
    while True:
        n += 1
        core.risk.on_price("ETH/USDT", round(20 + rng.random(), 2))
        decision = core.risk.reserve(
            Order(
                symbol="ETH/USDT",
                side="buy",
                quantity=1.0,
                type="limit",
                price=19.0,
                client_order_id=f"w{os.getpid()}-{n}",
            )
        )
        if decision.reservation is not None and rng.random() < 0.9:
            core.risk.release(decision.reservation)
        progress.value = n


@contextlib.contextmanager
def _venue_server() -> Iterator[tuple[tuple[str, int], bytes]]:
    authkey = secrets.token_bytes(16)
    server = VenueServer(address=("127.0.0.1", 0), authkey=authkey, ctx=mp.get_context("fork"))
    server.start()
    try:
        yield server.address, authkey
    finally:
        server.shutdown()


def _committed(db: Path) -> dict[str, Any]:
    store = JournalStore(db, read_only=True)
    try:
        assert store.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        state = _replayed(read_state(store))
    finally:
        store.close()
    del state["open"]
    return state


def _venue_truth(orders: list[dict[str, Any]]) -> tuple[float, float]:
    """Position and cash flow (fees included) the venue's trades add up to."""
    position = cash = 0.0
    for order in orders:
        sign = 1.0 if order["side"] == "buy" else -1.0
        for trade in order["trades"]:
            position += sign * trade["amount"]
            cash -= sign * trade["amount"] * trade["price"] + trade["fee"]["cost"]
    return position, cash


def test_a_desk_crashed_at_random_moments_comes_back_exactly(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    name = f"bot4-crash-{secrets.token_hex(4)}"
    ctx = mp.get_context("fork")
    rng = random.Random(7)
    with _venue_server() as server:
        address, authkey = server
        for round_ in range(ROUNDS):
            progress, worker_progress = ctx.Value("q", 0), ctx.Value("q", 0)
            recorder = ctx.Array("q", 2)  # pid, identity
            desk = ctx.Process(target=_desk, args=(name, str(db), server, round_, progress, recorder))
            desk.start()
            worker = None
            try:
                wait_for(lambda: progress.value > 0 or not desk.is_alive(), 60)  # noqa: B023
                assert desk.is_alive(), f"the desk exited with {desk.exitcode}"
                worker = ctx.Process(target=_worker, args=(name, worker_progress))
                worker.start()
                target = progress.value + rng.randrange(5, 120)
                wait_for(lambda t=target: progress.value >= t or not desk.is_alive(), 60)  # type: ignore[misc]  # noqa: B023
                assert desk.is_alive(), f"the desk exited with {desk.exitcode}"
            finally:  # the whole desk at once: its recorder (if still the process it was), the desk, the worker
                pid, ident = recorder[0], recorder[1]
                if pid and ident and identity(pid) == ident:
                    os.kill(pid, signal.SIGKILL)
                assert desk.pid is not None
                os.kill(desk.pid, signal.SIGKILL)
                if worker is not None and worker.pid is not None:
                    os.kill(worker.pid, signal.SIGKILL)
                    worker.join(30)
                desk.join(30)
                with contextlib.suppress(SegmentNotFoundError):
                    unlink(name)
            committed = _committed(db)
            with Core.create(
                name, plugins=make_plugin_manager(entry_points=False), journal=db, journal_recorder=False
            ) as core:
                assert state_of(core.risk.snapshot()) == committed, f"round {round_}"
            book = _book(round(95 + rng.random() * 10, 1))
            RemoteVenue(address, authkey).set_book(SYMBOL, **book)  # the venue fills resting orders meanwhile

        # the last restart: reconciled with the venue, the ledger is the venue's truth
        with Core.create(name, plugins=make_plugin_manager(entry_points=False), journal=db) as core:
            assert core.journal is not None and core.journal.wait_ready()
            remote = RemoteVenue(address, authkey)
            core.plugins.register(remote, name="venue-a")
            om = OrderManager(core, routing="primary")
            result = om.recover()
            assert not result.still_unknown and not result.errors and not result.foreign, result
            assert core.journal.recovering == 0
            venue = VenueServer(address=address, authkey=authkey)
            venue.connect()
            orders = venue.venue().orders()  # type: ignore[attr-defined]
            sent = collections.Counter(o["clientOrderId"] for o in orders)
            assert sent and max(sent.values()) == 1, [c for c, k in sent.items() if k > 1]  # no order sent twice
            position, cash = _venue_truth(orders)
            snap = core.risk.snapshot()
            btc = snap.positions.get(SYMBOL)
            assert btc is not None and btc.quantity == pytest.approx(position, abs=1e-9)
            equity = EQUITY + cash + position * btc.mark
            assert snap.equity == pytest.approx(equity, rel=1e-12, abs=1e-6)
            assert len(om.open_orders()) == sum(1 for o in orders if o["status"] == "open")
            assert not math.isnan(snap.peak_equity)
