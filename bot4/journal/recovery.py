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

from bot4.errors import ConfigError, JournalError
from bot4.journal.store import ORDERS, JournalStore
from bot4.orders.model import OrderType, Side
from bot4.risk.ledger import daily_loss, drawdown
from bot4.risk.limits import RiskLimits, TradingState

__all__ = ["CLIENT_ID", "AccountState", "JournalState", "OpenOrder", "SymbolState", "open_orders", "read_state"]


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


CLIENT_ID = "substr({t}, 1, instr({t} || char(31), char(31)) - 1)"
"""SQL: the client order id of a RESERVE row's text (``client id␟strategy␟type``) in column ``t``."""

_OPEN = f"""
WITH latest AS (  -- each client order id's latest epoch: an earlier one's reservations were taken over
    SELECT {CLIENT_ID.format(t="text")} AS cid, MAX(epoch) AS epoch FROM events
    WHERE kind = 'RESERVE' AND {ORDERS} AND id <= :last GROUP BY cid
), snap AS (
    SELECT epoch, MAX(id) AS id FROM events WHERE kind = 'SNAPSHOT' AND symbol IS NULL AND id <= :last GROUP BY epoch
)
SELECT r.epoch, r.ref, r.symbol, r.code, r.f0, r.f1, r.f2, r.f3, r.text,
    (SELECT CASE x.kind WHEN 'FILL' THEN x.f3 ELSE x.f0 END FROM events x
        WHERE x.kind IN ('FILL', 'HELD') AND x.{ORDERS} AND x.epoch = r.epoch AND x.ref = r.ref AND x.id <= :last
        ORDER BY x.id DESC LIMIT 1)
FROM events r JOIN latest ON r.epoch = latest.epoch AND {CLIENT_ID.format(t="r.text")} = latest.cid
LEFT JOIN snap ON snap.epoch = r.epoch AND snap.id > r.id
LEFT JOIN events s ON s.id = snap.id
WHERE r.kind = 'RESERVE' AND r.{ORDERS} AND r.id <= :last
    AND NOT EXISTS (SELECT 1 FROM events e WHERE e.kind = 'RELEASE' AND e.{ORDERS} AND e.epoch = r.epoch
        AND e.ref = r.ref AND e.id <= :last)
    AND (s.id IS NULL OR EXISTS (SELECT 1 FROM events h WHERE h.kind = 'HELD' AND h.{ORDERS} AND h.epoch = r.epoch
        AND h.ref = r.ref AND h.f2 = s.ref AND h.id <= :last))
ORDER BY r.id
"""
"""The reservations open after event ``:last``: of each client order id, those of its latest
epoch that no release ended and the last snapshot of that epoch after them (if any) still
held. What is left of each: its last fill's or snapshot's figure, else all it reserved."""

_FILLS = f"""
SELECT f.text, f.f0, f.f1, f.f2 FROM events f JOIN events r
    ON r.kind = 'RESERVE' AND r.{ORDERS} AND r.epoch = f.epoch AND r.ref = f.ref
WHERE f.kind = 'FILL' AND f.{ORDERS} AND f.id <= :last AND {CLIENT_ID.format(t="r.text")} = :cid AND r.id >= (
    SELECT MAX(n.id) FROM events n WHERE n.kind = 'RESERVE' AND n.{ORDERS} AND n.id <= :last
        AND {CLIENT_ID.format(t="n.text")} = :cid AND abs(n.code) = 1)
ORDER BY f.id
"""
"""The fills the journal holds for the order of client id ``:cid``: those of its reservations
from the latest that opened it (a new order's, not an amendment's or a recovery's) on — an
earlier order of the same client id is another order."""


def open_orders(store: JournalStore, last: int) -> tuple[OpenOrder, ...]:
    """The orders the journal holds open after event ``last`` (see :func:`read_state`)."""
    latest: dict[str, OpenOrder] = {}
    for epoch, ref, symbol, code, qty, entry, limit, ordered, text, left in store.db.execute(_OPEN, {"last": last}):
        remaining = _f(qty) if left is None else _f(left)
        if not remaining > 0:
            continue
        if symbol is None:
            raise JournalError(f"reservation {ref} of epoch {epoch} names no symbol")
        client_id, strategy, type_name, stop = (str(text).split("\x1f") + ["", "", ""])[:4]
        try:
            order_type = OrderType(type_name)
        except ValueError:
            order_type = OrderType.LIMIT if limit is not None else OrderType.MARKET
        fills = store.db.execute(_FILLS, {"last": last, "cid": client_id}).fetchall()
        latest[client_id] = (  # an amendment in flight at a crash: its later reservation is the order
            OpenOrder(
                client_order_id=client_id,
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
                fills=tuple((str(t), _f(q), _f(p), _f(fee)) for t, q, p, fee in fills),
                stop_price=float(stop) if stop else None,
            )
        )
    return tuple(latest.values())
