"""The built-in pre-trade rules. Each is a plugin of its own, named ``bot4.rule.<name>``.

Each rule's ``bot4_check_order`` is its definition. On the hot path the engine computes
the verdicts of all built-in rules in one native pass (``kernel`` names the rule there)
and calls a rule's plugin only to word the Rejection of an order the pass says it fails;
a test holds the native pass and these definitions to the same verdicts.

Block one by name before it runs (``core.plugins.set_blocked("bot4.rule.correlation")``)
or replace it: unregister it and register yours under the same name. All run after user
rules (``trylast``). Limits are read from ``ledger.limits``; a limit set to None is off.
"""

from __future__ import annotations

from bot4.orders.model import Order, Side
from bot4.plugins.hookspecs import hookimpl
from bot4.risk._kernel import native_rule
from bot4.risk.decision import Rejection
from bot4.risk.ledger import RiskLedger
from bot4.risk.limits import EPSILON, TOLERANCE, TradingState

__all__ = ["RULES"]

_HALTED, _REDUCING, _FLATTENING = TradingState.HALTED, TradingState.REDUCING, TradingState.FLATTENING
_TOL, _EPS = 1.0 + TOLERANCE, EPSILON  # a value at a limit, to rounding error, is within it


@native_rule
class TradingStateRule:
    """KILL_SWITCH when halted (or flattening, for an order that does not reduce a position);
    REDUCING_ONLY when only reductions may pass; REDUCE_ONLY_INCREASES."""

    name = "bot4.rule.trading_state"
    kernel = "trading_state"

    @hookimpl(trylast=True)
    def bot4_check_order(self, order: Order, ledger: RiskLedger) -> Rejection | None:
        state = ledger.trading_state
        if state is _HALTED:
            return Rejection(self.name, "KILL_SWITCH", f"trading halted: {ledger.state_reason}")
        if state is _FLATTENING and not ledger.reduces_position(order):
            return Rejection(self.name, "KILL_SWITCH", f"trading halted, positions being closed: {ledger.state_reason}")
        if state is _REDUCING and not ledger.reduces_position(order):
            return Rejection(
                self.name, "REDUCING_ONLY", f"only orders that reduce a position pass: {ledger.state_reason}"
            )
        if order.reduce_only and not ledger.reduces_position(order):
            return Rejection(self.name, "REDUCE_ONLY_INCREASES", "a reduce-only order would not reduce the position")
        return None


@native_rule
class StopLossRule:
    """STOP_LOSS_MISSING, STOP_LOSS_WRONG_SIDE, STOP_LOSS_TOO_FAR (max_stop_distance)."""

    name = "bot4.rule.stop_loss"
    kernel = "stop_loss"

    @hookimpl(trylast=True)
    def bot4_check_order(self, order: Order, ledger: RiskLedger) -> Rejection | None:
        stop = order.stop_loss
        if stop is None:
            if ledger.limits.require_stop_loss and not order.reduce_only and not ledger.reduces_position(order):
                return Rejection(self.name, "STOP_LOSS_MISSING", "an order that opens risk must carry a stop_loss")
            return None
        entry = ledger.entry_price(order)
        if entry is None:
            return None
        if (stop >= entry) if order.side is Side.BUY else (stop <= entry):
            where = "below" if order.side is Side.BUY else "above"
            return Rejection(self.name, "STOP_LOSS_WRONG_SIDE", f"stop {stop} must be {where} the entry {entry}")
        limit = ledger.limits.max_stop_distance
        distance = abs(entry - stop) / entry
        if limit is not None and distance > limit * _TOL + _EPS:
            return Rejection(
                self.name, "STOP_LOSS_TOO_FAR", f"stop is {distance:.2%} from the entry; max_stop_distance {limit:.2%}"
            )
        return None


@native_rule
class PositionSizeRule:
    """PRICE_UNKNOWN; POSITION_RISK (max_position_risk); POSITION_NOTIONAL (max_position_notional)."""

    name = "bot4.rule.position_size"
    kernel = "position_size"

    @hookimpl(trylast=True)
    def bot4_check_order(self, order: Order, ledger: RiskLedger) -> Rejection | None:
        entry = ledger.entry_price(order)
        if entry is None:
            return Rejection(self.name, "PRICE_UNKNOWN", f"no price for {order.symbol} (market order before any price)")
        if not ledger.equity_known:
            return None
        limits = ledger.limits
        equity = ledger.equity
        if limits.max_position_risk is not None and order.stop_loss is not None:
            risk = order.quantity * abs(entry - order.stop_loss)
            if risk > limits.max_position_risk * equity * _TOL + _EPS:
                return Rejection(
                    self.name,
                    "POSITION_RISK",
                    f"risk {risk:.2f} exceeds {limits.max_position_risk:.2%} of equity {equity:.2f}",
                )
        if limits.max_position_notional is not None:
            pending = ledger.reserved_quantity(order.symbol, order.side) * order.side.sign
            projected = abs(ledger.position(order.symbol) + pending + order.signed_quantity) * entry
            if projected > limits.max_position_notional * equity * _TOL + _EPS:
                return Rejection(
                    self.name,
                    "POSITION_NOTIONAL",
                    f"position notional {projected:.2f} would exceed {limits.max_position_notional:g}x equity",
                )
        return None


