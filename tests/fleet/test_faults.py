"""The fleet under faults: interleavings, empty restarts, stalls, partitions, operator actions.

Hosts are cores in this process, each with its own link; a host reaches Redis directly or
through a :class:`FaultProxy` the test drives (cut, pause, black-hole)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import bot4
from bot4 import BreakerConfig, BreakerState, Core, FleetPolicy, FuseConfig, TradingState
from tests.fault_proxy import FaultProxy
from tests.fleet.targets import EQUITY, FAST, LIMITS
from tests.helpers import fail, rejected, succeed, wait_for
from tests.redis_server import RedisServer
from tests.risk.conftest import buy

DETECTED_WITHIN = 2 * FAST.health_seconds + FAST.socket_timeout  # the documented bound


@contextmanager
def host(url: str, desk: str, name: str, **kw: Any) -> Iterator[Core]:
    kw.setdefault("policy", FAST)
    with Core.connect(url, name=f"bot4-{name}-{uuid.uuid4().hex[:6]}", desk=desk, host=name, **kw) as core:
        core.risk.configure(LIMITS)  # 1x equity: 1000 of gross exposure for the fleet
        core.risk.set_equity(EQUITY)
        yield core


@pytest.fixture
def proxies(redis_server: RedisServer) -> Iterator[list[FaultProxy]]:
    made = [FaultProxy(redis_server.port) for _ in range(3)]
    yield made
    for proxy in made:
        proxy.close()


class Events:
    """``bot4_fleet_changed`` as a host heard it, with when."""

    def __init__(self) -> None:
        self.heard: list[tuple[float, bool, str]] = []
        self.plugins = bot4.make_plugin_manager()
        self.plugins.register(self)

    @bot4.hookimpl
    def bot4_fleet_changed(self, core: Core, connected: bool, reason: str) -> None:
        self.heard.append((time.monotonic(), connected, reason))


def reserve(core: Core, notional: float) -> tuple[str, ...]:
    decision = core.risk.reserve(buy(quantity=notional / 100, price=100))
    return ("approved",) if decision.approved else decision.codes


# ---------------------------------------------------------------- with Redis healthy


def test_a_sync_while_a_claim_is_pending_never_waves_the_claim_through(redis_server: RedisServer, desk: str) -> None:
    """Another process of host a tells the fleet a's exposure (a release, a price) between a's
    reservation and its claim: the claim is still checked against the limit."""
    with host(redis_server.url, desk, "a") as a, host(redis_server.url, desk, "b") as b:
        assert reserve(b, 600) == ("approved",)
        link = a.fleet
        assert link is not None
        real, told = link.claim, []

        def claim_after_a_sibling_spoke(*args: Any, **kw: Any) -> Any:
            if not told:
                told.append(1)
                a.risk._tell_fleet()  # what a sibling process's release or price sends meanwhile
            return real(*args, **kw)

        link.claim = claim_after_a_sibling_spoke  # type: ignore[method-assign]
        assert reserve(a, 600) == ("FLEET_EXPOSURE",)
        assert told and a.risk.snapshot().open_orders == 0
        assert link.fleet_gross() == pytest.approx(600.0)
        assert reserve(a, 400) == ("approved",)
        assert link.fleet_gross() == pytest.approx(1000.0)


def most_held_at_once(history: list[tuple[int, float]]) -> float:
    """The largest sum of notional held at one instant, from (time, +notional approved) taken
    after each approval returned and (time, -notional) taken before each release was asked:
    each reservation's logged span lies within the span the fleet counted it."""
    held = peak = 0.0
    for _, change in sorted(history, key=lambda e: (e[0], e[1])):  # at a tie, releases first
        held += change
        peak = max(peak, held)
    return peak


