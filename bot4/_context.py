"""What the layers above the segment get from a core: one small typed context.

Breakers, the fuse, the risk engine and the fleet link work on a :class:`CoreContext`
rather than reaching into a :class:`bot4.Core`'s private attributes: the segment, the
clock, this process's identity and slot, the event dispatch, and the fleet link. The
core builds it and keeps it current (a forked child gets a new identity and slot, a
connected core a fleet link), so what the import graph shows is what runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bot4.plugins.dispatch import notify
from bot4.plugins.manager import PluginManager
from bot4.shm._native import EV_ON
from bot4.shm.events import RECORD_WAIT, EventRing, bind
from bot4.shm.mutex import ledger_mutex

if TYPE_CHECKING:
    from bot4.breaker.fuse import Fuse
    from bot4.clock import Clock
    from bot4.fleet.link import FleetLink
    from bot4.shm.segment import Segment

__all__ = ["CoreContext"]

log = logging.getLogger("bot4.core")


class CoreContext:
    """The shared facts of one attached core, for the layers built on it.

    Attributes:
        owner: the :class:`bot4.Core` itself (handed to hooks that take a ``core``).
        segment: the mapped segment.
        clock: the time source; ``now_ns`` its bound reading (the native function
            itself for the default clock), ``gate_clock`` what a breaker's gate calls
            (None: the native monotonic clock, read without calling into Python).
        ident: this process's identity; ``slot``: its worker slot; ``observer``: whether the
            core only watches (``Core.attach(observer=True)``: it takes no risk).
        plugins: the plugin manager; :meth:`notify` calls an event hook on it.
        fleet: the link to the fleet's Redis, or None.
        fuse: the global fuse.
        recovering_manager: the order manager of this process that adopted the orders a
            rebuilt desk's journal held open, until they are reconciled (else None).
    """

    __slots__ = (
        "owner",
        "segment",
        "clock",
        "now_ns",
        "gate_clock",
        "ident",
        "slot",
        "observer",
        "plugins",
        "fleet",
        "fuse",
        "recovering_manager",
    )

    def __init__(
        self,
        *,
        owner: Any,
        segment: Segment,
        clock: Clock,
        now_ns: Callable[[], int],
        gate_clock: Callable[[], int] | None,
        ident: int,
        slot: int,
        plugins: PluginManager,
        observer: bool = False,
    ) -> None:
        self.owner = owner
        self.segment = segment
        self.clock = clock
        self.now_ns = now_ns
        self.gate_clock = gate_clock
        self.ident = ident
        self.slot = slot
        self.observer = observer
        self.plugins = plugins
        self.fleet: FleetLink | None = None
        self.fuse: Fuse | None = None
        self.recovering_manager: object | None = None

    @property
    def name(self) -> str:
        """The segment name."""
        return self.segment.name

    @property
    def closed(self) -> bool:
        """Whether the core was closed in this process."""
        return self.segment.closed

    def record_event(self, kind: int, ref: int, code: int, text: str) -> None:
        """Journal an event that is no ledger transaction (a breaker's or the fuse's transition),
        if the desk has a journal. Never raises: a record that cannot be made is logged (and a
        full ring counts it lost, for the recorder's snapshot)."""
        segment = self.segment
        if not segment.region.load(segment.layout.events + EV_ON):
            return
        try:
            mutex = ledger_mutex(segment, self.ident, timeout=RECORD_WAIT)  # a breaker never waits long
            bind(mutex, segment.layout)
            with mutex as tx:
                tx.record(kind, ref, -1, code, math.nan, math.nan, math.nan, math.nan, text)
        except Exception as e:  # the ledger busy (or the record impossible): counted, the recorder snapshots
            EventRing(segment.region, segment.layout).missed()
            log.error("event %d (%s) was not journaled: %s", kind, text, e)

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of event hook ``hook_name`` (errors logged, never raised)."""
        notify(self.plugins, hook_name, **kwargs)
