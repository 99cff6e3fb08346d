"""Pre-trade risk: limits, the shared ledger, the kill switch, and the engine."""

from __future__ import annotations

from bot4.risk.decision import Decision, Rejection, Reservation
from bot4.risk.engine import RiskEngine
from bot4.risk.kill_switch import KillSwitch
from bot4.risk.ledger import RiskLedger
from bot4.risk.limits import RiskLimits, TradingState
from bot4.risk.snapshot import PositionSnapshot, RiskSnapshot

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