def test_threads_of_two_hosts_never_pass_the_limit_together(redis_server: RedisServer, desk: str) -> None:
    """Threads reserving and releasing on two hosts; a checker reads the history of every
    approval and release: what was approved never passes the limit at any instant."""
    with host(redis_server.url, desk, "a") as a, host(redis_server.url, desk, "b") as b:
        stop = threading.Event()
        history: list[tuple[int, float]] = []
        errors: list[BaseException] = []
        approved = [0]

        def churn(core: Core, seed: int) -> None:
            import random

            rng, held = random.Random(seed), []
            try:
                while not stop.is_set():
                    decision = core.risk.reserve(buy(quantity=rng.choice((0.5, 1.0, 2.0)), price=100))
                    if decision.reservation is not None:
                        history.append((time.monotonic_ns(), decision.reservation.quantity * 100))
                        held.append(decision.reservation)
                        approved[0] += 1
                    if held and rng.random() < 0.45:
                        gone = held.pop(rng.randrange(len(held)))
                        history.append((time.monotonic_ns(), -gone.quantity * 100))
                        core.risk.release(gone)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=churn, args=(core, i)) for i, core in enumerate((a, b, a, b))]
        for t in threads:
            t.start()
        time.sleep(3.0)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert errors == []
        assert approved[0] > 100  # the limit was reached again and again
        assert most_held_at_once(history) <= EQUITY * (1 + 1e-9)
        assert a.risk.audit() == [] and b.risk.audit() == []
        a.risk._tell_fleet()
        b.risk._tell_fleet()  # (a sync while a claim was pending counts it with the positions until the next)
        held = a.risk.snapshot().gross_exposure + b.risk.snapshot().gross_exposure
        assert a.fleet.fleet_gross() == pytest.approx(held)  # type: ignore[union-attr]


# ---------------------------------------------------------------- Redis restarted empty


def test_after_an_empty_restart_no_reservation_passes_until_every_live_host_registers(
    redis_server: RedisServer, desk: str, proxies: list[FaultProxy]
) -> None:
    to_b, to_c = proxies[0], proxies[1]
    with (
        host(redis_server.url, desk, "a") as a,
        host(to_b.url(), desk, "b") as b,
        host(to_c.url(), desk, "c") as c,
    ):
        for core in (a, b, c):
            assert reserve(core, 300) == ("approved",)
        hosts = {core.fleet.host for core in (a, b, c)}  # type: ignore[union-attr]
        wait_for(lambda: hosts <= set(a.fleet._members), timeout=5)  # type: ignore[union-attr]  # a knows them all
        to_b.set("cut")
        to_c.set("cut")  # b and c cannot come back yet
        redis_server.stop()
        redis_server.start()  # empty: persistence is off
        wait_for(lambda: a.fleet.connected, timeout=5)  # type: ignore[union-attr]
        assert reserve(a, 200) == ("FLEET_RESYNC",)  # the fleet waits for b and c (their leases are live)
        to_b.set("pass")
        to_c.set("pass")
        wait_for(lambda: reserve(a, 100) == ("approved",), timeout=5)  # once b and c registered again
        assert a.fleet.fleet_gross() == pytest.approx(1000.0)  # type: ignore[union-attr]
        assert reserve(a, 100) == ("FLEET_EXPOSURE",)
        assert reserve(b, 100) == ("FLEET_EXPOSURE",)


def test_a_host_that_never_comes_back_is_counted_at_its_last_exposure(
    redis_server: RedisServer, desk: str, proxies: list[FaultProxy]
) -> None:
    to_c = proxies[0]
    with host(redis_server.url, desk, "a") as a, host(to_c.url(), desk, "c") as c:
        assert reserve(c, 500) == ("approved",)
        wait_for(lambda: c.fleet.host in a.fleet._members, timeout=5)  # type: ignore[union-attr]  # a knows c
        gone = c.fleet.host  # type: ignore[union-attr]
        to_c.set("cut")  # c is partitioned for good
        redis_server.stop()
        redis_server.start()
        wait_for(lambda: a.fleet.connected, timeout=5)  # type: ignore[union-attr]
        assert reserve(a, 100) == ("FLEET_RESYNC",)  # c's lease is live: wait for it
        wait_for(lambda: reserve(a, 500) == ("approved",), timeout=FAST.lease_seconds + 3)  # then its 500 count
        assert reserve(a, 100) == ("FLEET_EXPOSURE",)
        assert a.fleet.forget(gone)  # type: ignore[union-attr]  # an operator: c is gone and flat
        assert reserve(a, 100) == ("approved",)


# ---------------------------------------------------------------- a stalled Redis


