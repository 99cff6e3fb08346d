"""What ``bot4 status`` shows: a live segment's breakers, fuse, workers, risk ledger, quotes (feed lag)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

from bot4.breaker.breaker import BreakerSnapshot
from bot4.clock import ManualClock
from bot4.core import Core
from bot4.shm import layout as L
from bot4.shm import lifecycle
from bot4.shm.segment import Segment

__all__ = ["HeartbeatClock", "breaker_row", "find_segments", "find_stale", "render", "simulated_clock", "status_of"]


def find_segments() -> list[str]:
    """Names of the bot4 segments on this host that this user can open."""
    return lifecycle.find_segments()


def find_stale() -> list[str]:
    """Names of the bot4 segments on this host whose processes are all dead (``bot4 clean`` removes them)."""
    return lifecycle.find_stale()


def status_of(name: str) -> dict[str, Any]:
    """The state of segment ``name`` as plain data (what ``--json`` prints)."""
    segment = Segment.attach(name, observer=True)  # a clear error for a missing or foreign segment, before a slot
    try:
        simulated_ns = _simulated_now(segment)
    finally:
        segment.close()
    clock = None if simulated_ns is None else ManualClock(simulated_ns / 1e9)
    with Core.attach(name, clock=clock, observer=True) as core:
        me = core.slot
        breakers = [breaker_row(core.breaker(n).snapshot()) for n in core.breaker_names()]
        fuse = core.fuse.snapshot()
        risk = core.risk.snapshot()
        now_ns = core.clock.now_ns()
        quotes = [
            {
                "venue": q.venue,
                "symbol": q.symbol,
                "bid": _known(q.bid),
                "ask": _known(q.ask),
                "last": _known(q.last),
                "age_seconds": round(max(0, now_ns - q.receive_ns) / 1e9, 3),
                "mark_age_seconds": core.risk.ledger.mark_age(q.symbol),
            }
            for q in core.quotes.all()
        ]
        switch = core.risk.kill_switch
        return {
            "segment": name,
            "clock": "host" if simulated_ns is None else f"simulated, at {simulated_ns / 1e9:.3f}s",
            "workers": [asdict(w) for w in core.workers() if w.slot != me],
            "breakers": breakers,
            "quotes": quotes,
            "fuse": {
                "state": fuse.state.name,
                "open_breakers": fuse.open_breakers,
                "counted_breakers": fuse.counted_breakers,
                "trips": fuse.trips,
            },
            "kill_switch": {
                "active": switch.active,
                "reason": switch.reason,
                "tripped_at": None if switch.tripped_at is None else switch.tripped_at.isoformat(),
            },
            "risk": {
                "trading_state": risk.trading_state.name,
                "equity": risk.equity,
                "peak_equity": risk.peak_equity,
                "drawdown": risk.drawdown,
                "daily_loss": risk.daily_loss,
                "gross_exposure": risk.gross_exposure,
                "open_orders": risk.open_orders,
                "positions": {s: asdict(p) for s, p in risk.positions.items()},
            },
        }


def breaker_row(snap: BreakerSnapshot) -> dict[str, Any]:
    """A breaker as ``bot4 status --json`` (and the dashboard) shows it."""
    return {
        "name": snap.name,
        "state": snap.state.name,
        "calls": snap.calls,
        "failure_rate": round(snap.failure_rate, 4),
        "slow_call_rate": round(snap.slow_call_rate, 4),
        "trips": snap.trips,
        "rejections": snap.rejections,
        "seconds_until_half_open": snap.seconds_until_half_open,
    }


def _known(value: float) -> float | None:
    """A price, or None for NaN (none published yet): JSON has no NaN."""
    return None if math.isnan(value) else value


def _simulated_now(segment: Segment) -> int | None:
    """The latest time its workers published (heartbeats, in ns) if the segment runs on a
    simulated clock; None on the host's clock. Ages and windows are read at that time."""
    region, lay = segment.region, segment.layout
    if region.load(L.H_CLOCK) != 1:
        return None
    beats = [region.load(lay.slot(i) + L.S_HEARTBEAT_NS) for i in range(lay.max_workers)]
    return max(0, *beats)


class HeartbeatClock:
    """The time of a segment whose processes run on a simulated clock, as a reader outside
    the simulation can know it: the latest heartbeat its workers published (never going back)."""

    def __init__(self, segment: Segment) -> None:
        self._segment = segment
        self._last = 0

    def now_ns(self) -> int:
        """The latest heartbeat (ns of the simulated clock)."""
        self._last = max(self._last, _simulated_now(self._segment) or 0)
        return self._last

    def time_ns(self) -> int:
        """The host's wall-clock time (for display)."""
        return time.time_ns()


def simulated_clock(name: str) -> tuple[Segment, HeartbeatClock] | None:
    """A mapping of segment ``name`` and a clock following its simulated time; None if it
    runs on the host's clock (then nothing stays mapped)."""
    segment = Segment.attach(name, observer=True)
    segment.joined()  # it only reads: a desk it follows stays removable
    if segment.region.load(L.H_CLOCK) != 1:
        segment.close()
        return None
    return segment, HeartbeatClock(segment)


def render(status: dict[str, Any]) -> str:
    """Human-readable text of :func:`status_of`'s result."""
    lines = [f"segment {status['segment']}" + ("" if status["clock"] == "host" else f"  (clock: {status['clock']})")]
    switch = status["kill_switch"]
    risk = status["risk"]
    state = f"{risk['trading_state']} by the kill switch" if switch["active"] else risk["trading_state"]
    lines.append(f"  trading: {state}" + (f" ({switch['reason']})" if switch["reason"] else ""))
    lines.append(
        f"  equity {risk['equity']:,.2f}  peak {risk['peak_equity']:,.2f}  drawdown {risk['drawdown']:.2%}  "
        f"gross exposure {risk['gross_exposure']:,.2f}  open orders {risk['open_orders']}"
    )
    for symbol, pos in risk["positions"].items():
        if pos["quantity"] or pos["reserved_buy"] or pos["reserved_sell"]:
            lines.append(f"    {symbol:<14} qty {pos['quantity']:>12,.6g}  avg {pos['average_price']:,.6g}")
    fuse = status["fuse"]
    lines.append(f"  fuse: {fuse['state']} ({fuse['open_breakers']} of {fuse['counted_breakers']} breakers open)")
    for b in status["breakers"]:
        extra = f"  half-open in {b['seconds_until_half_open']:.1f}s" if b["seconds_until_half_open"] else ""
        lines.append(
            f"  breaker {b['name']:<16} {b['state']:<11} calls {b['calls']:>6}  failures {b['failure_rate']:>6.1%}  "
            f"trips {b['trips']}{extra}"
        )
    for q in status["quotes"]:
        mark = q["mark_age_seconds"]
        lines.append(
            f"  quote {q['venue']}:{q['symbol']:<14} bid {_shown(q['bid'])}  ask {_shown(q['ask'])}  "
            f"feed lag {q['age_seconds']:.3f}s" + ("" if mark is None else f"  mark age {mark:.3f}s")
        )
    alive = [w for w in status["workers"] if w["alive"]]
    lines.append(
        f"  workers: {len(alive)} alive"
        + "".join(
            f"\n    pid {w['pid']}" + (f"  rules off: {', '.join(w['rules_off'])}" if w["rules_off"] else "")
            for w in alive
        )
    )
    return "\n".join(lines)


def _shown(price: float | None) -> str:
    return "-" if price is None else f"{price:,.6g}"
