"""The fleet with real processes: hosts are segments, each with its own processes."""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid

import pytest
import redis

from bot4 import BreakerState, Core, run_workers
from tests.fleet.targets import EQUITY, FAST, HALF_OPEN, LIMITS, churn_host, hammer, other_host, trip_venue
from tests.helpers import fail, wait_for
from tests.redis_server import RedisServer
from tests.risk.conftest import buy

SPAWN = mp.get_context("spawn")


def fleet_exposure(server: RedisServer, desk: str) -> float:
    """What the desk's exposure hash counts, read with a client of the test's own."""
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        fields = client.hgetall(f"bot4:{{{desk}}}:exposure")
    finally:
        client.close()
    return sum(
        float(v.partition(",")[0])
        for k, v in fields.items()
        if k.startswith(("g:", "x:", "r:"))  # type: ignore[union-attr]
    )


def test_two_host_processes_share_a_breaker_and_an_exposure_limit(
    redis_server: RedisServer, desk: str, client: redis.Redis
) -> None:
    a = SPAWN.Process(target=other_host, args=(redis_server.url, desk, f"bot4-a-{uuid.uuid4().hex[:6]}"))
    a.start()
    try:
        wait_for(lambda: client.get(f"{desk}:a") is not None, timeout=30)
        assert client.get(f"{desk}:a") == "ready"
        with Core.connect(
            redis_server.url, name=f"bot4-b-{uuid.uuid4().hex[:6]}", desk=desk, host="b", policy=FAST
        ) as b:
            b.risk.configure(LIMITS)
            b.risk.set_equity(EQUITY)
            assert b.breaker("venue").state is BreakerState.OPEN
            assert b.risk.reserve(buy(quantity=6, price=100)).codes == ("FLEET_EXPOSURE",)
            assert b.risk.reserve(buy(quantity=4, price=100)).approved
    finally:
        client.set(f"{desk}:stop", "1")
        a.join(timeout=30)
    assert a.exitcode == 0


def test_eight_processes_on_two_hosts_share_one_half_open_budget(
    redis_server: RedisServer, desk: str, client: redis.Redis
) -> None:
    counter = f"{desk}:backend-calls"
    hosts = [
        Core.connect(redis_server.url, name=f"bot4-h{i}-{uuid.uuid4().hex[:6]}", desk=desk, host=f"h{i}", policy=FAST)
        for i in (1, 2)
    ]
    try:
        fail(hosts[0].breaker("venue", HALF_OPEN))  # open on both hosts; half-open 0.5 s later
        wait_for(lambda: hosts[1].breaker("venue", HALF_OPEN).state is BreakerState.OPEN)
        workers = [
            SPAWN.Process(target=hammer, args=(redis_server.url, desk, h.name, h.fleet.host.split("/")[0], counter))  # type: ignore[union-attr]
            for h in hosts
            for _ in range(4)
        ]
        for w in workers:
            w.start()
        wait_for(lambda: int(client.get(f"{counter}:ready") or 0) == 8, 120, "eight workers attached")
        client.set(f"{counter}:go", "1")  # all eight hammer the breaker, open or half-open
        wait_for(lambda: int(client.get(counter) or 0) >= 1, 60, "a trial call")
        # the trial calls fail and the breaker opens again (for 10 s: open_backoff), while all eight hammer
        wait_for(lambda: hosts[0].breaker("venue").state is BreakerState.OPEN, 30, "open again")
        client.set(f"{counter}:stop", "1")
        for w in workers:
            w.join(timeout=60)
        assert [w.exitcode for w in workers] == [0] * 8
        calls = int(client.get(counter) or 0)
        assert 1 <= calls <= HALF_OPEN.half_open_calls  # one trial episode, one budget for all eight
        assert hosts[0].breaker("venue").state is BreakerState.OPEN  # the trials failed: open again
    finally:
        for h in hosts:
            h.close()
            h.unlink()


def test_workers_of_a_linked_core_join_the_fleet(redis_server: RedisServer, desk: str) -> None:
    url = redis_server.url
    with Core.connect(url, name=f"bot4-a-{uuid.uuid4().hex[:6]}", desk=desk, host="a", policy=FAST) as a:
        with Core.connect(url, name=f"bot4-b-{uuid.uuid4().hex[:6]}", desk=desk, host="b", policy=FAST) as b:
            watched = b.breaker("venue")
            assert run_workers(trip_venue, 1, core=a, duration=None) == 0  # the worker trips it on host a
            wait_for(lambda: watched.state is BreakerState.OPEN)


def test_redis_stopped_mid_run_under_two_host_processes(redis_server: RedisServer, desk: str) -> None:
    results = SPAWN.Queue()
    until = time.time() + 4.0
    hosts = [
        SPAWN.Process(
            target=churn_host,
            args=(redis_server.url, desk, f"bot4-{name}-{uuid.uuid4().hex[:6]}", name, until, results),
        )
        for name in ("a", "b")
    ]
    for h in hosts:
        h.start()
    try:
        time.sleep(1.5)
        redis_server.stop()  # mid-run: the hosts keep going on their own policy
        time.sleep(1.0)
    finally:
        redis_server.start()  # back, empty: the hosts fill it again
    seen = [results.get(timeout=60) for _ in hosts]
    for h in hosts:
        h.join(timeout=30)
    assert [h.exitcode for h in hosts] == [0, 0]  # nothing crashed
    total = 0.0
    for _name, codes, gross, audit in seen:
        assert audit == []
        assert codes.get("approved", 0) > 0 and codes.get("FLEET_UNAVAILABLE", 0) > 0  # worked, then failed closed
        assert set(codes) <= {"approved", "FLEET_UNAVAILABLE", "FLEET_RESYNC", "FLEET_EXPOSURE", "GROSS_EXPOSURE"}
        total += gross
    assert total <= EQUITY * LIMITS.max_gross_exposure + 1e-6  # never reserved past the fleet's limit
    assert fleet_exposure(redis_server, desk) == pytest.approx(total)  # resynchronised: what the hosts hold
