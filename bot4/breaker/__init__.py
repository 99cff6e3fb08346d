"""Circuit breakers shared by every process attached to a core, and the global fuse."""

from __future__ import annotations

from bot4.breaker.breaker import BreakerSnapshot, CallEvent, CircuitBreaker
from bot4.breaker.config import WINDOW_CALLS_MAX, BreakerConfig, FuseConfig
from bot4.breaker.fuse import Fuse, FuseSnapshot, FuseState
from bot4.breaker.state import BreakerState

__all__ = [
    "WINDOW_CALLS_MAX",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerState",
    "CallEvent",
    "CircuitBreaker",
    "Fuse",
    "FuseConfig",
    "FuseSnapshot",
    "FuseState",
]
