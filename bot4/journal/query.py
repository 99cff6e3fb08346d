"""Reading a journal: orders, fills, P&L by day, risk events; and its retention.

Every query takes the same filters: a time window (``since`` inclusive, ``until``
exclusive, wall-clock ns) and a symbol. Results are lists of plain dicts (JSON and CSV ready).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from bot4.errors import ConfigError
from bot4.journal.recovery import open_orders
from bot4.journal.store import ORDERS, JournalStore
from bot4.orders.status import BY_CODE
from bot4.risk.limits import TradingState

__all__ = ["RISK_KINDS", "Filters", "compact", "events", "fills", "orders", "pnl_by_day"]

RISK_KINDS = ("TRADING", "LIMITS", "EQUITY", "BREAKER", "OPERATOR", "RECOVERED", "SNAPSHOT")
"""The kinds :func:`events` lists by default: every risk, kill-switch, breaker and operator event."""


def _state_name(word: int | None) -> str:
    """The trading state a journaled trading word holds, by name."""
    value = (word or 0) & 0xFF
    try:
        return TradingState(value).name
    except ValueError:
        return str(value)


@dataclass(frozen=True)
class Filters:
    """What a query keeps: events at ``since`` <= time < ``until`` (wall-clock ns; None: no
    bound) and of ``symbol`` (None: all)."""

    since: int | None = None
    until: int | None = None
    symbol: str | None = None

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(name, f"expected wall-clock nanoseconds or None, got {value!r}")
        if self.symbol is not None and (not isinstance(self.symbol, str) or not self.symbol):
            raise ConfigError("symbol", f"expected a symbol or None, got {self.symbol!r}")

    def where(self, alias: str = "") -> tuple[str, list[Any]]:
        """SQL conditions (joined by AND, or ``1``) and their parameters."""
        prefix = f"{alias}." if alias else ""
        parts: list[str] = []
        params: list[Any] = []
        if self.since is not None:
            parts.append(f"{prefix}time_ns >= ?")
            params.append(_ns(self.since))
        if self.until is not None:
            parts.append(f"{prefix}time_ns < ?")
            params.append(_ns(self.until))
        if self.symbol is not None:
            parts.append(f"{prefix}symbol = ?")
            params.append(self.symbol)
        return (" AND ".join(parts) or "1"), params


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="microseconds")


_NS_MIN, _NS_MAX = -(2**63), 2**63 - 1


def _ns(value: int) -> int:
    """A time bound as SQLite holds it (past the year 2262 is as far as it goes)."""
    return min(max(value, _NS_MIN), _NS_MAX)


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def orders(store: JournalStore, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """Every order reserved in the window: what it asked for, what filled, how it ended.

    ``status`` is the order's last status its order manager journaled (``accepted``,
    ``canceled``, ``rejected``, ``expired`` ...), ``filled``; else (reservations made without
    an order manager) ``open``, ``released`` or ``reclaimed`` (its process died).
    """
    where, params = filters.where("r")
    rows = store.db.execute(
        f"""
        SELECT r.time_ns, r.epoch, r.ref, r.symbol, r.code, r.f0, r.f1, r.f2, r.f3, r.text, r.pid,
            (SELECT COALESCE(SUM(f.f0), 0) FROM events f WHERE f.kind = 'FILL' AND f.{ORDERS} AND f.epoch = r.epoch AND f.ref = r.ref),
            (SELECT SUM(f.f0 * f.f1) FROM events f WHERE f.kind = 'FILL' AND f.{ORDERS} AND f.epoch = r.epoch AND f.ref = r.ref),
            (SELECT COALESCE(SUM(f.f2), 0) FROM events f WHERE f.kind = 'FILL' AND f.{ORDERS} AND f.epoch = r.epoch AND f.ref = r.ref),
            (SELECT MIN(f.f3) FROM events f WHERE f.kind = 'FILL' AND f.{ORDERS} AND f.epoch = r.epoch AND f.ref = r.ref),
            (SELECT e.code FROM events e WHERE e.kind = 'RELEASE' AND e.{ORDERS} AND e.epoch = r.epoch AND e.ref = r.ref LIMIT 1),
            (SELECT o.code FROM events o WHERE o.kind = 'ORDER' AND o.{ORDERS} AND o.epoch = r.epoch AND o.ref = r.ref
                ORDER BY o.id DESC LIMIT 1)
        FROM events r WHERE r.kind = 'RESERVE' AND r.{ORDERS} AND {where} ORDER BY r.id
        """,
        params,
    ).fetchall()
    out: list[dict[str, Any]] = []
    for (
        time_ns,
        epoch,
        ref,
        symbol,
        side,
        reserved,
        entry,
        limit,
        ordered,
        text,
        pid,
        filled,
        notional,
        fees,
        left,
        end,
        last_status,
    ) in rows:
        client_id, _, rest = str(text).partition("\x1f")
        strategy, _, kind = rest.partition("\x1f")
        if left is not None and left <= 0:
            status = "filled"
        elif last_status is not None and 0 <= last_status < len(BY_CODE):  # as its order manager last saw it
            status = BY_CODE[last_status].value
        elif end is not None:
            status = "reclaimed" if end == 1 else "released"
        else:
            status = "open"
        out.append(
            {
                "time": _iso(time_ns),
                "client_order_id": client_id,
                "strategy": strategy,
                "symbol": symbol,
                "side": "buy" if side > 0 else "sell",
                "type": kind,
                "quantity": _num(ordered) if ordered is not None else _num(reserved),
                "limit_price": _num(limit),
                "entry_price": _num(entry),
                "filled": float(filled),
                "average_price": (notional / filled) if filled else None,
                "fees": float(fees),
                "status": status,
                "pid": pid,
                "epoch": epoch,
                "reservation": ref,
            }
        )
    return out


def fills(store: JournalStore, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """Every fill in the window, with its order's client id and the position it left."""
    where, params = filters.where("f")
    rows = store.db.execute(
        f"""
        SELECT f.time_ns, f.symbol, f.code, f.f0, f.f1, f.f2, f.text, f.position, f.avg_price, f.realized,
            (SELECT r.text FROM events r WHERE r.kind = 'RESERVE' AND r.{ORDERS} AND r.epoch = f.epoch AND r.ref = f.ref LIMIT 1)
        FROM events f WHERE f.kind = 'FILL' AND f.{ORDERS} AND {where} ORDER BY f.id
        """,
        params,
    ).fetchall()
    return [
        {
            "time": _iso(time_ns),
            "client_order_id": str(order or "").partition("\x1f")[0],
            "symbol": symbol,
            "side": "buy" if side > 0 else "sell",
            "quantity": _num(qty),
            "price": _num(price),
            "fee": _num(fee),
            "trade_id": trade_id,
            "position": _num(position),
            "average_price": _num(average),
            "realized_pnl": _num(realized),
        }
        for time_ns, symbol, side, qty, price, fee, trade_id, position, average, realized, order in rows
    ]


