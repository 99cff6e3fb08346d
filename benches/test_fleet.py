"""The Redis backend: the closed path, and how fast state crosses hosts.

- Closed-path call of a breaker whose core is linked to a fleet (``Core.connect``) against
  pybreaker with its Redis storage (``CircuitRedisStorage``), both on the same real
  redis-server (loopback, persistence off) in the same run. bot4's closed path reads the
  host's segment only; pybreaker reads and writes Redis on every call.
- Propagation: host a trips a breaker (or the kill switch); the time until host b's
  segment shows it (median, p99 over repeated trips). Both hosts are in this process,
  each with its own segment and its own link (two Redis connections and a listener).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pybreaker
import pytest
import redis

from benches.conftest import BATCH
from bot4 import BreakerConfig, BreakerState, Core, TradingState
from tests.redis_server import RedisServer

CLOSED = BreakerConfig(consecutive_failures=None, minimum_calls=10**9)
TRIPS = 200


def ok() -> int:
    return 1


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer()
    s.start()
    yield s
    s.close()


@pytest.fixture(scope="module")
def hosts(server: RedisServer) -> Iterator[tuple[Core, Core]]:
    desk = f"bench-{uuid.uuid4().hex[:6]}"
    with Core.connect(server.url, name=f"a-{desk}", desk=desk, host="a") as a:
        with Core.connect(server.url, name=f"b-{desk}", desk=desk, host="b") as b:
            yield a, b


def run_batch(fn: Callable[[], int], n: int) -> None:
    for _ in range(n):
        fn()


@pytest.mark.parametrize("lib", ["plain", "bot4", "pybreaker"])
def test_closed_call_with_redis(benchmark: Any, hosts: tuple[Core, Core], server: RedisServer, lib: str) -> None:
    benchmark.group = "closed call, Redis backend"
    if lib == "plain":
        fn = ok
    elif lib == "bot4":
        fn = hosts[0].breaker("closed-path", CLOSED)(ok)
    else:
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, redis.Redis.from_url(server.url), namespace=uuid.uuid4().hex
        )
        fn = pybreaker.CircuitBreaker(fail_max=10**9, reset_timeout=3600, state_storage=storage)(ok)
    benchmark.pedantic(run_batch, args=(fn, BATCH), rounds=5 if lib == "pybreaker" else 50, iterations=1)


def _wait(predicate: Callable[[], bool], timeout: float = 5.0) -> int:
    start = time.perf_counter_ns()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("not propagated in time")
        time.sleep(0.00005)  # releases the GIL for the listener thread
    return time.perf_counter_ns() - start


def test_trip_propagation(benchmark: Any, hosts: tuple[Core, Core]) -> None:
    benchmark.group = "fleet propagation: breaker trip"
    a, b = hosts
    on_a, on_b = a.breaker("propagate", CLOSED), b.breaker("propagate", CLOSED)
    samples: list[int] = []

    def run() -> None:
        for _ in range(TRIPS):
            start = time.perf_counter_ns()
            on_a.force_open("bench")
            _wait(lambda: on_b.state is BreakerState.FORCED_OPEN)
            samples.append(time.perf_counter_ns() - start)
            on_a.reset("bench")
            _wait(lambda: on_b.state is BreakerState.CLOSED)

    benchmark.pedantic(run, rounds=1, iterations=1)
    samples.sort()
    benchmark.extra_info["percentiles_ns"] = {
        "p50": samples[len(samples) // 2],
        "p99": samples[len(samples) * 99 // 100],
    }


def test_kill_switch_propagation(benchmark: Any, hosts: tuple[Core, Core]) -> None:
    benchmark.group = "fleet propagation: kill switch"
    a, b = hosts
    samples: list[int] = []

    def run() -> None:
        for i in range(TRIPS):
            start = time.perf_counter_ns()
            a.risk.kill_switch.trip(f"bench {i}")
            _wait(lambda: b.risk.trading_state is TradingState.HALTED)
            samples.append(time.perf_counter_ns() - start)
            a.risk.kill_switch.reset("bench")
            _wait(lambda: b.risk.trading_state is TradingState.ACTIVE)

    benchmark.pedantic(run, rounds=1, iterations=1)
    samples.sort()
    benchmark.extra_info["percentiles_ns"] = {
        "p50": samples[len(samples) // 2],
        "p99": samples[len(samples) * 99 // 100],
    }


def test_fault_detection_and_resync(benchmark: Any, server: RedisServer) -> None:
    """Redis stalled (SIGSTOP) under a host that sends nothing: the time until the host
    counts the fleet unreachable (its documented bound: 2 x health_seconds + socket_timeout),
    and after SIGCONT the time until it has reconnected and read the fleet state again."""
    benchmark.group = "fleet fault detection and resync"
    desk = f"bench-{uuid.uuid4().hex[:6]}"
    detect: list[int] = []
    resync: list[int] = []
    with Core.connect(server.url, name=f"q-{desk}", desk=desk, host="quiet") as quiet:
        link = quiet.fleet
        assert link is not None

        def run() -> None:
            for _ in range(5):
                time.sleep(1.0)  # the connections are quiet (lease renewed, pings answered)
                server.pause()
                try:
                    detect.append(_wait(lambda: not link.connected, timeout=10))
                finally:
                    server.resume()
                resync.append(_wait(lambda: link.connected, timeout=10))

        benchmark.pedantic(run, rounds=1, iterations=1)
    detect.sort()
    resync.sort()
    benchmark.extra_info["detect_ms"] = {"min": detect[0] / 1e6, "max": detect[-1] / 1e6}
    benchmark.extra_info["resync_ms"] = {"min": resync[0] / 1e6, "max": resync[-1] / 1e6}
