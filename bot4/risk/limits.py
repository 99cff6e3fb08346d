"""Risk limits and trading states."""

from __future__ import annotations

import datetime
import enum
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from bot4._numbers import is_number
from bot4.errors import ConfigError
from bot4.shm import _native

__all__ = ["EPSILON", "TOLERANCE", "RiskLimits", "TradingState", "exceeds"]

TOLERANCE: float = _native.LIMIT_TOLERANCE
"""Relative tolerance: a value at a limit, to rounding error, is within it (defined natively, once)."""
EPSILON: float = _native.LIMIT_EPSILON
"""Absolute slack added to the relative one (a limit of zero)."""


def exceeds(value: float, limit: float) -> bool:
    """Whether ``value`` is past ``limit`` (a positive limit) by more than rounding error."""
    return value > limit * (1.0 + TOLERANCE) + EPSILON


class TradingState(enum.IntEnum):
    """What the desk may do."""

    ACTIVE = 0
    """Orders are checked against every rule."""
    REDUCING = 1
    """Only orders that reduce an existing position pass."""
    HALTED = 2
    """Nothing passes (the kill switch is tripped)."""
    FLATTENING = 3
    """The kill switch is tripped to flatten: no new risk; orders that reduce a position pass,
    and every order manager cancels its orders and closes what it holds."""


def _fraction(name: str, value: Any, *, hi: float = 1.0, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not is_number(value):
        raise ConfigError(name, f"expected a finite number{' or None' if optional else ''}, got {value!r}")
    if not 0 < value <= hi:
        raise ConfigError(name, f"must be in (0, {hi}], got {value!r}")


def _count(name: str, value: Any, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, f"expected an integer >= 1{' or None' if optional else ''}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class RiskLimits:
    """Pre-trade limits, shared by every process of a core (``risk.configure(limits)``).

    Fractions are of current equity unless said otherwise; ``None`` turns a limit off.
    """

    require_stop_loss: bool = True
    """Every order that is not reduce-only must carry a stop-loss."""
    max_stop_distance: float | None = 0.04
    """A stop further than this fraction of the entry price is rejected."""
    max_position_risk: float | None = 0.02
    """quantity x |entry - stop| must not exceed this fraction of equity."""
    max_position_notional: float | None = None
    """The position this order would make, at entry, must not exceed this fraction of equity."""
    max_correlation: float | None = 0.7
    """Reject a new position whose returns correlate above this with a held one in the same direction."""
    correlation_half_life: float = 60.0
    """EWMA half-life of the correlation estimate, in samples."""
    correlation_sample_seconds: float = 1.0
    """Returns are sampled across all symbols at this interval."""
    correlation_min_samples: int = 30
    """A pair's correlation is used only after this many joint samples."""
    max_drawdown: float | None = 0.15
    """Drawdown from peak equity at which the kill switch trips."""
    daily_loss_limit: float | None = 0.05
    """Loss since the start of the trading day, as a fraction of that day's starting equity, that trips the kill switch."""
    daily_reset_utc: datetime.time = datetime.time(0, 0)
    """When the trading day starts (UTC)."""
    max_gross_exposure: float | None = 3.0
    """Sum over symbols of worst-case notional (positions and reserved orders), as a multiple of equity."""
    max_symbol_exposure: float | None = 1.0
    """Worst-case notional of one symbol, as a multiple of equity."""
    max_open_orders: int | None = 50
    """Live reservations (orders not yet filled, cancelled or rejected) across all processes."""
    max_orders_per_second: int | None = 20
    """Approved orders in the last second across all processes."""
    max_price_age: float | None = None
    """Seconds: an order that adds risk on a symbol whose mark (``risk.on_price``, a feed) is
    older than this, or that was never marked, is rejected (``STALE_PRICE``): stale data
    fails closed. Orders that reduce a position pass."""
    flatten_on_kill: bool = False
    """What a trip of the kill switch does when its caller does not say (and what the drawdown and
    daily-loss trips do): False halts (nothing passes, orders and positions stay as they are);
    True flattens (:attr:`TradingState.FLATTENING`)."""

    def __post_init__(self) -> None:
        for flag in ("require_stop_loss", "flatten_on_kill"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(flag, f"expected True or False, got {getattr(self, flag)!r}")
        _fraction("max_stop_distance", self.max_stop_distance)
        _fraction("max_position_risk", self.max_position_risk)
        _fraction("max_position_notional", self.max_position_notional, hi=1000.0)
        _fraction("max_correlation", self.max_correlation)
        _fraction("correlation_half_life", self.correlation_half_life, hi=1e9, optional=False)
        _fraction("correlation_sample_seconds", self.correlation_sample_seconds, hi=86_400.0, optional=False)
        _count("correlation_min_samples", self.correlation_min_samples, optional=False)
        _fraction("max_drawdown", self.max_drawdown)
        _fraction("daily_loss_limit", self.daily_loss_limit)
        if not isinstance(self.daily_reset_utc, datetime.time) or self.daily_reset_utc.tzinfo not in (
            None,
            datetime.UTC,
        ):
            raise ConfigError("daily_reset_utc", f"expected a datetime.time in UTC, got {self.daily_reset_utc!r}")
        _fraction("max_gross_exposure", self.max_gross_exposure, hi=1000.0)
        _fraction("max_symbol_exposure", self.max_symbol_exposure, hi=1000.0)
        _count("max_open_orders", self.max_open_orders)
        _count("max_orders_per_second", self.max_orders_per_second)
        _fraction("max_price_age", self.max_price_age, hi=86_400.0)

    @property
    def daily_reset_seconds(self) -> int:
        """Seconds after midnight UTC at which the trading day starts."""
        t = self.daily_reset_utc
        return t.hour * 3600 + t.minute * 60 + t.second

    def to_floats(self) -> list[float]:
        """The limits as float64 words (NaN for None), in field order."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "daily_reset_utc":
                out.append(float(self.daily_reset_seconds))
            elif value is None:
                out.append(math.nan)
            else:
                out.append(float(value))
        return out

    def to_json(self) -> str:
        """The limits as a JSON object (field names; ``daily_reset_utc`` as ``"HH:MM:SS"``)."""
        fields_ = {f.name: getattr(self, f.name) for f in fields(self)}
        fields_["daily_reset_utc"] = self.daily_reset_utc.strftime("%H:%M:%S")
        return json.dumps(fields_, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RiskLimits:
        """Inverse of :meth:`to_json`; :class:`ConfigError` on anything else."""
        try:
            fields_ = json.loads(text)
            fields_["daily_reset_utc"] = datetime.time.fromisoformat(fields_["daily_reset_utc"])
            return cls(**fields_)
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError("limits", f"not a RiskLimits JSON object: {e}") from e

    @classmethod
    def from_floats(cls, words: list[float]) -> RiskLimits:
        """Inverse of :meth:`to_floats`."""
        kwargs: dict[str, Any] = {}
        for f, value in zip(fields(cls), words, strict=False):  # the block has spare words
            if f.name == "daily_reset_utc":
                secs = int(value)
                kwargs[f.name] = datetime.time(secs // 3600, secs // 60 % 60, secs % 60)
            elif math.isnan(value):
                kwargs[f.name] = None
            elif f.type == "bool":
                kwargs[f.name] = bool(value)
            elif f.type in ("int | None", "int"):
                kwargs[f.name] = int(value)
            else:
                kwargs[f.name] = value
        return cls(**kwargs)