@native_rule
class CorrelationRule:
    """CORRELATION: a new position correlated above max_correlation with one held the same way."""

    name = "bot4.rule.correlation"
    kernel = "correlation"

    @hookimpl(trylast=True)
    def bot4_check_order(self, order: Order, ledger: RiskLedger) -> Rejection | None:
        limit = ledger.limits.max_correlation
        if limit is None or order.reduce_only:
            return None
        value, other = ledger.max_correlation(order.symbol, order.side)
        if value > limit * _TOL + _EPS and not ledger.reduces_position(order):
            return Rejection(
                self.name,
                "CORRELATION",
                f"{order.symbol} correlates {value:.3f} with {other}, held {order.side.value}; max {limit}",
            )
        return None


@native_rule
class AccountRule:
    """EQUITY_UNKNOWN; DRAWDOWN_LIMIT (max_drawdown); DAILY_LOSS_LIMIT (daily_loss_limit)."""

    name = "bot4.rule.account"
    kernel = "account"

    @hookimpl(trylast=True)
    def bot4_check_order(self, order: Order, ledger: RiskLedger) -> Rejection | None:
        if not ledger.equity_known:
            return Rejection(self.name, "EQUITY_UNKNOWN", "set the account equity (risk.set_equity) before trading")
        limits = ledger.limits
        if limits.max_drawdown is not None and ledger.drawdown > limits.max_drawdown * _TOL + _EPS:
            if not ledger.reduces_position(order):
                return Rejection(
                    self.name, "DRAWDOWN_LIMIT", f"drawdown {ledger.drawdown:.2%} exceeds {limits.max_drawdown:.2%}"
                )
        if limits.daily_loss_limit is not None and ledger.daily_loss > limits.daily_loss_limit * _TOL + _EPS:
            if not ledger.reduces_position(order):
                return Rejection(
                    self.name,
                    "DAILY_LOSS_LIMIT",
                    f"daily loss {ledger.daily_loss:.2%} exceeds {limits.daily_loss_limit:.2%}",
                )
        return None


@native_rule
class ExposureRule:
    """SYMBOL_EXPOSURE (max_symbol_exposure); GROSS_EXPOSURE (max_gross_exposure), as multiples of equity."""

    name = "bot4.rule.exposure"
    kernel = "exposure"

    @hookimpl(trylast=True)
    def bot4_check_order(self, order: Order, ledger: RiskLedger) -> Rejection | None:
        limits = ledger.limits
        if (limits.max_symbol_exposure is None and limits.max_gross_exposure is None) or not ledger.equity_known:
            return None
        after = ledger.exposure_after(order)
        if after is None:
            return None
        symbol, gross = after
        equity = ledger.equity
        if limits.max_symbol_exposure is not None and symbol > limits.max_symbol_exposure * equity * _TOL + _EPS:
            if symbol > ledger.symbol_exposure(order.symbol):
                return Rejection(
                    self.name,
                    "SYMBOL_EXPOSURE",
                    f"{order.symbol} exposure {symbol:.2f} would exceed {limits.max_symbol_exposure:g}x equity",
                )
        if limits.max_gross_exposure is not None and gross > limits.max_gross_exposure * equity * _TOL + _EPS:
            if gross > ledger.gross_exposure:
                return Rejection(
                    self.name,
                    "GROSS_EXPOSURE",
                    f"gross exposure {gross:.2f} would exceed {limits.max_gross_exposure:g}x equity",
                )
        return None


@native_rule
class OrderFlowRule:
    """OPEN_ORDERS (max_open_orders); ORDER_RATE (max_orders_per_second), across all processes."""

    name = "bot4.rule.order_flow"
    kernel = "order_flow"

    @hookimpl(trylast=True)
    def bot4_check_order(self, order: Order, ledger: RiskLedger) -> Rejection | None:
        limits = ledger.limits
        if limits.max_open_orders is not None and ledger.open_orders >= limits.max_open_orders:
            return Rejection(
                self.name, "OPEN_ORDERS", f"{ledger.open_orders} orders open; max {limits.max_open_orders}"
            )
        if limits.max_orders_per_second is not None:
            recent = ledger.orders_last_second
            if recent >= limits.max_orders_per_second:
                return Rejection(
                    self.name, "ORDER_RATE", f"{recent} orders in the last second; max {limits.max_orders_per_second}"
                )
        return None


RULES = (
    TradingStateRule(),
    StopLossRule(),
    PositionSizeRule(),
    CorrelationRule(),
    AccountRule(),
    ExposureRule(),
    OrderFlowRule(),
)
"""One instance of every built-in rule, in the order they run."""
