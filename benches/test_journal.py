"""The journal's cost: on the order path, on a breaker's closed path, in the recorder, in recovery.

- Order path: ``OrderManager.submit`` of a market order (every rule on, two paper venues,
  fill, P&L), on a desk without a journal (the baseline, ``plain``) and on one with a
  journal and its recorder process running — same run, same scenario.
- Breaker closed path: a guarded call on a core without and with a journal.
- Recorder: records written per second, draining a ring of 14,000 records (marks, and a
  mix of reservations, fills and releases) into SQLite, ``synchronous`` FULL and NORMAL.
- Recovery: ``Core.create(journal=...)`` of a journal holding 1,000,000 events.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benches.test_orders import DEEP, WARM_UP, _open_limits, _orders
from bot4 import Core, Order, OrderManager, PaperExchange, make_plugin_manager
from bot4.journal.recorder import Recorder
from bot4.shm import layout as L
from bot4.testing import OPEN_LIMITS

RING_BATCH = 14_000  # below the ring's 16,384: one drain writes them all
SYMBOLS = [f"S{i}/USDT" for i in range(48)]


class _Desk:
    """An order manager on a core, and the core's recorder if it runs in this process."""

    def __init__(self, manager: OrderManager, recorder: Recorder | None) -> None:
        self.manager, self.recorder = manager, recorder

    def drain(self, *, now: bool = False) -> None:
        """Beat; write the ring out when it is half full (or ``now``): most rounds run without
        the recorder's work between them (its cache footprint is not the order path's)."""
        if self.recorder is not None:
            self.recorder.beat()
            ring = self.recorder.ring
            if now or ring.head - ring.tail > L.EVENTS // 2:
                self.recorder.drain()


def _desk(journal: Path | None, process: bool) -> Iterator[_Desk]:
    with Core.create(max_reservations=65536, journal=journal, journal_recorder=process) as core:
        recorder = None if journal is None or process else Recorder(core._segment, journal)
        if recorder is not None:
            recorder.beat()
        if core.journal is not None:
            assert core.journal.wait_ready()
        _open_limits(core)
        for name, spread in (("venue-a", 1.0), ("venue-b", 1.5)):
            venue = PaperExchange(name)
            venue.set_book("BTC/USDT", bids=[(100 - spread, DEEP)], asks=[(100 + spread, DEEP)])
            core.plugins.register(venue, name=name)
        desk = _Desk(OrderManager(core, routing="best_price"), recorder)
        for i, order in enumerate(_orders(WARM_UP)):
            if i % 1000 == 0:
                desk.drain(now=True)
            desk.manager.submit(order)
        desk.drain(now=True)
        yield desk
        if recorder is not None:
            recorder.close()


DESKS = {"plain": (False, False), "journaled": (True, False), "journaled, recorder running": (True, True)}
"""name: (journaled, recorder process)"""


@pytest.fixture(scope="module")
def desks() -> Iterator[dict[str, _Desk]]:
    with tempfile.TemporaryDirectory() as tmp:
        gens = {
            name: _desk(Path(tmp) / f"j{i}.db" if journaled else None, process)
            for i, (name, (journaled, process)) in enumerate(DESKS.items())
        }
        yield {name: next(gen) for name, gen in gens.items()}
        for gen in gens.values():
            for _ in gen:
                pass


@pytest.mark.parametrize("lib", list(DESKS))
def test_order_path(benchmark: Any, lib: str, desks: dict[str, _Desk]) -> None:
    """``plain``: no journal (the baseline). ``journaled``: the records the order path makes,
    its recorder draining between rounds (untimed): what journaling adds to the path itself.
    ``journaled, recorder running``: the recorder process drains while the orders flow, on
    the machine's other core (which a 2-core host shares with it)."""
    desk = desks[lib]
    benchmark.group = "journal: order submit -> fill -> P&L"
    batch: list[Order] = []

    def fresh() -> None:
        desk.drain()
        batch[:] = _orders(200)

    def run() -> None:
        for order in batch:
            desk.manager.submit(order)

    benchmark.pedantic(run, setup=fresh, rounds=60, iterations=1)
    assert all(m.status.name == "FILLED" for m in desk.manager.orders()[-200:])  # none refused by the journal
    benchmark.extra_info["per_order_divisor"] = 200


