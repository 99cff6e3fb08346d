"""The paper-trading simulation behind ``bot4 demo``.

Worker processes share one core. Each runs a simple strategy over correlated random-walk
prices (the same paths in every process, from the seed) and trades through its own
order manager: risk reserve → routing → two paper venues, ``venue-a`` (healthy) and
``venue-b`` (cheaper, but with injected errors and an outage window) — each behind a
breaker every worker shares. When venue-b fails, its breaker opens for everyone and
routing moves to venue-a; when it recovers, trial calls close the breaker again.
The supervisor shows a live view, then a report with its invariants checked.

The run is in simulated time (a :class:`bot4.SharedClock` every worker's core reads) and
the workers take turns, one order each per round, in index order, paced to real time: so
the same seed gives the same report (its measured latencies aside), whatever the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import multiprocessing as mp
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot4.breaker.config import BreakerConfig
from bot4.clock import SharedClock
from bot4.core import Core
from bot4.errors import ConfigError, JournalError
from bot4.journal.recovery import read_state
from bot4.journal.store import JournalStore
from bot4.orders.manager import ManagedOrder, OrderManager
from bot4.orders.model import Order, Side
from bot4.orders.status import OrderStatus
from bot4.risk.limits import RiskLimits
from bot4.streams.binance_ws import BinanceStreams
from bot4.streams.feed import FeedConfig, FeedWorker
from bot4.venues.paper import Faults, PaperExchange
from bot4.venues.paper_stream import PaperStream
from bot4.venues.protocol import Fees
from bot4.workers import Supervisor, WorkerContext

__all__ = ["SimulationConfig", "run_simulation"]

SIMULATED_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: simulated time 0, for trading days
VENUES = ("venue-a", "venue-b")
_CATCH_UP_SECONDS = 5.0  # a worker on streams waits at most this long at the end for its fills to be told
_MARKET_LEAD = 0.5  # seconds: round 0's books are published this early, for the feeds' first marks
VENUE_BREAKER = BreakerConfig(
    minimum_calls=10, consecutive_failures=3, window_seconds=2.0, open_seconds=1.0, half_open_calls=2
)


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """Parameters of :func:`run_simulation` (``bot4 demo``)."""

    workers: int = 4
    duration: float = 30.0
    seed: int = 7
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")
    tick_seconds: float = 0.05
    outage: tuple[float, float] = (0.35, 0.6)
    """venue-b is down between these fractions of the run."""
    error_rate: float = 0.05
    """Share of venue-b's requests that fail outside the outage."""
    streams: bool = False
    """Run on streams: the venues publish their books over WebSocket on loopback (Binance's
    format), a supervised feed per venue writes them into the quote table and the ledger's
    marks, routing reads the quotes (best price), and each worker's order manager follows
    its venues' order updates; the run is then paced by the streams, not replayed exactly."""
    journal: str | None = None
    """A journal database (``Core.create(journal=...)``): a run rebuilds the desk a previous
    run left in it (positions, costs, equity and its peak, the kill switch), reconciles the
    orders it held open, and records every event of its own."""
    serve: int | None = None
    """Serve the dashboard of the run (``bot4 serve``, control enabled with a new token) on
    this port of 127.0.0.1 (0: any free port) while it runs; None: no dashboard."""

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or not 1 <= self.workers <= 32:
            raise ConfigError("workers", f"expected 1..32, got {self.workers!r}")
        if not (isinstance(self.duration, (int, float)) and 1.0 <= self.duration <= 3600):
            raise ConfigError("duration", f"expected 1..3600 seconds, got {self.duration!r}")
        if not 0 <= self.outage[0] < self.outage[1] <= 1:
            raise ConfigError("outage", f"expected 0 <= start < end <= 1, got {self.outage!r}")
        if self.serve is not None and (isinstance(self.serve, bool) or not 0 <= self.serve <= 65535):
            raise ConfigError("serve", f"expected a port in 0..65535, got {self.serve!r}")


def price_paths(config: SimulationConfig) -> np.ndarray:
    """Prices per tick and symbol: correlated log random walks, the same for a given seed."""
    ticks = int(config.duration / config.tick_seconds) + 2
    rng = np.random.default_rng(config.seed)
    n = len(config.symbols)
    common = rng.normal(0, 0.002, size=(ticks, 1))
    own = rng.normal(0, 0.001, size=(ticks, n))
    loadings = np.linspace(1.0, 0.2, n)  # the first symbols move together, the last mostly alone
    steps = common * loadings + own
    start = np.array([60_000.0, 3_000.0, 150.0, 0.6][:n] + [100.0] * max(0, n - 4))
    return np.asarray(start * np.exp(np.cumsum(steps, axis=0)))


