"""The risk engine shared by threads of one process (and Ctrl-C in the middle of it)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

import bot4
from bot4 import Core, Order, make_plugin_manager
from tests.helpers import interrupt_at
from tests.risk.conftest import NO_LIMITS, buy


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads as often as the interpreter allows: races show up in few rounds."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("fast_switching")
def test_threads_learning_new_symbols_at_once_keep_one_row_per_symbol() -> None:
    for _ in range(20):
        with Core.create(max_symbols=256, plugins=make_plugin_manager(entry_points=False)) as core:
            risk = core.risk
            risk.configure(NO_LIMITS)
            risk.set_equity(1_000_000.0)
            other = Core.attach(core.name)  # another process adds the symbols
            for i in range(40):
                other.risk.on_price(f"S{i}", 100.0)
            start = threading.Barrier(4)

            def check_all(k: int, start: threading.Barrier = start, risk: bot4.RiskEngine = risk) -> None:
                start.wait()
                for i in range(40):
                    risk.check(Order(symbol=f"S{(i * 7 + k) % 40}", side="buy", quantity=1.0))

            threads = [threading.Thread(target=check_all, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert risk.ledger.symbols() == [f"S{i}" for i in range(40)]
            other.risk.on_price("NEW", 100.0)  # added later by the other process: seen here too
            assert risk.ledger.symbol_index("NEW") == 40
            assert risk.reserve(buy(symbol="NEW")).approved
            assert other.risk.ledger.symbols().count("NEW") == 1
            other.close()


@pytest.mark.usefixtures("fast_switching")
def test_a_rule_registered_while_another_thread_checks_is_enforced() -> None:
    order = buy()

    class Deny:
        @bot4.hookimpl
        def bot4_check_order(self) -> bot4.Rejection:
            return bot4.Rejection("desk.deny", "DENY", "new rule")

    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
        risk = core.risk
        risk.configure(NO_LIMITS)
        risk.set_equity(1e6)
        risk.on_price("BTC/USDT", 100.0)
        for _ in range(150):
            stop = threading.Event()

            def checking(stop: threading.Event = stop) -> None:
                while not stop.is_set():
                    risk.check(order)

            checker = threading.Thread(target=checking)
            checker.start()
            plugin = Deny()
            core.plugins.register(plugin, "desk.deny")
            stop.set()
            checker.join()
            assert risk.check(order).codes == ("DENY",), "a rule registered during a check never runs"
            core.plugins.unregister(plugin)


@pytest.mark.usefixtures("fast_switching")
def test_snapshots_taken_by_threads_are_each_consistent() -> None:
    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
        risk = core.risk
        risk.configure(NO_LIMITS)
        risk.set_equity(2000.0)
        stop = threading.Event()
        bad: list[tuple[float, float, float]] = []

        def write() -> None:
            k = 0
            while not stop.is_set():
                k += 1
                risk.set_equity(1000.0 if k % 2 else 2000.0)

        def read() -> None:
            for _ in range(1500):
                snap = risk.snapshot()
                want = max(0.0, 1.0 - snap.equity / snap.peak_equity) if snap.peak_equity > 0 else 0.0
                if abs(snap.drawdown - want) > 1e-12:
                    bad.append((snap.equity, snap.peak_equity, snap.drawdown))

        writer = threading.Thread(target=write)
        readers = [threading.Thread(target=read) for _ in range(3)]
        writer.start()
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        stop.set()
        writer.join()
        assert bad == []


def test_ctrl_c_right_after_the_commit_gives_the_reservation_back() -> None:
    """KeyboardInterrupt after the reservation is published, before reserve() returns it."""
    with Core.create(plugins=make_plugin_manager(entry_points=False)) as core:
        risk = core.risk
        risk.configure(NO_LIMITS)
        risk.set_equity(1e6)
        risk.on_price("BTC/USDT", 100.0)
        interrupted = 0
        k = 1
        held: list[bot4.Decision] = []
        while interrupt_at(k, lambda: held.append(risk.reserve(buy()))):  # at the k-th native return, every k
            interrupted += 1
            snap = risk.snapshot()
            assert snap.open_orders == len(held), f"a reservation nobody holds after an interrupt at return {k}"
            assert risk.audit() == []
            k += 1
        for decision in held:
            assert decision.reservation is not None
            risk.release(decision.reservation)
        assert interrupted > 5


def test_a_halt_whose_reason_is_still_being_written_is_worded_again_later() -> None:
    class SlowWallClock(bot4.ManualClock):
        """Stands still inside the trip: between the state word and its reason."""

        def __init__(self) -> None:
            super().__init__(1_767_268_800.0)
            self.inside = threading.Event()
            self.go_on = threading.Event()
            self.stall = False

        def time_ns(self) -> int:
            if self.stall:
                self.inside.set()
                self.go_on.wait(30)
            return super().time_ns()

    clock = SlowWallClock()
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as core:
        risk = core.risk
        clock.stall = True
        tripping = threading.Thread(target=risk.kill_switch.trip, args=("incident 42",))
        tripping.start()
        assert clock.inside.wait(30)
        assert risk.check(buy()).codes == ("KILL_SWITCH",)  # halted already, reason not written yet
        clock.stall = False
        clock.go_on.set()
        tripping.join(30)
        assert "incident 42" in risk.check(buy()).rejections[0].message
