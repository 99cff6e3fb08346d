"""Programs the close tests run in a subprocess of their own (a crash must not take pytest down)."""

from __future__ import annotations

import multiprocessing as mp
import random
import sys
import threading
import time
from collections.abc import Callable

from bot4 import Bot4Error, BreakerConfig, Core, ManualClock, Order, RiskLimits, make_plugin_manager
from bot4.shm import layout as L


class YieldingClock(ManualClock):
    """A Python clock that lets other threads run inside every reading (a close may land there)."""

    def now_ns(self) -> int:
        time.sleep(0)
        return super().now_ns()


def _ok() -> int:
    return 1


def _down() -> int:
    raise LookupError("venue down")


def torture(rounds: int, python_clock: bool) -> None:
    """Threads call breakers and reserve while the main thread closes the core under them."""
    unexpected: list[BaseException] = []
    order = Order(symbol="BTC/USDT", side="buy", quantity=1, type="limit", price=100, stop_loss=99)
    for _ in range(rounds):
        clock = YieldingClock(1000.0) if python_clock else None
        core = Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False))
        core.risk.configure(RiskLimits(require_stop_loss=False))
        core.risk.set_equity(1_000_000)
        core.risk.on_price("BTC/USDT", 100.0)
        br = core.breaker("venue", BreakerConfig(consecutive_failures=None, minimum_calls=10**6))
        ok, down = br(_ok), br(_down)  # the native guarded call
        started = threading.Barrier(4)

        def work(
            core: Core = core,
            br: object = br,
            started: threading.Barrier = started,
            clock: object = clock,
            ok: Callable[[], int] = ok,
            down: Callable[[], int] = down,
        ) -> None:
            started.wait()
            try:
                while True:
                    with br.call():  # type: ignore[attr-defined]
                        pass
                    ok()
                    try:
                        down()
                    except LookupError:
                        pass
                    decision = core.risk.reserve(order)
                    if decision.reservation is not None:
                        core.risk.release(decision.reservation)
                    if clock is not None:
                        clock.advance(60)  # type: ignore[attr-defined]  # every price below takes a correlation sample
                    core.risk.on_price("BTC/USDT", 100.0)
                    br.snapshot()  # type: ignore[attr-defined]
            except Bot4Error:
                return  # closed under us: a clear bot4 error is the promise
            except BaseException as exc:  # anything else is a defect
                unexpected.append(exc)

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(random.uniform(0, 0.002))
        core.close()
        for t in threads:
            t.join(30)
        core.unlink()
        assert core._segment.region.busy == 0
    if unexpected:
        raise SystemExit(f"unexpected errors: {unexpected[:3]!r}")
    print("ok")


def _hold(name: str, holding: object, release: object) -> None:
    core = Core.attach(name)
    region, mutex = core._segment.region, core._segment.layout.ledger + L.L_MUTEX
    region.mutex_lock(mutex, 5.0)
    holding.set()  # type: ignore[attr-defined]
    release.wait(60)  # type: ignore[attr-defined]
    region.mutex_unlock(mutex)
    core.close()


def close_while_waiting() -> None:
    """A thread waits for the ledger mutex (GIL released) while the main thread closes the core."""
    ctx = mp.get_context("spawn")
    core = Core.create(plugins=make_plugin_manager(entry_points=False))
    core.risk.set_equity(1000)
    holding, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(core.name, holding, release), daemon=True)
    holder.start()
    assert holding.wait(60)
    outcome: list[object] = []

    def wait_for_ledger() -> None:
        try:
            core.risk.set_equity(2000)
            outcome.append("returned")
        except Bot4Error as exc:
            outcome.append(type(exc).__name__)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_for_ledger)
    waiter.start()
    deadline = time.monotonic() + 60
    while core._segment.region.busy == 0:  # until it waits inside the mapping
        assert time.monotonic() < deadline, "the waiter never started waiting"
        time.sleep(0.001)
    core.close()  # must not unmap what the waiter is inside
    release.set()  # the holder lets go: the waiter wakes on a closed core
    waiter.join(30)
    holder.join(30)
    assert outcome == ["SegmentError"], outcome
    other = Core.attach(core.name)  # and the mutex is free for everyone
    region, mutex = other._segment.region, other._segment.layout.ledger + L.L_MUTEX
    assert region.mutex_lock(mutex, 1.0) == 0, "the ledger mutex stayed locked"
    region.mutex_unlock(mutex)
    other.close()
    core.unlink()
    print("ok")


if __name__ == "__main__":
    if sys.argv[1] == "torture":
        torture(int(sys.argv[2]), sys.argv[3] == "python")
    else:
        close_while_waiting()
