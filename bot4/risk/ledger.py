"""The risk ledger as a rule sees it.

Rules receive a :class:`RiskLedger` as their ``ledger`` argument. Before the rules run,
the engine *primes* it: the account numbers (equity, peak, gross exposure, open orders,
order rate, trading state, limits) and the checked symbol's row are read from the
segment in a handful of native calls, so every rule reads plain attributes. Rules never
run under the ledger mutex: ``reserve`` runs them first, then re-checks the built-in
limits natively under the mutex as it commits. Each thread has its own primed view.
Methods taking another symbol read the segment live.

For the ledger at any moment outside a check, use :meth:`bot4.RiskEngine.snapshot`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot4.errors import SegmentStateError
from bot4.orders.model import Order, OrderType, Side
from bot4.risk.limits import RiskLimits, TradingState
from bot4.shm import layout as L
from bot4.shm.text import decode_text

if TYPE_CHECKING:
    from bot4.clock import Clock
    from bot4.risk.kill_switch import TradingWord
    from bot4.shm._native import LedgerKernel
    from bot4.shm.segment import Segment

__all__ = ["RiskLedger", "daily_loss", "drawdown", "own_entry"]


def drawdown(equity: float, peak: float) -> float:
    """How far ``equity`` is below ``peak``, as a fraction of it (0 at or above it, or with no peak)."""
    return max(0.0, 1.0 - equity / peak) if peak > 0 else 0.0


def daily_loss(equity: float, day_start: float) -> float:
    """The loss since the day started at ``day_start``, as a fraction of it (0 for a gain, or no start)."""
    return max(0.0, (day_start - equity) / day_start) if day_start > 0 else 0.0


_TRADING_STATES = tuple(TradingState)
_NO_ROW = (0.0,) * L.SYMBOL_ROW
_READ_TRIES = 64
_PRICED = (OrderType.LIMIT, OrderType.STOP_LIMIT)


def own_entry(order: Order) -> float:
    """The entry price ``order`` gives itself (its limit or trigger price); NaN: the symbol's mark."""
    kind = order.type
    price = order.price if kind in _PRICED else order.stop_price if kind is OrderType.STOP else None
    return math.nan if price is None else price


