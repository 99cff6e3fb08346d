"""bot4: circuit breakers, pre-trade risk and order management for trading systems,
shared by every worker process through one shared-memory segment."""

from __future__ import annotations

import logging

from bot4.breaker import (
    BreakerConfig,
    BreakerSnapshot,
    BreakerState,
    CallEvent,
    CircuitBreaker,
    Fuse,
    FuseConfig,
    FuseSnapshot,
    FuseState,
)
from bot4.clock import Clock, ManualClock, MonotonicClock, SharedClock
from bot4.core import Core
from bot4.errors import (
    Bot4Error,
    CapacityError,
    CircuitOpenError,
    ConfigError,
    ConfigTypeError,
    ExchangeError,
    ExchangeReplyError,
    ExchangeTimeoutError,
    ExchangeUnavailableError,
    FillError,
    FleetUnavailableError,
    ForeignSegmentError,
    FuseTrippedError,
    InvalidOrderError,
    InvalidTransitionError,
    JournalError,
    LockTimeoutError,
    OrderNotFoundError,
    OrderRejectedError,
    PluginError,
    ReservationError,
    SegmentError,
    SegmentExistsError,
    SegmentLayoutError,
    SegmentNotFoundError,
    SegmentSpaceError,
    SegmentStateError,
    StreamClosedError,
    StreamError,
    StreamGapError,
    StreamMessageError,
    UnknownOrderError,
)
from bot4.fleet import FleetLink, FleetPolicy
from bot4.journal import Journal, JournalState, OpenOrder
from bot4.orders import Fill, OrderEvent, OrderStatus, TrackedOrder, Transition
from bot4.orders.manager import ManagedOrder, OrderManager
from bot4.orders.model import Order, OrderType, Side, TimeInForce
from bot4.orders.pnl import CostMethod, PnlBook
from bot4.orders.reconcile import Reconciliation
from bot4.orders.routing import Leg, Route, VenueInfo
from bot4.plugins import PluginManager, hookimpl, make_plugin_manager
from bot4.risk import (
    Decision,
    KillSwitch,
    PositionSnapshot,
    Rejection,
    Reservation,
    RiskEngine,
    RiskLedger,
    RiskLimits,
    RiskSnapshot,
    TradingState,
)
from bot4.shm.slots import WorkerSlot
from bot4.streams.adapter import StreamAdapter
from bot4.streams.events import OrderUpdate
from bot4.venues.paper import Faults, PaperExchange
from bot4.venues.protocol import ExchangeAdapter, Fees
from bot4.workers import Supervisor, WorkerContext, run_workers

__version__ = "0.1.0"

logging.getLogger("bot4").addHandler(logging.NullHandler())

__all__ = [
    "Bot4Error",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerState",
    "CallEvent",
    "CapacityError",
    "CircuitBreaker",
    "CircuitOpenError",
    "Clock",
    "ConfigError",
    "ConfigTypeError",
    "Core",
    "CostMethod",
    "Decision",
    "ExchangeAdapter",
    "ExchangeError",
    "ExchangeReplyError",
    "ExchangeTimeoutError",
    "ExchangeUnavailableError",
    "Faults",
    "Fees",
    "Fill",
    "FillError",
    "FleetLink",
    "FleetPolicy",
    "FleetUnavailableError",
    "ForeignSegmentError",
    "Fuse",
    "FuseConfig",
    "FuseSnapshot",
    "FuseState",
    "FuseTrippedError",
    "InvalidOrderError",
    "InvalidTransitionError",
    "Journal",
    "JournalError",
    "JournalState",
    "KillSwitch",
    "Leg",
    "LockTimeoutError",
    "ManagedOrder",
    "ManualClock",
    "MonotonicClock",
    "OpenOrder",
    "Order",
    "OrderEvent",
    "OrderManager",
    "OrderNotFoundError",
    "OrderRejectedError",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "PaperExchange",
    "PluginError",
    "PluginManager",
    "PnlBook",
    "PositionSnapshot",
    "Reconciliation",
    "Rejection",
    "Reservation",
    "ReservationError",
    "RiskEngine",
    "RiskLedger",
    "RiskLimits",
    "RiskSnapshot",
    "Route",
    "SegmentError",
    "SegmentExistsError",
    "SegmentLayoutError",
    "SegmentNotFoundError",
    "SegmentSpaceError",
    "SegmentStateError",
    "SharedClock",
    "Side",
    "StreamAdapter",
    "StreamClosedError",
    "StreamError",
    "StreamGapError",
    "StreamMessageError",
    "Supervisor",
    "TimeInForce",
    "TrackedOrder",
    "TradingState",
    "Transition",
    "UnknownOrderError",
    "VenueInfo",
    "WorkerContext",
    "WorkerSlot",
    "hookimpl",
    "make_plugin_manager",
    "run_workers",
]
