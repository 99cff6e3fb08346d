"""The native ledger kernel of a segment, wired to the layout defined in Python."""

from __future__ import annotations

from dataclasses import fields

from bot4.risk.limits import RiskLimits
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm.segment import Segment

__all__ = ["CODE_MASKS", "NATIVE_RULE_TYPES", "RULE_BITS", "make_kernel", "native_rule"]

RULE_BITS = {name: bit for bit, name in enumerate(_native.LEDGER_RULES)}
"""Bit of each built-in rule in the mask :meth:`LedgerKernel.evaluate` takes, by rule kind."""

CODE_MASKS = tuple(
    sum(1 << i for i, (rule, _) in enumerate(_native.LEDGER_CODES) if rule == name) for name in _native.LEDGER_RULES
)
"""By rule bit: the bits of that rule's codes in :meth:`LedgerKernel.evaluate`'s answer."""

NATIVE_RULE_TYPES: set[type] = set()
"""The plugin class of the built-in rules, whose instances the native pass evaluates (by their ``kernel``)."""


def native_rule(cls: type) -> type:
    """Class decorator: the native pass decides the verdict of this class's rules (exactly this class)."""
    NATIVE_RULE_TYPES.add(cls)
    return cls


_OFFSETS = {
    "cash": L.L_CASH,
    "unrealized": L.L_UNREALIZED,
    "peak": L.L_PEAK,
    "day_start": L.L_DAY_START,
    "gross": L.L_GROSS,
    "equity_set": L.L_EQUITY_SET,
    "trading": L.L_TRADING,
    "open_orders": L.L_OPEN_ORDERS,
    "hold_gen": L.L_HOLD_GEN,
    "rate": L.L_RATE,
    "limits_gen": L.L_LIMITS_GEN,
    "limits": L.L_LIMITS,
    "symbols_used": L.L_SYMBOLS_USED,
    "corr_gen": L.L_CORR_GEN,
    "res_high": L.L_RES_HIGH,
    "res_seq": L.L_RES_SEQ,
    "free_head": L.L_FREE_HEAD,
    "day_id": L.L_DAY_ID,
}
# LedgerKernel.reserve writes a reservation entry as these words, in this order.
assert (L.V_OWNER, L.V_ID, L.V_SYMBOL, L.V_SIDE, L.V_QTY, L.V_PRICE, L.V_CREATED_NS, L.V_NEXT_FREE) == tuple(range(8))
_LIMIT_WORDS = {f.name: i for i, f in enumerate(fields(RiskLimits))}


def make_kernel(segment: Segment) -> _native.LedgerKernel:
    """The LedgerKernel over ``segment``'s risk ledger."""
    lay = segment.layout
    return _native.LedgerKernel(
        region=segment.region,
        journal=lay.journal,
        base=lay.ledger,
        symbols=lay.symbols,
        symbol_words=L.SYM_WORDS,
        max_symbols=lay.max_symbols,
        row=L.Y_POSITION,
        realized=L.Y_REALIZED,
        mark_ns=L.Y_MARK_NS,
        correlation=lay.correlation,
        reservations=lay.reservations,
        reservation_words=L.RES_WORDS,
        max_reservations=lay.max_reservations,
        next_free=L.V_NEXT_FREE,
        offsets=tuple(_OFFSETS[name] for name in _native.LEDGER_OFFSETS),
        limits=tuple(_LIMIT_WORDS[name] for name in _native.LEDGER_LIMITS),
        rate_buckets=L.RATE_BUCKETS,
        bucket_ns=L.RATE_BUCKET_NS,
    )
