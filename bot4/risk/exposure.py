"""What the fleet counts of one host's ledger: its positions and its live reservations.

The fleet adds up, over hosts, the notional of every position at its mark and of every
live reservation at its entry price (:mod:`bot4.fleet.scripts`). A reservation the fleet
approved is counted there one by one; one it has not approved (yet) is counted with the
positions, so that nothing a host holds is ever left out. These readers take the figures
from the segment as of one instant between ledger transactions, with the ledger version
they were read at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from bot4.shm import layout as L

if TYPE_CHECKING:
    from bot4.risk.engine import RiskEngine
    from bot4.shm.mutex import Transaction

__all__ = ["APPROVED", "HostFigures", "host_figures", "mark_approved"]

APPROVED = 1
"""A live reservation's ``V_FLEET`` word once the fleet approved it (0 until then)."""


class HostFigures(NamedTuple):
    """One host's ledger, as the fleet counts it."""

    positions: float
    """Sum over symbols of |position| x mark, plus the notional of live reservations the
    fleet has not approved."""
    equity: float
    version: int
    """The ledger version the figures were read at (bumped by every ledger transaction)."""
    reservations: tuple[tuple[int, float, bool], ...] = ()
    """(id, notional at entry, approved by the fleet) of every live reservation (only when asked for)."""


def host_figures(engine: RiskEngine, *, reservations: bool = False) -> HostFigures:
    """This ledger's figures as of one instant (``reservations``: with every live reservation)."""
    r, base, lay = engine._r, engine._base, engine._seg.layout

    def read() -> HostFigures:
        cash, unrealized = r.loadf_range(base + L.L_CASH, 2)
        positions = 0.0
        for index in range(r.load(base + L.L_SYMBOLS_USED)):
            start = lay.symbol(index)
            position, mark = r.loadf(start + L.Y_POSITION), r.loadf(start + L.Y_MARK)
            if position and mark == mark:
                positions += abs(position) * mark
        live: list[tuple[int, float, bool]] = []
        for slot in range(r.load(base + L.L_RES_HIGH)):
            entry = lay.reservation(slot)
            if r.load(entry + L.V_OWNER):
                notional = r.loadf(entry + L.V_QTY) * r.loadf(entry + L.V_PRICE)
                approved = r.load(entry + L.V_FLEET) == APPROVED
                if not approved:
                    positions += notional
                if reservations:
                    live.append((r.load(entry + L.V_ID), notional, approved))
        return HostFigures(positions, cash + unrealized, r.load(base + L.L_VERSION), tuple(live))

    return engine._mutex.read(read)


def mark_approved(engine: RiskEngine, tx: Transaction, slot: int, reservation_id: int) -> None:
    """Under the ledger mutex: the fleet approved reservation ``reservation_id`` (if still live)."""
    entry = engine._seg.layout.reservation(slot)
    r = engine._r
    if r.load(entry + L.V_OWNER) and r.load(entry + L.V_ID) == reservation_id:
        tx.set(entry + L.V_FLEET, APPROVED)
