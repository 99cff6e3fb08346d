"""``bot4 serve``: a scrape of a full desk, the push of a transition, and 50 clients' cost to the desk.

- Scrape: ``/metrics`` of a desk with 128 breakers and 64 symbols — the collector in this
  process (``generate_latest``), and the whole HTTP request to a ``bot4 serve`` process.
- Push: a breaker forced open and reset in this process; the state showing it reaches a
  WebSocket client — the server's side (``push_latency_ms``: from the transition to the
  state ready to send) and end to end (to the client's receive).
- Fifty clients: two identical desks trade in this process; ``bot4 serve`` watches one,
  with 50 WebSocket clients (in a process of their own) receiving every push. Each round
  runs the order path (``OrderManager.submit`` of 200 orders) or the breaker closed path
  (10,000 guarded calls) on both desks, alternating which goes first; the median of the
  per-round differences is what being watched costs.
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest

from benches.test_orders import _orders, paper_desk
from bot4 import Core, OrderManager
from bot4._cli.dashboard.prom import registry_for
from tests.dashboard.conftest import Served, start_serve


def _full_desk() -> Core:
    core = Core.create(max_breakers=128, max_symbols=64)
    core.risk.set_equity(1_000_000.0)
    for i in range(128):
        breaker = core.breaker(f"venue-{i:03d}")
        for _ in range(20):
            with breaker.call():
                pass
    for i in range(64):
        core.risk.on_price(f"S{i:02d}/USDT", 10.0 + i)
    return core


@pytest.fixture(scope="module")
def full() -> Iterator[tuple[Core, Served]]:
    core = _full_desk()
    served = start_serve(core.name)
    try:
        yield core, served
    finally:
        served.stop()
        core.close()
        core.unlink()


def test_metrics_collect_128_breakers_64_symbols(benchmark: Any, full: tuple[Core, Served]) -> None:
    core, _ = full
    registry = registry_for(core)
    benchmark.group = "dashboard: /metrics of 128 breakers x 64 symbols"
    text = benchmark.pedantic(generate_latest, args=(registry,), rounds=100, iterations=1, warmup_rounds=3)
    assert text.count(b"bot4_breaker_state{") == 128 * 5
    benchmark.extra_info["bytes"] = len(text)


def test_metrics_scrape_over_http(benchmark: Any, full: tuple[Core, Served]) -> None:
    """The scrape Prometheus makes: a request to the server process, the whole answer read."""
    _, served = full
    host, port = served.host.rsplit(":", 1)
    benchmark.group = "dashboard: /metrics of 128 breakers x 64 symbols"

    def scrape() -> int:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            return len(response.read())
        finally:
            conn.close()

    size = benchmark.pedantic(scrape, rounds=100, iterations=1, warmup_rounds=3)
    assert size > 100_000
    median_ms = benchmark.stats.stats.median * 1e3
    print(f"\n/metrics over HTTP: median {median_ms:.2f} ms ({size:,} bytes)")
    assert median_ms <= 20.0


def test_push_of_a_transition(benchmark: Any) -> None:
    """A breaker changes state here; how long until a WebSocket client holds the state saying so."""
    from websockets.sync.client import connect

    with Core.create() as core:
        served = start_serve(core.name)
        breaker = core.breaker("venue-a")
        try:
            server_ms: list[float] = []
            end_to_end_ms: list[float] = []
            seen = threading.Event()
            wanted: list[str] = [""]  # nothing until the first flip
            changed_at: list[int] = [0]

            with connect(served.url.replace("http", "ws") + "ws", max_size=None) as ws:

                def read() -> None:
                    for message in ws:
                        state = json.loads(message)
                        got = core.clock.now_ns()
                        b = next((b for b in state["breakers"] if b["name"] == "venue-a"), None)
                        if b is not None and b["state"] == wanted[0] and not seen.is_set():
                            end_to_end_ms.append((got - changed_at[0]) / 1e6)
                            server_ms.append(state["push_latency_ms"])
                            seen.set()

                reader = threading.Thread(target=read, daemon=True)
                reader.start()
                time.sleep(0.5)  # the first state is in

                def flip() -> None:
                    seen.clear()
                    wanted[0] = "CLOSED" if wanted[0] == "FORCED_OPEN" else "FORCED_OPEN"
                    changed_at[0] = core.clock.now_ns()
                    if wanted[0] == "FORCED_OPEN":
                        breaker.force_open("bench")
                    else:
                        breaker.reset("bench")
                    assert seen.wait(5)
                    # the next flip is its own push, at a random phase of the server's 10 ms looks
                    time.sleep(0.02 + random.random() * 0.01)

                benchmark.group = "dashboard: push of a breaker transition"
                benchmark.pedantic(flip, rounds=200, iterations=1)
        finally:
            served.stop()
    server = sorted(server_ms)
    e2e = sorted(end_to_end_ms)
    p99 = int(len(e2e) * 0.99) - 1
    benchmark.extra_info.update(
        server_median_ms=statistics.median(server),
        server_p99_ms=server[p99],
        end_to_end_median_ms=statistics.median(e2e),
        end_to_end_p99_ms=e2e[p99],
    )
    print(
        f"\npush: server side median {statistics.median(server):.2f} ms, p99 {server[p99]:.2f} ms; "
        f"end to end median {statistics.median(e2e):.2f} ms, p99 {e2e[p99]:.2f} ms ({len(e2e)} transitions)"
    )
    assert statistics.median(server) <= 50.0


def _trading_desk() -> tuple[Core, OrderManager]:
    core = Core.create(max_reservations=65536)
    return core, paper_desk(core)


@pytest.fixture(scope="module")
def watched() -> Iterator[dict[str, Any]]:
    """Two trading desks; ``bot4 serve`` and 50 clients on the second."""
    plain, plain_om = _trading_desk()
    watched, watched_om = _trading_desk()
    served = start_serve(watched.name)
    clients = subprocess.Popen(
        [sys.executable, "-m", "benches._dashboard_clients", served.url, "50"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert clients.stdout is not None and clients.stdout.readline().strip() == "READY"
        yield {
            "plain": (plain, plain_om),
            "watched": (watched, watched_om),
            "clients": clients,
        }
    finally:
        clients.send_signal(signal.SIGTERM)
        out, _ = clients.communicate(timeout=30)
        print(f"\n50 clients received {out.strip()} states in all")
        served.stop()
        for core in (plain, watched):
            core.close()
            core.unlink()


def _paired(one: Any, rounds: int) -> list[float]:
    differences: list[float] = []
    for i in range(rounds):
        if i % 2:
            watched = one("watched")
            differences.append(watched - one("plain"))
        else:
            base = one("plain")
            differences.append(one("watched") - base)
    return differences


def test_fifty_clients_and_the_order_path(benchmark: Any, watched: dict[str, Any]) -> None:
    def one(which: str) -> float:
        manager = watched[which][1]
        orders = _orders(200)
        started = time.perf_counter_ns()
        for order in orders:
            manager.submit(order)
        return (time.perf_counter_ns() - started) / 200

    differences: list[float] = []
    benchmark.group = "dashboard: 50 clients, order path"
    benchmark.pedantic(lambda: differences.extend(_paired(one, 1)), rounds=101, iterations=1)
    plain = statistics.median(one("plain") for _ in range(21))
    median = statistics.median(differences)
    benchmark.extra_info.update(added_ns_per_order=round(median), plain_ns_per_order=round(plain))
    print(f"\n50 clients watching: {median:+,.0f} ns per order (plain {plain:,.0f} ns; median of 101 paired rounds)")


def test_fifty_clients_and_the_breaker_closed_path(benchmark: Any, watched: dict[str, Any]) -> None:
    calls = {which: watched[which][0].breaker("venue")(lambda: 1) for which in ("plain", "watched")}

    def one(which: str) -> float:
        call = calls[which]
        started = time.perf_counter_ns()
        for _ in range(10_000):
            call()
        return (time.perf_counter_ns() - started) / 10_000

    differences: list[float] = []
    benchmark.group = "dashboard: 50 clients, breaker closed path"
    benchmark.pedantic(lambda: differences.extend(_paired(one, 1)), rounds=101, iterations=1)
    plain = statistics.median(one("plain") for _ in range(21))
    median = statistics.median(differences)
    benchmark.extra_info.update(added_ns_per_call=round(median, 1), plain_ns_per_call=round(plain, 1))
    print(f"\n50 clients watching: {median:+.1f} ns per call (plain {plain:.1f} ns; median of 101 paired rounds)")


@pytest.mark.parametrize("op", ["look at 128 breakers", "fill's P&L figures", "order's latency"])
def test_what_each_figure_costs(benchmark: Any, full: tuple[Core, Served], op: str) -> None:
    """The server's look at the segment (every 10 ms), and what the trading path pays for the
    figures: a fill's P&L by venue and strategy, an order's latency (1,000 of each per round)."""
    from bot4._cli.dashboard.view import DeskView

    core, _ = full
    view, metrics = DeskView(core), core.metrics
    calls = {
        "look at 128 breakers": view.poll,
        "fill's P&L figures": lambda: metrics.add_fill("venue-a", "momentum", 1.0, 0.1, 100.0),
        "order's latency": lambda: metrics.observe_order_latency(30_000),
    }
    call = calls[op]
    benchmark.group = "dashboard: cost of each figure"

    def run() -> None:
        for _ in range(1000):
            call()

    benchmark.pedantic(run, rounds=30, iterations=1, warmup_rounds=2)
    per_call_us = benchmark.stats.stats.median / 1000 * 1e6
    print(f"\n{op}: {per_call_us:.2f} µs per call (median of 30 rounds of 1,000)")