def test_a_stalled_redis_is_detected_and_the_host_comes_back_when_it_resumes(
    redis_server: RedisServer, desk: str
) -> None:
    events = Events()
    with host(redis_server.url, desk, "quiet", plugins=events.plugins) as quiet, host(redis_server.url, desk, "b") as b:
        watched = quiet.breaker("venue")
        time.sleep(2 * FAST.health_seconds)
        redis_server.pause()
        stalled_at = time.monotonic()
        try:
            wait_for(lambda: any(not up for _, up, _ in events.heard), timeout=10)
        finally:
            redis_server.resume()
        detected = next(t for t, up, _ in events.heard if not up) - stalled_at
        assert detected <= DETECTED_WITHIN + 1.0  # the bound, with room for a loaded machine
        wait_for(lambda: events.heard[-1][1], timeout=10)  # reconnected and resynchronised
        wait_for(lambda: b.fleet.connected, timeout=10)  # type: ignore[union-attr]
        fail(b.breaker("venue", BreakerConfig(consecutive_failures=1, open_seconds=60)))
        wait_for(lambda: watched.state is BreakerState.OPEN, timeout=5)  # not deaf


@pytest.mark.parametrize("fault", ["pause", "blackhole"])
def test_a_half_open_or_silent_connection_is_detected(
    redis_server: RedisServer, desk: str, proxies: list[FaultProxy], fault: str
) -> None:
    events, proxy = Events(), proxies[0]
    with host(proxy.url(), desk, "a", plugins=events.plugins) as a, host(redis_server.url, desk, "b") as b:
        watched = a.breaker("venue")
        proxy.set(fault)
        wait_for(lambda: any(not up for _, up, _ in events.heard), timeout=DETECTED_WITHIN + 5)
        assert reserve(a, 100) == ("FLEET_UNAVAILABLE",)  # fails closed
        proxy.set("cut")
        proxy.set("pass")
        wait_for(lambda: events.heard[-1][1], timeout=10)
        fail(b.breaker("venue", BreakerConfig(consecutive_failures=1, open_seconds=60)))
        wait_for(lambda: watched.state is BreakerState.OPEN, timeout=5)


# ---------------------------------------------------------------- operator actions during a partition


def test_a_kill_switch_trip_and_a_forced_breaker_made_during_a_partition_stand(
    redis_server: RedisServer, desk: str, proxies: list[FaultProxy]
) -> None:
    proxy = proxies[0]
    with host(proxy.url(), desk, "a") as a, host(redis_server.url, desk, "b") as b:
        venue_a, venue_b = a.breaker("venue"), b.breaker("venue")
        proxy.set("cut")
        wait_for(lambda: not a.fleet.connected, timeout=5)  # type: ignore[union-attr]
        a.risk.kill_switch.trip("operator on a: exchange incident")
        venue_a.force_open("operator on a: venue down")
        assert b.risk.trading_state is TradingState.ACTIVE
        proxy.set("pass")
        wait_for(lambda: a.fleet.connected, timeout=5)  # type: ignore[union-attr]
        wait_for(lambda: b.risk.trading_state is TradingState.HALTED, timeout=5)
        assert "exchange incident" in b.risk.state_reason
        assert a.risk.trading_state is TradingState.HALTED  # not undone by the resync
        wait_for(lambda: venue_b.state is BreakerState.FORCED_OPEN, timeout=5)
        assert venue_a.state is BreakerState.FORCED_OPEN


def test_a_resume_made_during_a_partition_yields_to_a_later_trip_elsewhere(
    redis_server: RedisServer, desk: str, proxies: list[FaultProxy]
) -> None:
    proxy = proxies[0]
    with host(proxy.url(), desk, "a") as a, host(redis_server.url, desk, "b") as b:
        b.risk.kill_switch.trip("first incident")
        wait_for(lambda: a.risk.trading_state is TradingState.HALTED, timeout=5)
        proxy.set("cut")
        wait_for(lambda: not a.fleet.connected, timeout=5)  # type: ignore[union-attr]
        a.risk.kill_switch.reset("operator on a: all clear")  # offline
        b.risk.kill_switch.trip("second incident, seen by b")  # the desk changed meanwhile
        proxy.set("pass")
        wait_for(lambda: a.fleet.connected, timeout=5)  # type: ignore[union-attr]
        wait_for(lambda: a.risk.trading_state is TradingState.HALTED, timeout=5)
        assert a.risk.state_reason == "second incident, seen by b"
        assert b.risk.trading_state is TradingState.HALTED


def test_a_resume_made_during_a_partition_stands_when_nobody_changed_the_desk(
    redis_server: RedisServer, desk: str, proxies: list[FaultProxy]
) -> None:
    proxy = proxies[0]
    with host(proxy.url(), desk, "a") as a, host(redis_server.url, desk, "b") as b:
        b.risk.kill_switch.trip("incident")
        wait_for(lambda: a.risk.trading_state is TradingState.HALTED, timeout=5)
        proxy.set("cut")
        wait_for(lambda: not a.fleet.connected, timeout=5)  # type: ignore[union-attr]
        a.risk.kill_switch.reset("operator on a: all clear")
        proxy.set("pass")
        wait_for(lambda: b.risk.trading_state is TradingState.ACTIVE, timeout=5)