def _books(venues: list[PaperExchange], symbols: tuple[str, ...], prices: np.ndarray) -> None:
    for venue, spread in zip(venues, (0.0004, 0.0003), strict=True):
        for symbol, price in zip(symbols, prices, strict=True):
            depth = 5e5 / price
            venue.set_book(
                symbol,
                bids=[(price * (1 - spread), depth), (price * (1 - 3 * spread), 4 * depth)],
                asks=[(price * (1 + spread), depth), (price * (1 + 3 * spread), 4 * depth)],
            )


@dataclass
class _Tally:
    """What a worker counts and times as it goes."""

    rejections: Counter[str] = field(default_factory=Counter)
    submit_ns: list[int] = field(default_factory=list)
    check_ns: list[int] = field(default_factory=list)


def _decide(
    config: SimulationConfig,
    paths: np.ndarray,
    tick: int,
    index: int,
    core: Core,
    om: OrderManager,
    venues: list[PaperExchange],
    rng: np.random.Generator,
    tally: _Tally,
) -> Order:
    """One worker's turn up to its order: this tick's books and marks, then the order of its
    momentum strategy (risk-checked once, timed). On streams the feeds mark the ledger."""
    prices = paths[tick]
    _books(venues, config.symbols, prices)
    if index == 0 and not config.streams:  # one process feeds the shared ledger's marks and correlation
        for symbol, price in zip(config.symbols, prices, strict=True):
            om.mark(symbol, float(price))
    else:
        for symbol, price in zip(config.symbols, prices, strict=True):
            om.book.on_mark(symbol, float(price))
    k = int(rng.integers(len(config.symbols)))
    symbol, price = config.symbols[k], float(prices[k])
    momentum = prices[k] / paths[max(0, tick - 10)][k] - 1
    side = Side.BUY if momentum > 0 else Side.SELL
    held = om.book.net_quantity(symbol)
    stop: float | None
    if held and rng.random() < 0.3:  # take profit or cut: reduce what this worker holds
        side, qty, stop = (Side.SELL if held > 0 else Side.BUY), abs(held), None
    else:
        qty = round(float(rng.uniform(0.5, 2.0)) * 2_000 / price, 6)
        stop = price * (0.985 if side is Side.BUY else 1.015)
    order = Order(
        symbol=symbol,
        side=side,
        quantity=qty,
        stop_loss=stop,
        strategy=f"momentum-{index}",
        reduce_only=stop is None,
    )
    started = time.perf_counter_ns()
    core.risk.check(order)
    tally.check_ns.append(time.perf_counter_ns() - started)
    return order


def _tallied(managed: ManagedOrder, started: int, tally: _Tally) -> ManagedOrder:
    tally.submit_ns.append(time.perf_counter_ns() - started)
    if managed.decision is not None:
        tally.rejections.update(managed.decision.codes)
    return managed


def _worker(config: SimulationConfig, turns: Any, t0: float, out_dir: str, context: WorkerContext) -> None:
    """One worker: a trader (index below ``workers``), or on streams the feed of one venue."""
    if context.index >= config.workers:  # it ends once every trader's turn of the run is taken
        rounds = min(int(config.duration / config.tick_seconds), len(price_paths(config)))
        config_of_feed = _feed_config(config, VENUES[context.index - config.workers], out_dir)
        FeedWorker(config_of_feed, until=lambda: int(turns.value) >= rounds * config.workers)(context)
    elif config.streams:
        asyncio.run(_trade_on_streams(config, turns, t0, out_dir, context))
    else:
        _trade(config, turns, t0, out_dir, context)


def _venues(config: SimulationConfig, index: int, clock: Any) -> list[PaperExchange]:
    """The worker's paper venues: venue-a (healthy) and venue-b (cheaper, faulty)."""
    start, end = (f * config.duration for f in config.outage)
    healthy = PaperExchange(VENUES[0], fees=Fees(maker=0.0002, taker=0.0006), seed=config.seed + index, clock=clock)
    faulty = PaperExchange(
        VENUES[1],
        fees=Fees(maker=0.0001, taker=0.0004),
        faults=Faults(error_rate=config.error_rate, outages=((start, end),)),
        seed=config.seed + 100 + index,
        clock=clock,
    )
    return [healthy, faulty]