class RiskLedger:
    """The shared risk numbers, primed for the order under check.

    Attributes (as of the last prime, i.e. the current check):
        limits: the :class:`bot4.RiskLimits` in force.
        trading_state: ACTIVE, REDUCING, HALTED or FLATTENING.
        equity_known: whether equity was ever set (rules needing it fail closed before).
        equity: cash plus unrealized P&L at the marks.
        unrealized_pnl: unrealized P&L of all positions.
        peak_equity: highest equity seen.
        drawdown: fraction below peak equity.
        day_start_equity: equity at the start of the trading day.
        daily_loss: loss since the day started, as a fraction of day-start equity.
        gross_exposure: sum over symbols of worst-case notional (positions and live orders).
        open_orders: live reservations, all processes.
    """

    limits: RiskLimits
    trading_state: TradingState
    equity_known: bool
    equity: float
    unrealized_pnl: float
    peak_equity: float
    drawdown: float
    day_start_equity: float
    daily_loss: float
    gross_exposure: float
    open_orders: int

    def __init__(
        self,
        segment: Segment,
        kernel: LedgerKernel,
        clock: Clock,
        trading: TradingWord,
        repair: Callable[[], None],
    ) -> None:
        lay = segment.layout
        self._trading = trading
        self._repair = repair
        self._seg = segment
        self._r = segment.region
        self._clock = clock
        self._base = lay.ledger
        self._sym0 = lay.symbols
        # (name -> index, names in order), replaced whole: threads may read it while one refreshes
        self._table: tuple[dict[str, int], tuple[str, ...]] = ({}, ())
        self._limits: RiskLimits | None = None
        self._limits_gen = -1
        self._kernel = kernel
        self._order: Order | None = None
        self._verdict: int | None = None
        self._row_symbol: str | None = None
        self._row: tuple[float, ...] = _NO_ROW
        self._entry: float | None = None
        self._reduces: bool | None = None
        self._i_version = self._base + L.L_VERSION
        self._version = -1
        self._rows: dict[str, tuple[float, ...]] = {}
        self.refresh()

    # ------------------------------------------------------------------ priming

    def refresh(self) -> None:
        """Re-read the account numbers, limits and trading state from the segment."""
        self._version = self._r.load(self._i_version)
        self._rows.clear()
        r, b = self._r, self._base
        cash, unrealized, peak, day_start, gross = r.loadf_range(b + L.L_CASH, L.ACCOUNT_FLOATS)
        known, trading, open_orders = r.load_range(b + L.L_EQUITY_SET, L.ACCOUNT_INTS)
        self.limits = self.current_limits()
        self.trading_state = _TRADING_STATES[trading & 0xFF]
        self.equity_known = known != 0
        self.equity = equity = cash + unrealized
        self.unrealized_pnl = unrealized
        self.peak_equity = peak
        self.drawdown = drawdown(equity, peak)
        self.day_start_equity = day_start
        self.daily_loss = daily_loss(equity, day_start)
        self.gross_exposure = gross
        self.open_orders = open_orders

    @property
    def orders_last_second(self) -> int:
        """Orders approved by ``reserve`` in the last second, all processes."""
        cur = self._clock.now_ns() // L.RATE_BUCKET_NS
        return self._r.tagged_sum(self._base + L.L_RATE, L.RATE_BUCKETS, cur - L.RATE_BUCKETS, cur)

    def prime(self, order: Order, verdict: int | None = None) -> None:
        """Load what the rules read for ``order`` (the engine calls this per check).

        Every ledger transaction bumps a version word; while it is unchanged the numbers
        read for the previous check are still the ledger's, and are reused. ``verdict``:
        the native pass's answer for this order, which :meth:`failing_codes` gives the
        built-in rules (so they word exactly what the engine decided).
        """
        self._order = order
        self._verdict = verdict
        self._entry = None
        self._reduces = None
        if self._r.load(self._i_version) != self._version:
            self.refresh()
        symbol = order.symbol
        row = self._rows.get(symbol)
        if row is None:
            index = self.symbol_index(symbol)
            row = _NO_ROW if index is None else self._r.loadf_range(self._row_start(index), L.SYMBOL_ROW)
            self._rows[symbol] = row
        self._row_symbol = symbol
        self._row = row

    def unprime(self) -> None:
        """Forget the checked order (its row may change once the check is over)."""
        self._order = None
        self._verdict = None
        self._row_symbol = None

    def current_limits(self) -> RiskLimits:
        """The limits in force now (re-read only when some process changed them)."""
        gen = self._r.load(self._base + L.L_LIMITS_GEN)
        if gen != self._limits_gen or self._limits is None:
            self._limits = self._read_limits()
            self._limits_gen = gen
        return self._limits

    def _read_limits(self) -> RiskLimits:
        """The limits block under its generation (odd while being written), in bounded tries;
        then once more after a repair (a writer killed mid-way left it odd)."""
        gen_i, base, load = self._base + L.L_LIMITS_GEN, self._base + L.L_LIMITS, self._r.load
        for attempt in range(2):
            for _ in range(_READ_TRIES):
                gen = load(gen_i)
                if gen == 0:
                    return RiskLimits()
                if gen & 1:
                    continue
                words = self._r.loadf_range(base, L.LIMITS_WORDS)
                if load(gen_i) == gen:
                    return RiskLimits.from_floats(list(words))
            if attempt == 0:
                self._repair()
        raise SegmentStateError("", "the risk limits stay torn after a repair (is a ledger writer stalled?)")

    @property
    def state_reason(self) -> str:
        """Why the trading state was last changed."""
        return self._trading.reason()

    def now_ns(self) -> int:
        """The core's clock, in ns."""
        return self._clock.now_ns()

    # ------------------------------------------------------------------ symbols

    def symbol_index(self, symbol: str) -> int | None:
        """The ledger index of ``symbol``, None if no process has used it yet."""
        index = self._table[0].get(symbol)
        if index is None:
            index = self._refresh_symbols()[0].get(symbol)
        return index

    def _refresh_symbols(self) -> tuple[dict[str, int], tuple[str, ...]]:
        """The symbol table, extended with the symbols other processes added (published whole)."""
        table = self._table
        used = self._r.load(self._base + L.L_SYMBOLS_USED)
        if used <= len(table[1]):
            return table
        symbols, names = dict(table[0]), list(table[1])
        for i in range(len(names), used):
            start = self._sym0 + i * L.SYM_WORDS + L.Y_NAME
            name = decode_text(self._r.load_range(start, L.SYMBOL_NAME_WORDS))
            symbols.setdefault(name, i)
            names.append(name)
        self._table = table = (symbols, tuple(names))
        return table

    def symbols(self) -> list[str]:
        """Every symbol the ledger tracks, in the order first seen."""
        return list(self._refresh_symbols()[1])

    def _row_start(self, index: int) -> int:
        return self._sym0 + index * L.SYM_WORDS + L.Y_POSITION

    def row(self, symbol: str) -> tuple[float, ...]:
        """(position, average price, mark, reserved buy qty, reserved sell qty, reserved buy
        notional, reserved sell notional, exposure) of ``symbol``; zeros if unknown."""
        if symbol == self._row_symbol:
            return self._row
        index = self.symbol_index(symbol)
        return _NO_ROW if index is None else self._r.loadf_range(self._row_start(index), L.SYMBOL_ROW)

    def position(self, symbol: str) -> float:
        """Signed position quantity (filled)."""
        return self.row(symbol)[0]

    def average_price(self, symbol: str) -> float:
        """Average entry price of the position (0 when flat)."""
        return self.row(symbol)[1]

    def mark(self, symbol: str) -> float | None:
        """Last price from ``on_price`` (or a fill), None if none yet."""
        value = self.row(symbol)[2]
        return value if value > 0 else None

    def reserved_quantity(self, symbol: str, side: Side) -> float:
        """Quantity reserved by live orders on ``side``."""
        return self.row(symbol)[3 if side is Side.BUY else 4]

    def reserved_notional(self, symbol: str, side: Side) -> float:
        """Notional reserved by live orders on ``side``."""
        return self.row(symbol)[5 if side is Side.BUY else 6]

    def symbol_exposure(self, symbol: str) -> float:
        """Worst-case notional of ``symbol``: its position at the mark, plus all live orders on one side."""
        return self.row(symbol)[7]

    def realized_pnl(self, symbol: str) -> float:
        """Realized P&L of ``symbol`` (average cost, before fees)."""
        index = self.symbol_index(symbol)
        return 0.0 if index is None else self._r.loadf(self._sym0 + index * L.SYM_WORDS + L.Y_REALIZED)

    # ------------------------------------------------------------------ per-order helpers

    def entry_price(self, order: Order) -> float | None:
        """The price the order is expected to fill at: its limit or trigger price, else the mark."""
        if order is self._order and self._entry is not None:
            return self._entry
        if order.type is OrderType.LIMIT or order.type is OrderType.STOP_LIMIT:
            entry = order.price
        elif order.type is OrderType.STOP:
            entry = order.stop_price
        else:
            entry = self.mark(order.symbol)
        if order is self._order:
            self._entry = entry
        return entry

    def exposure_after(self, order: Order) -> tuple[float, float] | None:
        """(symbol exposure, gross exposure) if ``order`` were reserved too; None without a price."""
        entry = self.entry_price(order)
        if entry is None:
            return None
        position, _, mark, _, _, buy, sell, old = self.row(order.symbol)
        value = position * (mark if mark > 0 else entry)
        if order.side is Side.BUY:
            long_side, short_side = value + buy + order.quantity * entry, value - sell
        else:
            long_side, short_side = value + buy, value - sell - order.quantity * entry
        new = max(abs(long_side), abs(short_side))  # worst case: every live order on one side fills
        return new, self.gross_exposure - old + new

    def mark_age(self, symbol: str) -> float | None:
        """Seconds since ``symbol`` was last marked (``risk.on_price``), or None if never. Read live."""
        index = self.symbol_index(symbol)
        marked = 0 if index is None else self._r.load(self._sym0 + index * L.SYM_WORDS + L.Y_MARK_NS)
        return None if marked <= 0 else max(0, self._clock.now_ns() - marked) / 1e9

    def failing_codes(self, order: Order, rules: int) -> int:
        """The native pass's verdict on ``order`` for the built-in rules in ``rules`` (a mask of
        their bits): one bit per failing rejection code, in the order of ``LEDGER_CODES``.
        For the order being checked, the verdict the engine primed this view with (it may
        hold other rules' codes too)."""
        if order is self._order and self._verdict is not None:
            return self._verdict
        index = self.symbol_index(order.symbol)
        stop = order.stop_loss
        return self._kernel.evaluate(
            rules,
            -1 if index is None else index,
            order.side.sign,
            order.quantity,
            own_entry(order),
            math.nan if stop is None else stop,
            order.reduce_only,
            self._clock.now_ns(),
        )

    def reduces_position(self, order: Order) -> bool:
        """Whether the order, with every live order on its side, only reduces the position."""
        if order is self._order and self._reduces is not None:
            return self._reduces
        position, _, _, buy_q, sell_q, _, _, _ = self.row(order.symbol)
        buying = order.side is Side.BUY
        if position == 0 or (position > 0) == buying:
            reduces = False
        else:
            reduces = order.quantity + (buy_q if buying else sell_q) <= abs(position) * (1 + 1e-12)
        if order is self._order:
            self._reduces = reduces
        return reduces

    def max_correlation(self, symbol: str, side: Side) -> tuple[float, str | None]:
        """Highest correlation of ``symbol`` with another symbol held in the same direction.

        Held means a position or live orders on that side. Pairs with fewer than
        ``correlation_min_samples`` joint samples do not count. Returns (correlation,
        that symbol), or (-inf, None) when nothing qualifies. Read live.
        """
        index = self.symbol_index(symbol)
        if index is None:
            return -math.inf, None
        value, other = self._kernel.max_correlation(index, side is Side.BUY)
        if other < 0:
            return value, None
        names = self._table[1]
        if other >= len(names):
            names = self._refresh_symbols()[1]
        return value, names[other]
