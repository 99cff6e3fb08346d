"""The built-in pre-trade rules: one table, one plugin per rule, named ``bot4.rule.<name>``.

Each built-in rule's verdict has one definition: the ledger kernel's native pass
(``evaluate`` in ``bot4/shm/_ledger.inc``), which answers with the rejection code that
applies, at most one per rule. The native module exports the codes, rule by rule, as
``LEDGER_CODES``; this module gives each code its limit and its wording (:data:`CODES`) and
builds one :class:`BuiltinRule` plugin per rule from them (:data:`RULES`). A plugin's
``bot4_check_order`` asks the native pass about its own rule and words what it answers.
On the hot path the engine runs the native pass once for all the rules and calls a plugin
only for an order its rule fails. A test holds the native pass to an independent model
of the rules (``tests/risk/rule_model.py``).

Block one by name before it runs (``core.plugins.set_blocked("bot4.rule.correlation")``)
or replace it: unregister it and register yours under the same name. All run after user
rules (``trylast``). Limits are read from ``ledger.limits``; a limit set to None is off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot4.orders.model import Order
from bot4.plugins.hookspecs import hookimpl
from bot4.risk._kernel import RULE_BITS, native_rule
from bot4.risk.decision import Rejection
from bot4.risk.ledger import RiskLedger
from bot4.risk.limits import TradingState
from bot4.shm import _native

__all__ = ["CODES", "RULES", "BuiltinRule", "Code"]

Wording = Callable[[Order, RiskLedger], str]


@dataclass(frozen=True)
class Code:
    """One rejection code of a built-in rule."""

    rule: str
    """The rule's kind (``bot4.rule.<rule>``)."""
    code: str
    """The code a :class:`bot4.Rejection` carries."""
    limit: str | None
    """The :class:`bot4.RiskLimits` field it enforces, if any."""
    words: Wording
    """The rejection's message for an order the native pass denies with this code."""


def _stop_distance(order: Order, ledger: RiskLedger) -> str:
    entry, stop, limit = ledger.entry_price(order), order.stop_loss, ledger.limits.max_stop_distance
    assert entry is not None and stop is not None and limit is not None
    return f"stop is {abs(entry - stop) / entry:.2%} from the entry; max_stop_distance {limit:.2%}"


def _wrong_side(order: Order, ledger: RiskLedger) -> str:
    where = "below" if order.side.sign > 0 else "above"
    return f"stop {order.stop_loss} must be {where} the entry {ledger.entry_price(order)}"


def _position_risk(order: Order, ledger: RiskLedger) -> str:
    entry, stop, limit = ledger.entry_price(order), order.stop_loss, ledger.limits.max_position_risk
    assert entry is not None and stop is not None and limit is not None
    risk = order.quantity * abs(entry - stop)
    return f"risk {risk:.2f} exceeds {limit:.2%} of equity {ledger.equity:.2f}"


def _position_notional(order: Order, ledger: RiskLedger) -> str:
    entry = ledger.entry_price(order)
    assert entry is not None
    pending = ledger.reserved_quantity(order.symbol, order.side) * order.side.sign
    projected = abs(ledger.position(order.symbol) + pending + order.signed_quantity) * entry
    return f"position notional {projected:.2f} would exceed {ledger.limits.max_position_notional:g}x equity"


def _correlation(order: Order, ledger: RiskLedger) -> str:
    value, other = ledger.max_correlation(order.symbol, order.side)
    held = order.side.value
    return f"{order.symbol} correlates {value:.3f} with {other}, held {held}; max {ledger.limits.max_correlation}"


def _stale(order: Order, ledger: RiskLedger) -> str:
    age, limit = ledger.mark_age(order.symbol), ledger.limits.max_price_age
    if age is None:
        return f"no price for {order.symbol} has ever been marked; max_price_age {limit:g}s"
    return f"{order.symbol} was last marked {age:.3f}s ago; max_price_age {limit:g}s"


def _exposure(order: Order, ledger: RiskLedger, which: int) -> float:
    after = ledger.exposure_after(order)
    return float("nan") if after is None else after[which]


