"""What the dashboard shows, read from a live segment: the JSON the page and the API serve.

One attached core reads every process's state. :meth:`DeskView.poll` is cheap (a few
words per breaker) and says whether anything changed and whether it is urgent (a breaker,
the fuse or the trading state: pushed at once) or not (ledger figures: pushed at most a
few times a second); :meth:`DeskView.state` builds the whole picture.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from dataclasses import asdict
from typing import Any

from bot4._cli.status import breaker_row
from bot4.breaker.state import BreakerState, StateWord
from bot4.core import Core
from bot4.errors import Bot4Error
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm.metrics import PnlFigures
from bot4.shm.text import decode_text

__all__ = ["HISTORY_SECONDS", "TIMELINE", "DeskView", "journal_orders"]

TIMELINE = 500
"""Breaker transitions kept for the timeline (the newest)."""
HISTORY_SECONDS = 3600
"""Seconds of equity / drawdown / exposure history kept for the charts (one sample a second)."""
_TAIL = 10  # points of the history a push carries (a client that skipped states may lose older ones)


def _num(value: float | None) -> float | None:
    """A finite number, or None (JSON has no NaN or infinity)."""
    return None if value is None or not math.isfinite(value) else value


def _rounded(value: float | None) -> float | None:
    """A correlation as the page shows it (three decimals: a 64-symbol matrix stays small)."""
    number = _num(value)
    return None if number is None else round(number, 3)


def _figures(f: PnlFigures) -> dict[str, float | int | None]:
    return {"realized": _num(f.realized), "fees": _num(f.fees), "fills": f.fills, "notional": _num(f.notional)}


def _plain(value: Any) -> Any:
    """A limit's value as JSON has it (a time of day as its text)."""
    if isinstance(value, float):
        return _num(value)
    return value if value is None or isinstance(value, (bool, int, str)) else str(value)