# ---------------------------------------------------------------- errors and the fuse


def test_fleet_calls_raise_only_bot4_errors_while_redis_is_down(redis_server: RedisServer, desk: str) -> None:
    with host(redis_server.url, desk, "a") as a:
        link = a.fleet
        assert link is not None
        redis_server.stop()
        try:
            with pytest.raises(bot4.FleetUnavailableError, match=desk):
                link.fleet_gross()
            with pytest.raises(bot4.FleetUnavailableError):
                link.forget("someone")
            assert reserve(a, 100) == ("FLEET_UNAVAILABLE",)
        finally:
            redis_server.start()


def test_breakers_forced_open_by_the_policy_do_not_trip_the_fuse(redis_server: RedisServer, desk: str) -> None:
    policy = FleetPolicy(
        breakers="closed", overrides={"market-data": "open"}, socket_timeout=0.25, retry_seconds=0.05,
        health_seconds=0.1, lease_seconds=1.0,
    )  # fmt: skip
    fuse = FuseConfig(open_ratio=0.5, close_ratio=0.2, min_components=3)
    with Core.connect(
        redis_server.url, name=f"bot4-f-{uuid.uuid4().hex[:6]}", desk=desk, host="a", policy=policy, fuse=fuse
    ) as a:
        orders, funding, data = a.breaker("orders"), a.breaker("funding"), a.breaker("market-data")
        redis_server.stop()
        try:
            wait_for(lambda: not a.fleet.connected, timeout=5)  # type: ignore[union-attr]
            assert orders.state is BreakerState.FORCED_OPEN and funding.state is BreakerState.FORCED_OPEN
            assert not a.fuse.tripped
            succeed(data)  # the fail-open breaker stays usable
            rejected(orders)
        finally:
            redis_server.start()
        wait_for(lambda: a.fleet.connected, timeout=5)  # type: ignore[union-attr]
        succeed(orders)


# ---------------------------------------------------------------- what an adversarial review found


def test_a_host_restarted_with_a_new_segment_of_the_same_name_is_counted(redis_server: RedisServer, desk: str) -> None:
    """Its ledger version starts again near 0, below what the fleet holds of the segment before."""
    segment = f"bot4-a-{uuid.uuid4().hex[:6]}"
    url = redis_server.url
    with host(url, desk, "b") as b:
        with Core.connect(url, name=segment, desk=desk, host="a", policy=FAST) as first:
            first.risk.configure(LIMITS)
            first.risk.set_equity(EQUITY)
            for _ in range(60):  # a busy first life: its ledger version climbs
                decision = first.risk.reserve(buy(quantity=1, price=100))
                assert decision.reservation is not None
                first.risk.release(decision.reservation)
        with Core.connect(url, name=segment, desk=desk, host="a", policy=FAST) as again:
            again.risk.configure(LIMITS)
            again.risk.set_equity(EQUITY)
            decision = again.risk.reserve(buy(quantity=9, price=100))
            assert decision.reservation is not None
            again.risk.on_fill(decision.reservation, 9, 100.0)  # 900 of position
            assert reserve(b, 900) == ("FLEET_EXPOSURE",)


