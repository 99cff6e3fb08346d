"""Redis high availability as desks run it: a master, two replicas and three sentinels on
loopback; the master is killed mid-run and the sentinels promote a replica."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import bot4
from bot4 import BreakerConfig, BreakerState, Core, FleetPolicy
from tests.fleet.targets import EQUITY, LIMITS
from tests.fleet.test_faults import most_held_at_once
from tests.helpers import fail, wait_for
from tests.redis_server import RedisSentinelSet
from tests.risk.conftest import buy

POLICY = FleetPolicy(socket_timeout=0.25, retry_seconds=0.05, health_seconds=0.1, lease_seconds=1.0, replicas=1)


@pytest.fixture
def sentinels() -> Iterator[RedisSentinelSet]:
    made = RedisSentinelSet()
    try:
        made.start()
        yield made
    finally:
        made.close()


def test_a_sentinel_failover_mid_run_loses_no_reservation_and_passes_no_limit(sentinels: RedisSentinelSet) -> None:
    desk = f"desk-{uuid.uuid4().hex[:8]}"
    cores = [
        Core.connect(sentinels.url, name=f"bot4-{h}-{uuid.uuid4().hex[:6]}", desk=desk, host=h, policy=POLICY)
        for h in ("a", "b")
    ]
    try:
        for core in cores:
            core.risk.configure(LIMITS)
            core.risk.set_equity(EQUITY)
        history: list[tuple[int, float]] = []
        codes: dict[str, int] = {}
        stop = threading.Event()

        def churn(core: Core, seed: int) -> None:
            import random

            rng, held = random.Random(seed), []
            while not stop.is_set():
                decision = core.risk.reserve(buy(quantity=0.5, price=100))
                if decision.reservation is not None:
                    history.append((time.monotonic_ns(), 50.0))
                    held.append(decision.reservation)
                else:
                    for code in decision.codes:
                        codes[code] = codes.get(code, 0) + 1
                if held and rng.random() < 0.4:
                    gone = held.pop(rng.randrange(len(held)))
                    history.append((time.monotonic_ns(), -50.0))
                    core.risk.release(gone)
                time.sleep(0.002)

        threads = [threading.Thread(target=churn, args=(core, i)) for i, core in enumerate(cores)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        old = sentinels.master_now()
        sentinels.kill_master()
        wait_for(lambda: sentinels.master_now() not in (old, -1), timeout=30, what="a replica promoted")
        wait_for(lambda: all(c.fleet.connected for c in cores), timeout=15, what="both hosts back")  # type: ignore[union-attr]
        approved_before = sum(1 for _, change in history if change > 0)
        wait_for(lambda: sum(1 for _, change in history if change > 0) > approved_before + 10, timeout=15)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert most_held_at_once(history) <= EQUITY * (1 + 1e-9)
        assert codes.get("FLEET_EXPOSURE", 0) > 0  # the limit was reached
        link = cores[0].fleet
        assert link is not None
        held = sum(c.risk.snapshot().gross_exposure for c in cores)
        assert link.fleet_gross() == pytest.approx(held)  # nothing approved was lost in the failover
        watched = cores[1].breaker("venue")
        fail(cores[0].breaker("venue", BreakerConfig(consecutive_failures=1, open_seconds=60)))
        wait_for(lambda: watched.state is BreakerState.OPEN, timeout=5)  # announcements flow again
    finally:
        for core in cores:
            core.close()
            core.unlink()


def test_a_bad_sentinel_url_is_a_config_error() -> None:
    for url in ("redis+sentinel://", "redis+sentinel://127.0.0.1:x/bot4", "redis+sentinel://127.0.0.1:26379/"):
        with pytest.raises(bot4.ConfigError, match="url"):
            Core.connect(url, name=f"bot4-x-{uuid.uuid4().hex[:6]}", desk="d")
