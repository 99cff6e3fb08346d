"""``/metrics``: a prometheus_client custom collector over the segment.

Every scrape reads the segment once (no metric objects updated on the trading path): the
whole desk, every process, at the instant of the scrape. Names and labels follow the
Prometheus conventions: base units (seconds, ratios), ``_total`` counters, one series per
state of an enum (1 for the current one).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from bot4.breaker.fuse import FuseState
from bot4.breaker.state import BreakerState
from bot4.risk.limits import TradingState
from bot4.shm.metrics import LATENCY_BOUNDS

if TYPE_CHECKING:
    from bot4.core import Core

__all__ = ["DeskCollector", "registry_for"]


def _finite(value: float | None) -> float:
    return float("nan") if value is None else float(value)


class DeskCollector(Collector):
    """Collects the metrics of one attached core's segment at every scrape."""

    def __init__(self, core: Core) -> None:
        self._core = core

    def collect(self) -> Iterator[Metric]:
        """The metric families (prometheus_client calls this at each scrape)."""
        core = self._core
        yield from self._breakers(core)
        fuse = core.fuse.snapshot()
        g = GaugeMetricFamily("bot4_fuse_state", "The global fuse: 1 for its current state.", labels=["state"])
        for state in FuseState:
            g.add_metric([state.name], 1.0 if fuse.state is state else 0.0)
        yield g
        yield CounterMetricFamily("bot4_fuse_trips", "Times the global fuse tripped.", value=fuse.trips)
        risk = core.risk.snapshot()
        g = GaugeMetricFamily(
            "bot4_trading_state", "The desk's trading state: 1 for the current one.", labels=["state"]
        )
        for t in TradingState:
            g.add_metric([t.name], 1.0 if risk.trading_state is t else 0.0)
        yield g
        active = core.risk.kill_switch.active
        yield GaugeMetricFamily("bot4_kill_switch_active", "1 while the kill switch is tripped.", value=float(active))
        for name, doc, value in (
            ("bot4_equity", "Account equity including unrealized P&L (account currency).", risk.equity),
            ("bot4_peak_equity", "Peak equity (account currency).", risk.peak_equity),
            ("bot4_unrealized_pnl", "Unrealized P&L at the marks (account currency).", risk.unrealized_pnl),
            ("bot4_drawdown_ratio", "Drawdown from peak equity, a fraction of the peak.", risk.drawdown),
            ("bot4_daily_loss_ratio", "Loss since the day started, a fraction of the day's start.", risk.daily_loss),
            ("bot4_gross_exposure", "Gross exposure, notional (account currency).", risk.gross_exposure),
            ("bot4_open_orders", "Live reservations: orders approved and not yet finished.", risk.open_orders),
            ("bot4_orders_last_second", "Orders approved in the last second.", risk.orders_last_second),
        ):
            yield GaugeMetricFamily(name, doc, value=_finite(value))
        g = GaugeMetricFamily("bot4_risk_limit", "Configured risk limits (absent: off).", labels=["limit"])
        limits: tuple[tuple[str, float | None], ...] = (
            ("max_drawdown", risk.limits.max_drawdown),
            ("daily_loss_limit", risk.limits.daily_loss_limit),
            ("max_gross_exposure", risk.limits.max_gross_exposure),
            ("max_symbol_exposure", risk.limits.max_symbol_exposure),
            ("max_open_orders", risk.limits.max_open_orders),
            ("max_orders_per_second", risk.limits.max_orders_per_second),
            ("max_correlation", risk.limits.max_correlation),
            ("max_position_risk", risk.limits.max_position_risk),
        )
        for field, limit in limits:
            if limit is not None:
                g.add_metric([field], float(limit))
        yield g
        position = GaugeMetricFamily("bot4_position", "Signed position quantity.", labels=["symbol"])
        exposure = GaugeMetricFamily("bot4_symbol_exposure", "Worst-case notional exposure.", labels=["symbol"])
        realized = GaugeMetricFamily("bot4_realized_pnl", "Realized P&L (account currency).", labels=["symbol"])
        mark = GaugeMetricFamily("bot4_mark_price", "Last price (the mark).", labels=["symbol"])
        for symbol, p in risk.positions.items():
            position.add_metric([symbol], p.quantity)
            exposure.add_metric([symbol], p.exposure)
            realized.add_metric([symbol], p.realized_pnl)
            if p.mark is not None:
                mark.add_metric([symbol], p.mark)
        yield from (position, exposure, realized, mark)
        c = CounterMetricFamily("bot4_risk_rejections", "Orders the risk engine rejected, by code.", labels=["code"])
        for code, count in core.metrics.rejections().items():
            c.add_metric([code], count)
        yield c
        yield from _attribution(core)
        hist = core.metrics.order_latency()
        cumulative, buckets = 0, []
        for bound, count in zip((*(repr(b) for b in LATENCY_BOUNDS), "+Inf"), hist.buckets, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        h = HistogramMetricFamily(
            "bot4_order_latency_seconds", "Time from sending an order to its venue's answer.", unit="seconds"
        )
        h.add_metric([], buckets, sum_value=hist.sum_seconds)
        yield h
        workers = [w for w in core.workers() if not w.observer]
        yield GaugeMetricFamily("bot4_workers", "Live worker processes.", value=sum(w.alive for w in workers))
        g = GaugeMetricFamily(
            "bot4_worker_heartbeat_age_seconds",
            "Seconds since a worker's heartbeat (or its start, if it never beats).",
            labels=["slot", "pid"],
        )
        for w in workers:
            if w.alive:
                g.add_metric([str(w.slot), str(w.pid)], w.heartbeat_age)
        yield g
        now_ns = core.clock.now_ns()
        g = GaugeMetricFamily("bot4_feed_lag_seconds", "Age of a venue's latest quote.", labels=["venue", "symbol"])
        for q in core.quotes.all():
            g.add_metric([q.venue, q.symbol], max(0, now_ns - q.receive_ns) / 1e9)
        yield g
        journal = core.journal
        if journal is not None:
            yield GaugeMetricFamily(
                "bot4_journal_ready",
                "1 while the journal records (new risk allowed).",
                value=float(not journal.problem),
            )
            yield GaugeMetricFamily("bot4_journal_backlog", "Records not yet durable.", value=journal.backlog)

    def _breakers(self, core: Core) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "bot4_breaker_state", "A circuit breaker: 1 for its current state.", labels=["breaker", "state"]
        )
        calls = CounterMetricFamily(
            "bot4_breaker_calls", "Calls through a breaker by outcome.", labels=["breaker", "outcome"]
        )
        slow = CounterMetricFamily("bot4_breaker_slow_calls", "Recorded calls that were slow.", labels=["breaker"])
        trips = CounterMetricFamily("bot4_breaker_trips", "Transitions into OPEN.", labels=["breaker"])
        trials = CounterMetricFamily(
            "bot4_breaker_trial_calls", "Trial calls admitted in half-open.", labels=["breaker"]
        )
        rate = GaugeMetricFamily("bot4_breaker_failure_ratio", "Failure rate in the window.", labels=["breaker"])
        for name in core.breaker_names():
            b = core.breaker(name).snapshot()
            for s in BreakerState:
                state.add_metric([name, s.name], 1.0 if b.state is s else 0.0)
            calls.add_metric([name, "success"], b.total_successes)
            calls.add_metric([name, "failure"], b.total_failures)
            calls.add_metric([name, "rejected"], b.rejections)
            slow.add_metric([name], b.total_slow_calls)
            trips.add_metric([name], b.trips)
            trials.add_metric([name], b.trial_calls)
            rate.add_metric([name], b.failure_rate)
        yield from (state, calls, slow, trips, trials, rate)


def _attribution(core: Core) -> Iterator[Metric]:
    """Realized P&L, fees, fills and traded notional by venue and by strategy."""
    for field in ("venue", "strategy"):
        figures = core.metrics.pnl_by(field)
        realized = GaugeMetricFamily(
            f"bot4_{field}_realized_pnl", f"Realized P&L by {field}, gross of fees.", labels=[field]
        )
        fees = GaugeMetricFamily(f"bot4_{field}_fees", f"Fees paid by {field} (negative: rebates).", labels=[field])
        fills = CounterMetricFamily(f"bot4_{field}_fills", f"Fills by {field}.", labels=[field])
        notional = CounterMetricFamily(f"bot4_{field}_traded_notional", f"Traded notional by {field}.", labels=[field])
        for name, f in figures.items():
            realized.add_metric([name], f.realized)
            fees.add_metric([name], f.fees)
            fills.add_metric([name], f.fills)
            notional.add_metric([name], f.notional)
        yield from (realized, fees, fills, notional)


def registry_for(core: Core) -> CollectorRegistry:
    """A registry of its own holding only the desk's collector (no process metrics of the server)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeskCollector(core))
    return registry
