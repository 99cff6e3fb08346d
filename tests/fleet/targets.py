"""Process bodies for the multi-process fleet tests (importable by spawned processes)."""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from typing import Any

import redis

from bot4 import BreakerConfig, CircuitOpenError, Core, FleetPolicy, TradingState, WorkerContext
from tests.helpers import Boom, fail
from tests.risk.conftest import NO_LIMITS, buy

FAST = FleetPolicy(socket_timeout=0.25, retry_seconds=0.05, health_seconds=0.1, lease_seconds=1.0)
"""The tests' fleet timing: a new exposure epoch's grace (a lease) is 1 s, not 5."""
HALF_OPEN = BreakerConfig(consecutive_failures=1, open_seconds=0.5, half_open_calls=2, open_backoff=20.0)
EQUITY = 1000.0
LIMITS = dataclasses.replace(NO_LIMITS, max_gross_exposure=1.0)  # 1x the equity: 1000 of gross exposure


def hammer(url: str, desk: str, segment: str, host: str, counter: str) -> None:
    """Once told to go, call the shared breaker until told to stop; the backend counts the calls that reach it."""
    client = redis.Redis.from_url(url)
    with Core.connect(url, name=segment, desk=desk, host=host, attach=True, policy=FAST) as core:
        br = core.breaker("venue", HALF_OPEN)

        def backend() -> None:
            client.incr(counter)
            time.sleep(0.2)
            raise Boom("still down")

        client.incr(f"{counter}:ready")
        deadline = time.monotonic() + 120
        while not client.get(f"{counter}:go") and time.monotonic() < deadline:
            time.sleep(0.001)
        while not client.get(f"{counter}:stop") and time.monotonic() < deadline:
            try:
                with br.call():
                    backend()
            except (CircuitOpenError, Boom):
                pass
            time.sleep(0.001)
    client.close()


def other_host(url: str, desk: str, segment: str) -> None:
    """Host a: trip the shared breaker, hold 600 of the fleet's 1000, wait to be told to stop."""
    client = redis.Redis.from_url(url, decode_responses=True)
    with Core.connect(url, name=segment, desk=desk, host="a", policy=FAST) as core:
        core.risk.configure(LIMITS)
        core.risk.set_equity(EQUITY)
        fail(core.breaker("venue", BreakerConfig(consecutive_failures=1, open_seconds=60)))
        decision = core.risk.reserve(buy(quantity=6, price=100))
        client.set(f"{desk}:a", "ready" if decision.approved else ",".join(decision.codes))
        deadline = time.time() + 30
        while client.get(f"{desk}:stop") is None and time.time() < deadline:
            time.sleep(0.01)
    client.close()


def trip_venue(ctx: WorkerContext) -> None:
    """A worker whose venue fails once: its breaker trips (and the fleet hears of it)."""
    fail(ctx.core.breaker("venue", BreakerConfig(consecutive_failures=1, open_seconds=60)))


def churn_host(url: str, desk: str, segment: str, host: str, until: float, results: Any) -> None:
    """A host reserving and releasing until ``until`` while Redis comes and goes; reports what it saw."""
    codes: Counter[str] = Counter()
    with Core.connect(url, name=segment, desk=desk, host=host, policy=FAST) as core:
        core.risk.configure(LIMITS)
        core.risk.set_equity(EQUITY)
        held = []
        rng = random.Random(host)
        while time.time() < until:
            decision = core.risk.reserve(buy(quantity=0.5, price=100))  # 50 of the fleet's 1000
            if decision.reservation is not None:
                codes["approved"] += 1
                held.append(decision.reservation)
            else:
                codes.update(decision.codes)
            if held and rng.random() < 0.5:
                core.risk.release(held.pop(rng.randrange(len(held))))
            time.sleep(0.002)
        deadline = time.time() + 10
        while core.fleet is not None and not core.fleet.connected and time.time() < deadline:
            time.sleep(0.01)
        core.risk.on_price("BTC/USDT", 100.0)  # one more claim: the fleet holds this host's exposure now
        snap = core.risk.snapshot()
        results.put((host, dict(codes), snap.gross_exposure, core.risk.audit()))


def jepsen_host(
    url: str, desk: str, segment: str, host: str, log_path: str, until: float, trip: Any, done: Any
) -> None:
    """A host reserving and releasing 50 at a time until ``until`` (wall clock), through
    whatever faults the test makes; every approval is logged after it returned and every
    release before it is asked (``<monotonic ns> <+/-notional>``). When ``trip`` is set, the
    host's operator trips the kill switch (the test has cut it off first). Reports at the end."""
    codes: Counter[str] = Counter()
    tripped = False
    with Core.connect(url, name=segment, desk=desk, host=host, policy=FAST) as core, open(log_path, "w") as log:
        core.risk.configure(LIMITS)
        core.risk.set_equity(EQUITY)
        rng, held = random.Random(host), []
        while time.time() < until:
            if trip.is_set() and not tripped:
                core.risk.kill_switch.trip(f"operator on {host}: during a partition")
                tripped = True
            decision = core.risk.reserve(buy(quantity=0.5, price=100))
            if decision.reservation is not None:
                log.write(f"{time.monotonic_ns()} 50\n")
                held.append(decision.reservation)
                codes["approved"] += 1
            else:
                codes.update(decision.codes)
            if held and rng.random() < 0.45:
                gone = held.pop(rng.randrange(len(held)))
                log.write(f"{time.monotonic_ns()} -50\n")
                core.risk.release(gone)
            time.sleep(0.001)
        log.flush()
        healed_at = time.monotonic()
        link = core.fleet
        assert link is not None
        while not link.connected and time.monotonic() - healed_at < 30:
            time.sleep(0.005)
        back_after = time.monotonic() - healed_at
        deadline = time.monotonic() + 10  # the operator's trip (on h0, during a partition) reaches every host
        while core.risk.trading_state is not TradingState.HALTED and time.monotonic() < deadline:
            time.sleep(0.005)
        done.put(
            (host, dict(codes), back_after, core.risk.trading_state.name, core.risk.state_reason, core.risk.audit())
        )