class _Run:
    """A trader's run: its venues, order manager, tally and the files the supervisor reads."""

    def __init__(self, config: SimulationConfig, turns: Any, out_dir: str, context: WorkerContext) -> None:
        self.config, self.turns, self.context = config, turns, context
        core, index = context.core, context.index
        self.core, self.index, self.n = core, index, config.workers
        self.paths = price_paths(config)
        self.rounds = min(int(config.duration / config.tick_seconds), len(self.paths))
        self.venues = _venues(config, index, core.clock)
        for venue in self.venues:
            core.plugins.register(venue, name=venue.name)
        self.om = OrderManager(
            core, routing="best_price" if config.streams else "lowest_fee", breaker_config=VENUE_BREAKER
        )
        self.rng = np.random.default_rng(config.seed * 1000 + index)
        self.tally = _Tally()
        self.out = Path(out_dir)
        self.live_path, self.next_live = self.out / f"live-{index}.json", 0.0
        # Every fill is written down as it is known, so a worker killed mid-run keeps its fills in the report.
        self.fill_log = open(self.out / f"fills-{index}-{context.incarnation}.jsonl", "a", buffering=1)  # noqa: SIM115
        turn = int(turns.value)
        self.first = turn // self.n + (1 if turn % self.n > index else 0)  # a restarted worker joins at its next turn
        self.order_updates = 0
        self.fills_told = 0

    def decide(self, tick: int) -> Order:
        if self.index == 0:  # the first turn of a round moves the simulated clock
            self.core.clock.set(tick * self.config.tick_seconds)  # type: ignore[attr-defined]
        return _decide(self.config, self.paths, tick, self.index, self.core, self.om, self.venues, self.rng, self.tally)

    def done(self, managed: ManagedOrder, mine: int) -> None:
        sign = 1 if managed.tracked.order.side is Side.BUY else -1
        for fill in managed.tracked.fills:
            line = {"venue": fill.venue, "symbol": managed.tracked.order.symbol, "quantity": sign * fill.quantity}
            self.fill_log.write(json.dumps(line) + "\n")
        self.turns.value = mine + 1
        now = time.monotonic()
        if now >= self.next_live:  # what the supervisor's live view shows of this worker
            self.next_live = now + 0.5
            live = {"orders": Counter(m.status.name for m in self.om.orders()), "net_pnl": self.om.pnl().net}
            self.live_path.write_text(json.dumps(live))

    def summary(self) -> None:
        self.fill_log.close()
        om, orders = self.om, self.om.orders()
        summary = {
            "worker": self.index,
            "incarnation": self.context.incarnation,
            "orders_by_status": Counter(m.status.name for m in orders),
            "rejections_by_code": self.tally.rejections,
            "net_quantity_from_fills": _net_from_fills(orders),
            "net_quantity_from_pnl": {s: om.book.net_quantity(s) for s in self.config.symbols},
            "pnl_by_venue": {v: t._asdict() for v, t in om.book.by("venue").items()},
            "pnl_by_strategy": {v: t._asdict() for v, t in om.book.by("strategy").items()},
            "submit_latency_ns": self.tally.submit_ns,
            "check_latency_ns": self.tally.check_ns,
            "undeclared_states": [m.status.name for m in orders if m.status not in OrderStatus],
            "order_updates_received": self.order_updates,
            "fills_told_by_streams": self.fills_told,
        }
        path = self.out / f"worker-{self.index}-{self.context.incarnation}.json"
        path.write_text(json.dumps(summary, default=float))


def _trade(config: SimulationConfig, turns: Any, t0: float, out_dir: str, context: WorkerContext) -> None:
    """A trader: in round ``r`` it acts when ``turns`` reaches ``r * workers + index``.

    Turns make the run replay exactly from its seed: the workers act one after another in
    index order, in simulated time (the shared clock moves ``tick_seconds`` per round),
    paced to real time from ``t0`` (monotonic). Only a worker's restart breaks the replay.
    """
    run = _Run(config, turns, out_dir, context)
    for tick in range(run.first, run.rounds):
        mine = tick * run.n + run.index
        if not _wait_turn(turns, mine, t0 + tick * config.tick_seconds, context):
            break
        order = run.decide(tick)
        started = time.perf_counter_ns()
        run.done(_tallied(run.om.submit(order), started, run.tally), mine)
    run.summary()