def pnl_by_day(store: JournalStore, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """Per UTC day: fills, traded notional, fees, realized P&L (of ``filters.symbol``, or all),
    and the equity at the day's last event (the desk's, whatever the symbol filter)."""
    where, params = filters.where()
    days: dict[str, dict[str, Any]] = {}
    last_realized: dict[str, float] = {}
    cond = "1" if filters.symbol is None else "symbol = ?"
    before = [filters.symbol] if filters.symbol is not None else []
    if filters.since is not None:  # each symbol's realized P&L as the window opens
        for symbol, realized in store.db.execute(
            f"SELECT symbol, realized FROM events WHERE id IN (SELECT MAX(id) FROM events WHERE symbol IS NOT NULL "
            f"AND time_ns < ? AND {cond} GROUP BY symbol)",
            [_ns(filters.since), *before],
        ):
            last_realized[symbol] = _num(realized) or 0.0
    for time_ns, kind, symbol, qty, price, fee, realized, cash, unrealized in store.db.execute(
        f"SELECT time_ns, kind, symbol, f0, f1, f2, realized, cash, unrealized FROM events WHERE {where} ORDER BY id",
        params,
    ):
        day = _iso(time_ns)[:10]
        row = days.setdefault(
            day, {"day": day, "fills": 0, "notional": 0.0, "fees": 0.0, "realized_pnl": 0.0, "equity": None}
        )
        if symbol is not None and realized is not None:
            previous = last_realized.get(symbol, 0.0)
            row["realized_pnl"] += float(realized) - previous
            last_realized[symbol] = float(realized)
        if kind == "FILL":
            row["fills"] += 1
            row["notional"] += float(qty) * float(price)
            row["fees"] += float(fee or 0.0)
        if cash is not None and unrealized is not None:
            row["equity"] = float(cash) + float(unrealized)
    return list(days.values())


def events(
    store: JournalStore, filters: Filters = Filters(), kinds: tuple[str, ...] | None = RISK_KINDS
) -> list[dict[str, Any]]:
    """Events of ``kinds`` (None: every kind) in the window, oldest first."""
    where, params = filters.where()
    if kinds is not None:
        where += f" AND kind IN ({', '.join('?' * len(kinds))})"
        params += list(kinds)
    rows = store.db.execute(
        f"SELECT id, time_ns, kind, pid, symbol, ref, code, f0, f1, f2, f3, text, trading, cash, unrealized, peak "
        f"FROM events WHERE {where} ORDER BY id",
        params,
    ).fetchall()
    out: list[dict[str, Any]] = []
    for id_, time_ns, kind, pid, symbol, ref, code, f0, f1, f2, f3, text, trading, cash, unrealized, peak in rows:
        row: dict[str, Any] = {"id": id_, "time": _iso(time_ns), "kind": kind, "pid": pid, "symbol": symbol}
        if kind == "TRADING":
            row["state"] = _state_name(code)
        row.update(
            ref=ref, code=code, figures=[_num(f) for f in (f0, f1, f2, f3)], text=(text or "").replace("\x1f", " ")
        )
        row["trading"] = _state_name(trading)
        equity = None if cash is None or unrealized is None else float(cash) + float(unrealized)
        row.update(equity=equity, peak_equity=_num(peak))
        out.append(row)
    return out


def compact(store: JournalStore, before_ns: int) -> int:
    """Delete events recorded before ``before_ns`` that the desk's state no longer depends on;
    return how many.

    What goes is a prefix of the journal (events before the first one recorded at or after
    ``before_ns``), less what is kept whatever its age: the last event of each symbol, the
    last event (the account), the last trading-state change and the last limits, and every
    reservation and fill of each order the journal holds open. A journal compacted at any
    point rebuilds the same desk.
    """
    if isinstance(before_ns, bool) or not isinstance(before_ns, int):
        raise ConfigError("before_ns", f"expected wall-clock nanoseconds, got {before_ns!r}")
    db = store.db
    with store._tx():
        first = db.execute("SELECT MIN(id) FROM events WHERE time_ns >= ?", (_ns(before_ns),)).fetchone()[0]
        cutoff = first if first is not None else store.last_id() + 1
        held = open_orders(store, store.last_id())
        db.execute("CREATE TEMP TABLE IF NOT EXISTS keep(id INTEGER PRIMARY KEY)")
        db.execute("DELETE FROM keep")
        db.execute("INSERT OR IGNORE INTO keep SELECT MAX(id) FROM events WHERE symbol IS NOT NULL GROUP BY symbol")
        db.execute("INSERT OR IGNORE INTO keep SELECT MAX(id) FROM events")
        db.execute(  # the trading state's reason
            "INSERT OR IGNORE INTO keep SELECT MAX(id) FROM events WHERE kind = 'TRADING' "
            "OR (kind = 'SNAPSHOT' AND symbol IS NULL)"
        )
        db.execute("INSERT OR IGNORE INTO keep SELECT MAX(id) FROM events WHERE detail IS NOT NULL AND detail != ''")
        cids = {order.client_order_id for order in held}
        keys = [
            (epoch, ref)
            for epoch, ref, text in db.execute(
                f"SELECT epoch, ref, text FROM events WHERE kind = 'RESERVE' AND {ORDERS}"
            )
            if str(text).partition("\x1f")[0] in cids
        ]
        db.execute("CREATE TEMP TABLE IF NOT EXISTS held(epoch INTEGER, ref INTEGER)")
        db.execute("DELETE FROM held")
        db.executemany("INSERT INTO held VALUES (?, ?)", keys)
        db.execute(  # every reservation, fill and snapshot figure of an order held open
            f"INSERT OR IGNORE INTO keep SELECT x.id FROM held JOIN events x ON x.epoch = held.epoch "
            f"AND x.ref = held.ref AND x.kind IN ('RESERVE', 'FILL', 'HELD') AND x.{ORDERS}"
        )
        cur = db.execute(
            "DELETE FROM events WHERE id < ? AND id NOT IN (SELECT id FROM keep WHERE id IS NOT NULL)", (cutoff,)
        )
        deleted = cur.rowcount
    return int(deleted)
