"""The risk engine: pre-trade checks and check-and-reserve across processes."""

from __future__ import annotations

import logging
import math
import struct
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot4._numbers import is_number, is_positive
from bot4._symbols import symbol_problem
from bot4.errors import CapacityError, ConfigError, InvalidOrderError, ReservationError, SegmentStateError
from bot4.orders.model import Order, Side
from bot4.orders.status import STATUS_CODE, OrderStatus
from bot4.plugins.dispatch import implementations, watched
from bot4.risk._kernel import CODE_MASKS, NATIVE_RULE_TYPES, RULE_BITS, make_kernel
from bot4.risk.correlation import read_matrix, take_sample
from bot4.risk.decision import Decision, Rejection, Reservation
from bot4.risk.exposure import mark_approved
from bot4.risk.kill_switch import UNKNOWN_REASON, KillSwitch, TradingWord
from bot4.risk.ledger import RiskLedger, own_entry
from bot4.risk.limits import RiskLimits, TradingState, exceeds
from bot4.risk.snapshot import PositionSnapshot, RiskSnapshot
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm._proc import is_alive
from bot4.shm.events import RECORD_WAIT, EventKind, EventRing, bind
from bot4.shm.metrics import SegmentMetrics
from bot4.shm.mutex import Transaction, ledger_mutex
from bot4.shm.text import encode_text

if TYPE_CHECKING:
    from bot4._context import CoreContext
    from bot4.fleet.link import FleetLink

__all__ = ["RiskEngine"]

log = logging.getLogger("bot4.risk")

Rule = Callable[[Order, RiskLedger], Any]
RuleEntry = tuple[str, Rule, Rule, int]  # (plugin name, call, direct call, native bit or -1): see Implementation
RuleSet = tuple[
    tuple[RuleEntry, ...], int, bool, int, bool
]  # (rules, native mask, any Python rule, generation, watched)
ENGINE = "bot4.risk"
"""The ``rule`` name on rejections that come from the engine itself."""
_APPROVED = Decision()
_HALTED = int(TradingState.HALTED)
_FLATTENING = int(TradingState.FLATTENING)
_TRADING_BIT = RULE_BITS["trading_state"]
_TRIPPED = (TradingState.HALTED, TradingState.FLATTENING)  # the kill switch's states
_SWEEP_NS = 1_000_000_000
_EPS = 1e-9
_NOT_LIVE, _OVERFILL = 1, 2  # LedgerKernel.fill's refusals
_NAN = math.nan
_new = tuple.__new__  # builds the NamedTuple results without their Python-level __new__
_RESERVE, _RELEASE, _FILL, _MARK = (
    EventKind.RESERVE.value,
    EventKind.RELEASE.value,
    EventKind.FILL.value,
    EventKind.MARK.value,
)
_EQUITY, _LIMITS, _TRADING = EventKind.EQUITY.value, EventKind.LIMITS.value, EventKind.TRADING.value
_OPERATOR, _ORDER = EventKind.OPERATOR.value, EventKind.ORDER.value
_RELEASED, _RECLAIMED = 0, 1  # a RELEASE record's code
_CONTINUES = {"": 1, "amended": 2, "recovered": 3}
"""A RESERVE record's code: the side's sign times this (a new order, an amendment's, a recovery's)."""
_events_blocked = _native.events_blocked
_EVENTS = L.EVENTS


def _check_price(field: str, value: Any) -> float:
    if not is_positive(value):
        raise ConfigError(field, f"must be a finite number > 0, got {value!r}")
    return float(value)


