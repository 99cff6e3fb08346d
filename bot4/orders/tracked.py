"""An order as it lives: status, fills, and every transition with its time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from bot4._numbers import is_number, is_positive
from bot4.errors import FillError, InvalidTransitionError
from bot4.orders.model import Order, OrderType
from bot4.orders.status import OPEN_STATUSES, TERMINAL_STATUSES, TRANSITIONS, OrderEvent, OrderStatus, next_status

_PENDING_ALL = (OrderStatus.PENDING_UPDATE, OrderStatus.PENDING_CANCEL)

__all__ = ["Fill", "TrackedOrder", "Transition"]

_FILLED = OrderEvent.FILLED
_SUBMITTED_EVENT, _ACCEPTED_EVENT = OrderEvent.SUBMITTED, OrderEvent.ACCEPTED
_SCAN_FILLS = 8  # up to this many fills, a duplicate trade id is found by scanning them
_ACCEPTED, _PARTIALLY_FILLED, _FILLED_STATUS = OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED
# Per status value: event value -> next status, for the transitions that need no context
# (neither end is PENDING_*, the target is a plain status). Everything else goes the long way.
_PLAIN: dict[str, dict[str, OrderStatus]] = {status._value_: {} for status in OrderStatus}
for (_s, _e), _t in TRANSITIONS.items():
    if type(_t) is OrderStatus and _s not in _PENDING_ALL and _t not in _PENDING_ALL:
        _PLAIN[_s._value_][_e._value_] = _t
_new = tuple.__new__  # NamedTuple construction without its Python-level __new__
_PENDING = (OrderStatus.PENDING_UPDATE, OrderStatus.PENDING_CANCEL)
_UNFILLED_OPEN = (OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.TRIGGERED)
_TRIGGERED = OrderEvent.TRIGGERED
_OPEN_VALUES = frozenset(status._value_ for status in OPEN_STATUSES)
_STOP_TYPES = (OrderType.STOP, OrderType.STOP_LIMIT)


def _quiet(event: OrderEvent, old: OrderStatus) -> bool:
    """The order path's own transitions, told no listener: its submission, and its first acceptance."""
    return event is _SUBMITTED_EVENT or (event is _ACCEPTED_EVENT and old is OrderStatus.SUBMITTED)


class Transition(NamedTuple):
    """One entry of an order's history."""

    time_ns: int
    old: OrderStatus
    event: OrderEvent
    new: OrderStatus
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """A trade against an order."""

    trade_id: str
    quantity: float
    price: float
    fee: float = 0.0
    """In quote currency, paid (positive) or rebated (negative)."""
    liquidity: str = "taker"
    """``"maker"`` or ``"taker"``."""
    venue: str = ""

    def __post_init__(self) -> None:
        if not (
            is_positive(self.quantity)
            and is_positive(self.price)
            and is_number(self.fee)
            and type(self.trade_id) is str
            and self.trade_id
        ):
            self._refuse()

    def _refuse(self) -> None:
        if type(self.trade_id) is not str or not self.trade_id:
            raise FillError(f"a fill needs a non-empty trade_id, got {self.trade_id!r}")
        for name in ("quantity", "price"):
            value = getattr(self, name)
            if not is_positive(value):
                raise FillError(f"fill {self.trade_id!r}: {name} must be a finite number > 0, got {value!r}")
        raise FillError(f"fill {self.trade_id!r}: fee must be a finite number, got {self.fee!r}")


