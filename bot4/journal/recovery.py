"""Recovery: the desk's state as the journal last recorded it (``bot4.journal.desk`` restores it).

Every record carries the state its event left (the symbol's position, average price,
realized P&L and mark; the account's cash, unrealized P&L, peak equity, day start and
day), so the state after any prefix of the journal is read off its last rows: the last
row of each symbol, the last row overall for the account, the last trading-state change
(or snapshot) for the kill switch and its reason, the last limits. Open orders are the
latest reservation of each client order id that no release, no complete fill and no later
snapshot of its epoch ended.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bot4.errors import ConfigError, JournalError
from bot4.journal.store import ORDERS, JournalStore
from bot4.orders.model import OrderType, Side
from bot4.risk.ledger import daily_loss, drawdown
from bot4.risk.limits import RiskLimits, TradingState

__all__ = ["AccountState", "JournalState", "OpenOrder", "SymbolState", "open_orders", "read_state"]


@dataclass(frozen=True)
class SymbolState:
    """One symbol's position as recorded."""

    position: float
    average_price: float
    realized_pnl: float
    mark: float


@dataclass(frozen=True)
class AccountState:
    """The account as recorded."""

    cash: float
    unrealized_pnl: float
    peak_equity: float
    day_start: float
    day_id: int
    equity_set: bool

    @property
    def equity(self) -> float:
        """Cash plus unrealized P&L."""
        return self.cash + self.unrealized_pnl

    @property
    def daily_loss(self) -> float:
        """The day's loss as a fraction of the day's starting equity (as the ledger reckons it)."""
        return daily_loss(self.equity, self.day_start)

    @property
    def drawdown(self) -> float:
        """How far equity is below its peak, as a fraction of the peak (as the ledger reckons it)."""
        return drawdown(self.equity, self.peak_equity)


@dataclass(frozen=True)
class OpenOrder:
    """An order the journal holds open: reserved, and neither released nor completely filled."""

    client_order_id: str
    strategy: str
    symbol: str
    side: Side
    quantity: float
    """The order's quantity."""
    left: float
    """What is left of it (its reservation)."""
    price: float
    """The entry price its reservation was valued at."""
    limit_price: float | None
    type: OrderType
    epoch: int
    reservation_id: int
    fills: tuple[tuple[str, float, float, float], ...] = ()
    """The fills the journal holds for it: (trade id, quantity, price, fee)."""
    stop_price: float | None = None
    """A stop's trigger price."""


@dataclass(frozen=True)
class JournalState:
    """The desk's state after journal event ``last_id`` (0: an empty journal)."""

    last_id: int
    account: AccountState | None = None
    symbols: dict[str, SymbolState] = field(default_factory=dict)
    trading_state: TradingState = TradingState.ACTIVE
    reason: str = ""
    limits: RiskLimits | None = None
    open_orders: tuple[OpenOrder, ...] = ()


