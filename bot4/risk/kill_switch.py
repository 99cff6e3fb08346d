"""The kill switch: one word in the segment that halts the whole desk."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from bot4.risk.limits import TradingState
from bot4.shm import layout as L

if TYPE_CHECKING:
    from bot4.risk.engine import RiskEngine

__all__ = ["KillSwitch"]


class KillSwitch:
    """``risk.kill_switch``: trip it and every process denies every order at its next check.

    Tripping sets the trading state to HALTED; resetting sets it to ACTIVE. The state lives
    in the segment, so it survives worker restarts. Drawdown and daily-loss limits trip it
    automatically, with the reason recorded.
    """

    def __init__(self, engine: RiskEngine) -> None:
        self._engine = engine

    def trip(self, reason: str) -> None:
        """Halt trading in every process; fires ``bot4_kill_switch_tripped``."""
        self._engine.set_trading_state(TradingState.HALTED, reason)

    def reset(self, reason: str) -> None:
        """Resume trading (ACTIVE) in every process."""
        self._engine.set_trading_state(TradingState.ACTIVE, reason)

    @property
    def active(self) -> bool:
        """Whether the desk is halted (read live from the segment)."""
        seg = self._engine._seg
        return seg.region.load(seg.layout.ledger + L.L_TRADING) & 0xFF == TradingState.HALTED

    @property
    def reason(self) -> str:
        """The reason given with the last trip or reset."""
        return self._engine.ledger.state_reason

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