class DeskView:
    """The dashboard's reader of one segment (one per server; not thread-safe)."""

    def __init__(self, core: Core) -> None:
        self._core = core
        seg = core._segment
        self._r, self._lay = seg.region, seg.layout
        self._trading_i = seg.layout.ledger + L.L_TRADING
        self._version_i = seg.layout.ledger + L.L_VERSION
        self._states: dict[int, int] = {}  # breaker index -> last state word seen
        self._names: dict[int, str] = {}  # record index -> name, once published
        self._timeline: deque[dict[str, Any]] = deque(maxlen=TIMELINE)
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_SECONDS)
        self._last_sample = 0.0
        self._urgent_key: tuple[int, ...] = ()
        self._kept = 0  # a change found and not pushed yet: 1 ledger figures, 2 urgent
        self._ledger_key = -1
        self.journal_orders: dict[str, int] = {}
        """Orders of the last day by status, from the journal (the server refreshes it)."""
        self._polled = False
        self._unsent_ns = 0  # when the latest transition not yet in a built state happened
        self.latency_ms: float | None = None
        """Server-side push latency of the latest breaker transition: ms from the transition
        (the time its process wrote) to the first state built with it."""
        self.poll()

    @property
    def core(self) -> Core:
        """The attached core it reads."""
        return self._core

    # ------------------------------------------------------------------ change detection

    def poll(self) -> tuple[bool, bool]:
        """Look for changes since the last poll: (urgent, any). Breaker transitions found are
        added to the timeline."""
        r = self._r
        now = time.time()
        words = self._scan(now)
        key = (*words, r.load(self._trading_i), r.load(L.H_FUSE), r.load(L.H_FUSE_TRIPS))
        urgent = key != self._urgent_key or self._kept == 2
        version = r.load(self._version_i)
        changed = urgent or version != self._ledger_key or self._kept > 0
        self._urgent_key, self._ledger_key, self._kept = key, version, 0
        if now - self._last_sample >= 1.0:
            self._sample(now)
            changed = True
        return urgent, changed

    def _scan(self, now: float) -> list[int]:
        """Every published breaker's state word; a word changed since the last scan is a
        transition, added to the timeline."""
        r, lay = self._r, self._lay
        words = []
        for i in range(min(r.load(L.H_BREAKERS_USED), lay.max_breakers)):
            rec = lay.record(i)
            if i not in self._names:
                if r.load(rec + _native.REC_STATUS) != 1:
                    continue  # being made: a breaker once published (a maker killed mid-way: never)
                self._names[i] = decode_text(r.load_range(rec + _native.REC_NAME, _native.REC_NAME_WORDS))
            word = r.load(rec + _native.REC_STATE)
            words.append(word)
            before = self._states.get(i)
            if before is None and self._polled and word & 7 != BreakerState.CLOSED:
                before = int(BreakerState.CLOSED)  # a breaker made and moved since the last look
            if before is not None and before != word:
                self._transition(i, before, word, now, r.load(rec + _native.REC_CHANGED_NS))
            self._states[i] = word
        self._polled = True
        return words

    def keep(self, urgent: bool) -> None:
        """A change :meth:`poll` found was not pushed yet: the next poll reports it again."""
        self._kept = max(self._kept, 2 if urgent else 1)

    def _transition(self, index: int, before: int, word: int, now: float, changed_ns: int) -> None:
        old, new = StateWord.unpack(before), StateWord.unpack(word)
        name = self._names[index]
        reason = None
        if new.state in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
            try:
                reason = self._core.breaker(name).opened_by()
            except Bot4Error:
                reason = None
        if changed_ns and not self._unsent_ns:
            self._unsent_ns = changed_ns
        self._timeline.append(
            {
                "time": now,
                "breaker": name,
                "from": old.state.name,
                "to": new.state.name,
                "transitions": max(1, new.seq - old.seq),
                "reason": reason,
            }
        )

    def _sample(self, now: float) -> None:
        self._last_sample = now
        risk = self._core.risk.snapshot()
        self._history.append(
            {
                "time": now,
                "equity": _num(risk.equity),
                "drawdown": _num(risk.drawdown),
                "daily_loss": _num(risk.daily_loss),
                "gross_exposure": _num(risk.gross_exposure),
            }
        )

    # ------------------------------------------------------------------ the picture

    def state(self, *, full: bool = True) -> dict[str, Any]:
        """Everything the dashboard shows, as JSON-ready data. ``full=False`` (a push) carries
        the newest points of the history (``history_tail``) instead of all of it."""
        core = self._core
        risk = core.risk.snapshot()
        switch = core.risk.kill_switch
        fuse = core.fuse.snapshot()
        now_ns = core.clock.now_ns()
        breakers = []
        for name in core.breaker_names():
            b = core.breaker(name).snapshot()
            breakers.append(
                breaker_row(b)
                | {
                    "seconds_in_state": b.seconds_in_state,
                    "opened_by": b.opened_by,
                    "total_successes": b.total_successes,
                    "total_failures": b.total_failures,
                }
            )
        self._scan(time.time())  # every state shown above has its transition in the timeline below
        symbols, matrix = core.risk.correlation_matrix()
        positions = [
            {
                "symbol": s,
                "quantity": p.quantity,
                "average_price": _num(p.average_price),
                "mark": _num(p.mark),
                "exposure": _num(p.exposure),
                "reserved_buy": p.reserved_buy,
                "reserved_sell": p.reserved_sell,
                "realized_pnl": _num(p.realized_pnl),
                "unrealized_pnl": _num(
                    (p.mark - p.average_price) * p.quantity if p.mark is not None and p.quantity else 0.0
                ),
            }
            for s, p in risk.positions.items()
        ]
        limits = {k: _plain(v) for k, v in asdict(risk.limits).items()}
        journal = core.journal
        if self._unsent_ns:
            self.latency_ms = max(0.0, (core.clock.now_ns() - self._unsent_ns) / 1e6)
            self._unsent_ns = 0
        return {
            "segment": core.name,
            "time": time.time(),
            "trading": {
                "state": risk.trading_state.name,
                "reason": risk.reason,
                "kill_switch": {
                    "active": switch.active,
                    "reason": switch.reason,
                    "tripped_at": None if switch.tripped_at is None else switch.tripped_at.timestamp(),
                },
            },
            "fuse": {
                "state": fuse.state.name,
                "open_breakers": fuse.open_breakers,
                "counted_breakers": fuse.counted_breakers,
                "trips": fuse.trips,
            },
            "breakers": breakers,
            "timeline": list(self._timeline),
            "account": {
                "equity": _num(risk.equity),
                "peak_equity": _num(risk.peak_equity),
                "unrealized_pnl": _num(risk.unrealized_pnl),
                "drawdown": _num(risk.drawdown),
                "daily_loss": _num(risk.daily_loss),
                "gross_exposure": _num(risk.gross_exposure),
                "open_orders": risk.open_orders,
                "orders_last_second": risk.orders_last_second,
            },
            "limits": limits,
            **(
                {"history": list(self._history)}
                if full
                else {"history_tail": list(itertools.islice(reversed(self._history), _TAIL))[::-1]}
            ),
            "positions": positions,
            "correlation": {"symbols": symbols, "matrix": [[_rounded(v) for v in row] for row in matrix]},
            "orders": self._orders_by_state(risk.open_orders),
            "workers": [asdict(w) | {"rules_off": list(w.rules_off)} for w in core.workers() if not w.observer],
            "feeds": [
                {
                    "venue": q.venue,
                    "symbol": q.symbol,
                    "bid": _num(q.bid),
                    "ask": _num(q.ask),
                    "last": _num(q.last),
                    "lag_seconds": round(max(0, now_ns - q.receive_ns) / 1e9, 3),
                }
                for q in core.quotes.all()
            ],
            "pnl": {
                "by_venue": {k: _figures(f) for k, f in core.metrics.pnl_by("venue").items()},
                "by_strategy": {k: _figures(f) for k, f in core.metrics.pnl_by("strategy").items()},
            },
            "metrics": {
                "rejections": {k: v for k, v in core.metrics.rejections().items() if v},
                "orders_sent": core.metrics.order_latency().total,
            },
            "journal": None if journal is None else {"path": str(journal.path), "problem": journal.problem},
            "push_latency_ms": self.latency_ms,
        }

    def _orders_by_state(self, open_orders: int) -> dict[str, Any]:
        """Open orders from the ledger; with a journal, the orders of the last day by their
        last status (:attr:`journal_orders`, read by the server off its event loop)."""
        if self._core.journal is None:
            return {"open": open_orders, "by_state": {}, "source": "ledger"}
        return {"open": open_orders, "by_state": dict(self.journal_orders), "source": "journal"}


def journal_orders(path: str) -> dict[str, int]:
    """Orders of the last 24 hours in the journal at ``path``, counted by status (a query:
    run it off the event loop)."""
    from bot4.journal.query import Filters, orders
    from bot4.journal.store import JournalStore

    try:
        store = JournalStore(path, read_only=True)
    except (Bot4Error, OSError):
        return {}
    try:
        since = time.time_ns() - 86_400 * 1_000_000_000
        counts: dict[str, int] = {}
        for row in orders(store, Filters(since=since)):
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts
    except Exception:  # a journal being compacted or written: shown next time
        return {}
    finally:
        store.close()
