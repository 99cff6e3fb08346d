"""Stop triggers in the segment: the stops bot4 emulates, seen by every worker.

A stop no venue takes is held by the order manager that placed it, which fires it on its
marks (:mod:`bot4.orders.protect`). Its trigger is also written here, in the segment, with
everything needed to send it and the reservation it holds, so that when that worker dies
any other worker's mark fires it: the first to take it over (one compare-and-swap on the
record's state word) becomes its owner, its reservation with it.

A record is FREE, WRITING (its owner fills it in), HELD (published), or FIRING (taken by
the process that fires it, which frees it once the order is sent). Its state word carries
a generation, so a record freed and written again is never mistaken for the one it was.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from bot4.orders.model import Order, OrderType, Side
from bot4.shm import layout as L
from bot4.shm._proc import is_alive
from bot4.shm.text import decode_text, encode_text

if TYPE_CHECKING:
    from bot4.risk.decision import Reservation
    from bot4.shm._native import Region

__all__ = ["HeldStop", "TriggerTable"]

FREE, WRITING, HELD, FIRING = 0, 1, 2, 3


class HeldStop(NamedTuple):
    """A stop trigger taken over from a worker that died."""

    handle: int
    """Its record as this process holds it now (freed with :meth:`TriggerTable.free` once the stop is sent)."""
    order: Order
    """The stop, as it was placed (same client order id)."""
    reservation_id: int
    reservation_slot: int
    dead_owner: int
    """The identity of the process that placed it."""


class TriggerTable:
    """The segment's stop triggers, as one process sees them."""

    def __init__(self, region: Region, layout: L.Layout, ident: int) -> None:
        self._r = region
        self._lay = layout
        self._ident = ident

    def hold(self, order: Order, symbol_index: int, reservation: Reservation) -> int:
        """Write ``order``'s trigger (a STOP or STOP_LIMIT) for every worker to see; the handle
        of its record (for :meth:`free`), or 0 when every record is in use."""
        r = self._r
        for index in range(1, L.TRIGGERS):  # the first free record: the section stays short to scan
            base = self._lay.trigger(index)
            word = r.load(base + L.TRIG_STATE)
            if word & 0xFF != FREE or not r.cas(base + L.TRIG_STATE, word, _next(word, WRITING)):
                continue
            high = self._lay.trigger(0) + L.TRIG_HIGH
            while (seen := r.load(high)) < index + 1 and not r.cas(high, seen, index + 1):
                pass
            r.store(base + L.TRIG_OWNER, self._ident)
            r.store(base + L.TRIG_SYMBOL, symbol_index)
            r.store(base + L.TRIG_SIDE, 1 if order.side is Side.BUY else -1)
            r.storef(base + L.TRIG_QTY, order.quantity)
            r.storef(base + L.TRIG_STOP, float(order.stop_price or math.nan))
            r.storef(base + L.TRIG_LIMIT, math.nan if order.price is None else order.price)
            r.store(base + L.TRIG_FLAGS, 1 if order.reduce_only else 0)
            r.store(base + L.TRIG_RES_ID, reservation.id)
            r.store(base + L.TRIG_RES_SLOT, reservation.slot)
            for j, w in enumerate(encode_text(order.client_order_id, L.TRIG_ID_WORDS)):
                r.store(base + L.TRIG_ID + j, w)
            for j, w in enumerate(encode_text(order.strategy, L.TRIG_STRATEGY_WORDS)):
                r.store(base + L.TRIG_STRATEGY + j, w)
            held = _next(_next(word, WRITING), HELD)
            r.store(base + L.TRIG_STATE, held)
            return _handle(index, held)
        return 0

    def in_use(self) -> bool:
        """Whether any process ever held a trigger here (else there is nothing to look at)."""
        return self._r.load(self._lay.trigger(0) + L.TRIG_HIGH) > 1

    def free(self, handle: int) -> bool:
        """Free the record ``handle`` names if it is still in the state the handle was given
        in (one compare-and-swap: a record another process took over is not touched); whether
        it did. Its holder calls it when its stop fires or is canceled."""
        index, word = handle & _INDEX_MASK, handle >> _INDEX_BITS
        return self._r.cas(self._lay.trigger(index) + L.TRIG_STATE, word, _next(word, FREE))

    def orphans(self, symbol_index: int, price: float) -> list[HeldStop]:
        """Take over the held triggers of ``symbol_index`` that ``price`` reaches and whose owner
        is dead: each is FIRING and this process's own when returned."""
        r, taken = self._r, []
        for index in range(1, r.load(self._lay.trigger(0) + L.TRIG_HIGH)):
            base = self._lay.trigger(index)
            word = r.load(base + L.TRIG_STATE)
            if word & 0xFF != HELD or r.load(base + L.TRIG_SYMBOL) != symbol_index:
                continue
            buying, stop = r.load(base + L.TRIG_SIDE) > 0, r.loadf(base + L.TRIG_STOP)
            if not (price >= stop if buying else price <= stop):
                continue
            owner = r.load(base + L.TRIG_OWNER)
            if owner == self._ident or is_alive(owner):
                continue  # its owner fires it
            order = self._order(base, buying, stop)
            res_id, res_slot = r.load(base + L.TRIG_RES_ID), r.load(base + L.TRIG_RES_SLOT)
            if r.load(base + L.TRIG_STATE) != word or not r.cas(base + L.TRIG_STATE, word, _next(word, FIRING)):
                continue  # another process took it first
            r.store(base + L.TRIG_OWNER, self._ident)
            taken.append(HeldStop(_handle(index, _next(word, FIRING)), order, res_id, res_slot, owner))
        return taken

    def _client_id(self, base: int) -> str:
        return decode_text(self._r.load_range(base + L.TRIG_ID, L.TRIG_ID_WORDS))

    def _order(self, base: int, buying: bool, stop: float) -> Order:
        r = self._r
        limit = r.loadf(base + L.TRIG_LIMIT)
        return Order(
            symbol=self._symbol(r.load(base + L.TRIG_SYMBOL)),
            side=Side.BUY if buying else Side.SELL,
            quantity=r.loadf(base + L.TRIG_QTY),
            type=OrderType.STOP if limit != limit else OrderType.STOP_LIMIT,
            stop_price=stop,
            price=None if limit != limit else limit,
            reduce_only=bool(r.load(base + L.TRIG_FLAGS) & 1),
            client_order_id=self._client_id(base),
            strategy=decode_text(r.load_range(base + L.TRIG_STRATEGY, L.TRIG_STRATEGY_WORDS)) or "default",
        )

    def _symbol(self, index: int) -> str:
        start = self._lay.symbol(index) + L.Y_NAME
        return decode_text(self._r.load_range(start, L.SYMBOL_NAME_WORDS))


_INDEX_BITS = 12  # a handle: the state word above, the record's index below
_INDEX_MASK = (1 << _INDEX_BITS) - 1
assert L.TRIGGERS <= _INDEX_MASK + 1


def _handle(index: int, word: int) -> int:
    return (word << _INDEX_BITS) | index


def _next(word: int, state: int) -> int:
    """The state word that follows ``word`` into ``state`` (a new generation)."""
    return (((word >> 8) + 1) << 8) | state
