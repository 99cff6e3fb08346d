"""Pre-trade risk: limits, the shared ledger, the kill switch, and the engine."""

from __future__ import annotations

from bot4.risk.decision import Decision, Rejection, Reservation
from bot4.risk.engine import PositionSnapshot, RiskEngine, RiskSnapshot
from bot4.risk.kill_switch import KillSwitch
from bot4.risk.ledger import RiskLedger
from bot4.risk.limits import RiskLimits, TradingState

__all__ = [
    "Decision",
    "KillSwitch",
    "PositionSnapshot",
    "Rejection",
    "Reservation",
    "RiskEngine",
    "RiskLedger",
    "RiskLimits",
    "RiskSnapshot",
    "TradingState",
]
