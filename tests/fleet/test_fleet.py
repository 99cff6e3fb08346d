"""Two hosts (two segments, two links) in one process, sharing one desk through a real Redis."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

import bot4
from bot4 import BreakerConfig, BreakerState, CircuitOpenError, Core, FleetPolicy, TradingState
from tests.fleet.targets import EQUITY, FAST, LIMITS
from tests.helpers import fail, rejected, succeed, wait_for
from tests.redis_server import RedisServer
from tests.risk.conftest import buy

TRIP_FAST = BreakerConfig(consecutive_failures=2, open_seconds=30.0)


@contextmanager
def host(server: RedisServer, desk: str, name: str, **kw: Any) -> Iterator[Core]:
    kw.setdefault("policy", FAST)
    with Core.connect(server.url, name=f"bot4-{name}-{uuid.uuid4().hex[:6]}", desk=desk, host=name, **kw) as core:
        yield core


def trade(core: Core, limits: bot4.RiskLimits) -> None:
    core.risk.configure(limits)
    core.risk.set_equity(EQUITY)


def test_a_trip_on_one_host_opens_the_breaker_on_the_other(redis_server: RedisServer, desk: str) -> None:
    with host(redis_server, desk, "a") as a, host(redis_server, desk, "b") as b:
        on_a, on_b = a.breaker("venue", TRIP_FAST), b.breaker("venue", TRIP_FAST)
        succeed(on_b)
        fail(on_a)
        fail(on_a)
        assert on_a.state is BreakerState.OPEN
        wait_for(lambda: on_b.state is BreakerState.OPEN)
        error = rejected(on_b)
        assert error.retry_after is not None and 25 < error.retry_after <= 30.001  # deadlines round up to the ms
        on_b.reset("operator")
        wait_for(lambda: on_a.state is BreakerState.CLOSED)


def test_a_new_process_reads_the_fleet_state_before_its_first_call(redis_server: RedisServer, desk: str) -> None:
    with host(redis_server, desk, "a") as a:
        br = a.breaker("venue", TRIP_FAST)
        fail(br)
        fail(br)
        with host(redis_server, desk, "late") as late:
            assert late.breaker("venue", TRIP_FAST).state is BreakerState.OPEN  # no cold start as CLOSED
            rejected(late.breaker("venue"))


def test_the_kill_switch_is_the_desks(redis_server: RedisServer, desk: str) -> None:
    with host(redis_server, desk, "a") as a, host(redis_server, desk, "b") as b:
        a.risk.kill_switch.trip("operator: stop everything")
        wait_for(lambda: b.risk.trading_state is TradingState.HALTED)
        assert b.risk.state_reason == "operator: stop everything"
        assert b.risk.check(buy()).codes == ("KILL_SWITCH",)
        b.risk.kill_switch.reset("all clear")
        wait_for(lambda: a.risk.trading_state is TradingState.ACTIVE)
        with host(redis_server, desk, "late") as late:
            late.risk.kill_switch.trip("late host trips")
            wait_for(lambda: a.risk.trading_state is TradingState.HALTED)


def test_one_exposure_limit_for_the_fleet(redis_server: RedisServer, desk: str) -> None:
    limits = LIMITS
    with host(redis_server, desk, "a") as a, host(redis_server, desk, "b") as b:
        for core in (a, b):
            trade(core, limits)
        first = a.risk.reserve(buy(quantity=6, price=100))  # 600 of the fleet's 1000
        assert first.approved
        refused = b.risk.reserve(buy(quantity=6, price=100))  # b alone would be within its limit
        assert refused.codes == ("FLEET_EXPOSURE",)
        assert b.risk.snapshot().open_orders == 0  # nothing held locally for the refused order
        assert b.risk.reserve(buy(quantity=4, price=100)).approved  # exactly what is left
        assert a.fleet is not None and a.fleet.fleet_gross() == pytest.approx(1000.0)
        assert first.reservation is not None and a.risk.release(first.reservation)
        assert b.risk.reserve(buy(quantity=6, price=100)).approved
        assert a.fleet.fleet_gross() == pytest.approx(1000.0)


def test_half_open_trials_are_one_budget_for_the_fleet(redis_server: RedisServer, desk: str) -> None:
    config = BreakerConfig(consecutive_failures=1, open_seconds=0.2, half_open_calls=2, open_backoff=1.0)
    with host(redis_server, desk, "a") as a, host(redis_server, desk, "b") as b:
        on_a, on_b = a.breaker("venue", config), b.breaker("venue", config)
        fail(on_a)
        wait_for(lambda: on_b.state is BreakerState.OPEN)
        time.sleep(0.25)
        trials = [on_a.call(), on_b.call(), on_a.call()]
        entered = []
        for guard in trials:
            try:
                guard.__enter__()
            except CircuitOpenError:
                continue
            entered.append(guard)
        assert len(entered) == 2  # two permits in the whole fleet, not two per host
        for guard in entered:
            guard.__exit__(None, None, None)
        wait_for(lambda: on_a.state is BreakerState.CLOSED and on_b.state is BreakerState.CLOSED)


def test_redis_down_then_back(redis_server: RedisServer, desk: str) -> None:
    events: list[tuple[bool, str]] = []

    class Watch:
        @bot4.hookimpl
        def bot4_fleet_changed(self, core: Core, connected: bool, reason: str) -> None:
            events.append((connected, reason))

    plugins = bot4.make_plugin_manager()
    plugins.register(Watch())
    policy = dataclasses.replace(FAST, breakers="closed", overrides={"data": "open"})
    limits = LIMITS
    with host(redis_server, desk, "a", policy=policy, plugins=plugins) as a:
        trade(a, limits)
        held = a.risk.reserve(buy(quantity=3, price=100))
        assert held.approved
        orders, data = a.breaker("orders"), a.breaker("data")
        redis_server.stop()
        try:
            # the first reservation finds Redis gone: refused, and undone locally
            assert a.risk.reserve(buy(quantity=1, price=100)).codes == ("FLEET_UNAVAILABLE",)
            wait_for(lambda: not a.fleet.connected)  # type: ignore[union-attr]
            assert a.risk.reserve(buy(quantity=1, price=100)).codes == ("FLEET_UNAVAILABLE",)
            assert a.risk.snapshot().open_orders == 1  # only the reservation made before the outage
            assert orders.state is BreakerState.FORCED_OPEN  # fail-closed
            rejected(orders)
            succeed(data)  # fail-open: this host's own state
            assert [c for c, _ in events] == [False]
        finally:
            redis_server.start()  # empty: persistence is off
        wait_for(lambda: events[-1][0])  # the hook fires once the fleet state is read again
        assert a.fleet.connected  # type: ignore[union-attr]
        assert orders.state is BreakerState.CLOSED
        succeed(orders)
        assert a.fleet.fleet_gross() == pytest.approx(300.0)  # type: ignore[union-attr]
        wait_for(lambda: a.risk.reserve(buy(quantity=7, price=100)).approved, timeout=5)  # after the new epoch's grace
        assert a.fleet.fleet_gross() == pytest.approx(1000.0)  # type: ignore[union-attr]


def test_an_open_breaker_survives_a_redis_restart(redis_server: RedisServer, desk: str) -> None:
    policy = dataclasses.replace(FAST, breakers="open")
    with host(redis_server, desk, "a", policy=policy) as a:
        br = a.breaker("venue", TRIP_FAST)
        other = a.breaker("other", TRIP_FAST)
        for _ in range(3):  # the fleet's generations of "other" grow before the restart
            other.force_open("x")
            other.reset("y")
        redis_server.stop()
        try:
            fail(br)
            fail(br)
            assert br.state is BreakerState.OPEN
        finally:
            redis_server.start()
        wait_for(lambda: a.fleet.connected, timeout=5)  # type: ignore[union-attr]
        with host(redis_server, desk, "b") as b:  # the restarted fleet learned it from host a
            assert b.breaker("venue", TRIP_FAST).state is BreakerState.OPEN
            b.breaker("other", TRIP_FAST).force_open("after the restart")  # generation 1 again
            wait_for(lambda: other.state is BreakerState.FORCED_OPEN)


def test_bad_arguments_are_clear_errors(redis_server: RedisServer) -> None:
    with pytest.raises(bot4.ConfigError, match="desk"):
        Core.connect(redis_server.url, name=f"bot4-x-{uuid.uuid4().hex[:6]}", desk="a{b}")
    with pytest.raises(bot4.ConfigError, match="url"):
        Core.connect("http://nowhere", name=f"bot4-x-{uuid.uuid4().hex[:6]}")
    with pytest.raises(bot4.ConfigError, match="breakers"):
        FleetPolicy(breakers="maybe")  # type: ignore[arg-type]


def test_keys_carry_the_desk_hash_tag(redis_server: RedisServer, desk: str, client: redis.Redis) -> None:
    with host(redis_server, desk, "a") as a:
        br = a.breaker("venue", TRIP_FAST)
        fail(br)
        fail(br)
        a.risk.kill_switch.trip("x")
        keys = client.keys(f"*{desk}*")
        assert keys and all(f"{{{desk}}}" in k for k in keys)


def test_the_fleets_window_trips_what_no_host_alone_would(redis_server: RedisServer, desk: str) -> None:
    config = BreakerConfig(consecutive_failures=None, minimum_calls=10, failure_rate_threshold=0.5, window_seconds=2.0)
    reasons: list[str] = []

    class Watch:
        @bot4.hookimpl
        def bot4_breaker_state_changed(self, breaker: Any, old: Any, new: Any, reason: str) -> None:
            reasons.append(reason)

    plugins = bot4.make_plugin_manager()
    plugins.register(Watch())
    with host(redis_server, desk, "a", plugins=plugins) as a, host(redis_server, desk, "b") as b:
        on_a, on_b = a.breaker("venue", config), b.breaker("venue", config)
        quiet = a.breaker("quiet", config), b.breaker("quiet", config)
        for br, failures in ((on_a, 4), (on_b, 4), *((q, 1) for q in quiet)):
            for i in range(6):  # six calls per host: under minimum_calls on each host alone
                fail(br) if i < failures else succeed(br)
        assert on_a.state is BreakerState.CLOSED and on_b.state is BreakerState.CLOSED
        wait_for(lambda: on_a.state is BreakerState.OPEN and on_b.state is BreakerState.OPEN)
        assert any(r.startswith("fleet failure rate 8/12") for r in reasons)
        time.sleep(0.5)  # a few more buckets: 2 failures in 12 calls trip nothing
        assert all(q.state is BreakerState.CLOSED for q in quiet)