class RiskEngine:
    """Pre-trade risk for every process of a core (``core.risk``).

    :meth:`check` is a what-if with no side effects; :meth:`reserve` checks and reserves
    atomically across all processes, so two workers can never together pass a limit that
    each alone respects. Rules are plugins (hook ``bot4_check_order``); the built-in ones
    are registered like any other and can be blocked or replaced by name.

    No plugin runs while the ledger mutex is held: ``reserve`` asks the user rules first,
    on a consistent view of the ledger, then takes the mutex only to re-check the built-in
    limits natively (they are exact across processes) and commit.
    """

    def __init__(self, ctx: CoreContext) -> None:
        seg = ctx.segment
        lay = seg.layout
        self._ctx = ctx
        self._seg = seg
        self._r = seg.region
        self._base = lay.ledger
        self._mutex = ledger_mutex(seg, ctx.ident)
        bind(self._mutex, lay)
        self._quick_mutex = ledger_mutex(seg, ctx.ident, timeout=RECORD_WAIT)  # a trip's record never waits long
        bind(self._quick_mutex, lay)
        self._events = EventRing(seg.region, lay)
        self._metrics = SegmentMetrics(seg.region, lay, lambda: ctx.ident)
        self._ev_on = lay.events + _native.EV_ON
        self._ev_ring = lay.events
        self._kernel = make_kernel(seg)
        self._trading = TradingWord(seg.region, lay.ledger, ctx.clock)
        self._ledger = RiskLedger(seg, self._kernel, ctx.clock, self._trading, self._repair)
        self._views = threading.local()  # a RiskLedger per thread for the rules (primed per order)
        self._kill_switch = KillSwitch(self)
        # (rules, native mask, any Python rule, plugin generation, watched), replaced whole by _load_rules
        self._rule_set: RuleSet = ((), 0, False, -1, False)
        self._halted: tuple[int, Decision] = (-1, _APPROVED)
        self._i_trading = lay.ledger + L.L_TRADING
        self._res0 = lay.reservations
        self._load = seg.region.load
        self._day: tuple[int, int, int] = (0, 0, 0)  # (start ns, end ns, number) of the trading day
        self._day_limits: RiskLimits | None = None
        if self._load(self._base + L.L_LIMITS_GEN) == 0:  # a new ledger starts with the default limits
            with self._mutex as tx:
                if self._load(self._base + L.L_LIMITS_GEN) == 0:
                    self._limits_writes(tx, RiskLimits())

    # ------------------------------------------------------------------ surface

    @property
    def ledger(self) -> RiskLedger:
        """The shared numbers, read-only."""
        return self._ledger

    @property
    def kill_switch(self) -> KillSwitch:
        """The desk's kill switch."""
        return self._kill_switch

    @property
    def limits(self) -> RiskLimits:
        """The limits in force."""
        return self._ledger.current_limits()

    def configure(self, limits: RiskLimits) -> None:
        """Set the limits for every process (from each one's next check)."""
        if not isinstance(limits, RiskLimits):
            raise ConfigError("limits", f"expected a RiskLimits, got {type(limits).__name__}")
        with self._mutex as tx:
            self._limits_writes(tx, limits)
            floats = limits.to_floats()
            tx.record(_LIMITS, 0, -1, 0, _NAN, _NAN, _NAN, _NAN, struct.pack(f"<{len(floats)}d", *floats))

    def _limits_writes(self, tx: Transaction, limits: RiskLimits) -> None:
        gen_i = self._base + L.L_LIMITS_GEN
        gen = self._r.load(gen_i)
        gen += 2 if gen & 1 == 0 else 1
        tx.set(gen_i, gen - 1)  # odd: being written (a torn read is retried)
        tx.set(self._base + L.L_LIMITS, tuple(limits.to_floats()))
        tx.set(gen_i, gen)

    # ------------------------------------------------------------------ checks

    def check(self, order: Order) -> Decision:
        """Evaluate every rule against ``order``; change nothing. Returns every rejection."""
        if type(order) is not Order:
            raise InvalidOrderError("order", f"expected a bot4.Order, got {type(order).__name__}")
        trading = self._load(self._i_trading)
        if trading & 0xFF == _HALTED:  # the kill switch first of all, without the rules
            return self._halted_decision(trading)
        entry = own_entry(order)
        now = self._ctx.now_ns()
        decision = self._evaluate(order, now, entry, True)
        if decision is _APPROVED and trading & 0xFF == _FLATTENING:
            decision = self._flattening_check(order, now, entry)
        return decision

    def _evaluate(self, order: Order, now: int, entry: float, user: bool, retry: bool = True) -> Decision:
        """Run the rules; collect every rejection. ``entry``: the order's own entry price, NaN for the mark.

        The built-in rules' verdicts come from one native pass; a built-in rule's plugin
        is asked for its Rejection only when the native pass says it fails (a plugin that
        words none still rejects: fail closed). User rules (and built-ins replaced by a
        user's plugin) run in Python, in plugin order, and only when ``user`` is true:
        never under the ledger mutex. When the hook is watched (a wrapper, tracing, a
        monitor), the ``user`` pass calls every rule through pluggy, built-ins too; the
        pass under the mutex never does, and its native verdicts decide.
        """
        rules, mask, python_rules, gen, watched = self._rule_set
        if self._ctx.plugins.generation != gen:
            rules, mask, python_rules, gen, watched = self._load_rules()
        python = user and python_rules
        if python and watched:
            return self._evaluate_watched(order, rules)
        fails = 0
        if mask:
            stop = order.stop_loss
            index = self._ledger.symbol_index(order.symbol)
            try:
                fails = self._kernel.evaluate(
                    mask,
                    -1 if index is None else index,
                    1 if order.side is Side.BUY else -1,
                    order.quantity,
                    entry,
                    _NAN if stop is None else stop,
                    order.reduce_only,
                    now,
                )
            except SegmentStateError:  # limits torn by a writer killed mid-way: repair, ask once more
                if not retry:
                    raise
                self._repair()
                return self._evaluate(order, now, entry, user, False)
            if not fails and not python:
                return _APPROVED
        elif not python:
            return _APPROVED
        rejections: list[Rejection] | None = None
        ledger = self._thread_view("rules")
        ledger.prime(order, fails if mask else None)
        try:
            for name, _, rule, bit in rules:
                if (bit < 0 and not python) or (bit >= 0 and not fails & CODE_MASKS[bit]):
                    continue
                result = _ask(name, rule, order, ledger)
                if result is None:
                    if bit < 0:
                        continue
                    result = Rejection(name, "RULE_FAILED", f"rule {name!r} denies the order")
                if rejections is None:
                    rejections = [result]
                else:
                    rejections.append(result)
        finally:
            ledger.unprime()
        return _APPROVED if rejections is None else Decision(tuple(rejections))

    def _evaluate_watched(self, order: Order, rules: tuple[RuleEntry, ...]) -> Decision:
        """Every rule through pluggy, in plugin order, outside the mutex (see :meth:`_evaluate`)."""
        ledger = self._thread_view("rules")
        ledger.prime(order)
        try:
            asked = (_ask(name, call, order, ledger) for name, call, _, _ in rules)
            rejections = tuple(result for result in asked if result is not None)
        finally:
            ledger.unprime()
        return Decision(rejections) if rejections else _APPROVED

    def _flattening_check(self, order: Order, now: int, entry: float) -> Decision:
        """While the kill switch flattens, only orders that reduce a position pass, whatever
        rules are registered: the kill switch is not a rule (the trading-state rule, when
        registered, has said so already)."""
        if self._rule_set[1] >> _TRADING_BIT & 1:
            return _APPROVED
        index = self._ledger.symbol_index(order.symbol)
        side = 1 if order.side is Side.BUY else -1
        stop = _NAN if order.stop_loss is None else order.stop_loss
        args = (-1 if index is None else index, side, order.quantity, entry, stop, order.reduce_only, now)
        if not self._kernel.evaluate(1 << _TRADING_BIT, *args):
            return _APPROVED
        why = f"trading halted, positions being closed: {self._trading.reason()}"
        return Decision((Rejection("bot4.rule.trading_state", "KILL_SWITCH", why),))

    def _thread_view(self, purpose: str) -> RiskLedger:
        """This thread's own view of the ledger for ``purpose`` (the rules prime theirs per order)."""
        ledger: RiskLedger | None = getattr(self._views, purpose, None)
        if ledger is None:
            ledger = RiskLedger(self._seg, self._kernel, self._ctx.clock, self._trading, self._repair)
            setattr(self._views, purpose, ledger)
        return ledger

    def _repair(self) -> None:
        """Finish what a ledger writer killed mid-way left: the next mutex holder replays it."""
        with self._mutex:
            pass

    def _halted_decision(self, trading: int) -> Decision:
        cached_word, decision = self._halted
        if cached_word != trading:
            reason = self._trading.reason()
            decision = Decision((Rejection("bot4.rule.trading_state", "KILL_SWITCH", f"trading halted: {reason}"),))
            if reason != UNKNOWN_REASON:  # still being written: word it again next time
                self._halted = (trading, decision)
        return decision

    def _load_rules(self) -> RuleSet:
        pm = self._ctx.plugins
        gen = pm.generation  # before listing: a plugin registered meanwhile is picked up next time
        rules: list[RuleEntry] = []
        watching = watched(pm, "bot4_check_order")
        for impl, call, direct in implementations(pm, "bot4_check_order"):
            plugin = impl.plugin
            bit = RULE_BITS[getattr(plugin, "kernel", "")] if type(plugin) in NATIVE_RULE_TYPES else -1
            rules.append((impl.plugin_name, call, direct, bit))
        mask = sum(1 << bit for *_, bit in rules if bit >= 0)
        python_rules = watching or any(bit < 0 for *_, bit in rules)
        self._rule_set = rule_set = (tuple(rules), mask, python_rules, gen, watching)
        self._publish_rules_off(mask)
        return rule_set

    def _publish_rules_off(self, mask: int) -> None:
        """Record in this process's worker slot which built-in rules it does not run (``bot4 status``)."""
        ctx = self._ctx
        if not ctx.closed:
            off = ((1 << len(RULE_BITS)) - 1) & ~mask
            self._r.store(self._seg.layout.slot(ctx.slot) + L.S_RULES_OFF, off)

    def rule_names(self) -> list[str]:
        """The rules that run, in the order they run."""
        return [name for name, *_ in self._load_rules()[0]]

    # ------------------------------------------------------------------ reserve / release / fill

    def reserve(self, order: Order, *, continues: str = "") -> Decision:
        """Check ``order`` and, if approved, reserve its exposure — atomically across processes.

        ``continues``: with a journal, that this reservation takes over from an earlier one
        of the same order (``"amended"``: an amendment's), not a new order of that client id.

        An approved decision carries a :class:`Reservation`; give it back with
        :meth:`release` (rejected or cancelled at the venue) or turn it into a position
        with :meth:`on_fill`. A reservation held by a process that dies is reclaimed.

        User rules run first, outside the ledger mutex, on a consistent view of the ledger;
        the built-in rules and the kill switch are then checked again under the mutex,
        with the reservation, so they hold exactly across processes however long a user
        rule took.
        """
        if continues and continues != "amended":
            raise ConfigError("continues", f"expected '' or 'amended', got {continues!r}")
        if self._ctx.observer:
            raise ConfigError(
                "observer",
                "this core only watches (Core.attach(observer=True)) and takes no risk: attach as a worker to trade",
            )
        if type(order) is not Order:
            raise InvalidOrderError("order", f"expected a bot4.Order, got {type(order).__name__}")
        trading = self._load(self._i_trading)
        python_rules = False
        if trading & 0xFF == _HALTED:
            decision = self._halted_decision(trading)
        else:
            now = self._ctx.now_ns()
            if now - self._load(self._base + L.L_SWEEP_NS) >= _SWEEP_NS:
                self.reclaim()
            entry = own_entry(order)
            python_rules, gen = self._rule_set[2:4]
            if self._ctx.plugins.generation != gen:
                python_rules = self._load_rules()[2]
            decision = self._evaluate(order, now, entry, True) if python_rules else _APPROVED
        try:
            if decision is _APPROVED:
                with self._mutex as tx:
                    trading = self._load(self._i_trading)  # tripped while the user rules ran?
                    if trading & 0xFF != _HALTED:
                        if python_rules:  # they may have taken a while: the time it commits
                            now = self._ctx.now_ns()
                        decision = self._evaluate(order, now, entry, False)
                        if decision is _APPROVED and trading & 0xFF == _FLATTENING:
                            decision = self._flattening_check(order, now, entry)
                        if decision is _APPROVED:
                            decision = self._reserve_writes(tx, order, now, entry, continues=continues)
                if trading & 0xFF == _HALTED:
                    decision = self._halted_decision(trading)
            fleet = self._ctx.fleet
            if fleet is not None and decision.reservation is not None:
                decision = self._fleet_claim(fleet, order, decision.reservation)
            if decision.rejections:
                if not self._ctx.closed:
                    self._metrics.count_rejections(decision.codes)
                self._ctx.notify("bot4_order_rejected", order=order, decision=decision)
            return decision
        except BaseException:  # Ctrl-C (or a failing fleet) once reserved: the caller never gets it
            if decision.reservation is not None:  # (not live unless committed: then nothing to give back)
                self._give_back(decision.reservation)
            raise

    def _give_back(self, reservation: Reservation) -> None:
        """Release a reservation its caller will never see (an exception after the commit)."""
        try:
            self.release(reservation)
        except Exception:
            log.exception("reservation %s could not be given back; reclaim() frees it with its process", reservation.id)

    def _fleet_claim(self, fleet: FleetLink, order: Order, reservation: Reservation) -> Decision:
        """Count an approved reservation in the fleet's exposure; undo it here if the fleet refuses."""
        code = fleet.claim(reservation.id, reservation.quantity * reservation.price)
        if code is None:
            with self._mutex as tx:  # from now on the fleet counts it by itself, not with the positions
                mark_approved(self, tx, reservation.slot, reservation.id)
            return _new(Decision, ((), reservation))
        with self._mutex as tx:
            if self._live(reservation):
                self._free_entry(tx, reservation.slot)
        self._tell_fleet()  # a sync made meanwhile counted it with the positions: no longer
        if code == "FLEET_EXPOSURE":
            limit = self.limits.max_gross_exposure
            why = f"the fleet's gross exposure would pass max_gross_exposure ({limit}x equity)"
        elif code == "FLEET_UNREPLICATED":
            why = f"fewer than {fleet.policy.replicas} Redis replicas acknowledged the reservation: refused, undone"
        elif code == "FLEET_RESYNC":
            why = "the fleet's exposure state starts anew (a new desk, or Redis lost it): waiting for the hosts to register"
        else:
            why = "the fleet's Redis is unreachable: reservations fail closed"
        return Decision((Rejection(ENGINE, code, why),))

    def _exposure_figures(self) -> tuple[float, float, int]:
        """This ledger's gross exposure, equity, and the version they were read at (one consistent read)."""

        def read() -> tuple[float, float, int]:
            cash, unrealized, _, _, gross = self._r.loadf_range(self._base + L.L_CASH, L.ACCOUNT_FLOATS)
            return gross, cash + unrealized, self._r.load(self._base + L.L_VERSION)

        return self._mutex.read(read)

    def _tell_fleet(self, ended: tuple[int, ...] = ()) -> None:
        """Give the fleet this ledger's positions, and the reservations that ``ended``."""
        fleet = self._ctx.fleet
        if fleet is not None:
            fleet.sync(ended)

    @property
    def trading_state(self) -> TradingState:
        """The desk's trading state now (ACTIVE, REDUCING, HALTED or FLATTENING)."""
        return TradingState(self._load(self._i_trading) & 0xFF)

    @property
    def state_reason(self) -> str:
        """Why the trading state was last changed."""
        return self._trading.reason()

    def _reserve_writes(
        self,
        tx: Transaction,
        order: Order,
        now: int,
        entry: float,
        *,
        journal_check: bool = True,
        quantity: float | None = None,
        continues: str = "",
    ) -> Decision:
        if journal_check:
            blocked = _events_blocked(self._r, self._ev_ring, _EVENTS)
            if blocked:
                return Decision((Rejection(ENGINE, "JOURNAL", self._events.describe(blocked)),))
        index = self._ledger.symbol_index(order.symbol)
        if index is None:
            if entry != entry:  # NaN: the mark of a symbol never priced
                return _price_unknown(order)
            index = self._symbol_for_write(tx, order.symbol)
            if index is None:
                limit = self._seg.layout.max_symbols
                return Decision((Rejection(ENGINE, "SYMBOLS_FULL", f"the ledger tracks {limit} symbols"),))
        side = order.side
        # entry NaN: the kernel reads the mark under the mutex (live, not the primed ledger)
        quantity = order.quantity if quantity is None else quantity
        tx.staged, res_id, slot, entry = self._kernel.reserve(
            tx.staged, index, 1 if side is Side.BUY else -1, quantity, entry, self._ctx.ident, now
        )
        if res_id == 0:
            if slot < 0:
                return _price_unknown(order)
            return Decision((Rejection(ENGINE, "RESERVATIONS_FULL", f"all {slot} reservation entries are live"),))
        price = order.price
        tx.record(
            _RESERVE,
            res_id,
            index,
            _CONTINUES[continues] if side is Side.BUY else -_CONTINUES[continues],
            quantity,
            entry,
            _NAN if price is None else price,
            order.quantity,
            _reserve_text(order),
        )
        reservation = _new(Reservation, (res_id, slot, order.symbol, side, quantity, entry))
        return _new(Decision, ((), reservation))

    def release(self, reservation: Reservation) -> bool:
        """Give back what ``reservation`` still holds. False if it was already released or filled."""
        self._check_reservation(reservation)
        with self._mutex as tx:
            if not self._live(reservation):
                return False
            self._free_entry(tx, reservation.slot)
        self._tell_fleet((reservation.id,))
        return True

    def on_fill(
        self, reservation: Reservation, quantity: float, price: float, fee: float = 0.0, *, trade_id: str = ""
    ) -> None:
        """Turn ``quantity`` of a reservation into position at ``price``; ``fee`` is paid from equity.

        Realized P&L (average cost) goes to equity, and the fill price becomes the mark.
        The reservation ends when fully filled. ``trade_id`` (the venue's) goes to the journal.

        Raises:
            ReservationError: the reservation is not live, or ``quantity`` exceeds what is left.
        """
        self._check_reservation(reservation)
        quantity = _check_price("quantity", quantity)
        price = _check_price("price", price)
        if not is_number(fee):
            raise ConfigError("fee", f"must be a finite number, got {fee!r}")
        if not isinstance(trade_id, str):
            raise ConfigError("trade_id", f"expected a string, got {trade_id!r}")
        self._fill(reservation, quantity, price, float(fee), trade_id)

    def _fill(self, reservation: Reservation, quantity: float, price: float, fee: float, trade_id: str = "") -> None:
        """:meth:`on_fill` of a checked reservation and floats."""
        limits, day = self._limits_and_day()
        with self._mutex as tx:
            tx.staged, code, left, drawdown, loss = self._kernel.fill(
                tx.staged,
                reservation.slot,
                reservation.id,
                quantity,
                price,
                fee,
                day,
                _EPS * reservation.quantity,
            )
            if code == _NOT_LIVE:
                raise ReservationError(f"reservation {reservation.id} is not live (released, filled or reclaimed)")
            if code == _OVERFILL:
                raise ReservationError(f"fill of {quantity} exceeds the {left} left on reservation {reservation.id}")
            tx.record(
                _FILL,
                reservation.id,
                self._r.load(self._res0 + reservation.slot * L.RES_WORDS + L.V_SYMBOL),
                1 if reservation.side is Side.BUY else -1,
                quantity,
                price,
                fee,
                left,
                trade_id,
            )
            events = self._breaches(limits, drawdown, loss)
        if self._ctx.fleet is not None:
            self._tell_fleet(() if self._live(reservation) else (reservation.id,))
        self._tripped(events)

    # ------------------------------------------------------------------ prices and equity

    def on_price(self, symbol: str, price: float) -> None:
        """Record the latest price of ``symbol``: marks, unrealized P&L, exposure, correlation."""
        problem = symbol_problem(symbol)
        if problem is not None:
            raise ConfigError("symbol", problem)
        price = _check_price("price", price)
        now = self._ctx.clock.now_ns()
        limits, day = self._limits_and_day()
        with self._mutex as tx:
            last = self._r.load(self._base + L.L_LAST_SAMPLE_NS)
            if now - last >= limits.correlation_sample_seconds * 1e9 or last == 0:
                take_sample(self._seg, tx, limits, now)
            index = self._symbol_for_write(tx, symbol)
            if index is None:
                raise CapacityError(
                    f"the risk ledger tracks its maximum of {self._seg.layout.max_symbols} symbols; cannot add "
                    f"{symbol!r} (create the core with a larger max_symbols)"
                )
            unrealized = self._symbol_writes(tx, index, mark=price)
            tx.set(self._seg.layout.symbol(index) + L.Y_MARK_NS, max(now, 1))  # its age for STALE_PRICE (0: never)
            cash = self._r.loadf(self._base + L.L_CASH)
            events = self._account_writes(tx, limits, day, cash=cash, unrealized=unrealized)
            tx.record(_MARK, 0, index, 0, price, _NAN, _NAN, _NAN, "")
        self._tell_fleet()
        self._tripped(events)

    def set_equity(self, value: float) -> None:
        """Set account equity (realized and unrealized) as reported by the account; drives drawdown."""
        value = _check_price("value", value)
        limits, day = self._limits_and_day()
        with self._mutex as tx:
            unrealized = self._r.loadf(self._base + L.L_UNREALIZED)
            first = not self._r.load(self._base + L.L_EQUITY_SET)
            tx.set(self._base + L.L_CASH, value - unrealized)
            events = self._account_writes(
                tx, limits, day, cash=value - unrealized, unrealized=unrealized, initial=first
            )
            tx.record(_EQUITY, 0, -1, 0, value, _NAN, _NAN, _NAN, "")
        self._tripped(events)

    def set_trading_state(self, state: TradingState, reason: str) -> None:
        """Set the trading state (:class:`TradingState`) for every process, with a reason."""
        if not isinstance(state, TradingState):
            raise ConfigError("state", f"expected a TradingState, got {state!r}")
        if not isinstance(reason, str):
            raise ConfigError("reason", f"expected a string, got {reason!r}")
        written, changed = self._trading.set(state, reason)  # one lock-free word: never waits for the ledger
        fleet = self._ctx.fleet
        if fleet is not None:
            fleet.trading_changed(state, reason)
        if changed and state in _TRIPPED:
            self._ctx.notify("bot4_kill_switch_tripped", reason=reason)
        if written:
            self._record_trading(state, reason)

    # ------------------------------------------------------------------ restoring from a journal

    def _restore_symbol(self, symbol: str, position: float, average: float, realized: float, mark: float) -> None:
        """Put a symbol's recorded position into the ledger (recovery; exposure and totals follow).

        The mark's age is unknown (0): rules that need a fresh price wait for a new one.
        """
        with self._mutex as tx:
            index = self._symbol_for_write(tx, symbol)
        if index is None:
            raise CapacityError(
                f"the risk ledger tracks {self._seg.layout.max_symbols} symbols; cannot restore {symbol!r}"
            )
        row = self._seg.layout.symbol(index)
        mark = mark if mark > 0 else 0.0
        with self._mutex as tx:
            tx.set(row + L.Y_POSITION, position)
            tx.set(row + L.Y_AVG_PRICE, average)
            tx.set(row + L.Y_REALIZED, realized)
            tx.set(row + L.Y_MARK, mark)
        with self._mutex as tx:  # exposure, gross and the holdings generation from the restored row
            self._symbol_writes(tx, index, mark=mark if mark > 0 else None)

    def _restore_account(
        self, cash: float, unrealized: float, peak: float, day_start: float, day_id: int, equity_set: bool
    ) -> None:
        """Put the recorded account into the ledger exactly (recovery)."""
        base = self._base
        with self._mutex as tx:
            tx.set(base + L.L_CASH, cash)
            tx.set(base + L.L_UNREALIZED, unrealized)
            tx.set(base + L.L_PEAK, peak)
            tx.set(base + L.L_DAY_START, day_start)
            tx.set(base + L.L_DAY_ID, day_id)
            tx.set(base + L.L_EQUITY_SET, 1 if equity_set else 0)

    def _restore_trading(self, state: TradingState, reason: str) -> None:
        """Put the recorded trading state back (recovery): a tripped kill switch stays tripped."""
        if state is not TradingState.ACTIVE or reason:
            self._trading.set(state, reason)

    def _restore_reservation(self, order: Order, quantity: float, entry: float) -> Reservation | None:
        """Reserve what is left (``quantity``) of a recovered open order again, past the rules (it is
        already at its venue); None if the ledger has no room."""
        if self._ctx.observer:
            raise ConfigError("observer", "this core only watches (Core.attach(observer=True)): it adopts no orders")
        now = self._ctx.now_ns()
        with self._mutex as tx:
            decision = self._reserve_writes(
                tx, order, now, entry, journal_check=False, quantity=quantity, continues="recovered"
            )
        return decision.reservation

    def record_operator(self, text: str) -> None:
        """Journal an operator's action (who and what, in ``text``; at most 592 bytes are kept).
        Nothing happens without a journal."""
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("text", f"say who did what, got {text!r}")
        if self._load(self._ev_on):
            with self._mutex as tx:
                tx.record(_OPERATOR, 0, -1, 0, _NAN, _NAN, _NAN, _NAN, text)

    def _record_order(
        self,
        client_order_id: str,
        reservation_id: int,
        status: OrderStatus,
        filled: float,
        venue: str,
        event: str,
        detail: str,
    ) -> None:
        """Journal an order's transition (an order manager's; never raises, never waits long:
        a record that cannot be made is counted missed)."""
        if not self._load(self._ev_on):
            return
        try:
            with self._quick_mutex as tx:
                tx.record(
                    _ORDER,
                    reservation_id,
                    -1,
                    STATUS_CODE[status],
                    filled,
                    _NAN,
                    _NAN,
                    _NAN,
                    f"{client_order_id}\x1f{venue}\x1f{event}\x1f{detail}",
                )
        except Exception as e:
            self._events.missed()
            log.error("order %s's transition to %s was not journaled: %s", client_order_id, status.name, e)

    def _record_trading(self, state: TradingState, reason: str) -> None:
        """Journal a trading-state change already in force (never delays it: a journal that
        cannot take the record counts it lost, and its recorder then snapshots the state)."""
        if not self._load(self._ev_on):
            return
        try:
            with self._quick_mutex as tx:
                tx.record(_TRADING, self._load(self._i_trading) >> 8, -1, int(state), _NAN, _NAN, _NAN, _NAN, reason)
        except Exception as e:  # the ledger is busy (or the record impossible): the recorder snapshots the state
            self._events.missed()
            log.error(
                "the trading state change (%s: %s) was not journaled (%s): the journal snapshots it",
                state.name,
                reason,
                e,
            )

    # ------------------------------------------------------------------ reclaim, audit, snapshot

    def reclaim(self) -> int:
        """Release every reservation whose process is dead; return how many.

        Once a process of another PID namespace has attached (``allow_foreign=True``), no
        reservation is judged dead by its PID: they stay held (exposure counted) until
        released, which fails closed.
        """
        lay, r = self._seg.layout, self._r
        if r.load(L.H_FOREIGN):
            return 0
        alive: dict[int, bool] = {}
        dead: list[tuple[int, int]] = []
        ended: list[int] = []
        for slot in range(r.load(self._base + L.L_RES_HIGH)):
            owner = r.load(lay.reservation(slot) + L.V_OWNER)
            if owner == 0:
                continue
            if owner not in alive:
                alive[owner] = is_alive(owner)
            if not alive[owner]:
                dead.append((slot, owner))
        freed = 0
        for slot, owner in dead:  # one entry per transaction: each reads the totals the last one wrote
            with self._mutex as tx:
                if r.load(lay.reservation(slot) + L.V_OWNER) == owner:
                    ended.append(r.load(lay.reservation(slot) + L.V_ID))
                    self._free_entry(tx, slot, _RECLAIMED)
                    freed += 1
        now = self._ctx.now_ns()  # a clock is user code: read it before taking the mutex
        with self._mutex as tx:
            tx.set(self._base + L.L_SWEEP_NS, now)
        if freed:
            self._tell_fleet(tuple(ended))
        return freed

    def audit(self) -> list[str]:
        """Cross-check the ledger's totals against its reservations; return every discrepancy."""
        lay, r = self._seg.layout, self._r
        problems: list[str] = []
        with self._mutex:
            used = r.load(self._base + L.L_SYMBOLS_USED)
            buy = [0.0] * used
            sell = [0.0] * used
            live = 0
            for slot in range(r.load(self._base + L.L_RES_HIGH)):
                e = lay.reservation(slot)
                if r.load(e + L.V_OWNER) == 0:
                    continue
                live += 1
                notional = r.loadf(e + L.V_QTY) * r.loadf(e + L.V_PRICE)
                (buy if r.load(e + L.V_SIDE) > 0 else sell)[r.load(e + L.V_SYMBOL)] += notional
            if live != r.load(self._base + L.L_OPEN_ORDERS):
                problems.append(f"open orders {r.load(self._base + L.L_OPEN_ORDERS)} != {live} live reservations")
            gross = 0.0
            for i in range(used):
                s = lay.symbol(i)
                for name, want, field in (("buy", buy[i], L.Y_BUY_NOTIONAL), ("sell", sell[i], L.Y_SELL_NOTIONAL)):
                    have = r.loadf(s + field)
                    if not math.isclose(have, want, rel_tol=1e-6, abs_tol=1e-6):
                        problems.append(f"symbol {i}: reserved {name} notional {have} != {want} from reservations")
                gross += r.loadf(s + L.Y_EXPOSURE)
            have_gross = r.loadf(self._base + L.L_GROSS)
            if not math.isclose(have_gross, gross, rel_tol=1e-6, abs_tol=1e-6):
                problems.append(f"gross exposure {have_gross} != {gross} summed over symbols")
        return problems

    def snapshot(self) -> RiskSnapshot:
        """The whole ledger at one instant between transactions (consistent across every field)."""
        return self._mutex.read(self._snapshot)

    def correlation_matrix(self) -> tuple[list[str], list[list[float | None]]]:
        """The ledger's symbols and the correlation of their returns as the correlation rule
        sees it now: ``matrix[i][j]`` for symbols ``i`` and ``j``, None for a pair with fewer
        than ``correlation_min_samples`` joint samples (the rule does not count those)."""

        def read() -> tuple[list[str], Any, Any, int]:
            led = self._thread_view("snapshot")
            led.refresh()
            symbols = list(led.symbols())
            values, counts = read_matrix(self._seg, len(symbols))
            return symbols, values, counts, led.current_limits().correlation_min_samples

        symbols, values, counts, least = self._mutex.read(read)  # copies inside; the lists outside
        n = len(symbols)
        matrix: list[list[float | None]] = [
            [1.0 if i == j else (float(values[i, j]) if counts[i, j] >= least else None) for j in range(n)]
            for i in range(n)
        ]
        return symbols, matrix

    def _snapshot(self) -> RiskSnapshot:
        led = self._thread_view("snapshot")  # this thread's own: no other thread refreshes it meanwhile
        led.refresh()
        positions = {
            s: PositionSnapshot(
                quantity=led.position(s),
                average_price=led.average_price(s),
                mark=led.mark(s),
                exposure=led.symbol_exposure(s),
                reserved_buy=led.reserved_quantity(s, Side.BUY),
                reserved_sell=led.reserved_quantity(s, Side.SELL),
                realized_pnl=led.realized_pnl(s),
            )
            for s in led.symbols()
        }
        return RiskSnapshot(
            trading_state=led.trading_state,
            reason=led.state_reason,
            equity=led.equity,
            unrealized_pnl=led.unrealized_pnl,
            peak_equity=led.peak_equity,
            drawdown=led.drawdown,
            daily_loss=led.daily_loss,
            gross_exposure=led.gross_exposure,
            open_orders=led.open_orders,
            orders_last_second=led.orders_last_second,
            positions=positions,
            limits=led.limits,
        )

    # ------------------------------------------------------------------ ledger writes (mutex held)

    def _check_reservation(self, reservation: Reservation) -> None:
        if not isinstance(reservation, Reservation):
            raise ReservationError(f"expected a bot4.Reservation, got {type(reservation).__name__}")
        if not 0 <= reservation.slot < self._seg.layout.max_reservations:
            raise ReservationError(f"reservation {reservation.id} names no ledger entry ({reservation.slot})")

    def _take_over(self, reservation_id: int, slot: int, symbol: str) -> Reservation | None:
        """Make a live reservation of a process that died this process's (a stop it placed fires
        here): the reservation, or None if it ended (released, filled, reclaimed)."""
        if not 0 <= slot < self._seg.layout.max_reservations:
            return None
        entry = self._res0 + slot * L.RES_WORDS
        r = self._r
        with self._mutex as tx:
            owner, res_id = r.load_range(entry + L.V_OWNER, 2)
            if owner == 0 or res_id != reservation_id:
                return None
            tx.set(entry + L.V_OWNER, self._ctx.ident)
            side = Side.BUY if r.load(entry + L.V_SIDE) > 0 else Side.SELL
            quantity, price = r.loadf(entry + L.V_QTY), r.loadf(entry + L.V_PRICE)
        return _new(Reservation, (reservation_id, slot, symbol, side, quantity, price))

    def _live(self, reservation: Reservation) -> bool:
        owner, res_id = self._r.load_range(self._res0 + reservation.slot * L.RES_WORDS + L.V_OWNER, 2)
        return owner != 0 and res_id == reservation.id

    def _free_entry(self, tx: Transaction, slot: int, why: int = _RELEASED) -> None:
        """Free reservation entry ``slot``, giving back what it still holds."""
        lay, r, base = self._seg.layout, self._r, self._base
        e = lay.reservation(slot)
        left = r.loadf(e + L.V_QTY)
        symbol = r.load(e + L.V_SYMBOL)
        self._symbol_writes(tx, symbol, r.load(e + L.V_SIDE), -left, -left * r.loadf(e + L.V_PRICE))
        tx.record(_RELEASE, r.load(e + L.V_ID), symbol, why, left, _NAN, _NAN, _NAN, "")
        tx.set(e + L.V_OWNER, 0)
        tx.set(e + L.V_NEXT_FREE, r.load(base + L.L_FREE_HEAD))
        tx.set(base + L.L_FREE_HEAD, slot + 1)
        tx.set(base + L.L_OPEN_ORDERS, r.load(base + L.L_OPEN_ORDERS) - 1)

    def _symbol_for_write(self, tx: Transaction, symbol: str) -> int | None:
        """The index of ``symbol``, adding it in ``tx`` if new; None when the table is full."""
        index = self._ledger.symbol_index(symbol)
        if index is not None:
            return index
        lay, base = self._seg.layout, self._base
        used = self._r.load(base + L.L_SYMBOLS_USED)
        if used >= lay.max_symbols:
            return None
        for k, word in enumerate(encode_text(symbol, L.SYMBOL_NAME_WORDS)):
            tx.set(lay.symbol(used) + L.Y_NAME + k, word)
        tx.set(base + L.L_SYMBOLS_USED, used + 1)
        return used

    def _symbol_writes(
        self,
        tx: Transaction,
        index: int,
        side: int = 0,
        d_qty: float = 0.0,
        d_notional: float = 0.0,
        *,
        mark: float | None = None,
    ) -> float:
        """Stage a change to one symbol: reserved amounts, mark, exposure, and with them gross
        exposure, unrealized P&L and the holdings generation (native arithmetic; fills go
        through ``LedgerKernel.fill``).

        ``d_qty``/``d_notional`` change what is reserved on ``side`` (+1 buy, -1 sell);
        ``mark`` is a new price. Returns the new total unrealized P&L. Reads see the ledger
        before ``tx``: one call per symbol per transaction.
        """
        tx.staged, _, unrealized = self._kernel.symbol_update(
            tx.staged, index, side, float(d_qty), float(d_notional), 0.0, 0.0, mark or 0.0
        )
        return unrealized

    def _account_writes(
        self,
        tx: Transaction,
        limits: RiskLimits,
        day: int,
        *,
        cash: float,
        unrealized: float,
        initial: bool = False,
    ) -> list[str]:
        """Peak, trading day, drawdown and daily loss after equity changed; returns kill-switch reasons.

        Reads see the ledger before ``tx``: the previous equity starts a new trading day.
        """
        tx.staged, drawdown, loss = self._kernel.account(tx.staged, cash, unrealized, day, initial)
        return self._breaches(limits, drawdown, loss)

    def _limits_and_day(self) -> tuple[RiskLimits, int]:
        """The limits and the trading day, read before a transaction takes the mutex: the
        clock is user code, and limits torn by a dead writer are repaired by taking it."""
        limits = self._ledger.current_limits()
        return limits, self._day_id(limits)

    def _breaches(self, limits: RiskLimits, drawdown: float, loss: float) -> list[str]:
        """Why trading must halt: drawdown or daily loss (NaN: equity never set) past their limits.

        The caller trips the kill switch with these reasons (:meth:`_tripped`) once the
        ledger mutex is released; until it does, the account rule already refuses new risk.
        """
        max_drawdown, max_loss = limits.max_drawdown, limits.daily_loss_limit
        drawn = max_drawdown is not None and exceeds(drawdown, max_drawdown)
        lost = max_loss is not None and exceeds(loss, max_loss)
        if not (drawn or lost):
            return []
        reasons: list[str] = []
        if drawn:
            reasons.append(f"drawdown {drawdown:.2%} exceeds max_drawdown {max_drawdown:.2%}")
        if lost:
            reasons.append(f"daily loss {loss:.2%} exceeds daily_loss_limit {max_loss:.2%}")
        if self._r.load(self._i_trading) & 0xFF not in _TRIPPED:
            return ["; ".join(reasons)]
        return []

    def _day_id(self, limits: RiskLimits) -> int:
        now = self._ctx.clock.time_ns()
        day_start, day_end, day = self._day
        if day_start <= now < day_end and limits is self._day_limits:
            return day
        seconds = now // 1_000_000_000 - limits.daily_reset_seconds
        day = seconds // 86_400
        start = (day * 86_400 + limits.daily_reset_seconds) * 1_000_000_000
        self._day, self._day_limits = (start, start + 86_400 * 1_000_000_000, day), limits
        return day

    def _tripped(self, reasons: list[str]) -> None:
        """The limits say halt (``reasons``, if any): trip the kill switch, tell the fleet and the plugins."""
        fleet = self._ctx.fleet
        for reason in reasons:
            state = TradingState.FLATTENING if self.limits.flatten_on_kill else TradingState.HALTED
            written, changed = self._trading.set(state, reason)
            if changed:  # else another process halted the desk first
                if fleet is not None:
                    fleet.trading_changed(state, reason)
                self._ctx.notify("bot4_kill_switch_tripped", reason=reason)
            if written:
                self._record_trading(state, reason)


def _reserve_text(order: Order) -> str:
    """A RESERVE record's text: client order id, strategy, type and (a stop's) stop price,
    separated by U+001F."""
    text = f"{order.client_order_id}\x1f{order.strategy}\x1f{order.type.value}"
    return text if order.stop_price is None else f"{text}\x1f{order.stop_price!r}"


def _price_unknown(order: Order) -> Decision:
    return Decision((Rejection(ENGINE, "PRICE_UNKNOWN", f"no price for {order.symbol}: send on_price first"),))


def _ask(name: str, rule: Rule, order: Order, ledger: RiskLedger) -> Rejection | None:
    """A rule's answer: its Rejection, None, or a RULE_ERROR for an error or a wrong answer."""
    try:
        result = rule(order, ledger)
    except Exception as exc:
        return Rejection(name, "RULE_ERROR", f"rule {name!r} raised {type(exc).__name__}: {exc}")
    if result is None or type(result) is Rejection:
        return result
    return Rejection(name, "RULE_ERROR", f"rule {name!r} returned {result!r}, not a Rejection")