async def _trade_on_streams(
    config: SimulationConfig, turns: Any, t0: float, out_dir: str, context: WorkerContext
) -> None:
    """A trader on streams: as :func:`_trade`, from asyncio, its order manager following the
    order updates its venues publish (each fill applied once, whichever comes first)."""
    run = _Run(config, turns, out_dir, context)
    streams, adapters = [], []
    for venue in run.venues:
        stream = PaperStream(venue)
        await stream.start()
        adapter = BinanceStreams(venue.name, stream.url, _stream_ids(config), user_url=stream.user_url)
        run.core.plugins.register(adapter, name=f"{venue.name}-streams")
        streams.append(stream)
        adapters.append(adapter)
    follower = asyncio.ensure_future(run.om.follow())
    try:
        for tick in range(run.first, run.rounds):
            mine = tick * run.n + run.index
            if not await _await_turn(turns, mine, t0 + tick * config.tick_seconds, context):
                break
            order = run.decide(tick)
            started = time.perf_counter_ns()
            run.done(_tallied(await run.om.asubmit(order), started, run.tally), mine)
        fills = sum(len(m.tracked.fills) for m in run.om.orders())
        with contextlib.suppress(TimeoutError):  # the fills of the last turns still on their way
            async with asyncio.timeout(_CATCH_UP_SECONDS):
                while sum(a.stats.fills for a in adapters) < fills:
                    await asyncio.sleep(0.01)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        run.order_updates = sum(a.stats.order_updates for a in adapters)
        run.fills_told = sum(a.stats.fills for a in adapters)
        for adapter in adapters:
            await adapter.close()
        for stream in streams:
            await stream.stop()
    run.summary()


def _stream_ids(config: SimulationConfig) -> dict[str, str]:
    """Desk symbol → Binance id: ``BTC/USDT`` → ``BTCUSDT``."""
    return {symbol: symbol.replace("/", "") for symbol in config.symbols}


def _feed_config(config: SimulationConfig, venue: str, out_dir: str) -> FeedConfig:
    """The feed of ``venue``'s market stream (its URL is in ``out_dir``); venue-a's marks the ledger."""
    url = (Path(out_dir) / f"stream-{venue}.url").read_text()
    return FeedConfig(url=url, venue=venue, symbols=_stream_ids(config), mark=venue == VENUES[0], mark_seconds=0.0)


class _Market:
    """The venues' market data on streams: books set from the price paths, round by round in
    real time, each venue published by a paper stream (in threads of the supervisor)."""

    def __init__(self, config: SimulationConfig, t0: float, out_dir: str) -> None:
        self.config, self.t0 = config, t0
        self.venues = [PaperExchange(name) for name in VENUES]
        self.paths = price_paths(config)
        self.streams = [PaperStream(venue, _stream_ids(config)) for venue in self.venues]
        for venue, stream in zip(VENUES, self.streams, strict=True):
            stream.start_thread()
            (Path(out_dir) / f"stream-{venue}.url").write_text(stream.url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, name="demo-market", daemon=True)
        self._thread.start()

    def _publish(self) -> None:
        rounds = min(int(self.config.duration / self.config.tick_seconds), len(self.paths))
        for tick in range(
            rounds
        ):  # each round's books a little ahead of its orders (the first: the feeds' first marks)
            due = self.t0 + tick * self.config.tick_seconds - (_MARKET_LEAD if tick == 0 else 0.0)
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            _books(self.venues, self.config.symbols, self.paths[tick])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        for stream in self.streams:
            stream.stop_thread()


async def _await_turn(turns: Any, mine: int, pace: float, context: WorkerContext) -> bool:
    """:func:`_wait_turn` in asyncio: the follower of order updates runs meanwhile."""
    while turns.value != mine or time.monotonic() < pace:
        if not context.running():
            return False
        await asyncio.sleep(0.0002)
    return True


def _wait_turn(turns: Any, mine: int, pace: float, context: WorkerContext) -> bool:
    """Wait for turn ``mine`` and for real time ``pace`` (monotonic); False when the run stops."""
    while turns.value != mine or time.monotonic() < pace:
        if not context.running():
            return False
        time.sleep(0.0002)
    return True