_WORDS: dict[str, tuple[str | None, Wording]] = {
    "KILL_SWITCH": (
        None,
        lambda o, ledger: (
            f"trading halted, positions being closed: {ledger.state_reason}"
            if ledger.trading_state is TradingState.FLATTENING
            else f"trading halted: {ledger.state_reason}"
        ),
    ),
    "REDUCING_ONLY": (None, lambda o, ledger: f"only orders that reduce a position pass: {ledger.state_reason}"),
    "REDUCE_ONLY_INCREASES": (None, lambda o, ledger: "a reduce-only order would not reduce the position"),
    "STOP_LOSS_MISSING": ("require_stop_loss", lambda o, ledger: "an order that opens risk must carry a stop_loss"),
    "STOP_LOSS_WRONG_SIDE": (None, _wrong_side),
    "STOP_LOSS_TOO_FAR": ("max_stop_distance", _stop_distance),
    "PRICE_UNKNOWN": (None, lambda o, ledger: f"no price for {o.symbol} (market order before any price)"),
    "POSITION_RISK": ("max_position_risk", _position_risk),
    "POSITION_NOTIONAL": ("max_position_notional", _position_notional),
    "CORRELATION": ("max_correlation", _correlation),
    "EQUITY_UNKNOWN": (None, lambda o, ledger: "set the account equity (risk.set_equity) before trading"),
    "DRAWDOWN_LIMIT": (
        "max_drawdown",
        lambda o, ledger: f"drawdown {ledger.drawdown:.2%} exceeds {ledger.limits.max_drawdown:.2%}",
    ),
    "DAILY_LOSS_LIMIT": (
        "daily_loss_limit",
        lambda o, ledger: f"daily loss {ledger.daily_loss:.2%} exceeds {ledger.limits.daily_loss_limit:.2%}",
    ),
    "SYMBOL_EXPOSURE": (
        "max_symbol_exposure",
        lambda o, ledger: (
            f"{o.symbol} exposure {_exposure(o, ledger, 0):.2f} would exceed "
            f"{ledger.limits.max_symbol_exposure:g}x equity"
        ),
    ),
    "GROSS_EXPOSURE": (
        "max_gross_exposure",
        lambda o, ledger: (
            f"gross exposure {_exposure(o, ledger, 1):.2f} would exceed {ledger.limits.max_gross_exposure:g}x equity"
        ),
    ),
    "OPEN_ORDERS": (
        "max_open_orders",
        lambda o, ledger: f"{ledger.open_orders} orders open; max {ledger.limits.max_open_orders}",
    ),
    "STALE_PRICE": ("max_price_age", lambda o, ledger: _stale(o, ledger)),
    "ORDER_RATE": (
        "max_orders_per_second",
        lambda o, ledger: (
            f"{ledger.orders_last_second} orders in the last second; max {ledger.limits.max_orders_per_second}"
        ),
    ),
}

CODES: tuple[Code, ...] = tuple(Code(rule, code, *_WORDS[code]) for rule, code in _native.LEDGER_CODES)
"""Every rejection code of the built-in rules, in the native pass's bit order (rules in the order they run)."""
if {c.code for c in CODES} != set(_WORDS):
    raise ImportError(
        f"the native rule codes and their wording differ: {sorted({c.code for c in CODES} ^ set(_WORDS))}"
    )


@native_rule
class BuiltinRule:
    """The plugin of one built-in rule: the native pass decides, :data:`CODES` words it."""

    def __init__(self, kernel: str) -> None:
        self.kernel = kernel
        """The rule's kind: its bit in the native pass is ``RULE_BITS[kernel]``."""
        self.name = f"bot4.rule.{kernel}"
        self.codes = tuple((bit, code) for bit, code in enumerate(CODES) if code.rule == kernel)
        self.__doc__ = f"{self.name}: " + "; ".join(
            f"{c.code}" + (f" ({c.limit})" if c.limit else "") for _, c in self.codes
        )
        self._mask = 1 << RULE_BITS[kernel]

    @hookimpl(trylast=True)
    def bot4_check_order(self, order: Order, ledger: RiskLedger) -> Rejection | None:
        """The rule's verdict on ``order`` (from the native pass), worded."""
        fails = ledger.failing_codes(order, self._mask)
        for bit, code in self.codes:
            if fails >> bit & 1:
                return Rejection(self.name, code.code, code.words(order, ledger))
        return None

    def __repr__(self) -> str:
        return f"<BuiltinRule {self.name}>"


RULES = tuple(BuiltinRule(kind) for kind in _native.LEDGER_RULES)
"""One plugin per built-in rule, in the order they run."""