class TrackedOrder:
    """An order and its state: every change goes through :meth:`apply` or :meth:`fill`.

    An event the state machine does not allow raises :class:`bot4.InvalidTransitionError`
    and changes nothing.
    """

    __slots__ = (
        "order",
        "status",
        "filled_quantity",
        "average_fill_price",
        "fees",
        "venue",
        "venue_order_id",
        "history",
        "fills",
        "_trade_ids",
        "_resume",
        "on_transition",
    )

    def __init__(self, order: Order) -> None:
        self.order = order
        self.status = OrderStatus.INITIALIZED
        self.filled_quantity = 0.0
        self.average_fill_price = 0.0
        self.fees = 0.0
        self.venue: str | None = None
        self.venue_order_id: str | None = None
        self.history: list[Transition] = []
        self.fills: list[Fill] = []
        self._trade_ids: set[str] | None = None  # made once an order has many fills
        self._resume = OrderStatus.SUBMITTED
        self.on_transition: Callable[[TrackedOrder, Transition], None] | None = None
        """Called after each transition but a fill, a submission or an acceptance (the order
        manager journals them; those three it learns otherwise)."""

    @property
    def id(self) -> str:
        """The order's client order id."""
        return self.order.client_order_id

    @property
    def remaining(self) -> float:
        """Quantity not yet filled."""
        return max(0.0, self.order.quantity - self.filled_quantity)

    @property
    def is_open(self) -> bool:
        """Whether the order may still trade."""
        return self.status._value_ in _OPEN_VALUES  # str hashing is native, Enum hashing is not

    @property
    def is_terminal(self) -> bool:
        """Whether the order's life is over."""
        return self.status in TERMINAL_STATUSES

    def apply(self, event: OrderEvent, time_ns: int, detail: str = "") -> OrderStatus:
        """Apply a non-fill event; return the new status."""
        if event is _TRIGGERED and self.order.type not in _STOP_TYPES:
            raise InvalidTransitionError(f"order {self.id}: a {self.order.type.value} order has no trigger")
        old = self.status
        new = _PLAIN[old._value_].get(event._value_)
        if new is not None:  # the common case: a plain transition between non-pending statuses
            self.status = new
            transition = _new(Transition, (time_ns, old, event, new, detail))
            self.history.append(transition)
            if self.on_transition is not None and not _quiet(event, old):
                self.on_transition(self, transition)
            return new
        if event is _FILLED:
            raise InvalidTransitionError(f"order {self.id}: fills go through fill(), with their quantity")
        return self._move(event, time_ns, detail, complete=False)

    def fill(self, fill: Fill, time_ns: int) -> bool:
        """Apply a fill; False if its trade id was applied already (the duplicate is ignored).

        Raises:
            FillError: the fill would take the filled quantity past the order's.
            InvalidTransitionError: the order's status takes no fill.
        """
        if self._applied(fill.trade_id):
            return False
        total = self.filled_quantity + fill.quantity
        quantity = self.order.quantity
        if total > quantity * (1 + 1e-9):
            raise FillError(
                f"order {self.id}: fill {fill.trade_id!r} of {fill.quantity} would fill {total} of {quantity}"
            )
        complete = total >= quantity * (1 - 1e-9)
        old = self.status
        if old is _ACCEPTED or old is _PARTIALLY_FILLED:  # the common case, straight from the table
            self.status = new = _FILLED_STATUS if complete else _PARTIALLY_FILLED
            self.history.append(_new(Transition, (time_ns, old, _FILLED, new, fill.trade_id)))
        else:
            self._move(_FILLED, time_ns, fill.trade_id, complete=complete)  # the fill itself is in self.fills
        self.average_fill_price = (self.average_fill_price * self.filled_quantity + fill.price * fill.quantity) / total
        self.filled_quantity = quantity if complete else total
        self.fees += fill.fee
        self.fills.append(fill)
        if self._trade_ids is not None:
            self._trade_ids.add(fill.trade_id)
        elif len(self.fills) > _SCAN_FILLS:
            self._trade_ids = {f.trade_id for f in self.fills}
        if self.status in _PENDING and self._resume in _UNFILLED_OPEN:
            self._resume = OrderStatus.PARTIALLY_FILLED
        return True

    def _applied(self, trade_id: str) -> bool:
        ids = self._trade_ids
        if ids is not None:
            return trade_id in ids
        return any(f.trade_id == trade_id for f in self.fills)

    def _move(self, event: OrderEvent, time_ns: int, detail: str, *, complete: bool) -> OrderStatus:
        old = self.status
        resume = self._resume
        if old in _PENDING and event is OrderEvent.ACCEPTED and resume is OrderStatus.SUBMITTED:
            resume = OrderStatus.ACCEPTED  # the venue's acknowledgement, arriving while a request is in flight
        new = next_status(old, event, resume=resume, complete=complete)
        if new is None:
            raise InvalidTransitionError(f"order {self.id}: {event.name} is not allowed in {old.name}")
        self._resume = old if new in _PENDING and old not in _PENDING else resume
        self.status = new
        transition = _new(Transition, (time_ns, old, event, new, detail))
        self.history.append(transition)
        if self.on_transition is not None and event is not _FILLED and not _quiet(event, old):
            self.on_transition(self, transition)
        return new

    def __repr__(self) -> str:
        return f"<TrackedOrder {self.id} {self.status.name} {self.filled_quantity}/{self.order.quantity}>"
