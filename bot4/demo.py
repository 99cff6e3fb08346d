"""The demo: worker processes share one breaker; one sees an exchange fail, all are protected.

Each worker attaches to the same segment by name and sends orders to a simulated
exchange through the shared breaker ``exchange``. Worker 0 quotes fast (every 10 ms),
the others trade slowly (every 100 ms). When the exchange stops answering, worker 0
is the first to see it: its failures trip the breaker, and from that instant the other
workers' calls are rejected without reaching the exchange, though they never saw a
failure themselves. When the open period ends, trial calls find the exchange healthy
again and the breaker closes for everyone.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass
from typing import Any

from bot4.breaker.config import BreakerConfig
from bot4.breaker.state import BreakerState
from bot4.clock import MonotonicClock
from bot4.core import Core
from bot4.errors import CircuitOpenError
from bot4.plugins.hookspecs import hookimpl

__all__ = ["DemoConfig", "run_demo"]

BREAKER_CONFIG = BreakerConfig(
    minimum_calls=10,
    consecutive_failures=3,
    window_seconds=2.0,
    open_seconds=1.0,
    half_open_calls=2,
    half_open_max_seconds=1.0,
)


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Parameters of :func:`run_demo`."""

    workers: int = 4
    duration: float = 4.0
    outage_start: float = 0.8
    outage_end: float = 1.5
    fast_interval: float = 0.01
    slow_interval: float = 0.1


class ExchangeTimeout(Exception):
    """The simulated exchange did not answer in time."""


class _Printer:
    def __init__(self, worker: int, t0_ns: int) -> None:
        self.worker = worker
        self.t0_ns = t0_ns

    def say(self, text: str) -> None:
        elapsed = (MonotonicClock().now_ns() - self.t0_ns) / 1e9
        print(f"[{elapsed:5.2f}s] worker {self.worker}: {text}", flush=True)

    @hookimpl
    def bot4_breaker_state_changed(self, breaker: Any, old: BreakerState, new: BreakerState, reason: str) -> None:
        self.say(f"breaker {breaker.name!r} {old.name} -> {new.name} ({reason})")


def _worker(name: str, worker: int, t0_ns: int, cfg: DemoConfig, results: Any) -> None:
    printer = _Printer(worker, t0_ns)
    counts = {"ok": 0, "failed": 0, "rejected": 0}
    with Core.attach(name) as core:
        core.plugins.register(printer, name="demo-printer")
        breaker = core.breaker("exchange", BREAKER_CONFIG)

        @breaker
        def send_order() -> None:
            elapsed = (time.monotonic_ns() - t0_ns) / 1e9
            if cfg.outage_start <= elapsed < cfg.outage_end:
                raise ExchangeTimeout("no answer within 2s")

        rejected_streak = False
        interval = cfg.fast_interval if worker == 0 else cfg.slow_interval
        # Slow workers are phased to call half an interval after the fast one.
        next_ns = t0_ns + (0 if worker == 0 else int((interval / 2 + 0.005 * worker) * 1e9))
        deadline = t0_ns + int(cfg.duration * 1e9)
        while next_ns < deadline:
            time.sleep(max(0.0, (next_ns - time.monotonic_ns()) / 1e9))
            next_ns += int(interval * 1e9)
            try:
                send_order()
                counts["ok"] += 1
                if rejected_streak:
                    printer.say("calls pass again")
                rejected_streak = False
            except ExchangeTimeout as exc:
                counts["failed"] += 1
                printer.say(f"order failed at the exchange: {exc}")
            except CircuitOpenError as exc:
                counts["rejected"] += 1
                if not rejected_streak:
                    printer.say(f"order rejected before reaching the exchange: {exc}")
                rejected_streak = True
    results.put((worker, counts))


def run_demo(cfg: DemoConfig | None = None) -> int:
    """Run the demo and print what happens; return the process exit code."""
    cfg = cfg or DemoConfig()
    ctx = mp.get_context("spawn")
    with Core.create() as core:
        core.breaker("exchange", BREAKER_CONFIG)
        print(f"segment {core.name!r}: {cfg.workers} workers share breaker 'exchange'")
        print(
            f"worker 0 calls every {cfg.fast_interval * 1000:.0f} ms, the others every "
            f"{cfg.slow_interval * 1000:.0f} ms; the exchange stops answering from "
            f"{cfg.outage_start:.2f}s to {cfg.outage_end:.2f}s\n"
        )
        results = ctx.Queue()
        t0_ns = time.monotonic_ns() + 500_000_000  # let every worker start before the clock runs
        procs = [
            ctx.Process(target=_worker, args=(core.name, i, t0_ns, cfg, results), name=f"bot4-demo-{i}")
            for i in range(cfg.workers)
        ]
        for p in procs:
            p.start()
        counts = dict(results.get(timeout=cfg.duration + 60) for _ in procs)
        for p in procs:
            p.join()
        snap = core.breaker("exchange").snapshot()
        print("\nworker  ok  failed  rejected")
        for worker in sorted(counts):
            c = counts[worker]
            print(f"{worker:>6} {c['ok']:>3} {c['failed']:>7} {c['rejected']:>9}")
        print(f"\nbreaker 'exchange' ends {snap.state.name}: {snap.trips} trip(s), {snap.rejections} rejected calls")
        failed = [p.name for p in procs if p.exitcode != 0]
        if failed:
            print(f"workers failed: {', '.join(failed)}")
            return 1
    return 0