def test_order_path_paired(benchmark: Any, desks: dict[str, _Desk]) -> None:
    """The journal's cost on the order path, paired: each round submits 200 orders on the plain
    desk, then 200 on the journaled one (its recorder draining between rounds), and the
    difference per order is taken round by round; the median difference is reported. Pairing
    cancels what the machine does to both within a round."""
    plain, journaled = desks["plain"], desks["journaled"]
    benchmark.group = "journal: order path, paired"
    differences: list[float] = []

    def one(desk: _Desk) -> float:
        orders = _orders(200)
        desk.drain()
        started = time.perf_counter_ns()
        for order in orders:
            desk.manager.submit(order)
        return (time.perf_counter_ns() - started) / 200

    def pair() -> None:
        if len(differences) % 2:  # alternate which desk goes first
            differences.append(one(journaled) - one(plain))
        else:
            base = one(plain)
            differences.append(one(journaled) - base)

    benchmark.pedantic(pair, rounds=101, iterations=1)
    median = statistics.median(differences)
    benchmark.extra_info["journal_ns_per_order_median"] = round(median)
    print(f"\njournaling adds {median:,.0f} ns per order (median of {len(differences)} paired rounds)")


@pytest.fixture(scope="module")
def cores() -> Iterator[dict[str, Core]]:
    with tempfile.TemporaryDirectory() as tmp:
        plugins = make_plugin_manager(entry_points=False)
        with (
            Core.create(plugins=plugins) as plain,
            Core.create(plugins=plugins, journal=Path(tmp) / "j.db") as journaled,
        ):
            yield {"bot4": plain, "bot4 journaled": journaled}


@pytest.mark.parametrize("lib", ["plain", "bot4", "bot4 journaled"])
def test_breaker_closed_path(benchmark: Any, lib: str, cores: dict[str, Core], batch: int) -> None:
    benchmark.group = "journal: breaker closed path"

    def work() -> int:
        return 1

    call = work if lib == "plain" else cores[lib].breaker("venue")(work)
    calls = range(batch)

    def run() -> None:
        for _ in calls:
            call()

    benchmark.pedantic(run, rounds=200, iterations=1, warmup_rounds=5)


def _mixed(core: Core, n: int) -> None:
    """``n`` records: reservations, fills and releases among marks on 48 symbols."""
    risk = core.risk
    made = 0
    i = 0
    while made < n:
        symbol = SYMBOLS[i % len(SYMBOLS)]
        risk.on_price(symbol, 100.0 + i % 7)
        made += 1
        if i % 3 == 0:
            reservation = risk.reserve(Order(symbol=symbol, side="buy", quantity=1.0, type="limit", price=100.0))
            assert reservation.reservation is not None
            risk.on_fill(reservation.reservation, 0.5, 100.0, trade_id=f"v:{i}")
            risk.release(reservation.reservation)
            made += 3
        i += 1


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
@pytest.mark.parametrize("records", ["marks", "mixed"])
def test_recorder_throughput(benchmark: Any, synchronous: str, records: str) -> None:
    benchmark.group = "journal: recorder"
    with tempfile.TemporaryDirectory() as tmp, Core.create(journal=Path(tmp) / "j.db", journal_recorder=False) as core:
        core.risk.configure(OPEN_LIMITS)
        core.risk.set_equity(1e9)
        recorder = Recorder(core._segment, Path(tmp) / "j.db", synchronous=synchronous)
        recorder.beat()
        recorder.drain()

        def fill_ring() -> None:
            recorder.beat()
            if records == "marks":
                for i in range(RING_BATCH):
                    core.risk.on_price(SYMBOLS[i % len(SYMBOLS)], 100.0 + i % 7)
            else:
                _mixed(core, RING_BATCH)

        written: list[int] = []
        benchmark.pedantic(lambda: written.append(recorder.drain()), setup=fill_ring, rounds=15, iterations=1)
        recorder.close()
    benchmark.extra_info["per_order_divisor"] = written[0]
    per_second = written[0] / benchmark.stats.stats.median
    benchmark.extra_info["records_per_second"] = round(per_second)
    print(f"\nrecorder ({records}, synchronous={synchronous}): {per_second:,.0f} records/s")


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal of 1,000,000 events from a desk trading 48 symbols, written by the recorder."""
    path = tmp_path_factory.mktemp("million") / "journal.db"
    with Core.create(journal=path, journal_recorder=False) as core:
        core.risk.configure(OPEN_LIMITS)
        core.risk.set_equity(1e9)
        recorder = Recorder(core._segment, path, synchronous="NORMAL")
        total = 0
        while total < 1_000_000:
            recorder.beat()
            _mixed(core, min(RING_BATCH, 1_000_000 - total))
            total += recorder.drain()
        recorder.close()
    return path


def test_recovery_of_a_million_events(benchmark: Any, million: Path) -> None:
    benchmark.group = "journal: recovery of 1,000,000 events"
    benchmark.extra_info["per_order_divisor"] = 1

    def recover() -> None:
        started = time.perf_counter()
        with Core.create(journal=million, journal_recorder=False) as core:
            assert core.journal is not None and core.journal.recovered is not None
            assert len(core.risk.snapshot().positions) == len(SYMBOLS)
        benchmark.extra_info.setdefault("seconds", []).append(round(time.perf_counter() - started, 3))

    benchmark.pedantic(recover, rounds=3, iterations=1)
