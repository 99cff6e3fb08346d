"""What the fleet counts of one host's ledger: its positions and its live reservations.

The fleet adds up, over hosts, the notional of every position at its mark and of every
live reservation at its entry price (:mod:`bot4.fleet.scripts`). These readers take the
figures from the segment as of one instant between ledger transactions, with the ledger
version they were read at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from bot4.shm import layout as L

if TYPE_CHECKING:
    from bot4.risk.engine import RiskEngine

__all__ = ["HostFigures", "host_figures"]


class HostFigures(NamedTuple):
    """One host's ledger, as the fleet counts it."""

    positions: float
    """Sum over symbols of |position| x mark."""
    equity: float
    version: int
    """The ledger version the figures were read at (bumped by every ledger transaction)."""
    reservations: tuple[tuple[int, float], ...] = ()
    """(id, notional at entry) of every live reservation (only when asked for)."""


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
        live: list[tuple[int, float]] = []
        if reservations:
            for slot in range(r.load(base + L.L_RES_HIGH)):
                entry = lay.reservation(slot)
                if r.load(entry + L.V_OWNER):
                    live.append((r.load(entry + L.V_ID), r.loadf(entry + L.V_QTY) * r.loadf(entry + L.V_PRICE)))
        return HostFigures(positions, cash + unrealized, r.load(base + L.L_VERSION), tuple(live))

    return engine._mutex.read(read)