def test_a_registration_read_before_a_release_never_brings_it_back(
    redis_server: RedisServer, desk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot4.fleet.link as link_module

    url = redis_server.url
    with (
        host(url, desk, "a") as one,
        Core.connect(url, name=one.name, desk=desk, host="a", attach=True, policy=FAST) as two,
    ):
        decision = one.risk.reserve(buy(quantity=7, price=100))
        assert decision.reservation is not None
        read, go = threading.Event(), threading.Event()
        real = link_module.host_figures

        def slow(engine: Any, **kw: Any) -> Any:
            figures = real(engine, **kw)
            if kw.get("reservations") and threading.current_thread().name == "registering":
                read.set()
                go.wait(5)  # the registration is in flight while the release lands
            return figures

        monkeypatch.setattr(link_module, "host_figures", slow)
        registering = threading.Thread(target=two.fleet._register, name="registering")  # type: ignore[union-attr]
        registering.start()
        assert read.wait(5)
        one.risk.release(decision.reservation)
        go.set()
        registering.join(5)
        monkeypatch.setattr(link_module, "host_figures", real)
        assert one.fleet.fleet_gross() == 0.0  # type: ignore[union-attr]
        assert reserve(one, 700) == ("approved",)


def test_forget_stops_counting_a_host_that_died(redis_server: RedisServer, desk: str) -> None:
    with host(redis_server.url, desk, "a") as a:
        with host(redis_server.url, desk, "c") as c:
            assert reserve(c, 700) == ("approved",)
            gone = c.fleet.host  # type: ignore[union-attr]
            c.fleet._stop.set()  # type: ignore[union-attr]  # it dies: nothing more reaches the fleet from it
        assert reserve(a, 500) == ("FLEET_EXPOSURE",)  # still counted: its positions may be real
        assert a.fleet.forget(gone)  # type: ignore[union-attr]  # an operator: gone and flat
        assert a.fleet.fleet_gross() == 0.0  # type: ignore[union-attr]
        assert reserve(a, 500) == ("approved",)


def test_one_process_losing_redis_does_not_trip_its_siblings_fuse(
    redis_server: RedisServer, desk: str, proxies: list[FaultProxy]
) -> None:
    proxy, segment = proxies[0], f"bot4-f-{uuid.uuid4().hex[:6]}"
    fuse = FuseConfig(open_ratio=0.5, close_ratio=0.2, min_components=3)
    with (
        Core.connect(proxy.url(), name=segment, desk=desk, host="a", policy=FAST, fuse=fuse) as cut_off,
        Core.connect(redis_server.url, name=segment, desk=desk, host="a", policy=FAST, attach=True) as sibling,
    ):
        for name in ("orders", "funding", "data"):
            cut_off.breaker(name)
            sibling.breaker(name)
        proxy.set("blackhole")
        wait_for(lambda: not cut_off.fleet.connected, timeout=5)  # type: ignore[union-attr]
        fail(sibling.breaker("extra", BreakerConfig(consecutive_failures=1, open_seconds=60)))  # the fuse looks again
        assert not sibling.fuse.tripped and not cut_off.fuse.tripped


def test_garbage_in_redis_neither_keeps_a_host_away_nor_spins_its_listener(
    redis_server: RedisServer, desk: str, proxies: list[FaultProxy], client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.WARNING, logger="bot4.fleet")
    proxy = proxies[0]
    with host(proxy.url(), desk, "a") as a:
        a.breaker("venue")
        client.hset(f"bot4:{{{desk}}}:breaker:venue", mapping={"state": 99, "gen": 5})
        proxy.set("cut")
        wait_for(lambda: not a.fleet.connected, timeout=5)  # type: ignore[union-attr]
        proxy.set("pass")
        wait_for(lambda: a.fleet.connected, timeout=5)  # type: ignore[union-attr]
        assert any("unknown state" in r.getMessage() for r in caplog.records)
        assert sum("could not apply" in r.getMessage() for r in caplog.records) <= 2


def test_a_trip_made_while_the_listener_resynchronises_reaches_the_fleet(
    redis_server: RedisServer, desk: str, proxies: list[FaultProxy]
) -> None:
    proxy = proxies[0]
    with host(proxy.url(), desk, "a") as a, host(redis_server.url, desk, "b") as b:
        link = a.fleet
        assert link is not None
        inside = threading.Event()
        real = link._register

        def slow_register() -> None:  # what a Redis slow to answer does to the resync's last step
            inside.set()
            time.sleep(0.3)
            real()

        link._register = slow_register  # type: ignore[method-assign]
        proxy.set("cut")
        wait_for(lambda: not link.connected, timeout=5)
        proxy.set("pass")
        assert inside.wait(5)
        a.risk.kill_switch.trip("operator on a, during the resync")
        wait_for(lambda: b.risk.trading_state is TradingState.HALTED, timeout=5)


def test_calls_racing_close_raise_only_bot4_errors(redis_server: RedisServer, desk: str) -> None:
    errors: list[BaseException] = []
    with host(redis_server.url, desk, "a") as a:
        stop = threading.Event()

        def churn() -> None:
            while not stop.is_set():
                try:
                    decision = a.risk.reserve(buy(quantity=0.5, price=100))
                    if decision.reservation is not None:
                        a.risk.release(decision.reservation)
                except bot4.Bot4Error:
                    pass
                except BaseException as exc:  # noqa: BLE001 - what the test looks for
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=churn) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        a.fleet.close()  # type: ignore[union-attr]
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert errors == []
