"""Worker slots: each attached process owns one row of every per-worker table.

A slot word holds its owner's process identity. Claiming is one compare-and-swap, from
0 or from the identity of a process that is dead (its slot is reclaimed). The owner is
the only writer of its rows on the hot path, so counters need no lock and lose no
update. The counts a dead owner left behind stay valid and are kept: its successor
continues them.

A PID says whether its process is alive only inside one PID namespace. Each holder
records its namespace next to its identity; a holder of another namespace is never
judged dead (its slot stays held until it gives it back). The namespace word is
written just after the claim: while it does not match the holder yet, the holder is
judged by PID only if no process of another namespace ever attached to the segment.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot4.errors import CapacityError
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm._proc import identity_pid, is_alive, pid_namespace
from bot4.shm.segment import Segment

__all__ = ["SlotRegistry", "WorkerSlot", "pack_namespace"]

_LOW32 = (1 << 32) - 1


def _tag(ident: int) -> int:
    return ((ident * 0x9E3779B97F4A7C15) >> 32) & _LOW32


def _rule_names(bits: int) -> tuple[str, ...]:
    return tuple(f"bot4.rule.{kind}" for bit, kind in enumerate(_native.LEDGER_RULES) if bits >> bit & 1)


def pack_namespace(ident: int, namespace: int) -> int:
    """The slot's namespace word for holder ``ident`` in PID namespace ``namespace``."""
    word = ((namespace & _LOW32) << 32) | _tag(ident)
    return word - (1 << 64) if word >= 1 << 63 else word


@dataclass(frozen=True, kw_only=True)
class WorkerSlot:
    """One claimed worker slot as seen by :meth:`bot4.Core.workers`."""

    slot: int
    pid: int
    alive: bool
    heartbeat_age: float
    """Seconds since the owner's last heartbeat (or since it claimed the slot)."""
    rules_off: tuple[str, ...] = ()
    """Built-in risk rules this process does not run (blocked or replaced), as of its last check."""
    observer: bool = False
    """The process only watches (``Core.attach(observer=True)``, as ``bot4 serve`` does)."""


class SlotRegistry:
    """The worker slot table of one segment."""

    def __init__(self, segment: Segment) -> None:
        self._seg = segment
        self._layout = segment.layout

    def claim(self, ident: int, now_ns: int, *, observer: bool = False) -> int:
        """Claim a free slot (or one whose owner is dead) for ``ident``; return its index.
        An ``observer``'s slot keeps no desk alive (:meth:`live_holders` leaves it out)."""
        r, lay = self._seg.region, self._layout
        for slot in range(lay.max_workers):
            word = lay.slot(slot) + L.S_IDENT
            holder = r.load(word)
            if (holder == 0 or not self.holder_alive(slot, holder)) and r.cas(word, holder, ident):
                r.store(lay.slot(slot) + L.S_OBSERVER, int(observer))
                r.store(lay.slot(slot) + L.S_PIDNS, pack_namespace(ident, pid_namespace()))
                r.store(lay.slot(slot) + L.S_CLAIMED_NS, now_ns)
                r.store(lay.slot(slot) + L.S_HEARTBEAT_NS, now_ns)
                self._raise_high_water(slot + 1)
                return slot
        raise CapacityError(
            f"segment {self._seg.name!r}: all {lay.max_workers} worker slots are held by live processes "
            "(create the segment with a larger max_workers)"
        )

    def _raise_high_water(self, n: int) -> None:
        r = self._seg.region
        while True:
            cur = r.load(L.H_HIGH_WATER)
            if cur >= n or r.cas(L.H_HIGH_WATER, cur, n):
                return

    def holder_alive(self, slot: int, ident: int) -> bool:
        """Whether holder ``ident`` of ``slot`` is alive, or cannot be judged dead (fails safe)."""
        r = self._seg.region
        word = r.load(self._layout.slot(slot) + L.S_PIDNS) & ((1 << 64) - 1)
        if word & _LOW32 == _tag(ident):
            if word >> 32 != pid_namespace() & _LOW32:
                return True  # another PID namespace: its PID says nothing here
        elif r.load(L.H_FOREIGN):
            return True  # namespace not recorded yet, and other namespaces share the segment
        return is_alive(ident)

    @property
    def closed(self) -> bool:
        """Whether the segment was unmapped in this process."""
        return self._seg.closed

    def owner(self, slot: int) -> int:
        """Return the identity in ``slot`` (0 when free)."""
        return self._seg.region.load(self._layout.slot(slot) + L.S_IDENT)

    def release(self, slot: int, ident: int) -> None:
        """Give ``slot`` back if ``ident`` still holds it."""
        self._seg.region.cas(self._layout.slot(slot) + L.S_IDENT, ident, 0)

    def heartbeat(self, slot: int, now_ns: int) -> None:
        """Record that the owner of ``slot`` is alive and working."""
        self._seg.region.store(self._layout.slot(slot) + L.S_HEARTBEAT_NS, now_ns)

    def live_holders(self) -> list[int]:
        """Identities of the slot holders that are alive (observers left out: they keep no desk alive)."""
        r, lay = self._seg.region, self._layout
        holders = (r.load(lay.slot(slot) + L.S_IDENT) for slot in range(lay.max_workers))
        return [
            h
            for slot, h in enumerate(holders)
            if h and not r.load(lay.slot(slot) + L.S_OBSERVER) and self.holder_alive(slot, h)
        ]

    def list(self, now_ns: int) -> list[WorkerSlot]:
        """Return every claimed slot."""
        r, lay = self._seg.region, self._layout
        out = []
        for slot in range(min(r.load(L.H_HIGH_WATER), lay.max_workers)):
            ident = r.load(lay.slot(slot) + L.S_IDENT)
            if ident == 0:
                continue
            beat = r.load(lay.slot(slot) + L.S_HEARTBEAT_NS)
            out.append(
                WorkerSlot(
                    slot=slot,
                    pid=identity_pid(ident),
                    alive=self.holder_alive(slot, ident),
                    heartbeat_age=max(0.0, (now_ns - beat) / 1e9),
                    rules_off=_rule_names(r.load(lay.slot(slot) + L.S_RULES_OFF)),
                    observer=bool(r.load(lay.slot(slot) + L.S_OBSERVER)),
                )
            )
        return out
