"""An independent model of the built-in rules' verdicts, in Python, read from docs/risk.md.

The native pass (``evaluate`` in ``bot4/shm/_ledger.inc``) is the library's one definition
of each built-in rule; this model is what the tests hold it to. Each function takes an
order and a primed :class:`bot4.RiskLedger` and returns the rule's rejection code, or None.
"""

from __future__ import annotations

from collections.abc import Callable

from bot4 import Order, RiskLedger, Side, TradingState
from bot4.risk.limits import EPSILON, TOLERANCE

_TOL = 1.0 + TOLERANCE


def _over(value: float, limit: float) -> bool:
    return value > limit * _TOL + EPSILON


def trading_state(order: Order, ledger: RiskLedger) -> str | None:
    state, reduces = ledger.trading_state, ledger.reduces_position(order)
    if state is TradingState.HALTED or (state is TradingState.FLATTENING and not reduces):
        return "KILL_SWITCH"
    if state is TradingState.REDUCING and not reduces:
        return "REDUCING_ONLY"
    if order.reduce_only and not reduces:
        return "REDUCE_ONLY_INCREASES"
    return None


def stop_loss(order: Order, ledger: RiskLedger) -> str | None:
    stop = order.stop_loss
    if stop is None:
        if ledger.limits.require_stop_loss and not order.reduce_only and not ledger.reduces_position(order):
            return "STOP_LOSS_MISSING"
        return None
    entry = ledger.entry_price(order)
    if entry is None:
        return None
    if (stop >= entry) if order.side is Side.BUY else (stop <= entry):
        return "STOP_LOSS_WRONG_SIDE"
    limit = ledger.limits.max_stop_distance
    if limit is not None and _over(abs(entry - stop) / entry, limit):
        return "STOP_LOSS_TOO_FAR"
    return None


def position_size(order: Order, ledger: RiskLedger) -> str | None:
    entry = ledger.entry_price(order)
    if entry is None:
        return "PRICE_UNKNOWN"
    if not ledger.equity_known:
        return None
    limits, equity = ledger.limits, ledger.equity
    if limits.max_position_risk is not None and order.stop_loss is not None:
        if _over(order.quantity * abs(entry - order.stop_loss), limits.max_position_risk * equity):
            return "POSITION_RISK"
    if limits.max_position_notional is not None:
        pending = ledger.reserved_quantity(order.symbol, order.side) * order.side.sign
        projected = abs(ledger.position(order.symbol) + pending + order.signed_quantity) * entry
        if _over(projected, limits.max_position_notional * equity):
            return "POSITION_NOTIONAL"
    return None


def correlation(order: Order, ledger: RiskLedger) -> str | None:
    limit = ledger.limits.max_correlation
    if limit is None or order.reduce_only:
        return None
    value, _ = ledger.max_correlation(order.symbol, order.side)
    if _over(value, limit) and not ledger.reduces_position(order):
        return "CORRELATION"
    return None


def account(order: Order, ledger: RiskLedger) -> str | None:
    if not ledger.equity_known:
        return "EQUITY_UNKNOWN"
    limits, reduces = ledger.limits, ledger.reduces_position(order)
    if limits.max_drawdown is not None and _over(ledger.drawdown, limits.max_drawdown) and not reduces:
        return "DRAWDOWN_LIMIT"
    if limits.daily_loss_limit is not None and _over(ledger.daily_loss, limits.daily_loss_limit) and not reduces:
        return "DAILY_LOSS_LIMIT"
    return None


def exposure(order: Order, ledger: RiskLedger) -> str | None:
    limits = ledger.limits
    if (limits.max_symbol_exposure is None and limits.max_gross_exposure is None) or not ledger.equity_known:
        return None
    after = ledger.exposure_after(order)
    if after is None:
        return None
    symbol, gross = after
    equity = ledger.equity
    if limits.max_symbol_exposure is not None and _over(symbol, limits.max_symbol_exposure * equity):
        if symbol > ledger.symbol_exposure(order.symbol):
            return "SYMBOL_EXPOSURE"
    if limits.max_gross_exposure is not None and _over(gross, limits.max_gross_exposure * equity):
        if gross > ledger.gross_exposure:
            return "GROSS_EXPOSURE"
    return None


def order_flow(order: Order, ledger: RiskLedger) -> str | None:
    limits = ledger.limits
    if limits.max_open_orders is not None and ledger.open_orders >= limits.max_open_orders:
        return "OPEN_ORDERS"
    if limits.max_orders_per_second is not None and ledger.orders_last_second >= limits.max_orders_per_second:
        return "ORDER_RATE"
    return None


def stale_price(order: Order, ledger: RiskLedger) -> str | None:
    limit = ledger.limits.max_price_age
    if limit is None or ledger.reduces_position(order):
        return None
    age = ledger.mark_age(order.symbol)
    return "STALE_PRICE" if age is None or age > limit else None


MODEL: dict[str, Callable[[Order, RiskLedger], str | None]] = {
    "trading_state": trading_state,
    "stop_loss": stop_loss,
    "position_size": position_size,
    "correlation": correlation,
    "account": account,
    "exposure": exposure,
    "order_flow": order_flow,
    "stale_price": stale_price,
}
"""The model of each built-in rule, by its kind."""
