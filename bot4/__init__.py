"""bot4: circuit breakers, pre-trade risk and order management for trading systems,
shared by every worker process through one shared-memory segment."""

from __future__ import annotations

import logging

from bot4.breaker import (
    BreakerConfig,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    Fuse,
    FuseConfig,
    FuseSnapshot,
    FuseState,
)
from bot4.clock import Clock, ManualClock, MonotonicClock
from bot4.core import Core
from bot4.errors import (
    Bot4Error,
    CapacityError,
    CircuitOpenError,
    ConfigError,
    FuseTrippedError,
    PluginError,
    SegmentError,
    SegmentExistsError,
    SegmentLayoutError,
    SegmentNotFoundError,
)
from bot4.plugins import PluginManager, hookimpl, make_plugin_manager
from bot4.shm.lock import LockTimeoutError
from bot4.shm.slots import WorkerSlot

__version__ = "0.1.0"

logging.getLogger("bot4").addHandler(logging.NullHandler())

__all__ = [
    "Bot4Error",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerState",
    "CapacityError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "ConfigError",
    "Core",
    "Fuse",
    "FuseConfig",
    "FuseSnapshot",
    "FuseState",
    "FuseTrippedError",
    "LockTimeoutError",
    "ManualClock",
    "MonotonicClock",
    "PluginError",
    "PluginManager",
    "SegmentError",
    "SegmentExistsError",
    "SegmentLayoutError",
    "SegmentNotFoundError",
    "WorkerSlot",
    "hookimpl",
    "make_plugin_manager",
]
