"""What :meth:`bot4.RiskEngine.snapshot` returns."""

from __future__ import annotations

from dataclasses import dataclass

from bot4.risk.limits import RiskLimits, TradingState

__all__ = ["PositionSnapshot", "RiskSnapshot"]


@dataclass(frozen=True, kw_only=True)
class PositionSnapshot:
    """One symbol in :class:`RiskSnapshot`."""

    quantity: float
    average_price: float
    mark: float | None
    exposure: float
    reserved_buy: float
    reserved_sell: float
    realized_pnl: float


@dataclass(frozen=True, kw_only=True)
class RiskSnapshot:
    """The risk ledger at one instant (:meth:`RiskEngine.snapshot`)."""

    trading_state: TradingState
    reason: str
    equity: float
    unrealized_pnl: float
    peak_equity: float
    drawdown: float
    daily_loss: float
    gross_exposure: float
    open_orders: int
    orders_last_second: int
    positions: dict[str, PositionSnapshot]
    limits: RiskLimits
