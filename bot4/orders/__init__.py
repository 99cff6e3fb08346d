"""Order management: the order state machine and tracked orders."""

from __future__ import annotations

from bot4.orders.status import OrderEvent, OrderStatus
from bot4.orders.tracked import Fill, TrackedOrder, Transition

__all__ = ["Fill", "OrderEvent", "OrderStatus", "TrackedOrder", "Transition"]
# The order manager and routing live in bot4.orders.manager / bot4.orders.routing (they
# import the risk engine, which imports this package's order model).