def _f(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def read_state(store: JournalStore, upto: int | None = None) -> JournalState:
    """The state after event ``upto`` (default: the last one).

    Raises:
        JournalError: the journal's rows contradict each other (a reservation's symbol missing).
    """
    db = store.db
    last = store.last_id() if upto is None else min(upto, store.last_id())
    if last == 0:
        return JournalState(0)
    account_row = db.execute(
        "SELECT cash, unrealized, peak, day_start, day_id, equity_set, trading FROM events "
        "WHERE id <= ? AND cash IS NOT NULL ORDER BY id DESC LIMIT 1",
        (last,),
    ).fetchone()
    account = None
    trading_word = 0
    if account_row is not None:
        cash, unrealized, peak, day_start, day_id, equity_set, trading_word = account_row
        account = AccountState(_f(cash), _f(unrealized), _f(peak), _f(day_start), int(day_id or 0), bool(equity_set))
    symbols = {
        name: SymbolState(_f(pos), _f(avg), _f(realized), _f(mark))
        for name, pos, avg, realized, mark in db.execute(
            "SELECT symbol, position, avg_price, realized, mark FROM events WHERE id IN "
            "(SELECT MAX(id) FROM events WHERE symbol IS NOT NULL AND id <= ? GROUP BY symbol)",
            (last,),
        )
    }
    state = TradingState(int(trading_word or 0) & 0xFF)
    reason_row = db.execute(
        "SELECT text FROM events WHERE (kind = 'TRADING' OR (kind = 'SNAPSHOT' AND symbol IS NULL)) AND id <= ? "
        "ORDER BY id DESC LIMIT 1",
        (last,),
    ).fetchone()
    reason = reason_row[0] if reason_row is not None else ""
    limits_row = db.execute(
        "SELECT detail FROM events WHERE detail IS NOT NULL AND detail != '' AND id <= ? ORDER BY id DESC LIMIT 1",
        (last,),
    ).fetchone()
    limits = None
    if limits_row is not None:
        try:
            limits = RiskLimits.from_json(limits_row[0])
        except ConfigError as e:
            raise JournalError(f"the journal's last limits cannot be read: {e}") from e
    return JournalState(last, account, symbols, state, reason, limits, open_orders(store, last))


def open_orders(store: JournalStore, last: int) -> tuple[OpenOrder, ...]:
    """The orders the journal holds open after event ``last`` (see :func:`read_state`).

    Of each client order id, the reservations of its latest epoch (an earlier epoch's were
    taken over by a recovery) that no release ended and that the last snapshot of their
    epoch after them (if any) still held; what is left of one is its last fill's or
    snapshot's figure, else all it reserved. Its fills are those of its reservations from
    the latest that opened it (a new order's, not an amendment's or a recovery's) on. One
    pass over the order rows, in the journal's order.
    """
    db = store.db
    reserves: dict[str, list[tuple[Any, ...]]] = {}  # client id -> its reservations, rows
    opened: dict[str, int] = {}  # client id -> the id of the reservation that opened its order
    for row in db.execute(
        f"SELECT id, epoch, ref, symbol, code, f0, f1, f2, f3, text FROM events "
        f"WHERE kind = 'RESERVE' AND {ORDERS} AND id <= ? ORDER BY id",
        (last,),
    ):
        cid = str(row[9]).partition("\x1f")[0]
        reserves.setdefault(cid, []).append(row)
        if abs(row[4]) == 1:
            opened[cid] = row[0]
    released = {
        (epoch, ref)
        for epoch, ref in db.execute(
            f"SELECT epoch, ref FROM events WHERE kind = 'RELEASE' AND {ORDERS} AND id <= ?", (last,)
        )
    }
    left: dict[tuple[int, int], float] = {}
    fills: dict[tuple[int, int], list[tuple[str, float, float, float]]] = {}
    for kind, epoch, ref, f0, f1, f2, f3, text in db.execute(
        f"SELECT kind, epoch, ref, f0, f1, f2, f3, text FROM events "
        f"WHERE kind IN ('FILL', 'HELD') AND {ORDERS} AND id <= ? ORDER BY id",
        (last,),
    ):
        if kind == "FILL":
            left[(epoch, ref)] = _f(f3)
            fills.setdefault((epoch, ref), []).append((str(text), _f(f0), _f(f1), _f(f2)))
        else:
            left[(epoch, ref)] = _f(f0)
    snapshots = {  # each epoch's last snapshot: (its id, the reservations it held)
        epoch: (
            sid,
            {
                ref
                for (ref,) in db.execute(
                    f"SELECT ref FROM events WHERE kind = 'HELD' AND {ORDERS} AND epoch = ? AND f2 = ? AND id <= ?",
                    (epoch, head, last),
                )
            },
        )
        for epoch, sid, head in db.execute(
            "SELECT epoch, MAX(id), ref FROM events WHERE kind = 'SNAPSHOT' AND symbol IS NULL AND id <= ? "
            "GROUP BY epoch",
            (last,),
        )
    }
    out: list[OpenOrder] = []
    for cid, rows in reserves.items():
        newest = max(row[1] for row in rows)
        found = None
        for rid, epoch, ref, symbol, code, qty, entry, limit, ordered, text in rows:
            if epoch != newest or (epoch, ref) in released:
                continue
            snapshot = snapshots.get(epoch)
            if snapshot is not None and snapshot[0] > rid and ref not in snapshot[1]:
                continue  # the last snapshot after it no longer held it
            remaining = left.get((epoch, ref), _f(qty))
            if remaining > 0:
                found = (rid, epoch, ref, symbol, code, qty, entry, limit, ordered, text, remaining)
        if found is None:
            continue
        rid, epoch, ref, symbol, code, qty, entry, limit, ordered, text, remaining = found
        if symbol is None:
            raise JournalError(f"reservation {ref} of epoch {epoch} names no symbol")
        _, strategy, type_name, stop = (str(text).split("\x1f") + ["", "", ""])[:4]
        try:
            order_type = OrderType(type_name)
        except ValueError:
            order_type = OrderType.LIMIT if limit is not None else OrderType.MARKET
        start = opened.get(cid, 0)
        chain = [(row[1], row[2]) for row in rows if row[0] >= start]
        out.append(
            OpenOrder(
                client_order_id=cid,
                strategy=strategy or "default",
                symbol=symbol,
                side=Side.BUY if code > 0 else Side.SELL,
                quantity=_f(ordered) if ordered is not None else remaining,
                left=remaining,
                price=_f(entry),
                limit_price=None if limit is None else float(limit),
                type=order_type,
                epoch=int(epoch),
                reservation_id=int(ref),
                fills=tuple(fill for key in chain for fill in fills.get(key, ())),
                stop_price=float(stop) if stop else None,
            )
        )
    out.sort(key=lambda o: (o.epoch, o.reservation_id))
    return tuple(out)
