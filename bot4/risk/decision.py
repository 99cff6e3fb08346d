"""What the risk engine answers: rejections, decisions, reservations."""

from __future__ import annotations

from typing import NamedTuple

from bot4.errors import OrderRejectedError
from bot4.orders.model import Side

__all__ = ["Decision", "Rejection", "Reservation"]


class Rejection(NamedTuple):
    """One rule's reason to refuse an order."""

    rule: str
    """The rule's plugin name (``"bot4.rule.stop_loss"``, or yours)."""
    code: str
    """A stable code, e.g. ``STOP_LOSS_MISSING``."""
    message: str
    """Human-readable detail with the numbers involved."""


class Reservation(NamedTuple):
    """Exposure held for an approved order until it is filled or released."""

    id: int
    slot: int
    """The ledger entry holding it."""
    symbol: str
    side: Side
    quantity: float
    price: float
    """The entry price its notional was reserved at."""

    @property
    def notional(self) -> float:
        """quantity x price."""
        return self.quantity * self.price


class Decision(NamedTuple):
    """The outcome of :meth:`bot4.RiskEngine.check` or :meth:`~bot4.RiskEngine.reserve`."""

    rejections: tuple[Rejection, ...] = ()
    """Every rule's rejection; empty when approved."""
    reservation: Reservation | None = None
    """The reservation of an approved :meth:`~bot4.RiskEngine.reserve`."""

    @property
    def approved(self) -> bool:
        """Whether no rule rejected the order."""
        return not self.rejections

    @property
    def codes(self) -> tuple[str, ...]:
        """The rejection codes, in rule order."""
        return tuple(r.code for r in self.rejections)

    def raise_for_rejection(self) -> Decision:
        """Raise :class:`bot4.OrderRejectedError` if rejected; return self otherwise."""
        if self.rejections:
            raise OrderRejectedError(self)
        return self
