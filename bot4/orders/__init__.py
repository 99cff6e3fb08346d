"""Order management: the order state machine and tracked orders."""

from __future__ import annotations

from bot4.orders.status import OrderEvent, OrderStatus
from bot4.orders.tracked import Fill, TrackedOrder, Transition

__all__ = ["Fill", "OrderEvent", "OrderStatus", "TrackedOrder", "Transition"]
