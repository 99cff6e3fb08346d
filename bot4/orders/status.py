"""The order state machine: one explicit table of every allowed transition.

Shaped after what real venues do: repeated partial fills; fills that arrive while a
cancel or an amendment is in flight, or even after the order was canceled or expired
(late fills of trades made before); a cancel or an amendment that is refused returns the
order to the open state it had; repeated PENDING_* reports.
"""

from __future__ import annotations

import enum

__all__ = [
    "BY_CODE",
    "BY_VALUE",
    "OPEN_STATUSES",
    "STATUS_CODE",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "OrderEvent",
    "OrderStatus",
    "next_status",
]


class OrderStatus(enum.Enum):
    """Where an order is in its life."""

    INITIALIZED = "initialized"
    DENIED = "denied"
    """Refused before it was sent (risk)."""
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    """Refused by the venue."""
    TRIGGERED = "triggered"
    """A stop order whose trigger price was reached."""
    PENDING_UPDATE = "pending_update"
    PENDING_CANCEL = "pending_cancel"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"


BY_CODE: tuple[OrderStatus, ...] = tuple(OrderStatus)
"""Statuses by number (a journal's ``ORDER`` record holds ``BY_CODE.index(status)``)."""
STATUS_CODE: dict[OrderStatus, int] = {status: code for code, status in enumerate(BY_CODE)}
"""The number of each status (inverse of :data:`BY_CODE`)."""


class OrderEvent(enum.Enum):
    """What can happen to an order (past tense: it happened)."""

    DENIED = "denied"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TRIGGERED = "triggered"
    PENDING_UPDATE = "pending_update"
    PENDING_CANCEL = "pending_cancel"
    UPDATED = "updated"
    UPDATE_REJECTED = "update_rejected"
    CANCEL_REJECTED = "cancel_rejected"
    CANCELED = "canceled"
    EXPIRED = "expired"
    FILLED = "filled"
    """A fill, partial or complete; the quantity decides which status follows."""


S, E = OrderStatus, OrderEvent

OPEN_STATUSES = frozenset(
    {S.SUBMITTED, S.ACCEPTED, S.TRIGGERED, S.PENDING_UPDATE, S.PENDING_CANCEL, S.PARTIALLY_FILLED}
)
"""Statuses in which the order may still trade."""
TERMINAL_STATUSES = frozenset({S.DENIED, S.REJECTED, S.FILLED, S.CANCELED, S.EXPIRED})
"""Statuses an order never leaves (but for a late fill of a canceled or expired order)."""

FILL = "fill"
"""Target marker: PARTIALLY_FILLED or FILLED by quantity (or stay PENDING_* while one is in flight)."""
RESUME = "resume"
"""Target marker: back to the open status the order had before PENDING_UPDATE / PENDING_CANCEL."""
LATE_FILL = "late_fill"
"""Target marker: FILLED if the late fill completes the order, else the status stays."""

_OPEN_EVENTS: dict[OrderEvent, OrderStatus | str] = {
    E.PENDING_UPDATE: S.PENDING_UPDATE,
    E.PENDING_CANCEL: S.PENDING_CANCEL,
    E.FILLED: FILL,
    E.CANCELED: S.CANCELED,
    E.EXPIRED: S.EXPIRED,
}

TRANSITIONS: dict[tuple[OrderStatus, OrderEvent], OrderStatus | str] = {
    (S.INITIALIZED, E.DENIED): S.DENIED,
    (S.INITIALIZED, E.SUBMITTED): S.SUBMITTED,
    (S.INITIALIZED, E.REJECTED): S.REJECTED,
    (S.INITIALIZED, E.CANCELED): S.CANCELED,
    (S.SUBMITTED, E.ACCEPTED): S.ACCEPTED,
    (S.SUBMITTED, E.REJECTED): S.REJECTED,
    **{(S.SUBMITTED, e): t for e, t in _OPEN_EVENTS.items()},
    (S.ACCEPTED, E.ACCEPTED): S.ACCEPTED,
    (S.ACCEPTED, E.REJECTED): S.REJECTED,
    (S.ACCEPTED, E.TRIGGERED): S.TRIGGERED,
    (S.ACCEPTED, E.UPDATED): S.ACCEPTED,
    **{(S.ACCEPTED, e): t for e, t in _OPEN_EVENTS.items()},
    (S.TRIGGERED, E.REJECTED): S.REJECTED,
    (S.TRIGGERED, E.UPDATED): S.TRIGGERED,
    **{(S.TRIGGERED, e): t for e, t in _OPEN_EVENTS.items()},
    (S.PENDING_UPDATE, E.PENDING_UPDATE): S.PENDING_UPDATE,
    (S.PENDING_UPDATE, E.UPDATED): RESUME,
    (S.PENDING_UPDATE, E.UPDATE_REJECTED): RESUME,
    (S.PENDING_UPDATE, E.ACCEPTED): RESUME,
    (S.PENDING_UPDATE, E.TRIGGERED): S.TRIGGERED,
    (S.PENDING_UPDATE, E.PENDING_CANCEL): S.PENDING_CANCEL,
    (S.PENDING_UPDATE, E.FILLED): FILL,
    (S.PENDING_UPDATE, E.CANCELED): S.CANCELED,
    (S.PENDING_UPDATE, E.EXPIRED): S.EXPIRED,
    (S.PENDING_UPDATE, E.REJECTED): S.REJECTED,
    (S.PENDING_CANCEL, E.PENDING_CANCEL): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, E.CANCEL_REJECTED): RESUME,
    (S.PENDING_CANCEL, E.ACCEPTED): S.PENDING_CANCEL,
    (S.PENDING_CANCEL, E.FILLED): FILL,
    (S.PENDING_CANCEL, E.CANCELED): S.CANCELED,
    (S.PENDING_CANCEL, E.EXPIRED): S.EXPIRED,
    (S.PENDING_CANCEL, E.REJECTED): S.REJECTED,
    (S.PARTIALLY_FILLED, E.UPDATED): S.PARTIALLY_FILLED,
    **{(S.PARTIALLY_FILLED, e): t for e, t in _OPEN_EVENTS.items()},
    (S.CANCELED, E.FILLED): LATE_FILL,
    (S.EXPIRED, E.FILLED): LATE_FILL,
}
"""(status, event) -> next status, or a marker resolved with the order's quantities."""


BY_VALUE = {(s._value_, e._value_): target for (s, e), target in TRANSITIONS.items()}
""":data:`TRANSITIONS` keyed by the members' values (str hashing is native, Enum hashing is not)."""


def next_status(status: OrderStatus, event: OrderEvent, *, resume: OrderStatus, complete: bool) -> OrderStatus | None:
    """The status after ``event``, or None if the table does not allow it.

    ``resume`` is the open status to return to from a PENDING_* status; ``complete``
    says whether the order is fully filled after this event (for fills).
    """
    target = BY_VALUE.get((status._value_, event._value_))
    if target is None or type(target) is OrderStatus:
        return target
    if target == FILL:
        if complete:
            return S.FILLED
        if status is S.PENDING_UPDATE or status is S.PENDING_CANCEL:
            return status  # the cancel or amendment is still in flight
        return S.PARTIALLY_FILLED
    if target == RESUME:
        return resume
    return S.FILLED if complete else status  # LATE_FILL
