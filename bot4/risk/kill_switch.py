"""The kill switch: one word in the segment that halts the whole desk.

The trading word holds the state (ACTIVE, REDUCING, HALTED, FLATTENING) in its low byte and a
generation above it. Changing it is one compare-and-swap: it never waits for a lock, so
no holder of the ledger mutex, slow or dead, can delay a trip. The reason that goes with
each generation is written after the swap into a ring of records tagged with that
generation; a reader that finds the record not yet (or no longer) tagged with the
word's generation reports the reason as unknown rather than waiting.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from bot4.errors import ConfigError
from bot4.risk.limits import TradingState
from bot4.shm import layout as L
from bot4.shm.text import decode_text, encode_text

if TYPE_CHECKING:
    from bot4.clock import Clock
    from bot4.risk.engine import RiskEngine
    from bot4.shm._native import Region

__all__ = ["UNKNOWN_REASON", "KillSwitch", "TradingWord"]

_READ_TRIES = 64
UNKNOWN_REASON = "(reason not recorded)"


class TradingWord:
    """Lock-free reads and changes of the desk's trading state and its reason."""

    __slots__ = ("_r", "_i", "_ring", "_tripped_at", "_clock")

    def __init__(self, region: Region, ledger: int, clock: Clock) -> None:
        self._r = region
        self._i = ledger + L.L_TRADING
        self._ring = ledger + L.L_REASONS
        self._tripped_at = ledger + L.L_TRIPPED_AT
        self._clock = clock

    @property
    def state(self) -> TradingState:
        """The state now."""
        return TradingState(self._r.load(self._i) & 0xFF)

    def set(self, state: TradingState, reason: str) -> tuple[bool, bool]:
        """Move to ``state`` with ``reason``; return (whether anything was written, whether the
        state changed).

        Setting the state it is already in with the same reason changes nothing; with another
        reason, only the reason.
        """
        r, i = self._r, self._i
        words = encode_text(reason, L.REASON_WORDS)
        while True:
            old = r.load(i)
            if old & 0xFF == state and self._reason(old) == reason:
                return False, False
            gen = (old >> 8) + 1
            if r.cas(i, old, int(state) | (gen << 8)):
                break
        if state is TradingState.HALTED or state is TradingState.FLATTENING:
            r.store(self._tripped_at, self._clock.time_ns())
        record = self._record(gen)
        r.store(record, -gen)  # being written
        for k, word in enumerate(words):
            r.store(record + 1 + k, word)
        r.store(record, gen)
        return True, old & 0xFF != state

    def reason(self) -> str:
        """The reason given with the state now in force."""
        return self._reason(self._r.load(self._i))

    def _record(self, gen: int) -> int:
        return self._ring + (gen % L.REASON_RING) * L.REASON_RECORD

    def _reason(self, word: int) -> str:
        gen = word >> 8
        record = self._record(gen)
        load = self._r.load
        for _ in range(_READ_TRIES):
            tag = load(record)
            if tag == -gen:
                continue  # being written
            if tag != gen:
                break  # its writer died before writing it, or a later change took the record
            text = decode_text(self._r.load_range(record + 1, L.REASON_WORDS))
            if load(record) == gen:
                return text
        return UNKNOWN_REASON if gen else ""


class KillSwitch:
    """``risk.kill_switch``: trip it and every process denies every order at its next check.

    Tripping sets the trading state to HALTED (or FLATTENING); resetting sets it to ACTIVE. Both are one
    lock-free write to the segment, so they take effect at once whatever holds the ledger,
    and the state survives worker restarts. Drawdown and daily-loss limits trip it
    automatically, with the reason recorded.
    """

    def __init__(self, engine: RiskEngine) -> None:
        self._engine = engine

    def trip(self, reason: str, *, flatten: bool | None = None) -> None:
        """Halt trading in every process; fires ``bot4_kill_switch_tripped``.

        ``flatten`` (default: the limits' ``flatten_on_kill``): True moves to FLATTENING —
        no new risk, and every order manager cancels its open orders and closes the
        positions it holds at their venues; False moves to HALTED — nothing passes, and
        orders and positions stay as they are.
        """
        if flatten is None:
            flatten = self._engine.limits.flatten_on_kill
        elif not isinstance(flatten, bool):
            raise ConfigError("flatten", f"expected True, False or None, got {flatten!r}")
        self._engine.set_trading_state(TradingState.FLATTENING if flatten else TradingState.HALTED, reason)

    def reset(self, reason: str) -> None:
        """Resume trading (ACTIVE) in every process."""
        self._engine.set_trading_state(TradingState.ACTIVE, reason)

    @property
    def active(self) -> bool:
        """Whether the kill switch is tripped, halting or flattening (read live from the segment)."""
        state = self._engine.trading_state
        return state is TradingState.HALTED or state is TradingState.FLATTENING

    @property
    def reason(self) -> str:
        """The reason given with the last trip or reset."""
        return self._engine.state_reason

    @property
    def tripped_at(self) -> datetime.datetime | None:
        """When it last tripped (UTC), None if it never did."""
        seg = self._engine._seg
        ns = seg.region.load(seg.layout.ledger + L.L_TRIPPED_AT)
        if ns == 0:
            return None
        return datetime.datetime.fromtimestamp(ns / 1e9, tz=datetime.UTC)

    def __repr__(self) -> str:
        return f"<KillSwitch {'TRIPPED' if self.active else 'armed'}: {self.reason!r}>"