def _net_from_fills(orders: list[Any]) -> dict[str, float]:
    net: dict[str, float] = {}
    for m in orders:
        order = m.tracked.order
        signed = sum(f.quantity for f in m.tracked.fills) * (1 if order.side.value == "buy" else -1)
        net[order.symbol] = net.get(order.symbol, 0.0) + signed
    return net


def _live(core: Core, started: float, duration: float, out_dir: str) -> str:
    risk = core.risk.snapshot()
    breakers = "  ".join(f"{n} {core.breaker(n).state.name}" for n in core.breaker_names())
    switch = risk.trading_state.name
    orders: Counter[str] = Counter()
    pnl = 0.0
    for path in Path(out_dir).glob("live-*.json"):
        try:
            live = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being rewritten
        orders.update(live["orders"])
        pnl += live["net_pnl"]
    by_state = " ".join(f"{k.lower()} {v}" for k, v in sorted(orders.items()))
    return (
        f"[{time.monotonic() - started:5.1f}/{duration:.0f}s] {breakers} | {switch} equity {risk.equity:,.0f} "
        f"dd {risk.drawdown:.2%} gross {risk.gross_exposure:,.0f} | orders: {by_state or '-'} | P&L {pnl:,.0f}"
    )


def _serve(name: str, port: int) -> subprocess.Popen[str]:
    """``bot4 serve`` on the run's segment, in a process of its own; its address printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot4", "serve", name, "--port", str(port), "--generate-token"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # its address, or nothing if it could not start (it said why)
    if line:
        print(line, flush=True)
    return proc


def run_simulation(config: SimulationConfig, *, live: bool = True) -> dict[str, Any]:
    """Run the simulation; return the report (see ``bot4 demo --json``)."""
    limits = RiskLimits(
        max_open_orders=200,
        max_orders_per_second=500,
        max_correlation=0.9,
        correlation_sample_seconds=0.25,
        correlation_min_samples=20,
        max_price_age=1.0 if config.streams else None,  # on streams: no new risk on a price the feed lost
    )
    clock = SharedClock(epoch=SIMULATED_EPOCH)  # simulated time: the same run from the same seed
    turns = mp.get_context("spawn").RawValue("q", 0)
    with (
        tempfile.TemporaryDirectory(prefix="bot4-demo-") as out_dir,
        Core.create(clock=clock, journal=config.journal) as core,
    ):
        recovered = _recover(core) if config.journal is not None else None
        if recovered is None or not recovered["from_event"]:  # a new desk
            core.risk.configure(limits)
            core.risk.set_equity(1_000_000.0)
        start = {s: p.quantity for s, p in core.risk.snapshot().positions.items()}
        for name in ("venue-a", "venue-b"):
            core.breaker(name, VENUE_BREAKER)
        t0 = time.monotonic() + (
            2.0 if config.streams else 1.0
        )  # every worker (and feed) starts before the first round
        started = time.monotonic()
        market = _Market(config, t0, out_dir) if config.streams else None
        n = config.workers + (len(VENUES) if config.streams else 0)  # on streams: a feed per venue too
        supervisor = Supervisor(core, functools.partial(_worker, config, turns, t0, out_dir), n, clock=clock)
        last = [0.0]
        dashboard = None if config.serve is None else _serve(core.name, config.serve)

        def tick() -> None:
            if live and time.monotonic() - last[0] >= 1.0:
                last[0] = time.monotonic()
                print(_live(core, started, config.duration + 1.0, out_dir), flush=True)

        try:
            code = supervisor.run(duration=config.duration + 30.0, on_tick=tick)
        finally:
            if market is not None:
                market.close()
            if dashboard is not None:
                dashboard.terminate()
                try:
                    dashboard.wait(10)
                except subprocess.TimeoutExpired:
                    dashboard.kill()
                    dashboard.wait()
        summaries = [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("worker-*.json"))]
        fills = [json.loads(line) for p in sorted(Path(out_dir).glob("fills-*.jsonl")) for line in p.open()]
        report = _report(core, config, summaries, fills, code, supervisor, start)
        if recovered is not None:
            report["journal"] = recovered
            report["invariants"]["journal_holds_the_ledger"] = _journal_holds_the_ledger(core)
        return report


def _recover(core: Core) -> dict[str, Any]:
    """A journaled desk: wait for its recorder; if it was rebuilt, reconcile the orders the
    journal held open. The previous run's paper venues ended with its processes: asked again
    (fresh venues of the same names), none of its orders is found, and each ends unsent."""
    journal = core.journal
    assert journal is not None
    if not journal.wait_ready(30.0):
        raise JournalError(f"the journal's recorder did not start: {journal.problem}")
    state = journal.recovered
    out: dict[str, Any] = {"path": str(journal.path), "from_event": 0, "pending_orders": 0}
    if state is None:
        return out
    venues = [PaperExchange(name) for name in VENUES]
    for venue in venues:
        core.plugins.register(venue, name=venue.name)
    try:
        result = OrderManager(core).recover()
    finally:
        for venue in venues:
            core.plugins.unregister(venue)
    acc = state.account
    out.update(
        from_event=state.last_id,
        pending_orders=len(state.open_orders),
        never_placed=len(result.never_placed),
        still_unknown=len(result.still_unknown),
        equity=None if acc is None else acc.equity,
        peak_equity=None if acc is None else acc.peak_equity,
        trading_state=state.trading_state.name,
        positions={name: s.position for name, s in state.symbols.items() if s.position},
    )
    return out


def _journal_holds_the_ledger(core: Core) -> bool:
    """Whether the journal, once everything is written, rebuilds the ledger as it is now."""
    journal = core.journal
    if journal is None or not journal.wait_durable(30.0):
        return False
    store = JournalStore(journal.path, read_only=True)
    try:
        state = read_state(store)
    finally:
        store.close()
    snap = core.risk.snapshot()
    held = {name: (s.position, s.average_price) for name, s in state.symbols.items() if s.position}
    live = {name: (p.quantity, p.average_price) for name, p in snap.positions.items() if p.quantity}
    acc = state.account
    return (
        held == live
        and acc is not None
        and (acc.equity, acc.peak_equity) == (snap.equity, snap.peak_equity)
        and state.trading_state is snap.trading_state
    )


def _report(
    core: Core,
    config: SimulationConfig,
    summaries: list[dict[str, Any]],
    fill_records: list[dict[str, Any]],
    code: int,
    supervisor: Supervisor,
    start: dict[str, float],
) -> dict[str, Any]:
    """The run's report: ``summaries`` of the workers that finished, ``fill_records`` of every
    fill of every worker (a killed one's included), and the shared state (``start``: the
    positions the run began with, rebuilt from a journal)."""
    risk = core.risk.snapshot()
    by_status: Counter[str] = Counter()
    by_code: Counter[str] = Counter()
    fills: Counter[str] = Counter()
    latencies: list[int] = []
    checks: list[int] = []
    net_fills: dict[str, float] = {}
    for s in summaries:
        checks.extend(s["check_latency_ns"])
        by_status.update(s["orders_by_status"])
        by_code.update(s["rejections_by_code"])
        latencies.extend(s["submit_latency_ns"])
    for record in fill_records:
        fills[record["venue"]] += 1
        net_fills[record["symbol"]] = net_fills.get(record["symbol"], 0.0) + record["quantity"]
    pct, check_pct = _percentiles(latencies), _percentiles(checks)
    pnl_venue = _sum_pnl(summaries, "pnl_by_venue")
    pnl_strategy = _sum_pnl(summaries, "pnl_by_strategy")
    ledger_positions = {s: p.quantity for s, p in risk.positions.items()}
    breakers = {
        n: asdict(core.breaker(n).snapshot()) | {"state": core.breaker(n).state.name} for n in core.breaker_names()
    }
    for b in breakers.values():
        b.pop("config", None)
        b.pop("opened_by_pid", None)  # a pid: the same seed gives the same report
    limits = core.risk.limits
    invariants = {
        "gross_exposure_within_limit": risk.gross_exposure
        <= (limits.max_gross_exposure or math.inf) * risk.equity + 1e-6,
        "open_orders_within_limit": risk.open_orders <= (limits.max_open_orders or 10**9),
        "every_order_in_a_declared_state": all(not s["undeclared_states"] for s in summaries),
        "positions_reconcile_with_fills": all(
            abs(ledger_positions.get(sym, 0.0) - start.get(sym, 0.0) - q) <= 1e-6 * max(1.0, abs(q))
            for sym, q in net_fills.items()
        ),
        "pnl_book_matches_fills": all(
            abs(s["net_quantity_from_pnl"].get(sym, 0.0) - q) <= 1e-6 * max(1.0, abs(q))
            for s in summaries
            for sym, q in s["net_quantity_from_fills"].items()
        ),
        "faulty_venue_breaker_opened": breakers.get("venue-b", {}).get("trips", 0) >= 1,
        "routing_moved_to_the_healthy_venue": fills.get("venue-a", 0) > 0,
        "audit_clean": core.risk.audit() == [],
    }
    if supervisor.signaled is not None:  # cut short: the scenario may not have played out, the safety checks hold
        del invariants["faulty_venue_breaker_opened"], invariants["routing_moved_to_the_healthy_venue"]
    return {
        "config": asdict(config),
        "exit_code": code,
        "interrupted": supervisor.signaled,
        "restarts": supervisor.restarts,
        "orders_by_status": dict(by_status),
        "rejections_by_code": dict(by_code),
        "fills_by_venue": dict(fills),
        "breakers": breakers,
        "pnl_by_venue": pnl_venue,
        "pnl_by_strategy": pnl_strategy,
        "equity": risk.equity,
        "drawdown": risk.drawdown,
        "positions": ledger_positions,
        "submit_latency_us": pct,
        "check_latency_us": check_pct,
        "invariants": invariants,
        "order_updates_received": sum(s["order_updates_received"] for s in summaries),
        "fills_told_by_streams": sum(s["fills_told_by_streams"] for s in summaries),
        "quotes": {
            f"{q.venue} {q.symbol}": {"bid": q.bid, "ask": q.ask, "update_id": q.update_id} for q in core.quotes.all()
        },
    }


def _percentiles(samples: list[int]) -> dict[int, float]:
    samples = sorted(samples)
    if not samples:
        return {}
    return {p: samples[min(len(samples) - 1, len(samples) * p // 100)] / 1e3 for p in (50, 90, 99)}


def _sum_pnl(summaries: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in summaries:
        for name, t in s[key].items():
            row = out.setdefault(name, {"realized": 0.0, "fees": 0.0, "unrealized": 0.0})
            for k in row:
                row[k] += t[k]
    return out


def render(report: dict[str, Any]) -> str:
    """The report as text."""
    lines = ["", "orders by outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(report["orders_by_status"].items()))]
    lines.append(
        "rejections by rule: "
        + (", ".join(f"{k} {v}" for k, v in sorted(report["rejections_by_code"].items())) or "none")
    )
    lines.append("fills by venue: " + ", ".join(f"{k} {v}" for k, v in sorted(report["fills_by_venue"].items())))
    for name, b in report["breakers"].items():
        lines.append(f"breaker {name}: {b['state']}, {b['trips']} trip(s), {b['rejections']} rejected calls")
    for group in ("pnl_by_venue", "pnl_by_strategy"):
        for name, t in sorted(report[group].items()):
            net = t["realized"] - t["fees"] + t["unrealized"]
            lines.append(
                f"P&L {name}: realized {t['realized']:,.2f}  fees {t['fees']:,.2f}  "
                f"unrealized {t['unrealized']:,.2f}  net {net:,.2f}"
            )
    lines.append(f"equity {report['equity']:,.2f}  drawdown {report['drawdown']:.2%}")
    for label, key in (("risk check", "check_latency_us"), ("order processing", "submit_latency_us")):
        if report[key]:
            lines.append(f"{label} latency (µs): " + "  ".join(f"p{k} {v:,.1f}" for k, v in report[key].items()))
    if report["quotes"]:
        lines.append(
            f"on streams: {len(report['quotes'])} quotes in the table, "
            f"{report['order_updates_received']} order updates received by the workers, "
            f"{report['fills_told_by_streams']} of them fills"
        )
    journal = report.get("journal")
    if journal is not None:
        lines.append(
            f"journal {journal['path']}: "
            + (
                f"rebuilt from event {journal['from_event']} (equity {journal['equity']:,.2f}, "
                f"{len(journal['positions'])} positions, {journal['pending_orders']} open orders, "
                f"{journal['never_placed']} of them gone with the previous run's venues)"
                if journal["from_event"]
                else "a new desk"
            )
        )
    lines.append("invariants: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in report["invariants"].items()))
    return "\n".join(lines)
