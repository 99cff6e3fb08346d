"""``/metrics``: what Prometheus scrapes, read from the segment — every process's counts."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot4 import CircuitOpenError, Core, Order, OrderManager, PaperExchange, make_plugin_manager
from bot4.shm.metrics import LATENCY_BOUNDS, REJECTION_CODES
from bot4.testing import open_limits
from tests.dashboard import worker
from tests.dashboard.conftest import Served

pytestmark = pytest.mark.processes


def scrape(served: Served) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by (name, sorted labels); the text must parse as Prometheus's."""
    status, headers, body = served.request("GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples


def _run(target: Callable[..., None], *args: object, n: int = 1) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0


def test_breaker_counts_are_every_processs_and_none_is_lost(desk: Core, serve: Callable[..., Served]) -> None:
    served = serve(desk.name, control=False)
    _run(worker.hammer, desk.name, "venue-a", 20_000, 4, n=4)  # at once, on one breaker's counters
    s = scrape(served)
    calls = "bot4_breaker_calls_total"
    assert s[calls, (("breaker", "venue-a"), ("outcome", "failure"))] == 4 * 5_000
    assert s[calls, (("breaker", "venue-a"), ("outcome", "success"))] == 4 * 15_000
    assert s[calls, (("breaker", "venue-a"), ("outcome", "rejected"))] == 0
    assert s["bot4_breaker_state", (("breaker", "venue-a"), ("state", "CLOSED"))] == 1
    assert s["bot4_breaker_state", (("breaker", "venue-a"), ("state", "OPEN"))] == 0
    desk.breaker("venue-a").force_open("test")
    with pytest.raises(CircuitOpenError):
        with desk.breaker("venue-a").call():
            pass
    s = scrape(served)
    assert s["bot4_breaker_state", (("breaker", "venue-a"), ("state", "FORCED_OPEN"))] == 1
    assert s[calls, (("breaker", "venue-a"), ("outcome", "rejected"))] == 1


def test_rejections_by_code_and_order_latency(serve: Callable[..., Served]) -> None:
    plugins = make_plugin_manager(entry_points=False)
    with Core.create(plugins=plugins) as desk:
        served = serve(desk.name, control=False)
        desk.risk.set_equity(100_000.0)
        desk.risk.on_price("BTC/USDT", 100.0)
        _run(worker.refuse, desk.name, 3)  # rejected in another process
        venue = PaperExchange("paper")
        venue.set_book("BTC/USDT", bids=[(99.0, 50.0)], asks=[(101.0, 50.0)])
        plugins.register(venue, name="paper")
        desk.risk.configure(open_limits())
        om = OrderManager(desk, routing="primary")
        for _ in range(5):
            assert om.submit(Order(symbol="BTC/USDT", side="buy", quantity=0.1)).status.value == "filled"
        for _ in range(2):
            om.submit(Order(symbol="BTC/USDT", side="sell", quantity=0.1, strategy="exit"))
        desk.risk.kill_switch.trip("test")
        assert om.submit(Order(symbol="BTC/USDT", side="buy", quantity=0.1)).status.value == "denied"
        s = scrape(served)
        state = served.state()
        by_strategy = om.book.by("strategy")
    rejections = {labels[0][1]: v for (name, labels), v in s.items() if name == "bot4_risk_rejections_total"}
    assert set(rejections) == set(REJECTION_CODES)
    assert rejections["STOP_LOSS_MISSING"] == 3 and rejections["KILL_SWITCH"] == 1
    assert sum(rejections.values()) == 4
    assert s["bot4_order_latency_seconds_count", ()] == 7
    assert s["bot4_order_latency_seconds_bucket", (("le", "+Inf"),)] == 7
    buckets = [s["bot4_order_latency_seconds_bucket", (("le", repr(b)),)] for b in LATENCY_BOUNDS]
    assert buckets == sorted(buckets)  # cumulative
    assert 0 < s["bot4_order_latency_seconds_sum", ()] < 5 * 10
    assert s["bot4_trading_state", (("state", "HALTED"),)] == 1
    assert s["bot4_kill_switch_active", ()] == 1
    assert s["bot4_position", (("symbol", "BTC/USDT"),)] == pytest.approx(0.3)
    assert s["bot4_venue_fills_total", (("venue", "paper"),)] == 7
    assert s["bot4_strategy_fills_total", (("strategy", "exit"),)] == 2
    for strategy, totals in by_strategy.items():  # the order manager's own book, to the cent
        assert s["bot4_strategy_realized_pnl", (("strategy", strategy),)] == pytest.approx(totals.realized)
        assert s["bot4_strategy_fees", (("strategy", strategy),)] == pytest.approx(totals.fees)
        assert state["pnl"]["by_strategy"][strategy]["realized"] == pytest.approx(totals.realized)
    assert s["bot4_venue_traded_notional_total", (("venue", "paper"),)] == pytest.approx(0.5 * 101 + 0.2 * 99)


def test_a_desk_at_128_breakers_and_64_symbols(serve: Callable[..., Served]) -> None:
    with Core.create(max_breakers=128, max_symbols=64, plugins=make_plugin_manager(entry_points=False)) as desk:
        desk.risk.set_equity(1_000_000.0)
        for i in range(128):
            desk.breaker(f"venue-{i:03d}")
        for i in range(64):
            desk.risk.on_price(f"SYM{i:02d}/USDT", 10.0 + i)
        desk.breaker("venue-127").force_open("full table")
        served = serve(desk.name, control=False)
        s = scrape(served)
        state = served.state()
    states = [labels for (name, labels) in s if name == "bot4_breaker_state"]
    assert len(states) == 128 * 5
    assert s["bot4_breaker_state", (("breaker", "venue-127"), ("state", "FORCED_OPEN"))] == 1
    assert len([1 for (name, _) in s if name == "bot4_mark_price"]) == 64
    assert s["bot4_mark_price", (("symbol", "SYM63/USDT"),)] == 73.0
    assert len(state["breakers"]) == 128 and len(state["correlation"]["matrix"]) == 64


def test_a_real_prometheus_sees_the_state_a_worker_caused(desk: Core, serve: Callable[..., Served]) -> None:
    from tests.dashboard.prometheus_server import PrometheusServer
    from tests.dashboard.test_server import _trip_in_worker
    from tests.helpers import wait_for

    served = serve(desk.name, control=False)
    prometheus = PrometheusServer([served.host])
    try:
        query = 'bot4_breaker_state{breaker="venue-x", state="OPEN"}'

        def healthy() -> bool:
            return any(t["health"] == "up" for t in prometheus.targets())

        wait_for(healthy, timeout=60, what="prometheus to scrape bot4 serve")
        _trip_in_worker(desk.name, "venue-x")

        def opened() -> bool:
            return any(r["value"][1] == "1" for r in prometheus.query(query))

        wait_for(opened, timeout=60, what="the open breaker in a PromQL query")
        result = prometheus.query(query)
        assert [r["metric"]["job"] for r in result] == ["bot4"]
        failures = prometheus.query('bot4_breaker_calls_total{breaker="venue-x", outcome="failure"}')
        assert failures and float(failures[0]["value"][1]) == 3
    finally:
        prometheus.stop()
