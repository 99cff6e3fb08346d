"""The global fuse: when too many of a core's breakers are open, every breaker rejects.

It trips when at least ``open_ratio`` of at least ``min_components`` breakers (disabled
ones not counted, nor those a fleet's policy forced open while its Redis is unreachable)
are not closed, and releases when that share falls below
``close_ratio``. While it is tripped, closed breakers reject every call, but open
breakers still move to half-open and take their trial calls, so components recover
and the fuse releases itself. :meth:`Fuse.trip` forces it until :meth:`Fuse.reset`.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot4.breaker.config import FuseConfig
from bot4.breaker.state import BreakerState
from bot4.errors import ConfigError
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm.events import EventKind
from bot4.shm.text import decode_text

if TYPE_CHECKING:
    from bot4._context import CoreContext
    from bot4.shm._native import Region

__all__ = ["FORCED_BY_POLICY", "Fuse", "FuseSnapshot", "FuseState"]

FORCED_BY_POLICY = "fleet unreachable (fail-closed)"
"""The reason a fleet's policy records on a breaker it forces open while Redis is unreachable
(such breakers are not counted by the fuse)."""

_RATIO_UNIT = 100_000
_FIELD = (1 << 20) - 1
_REPAIR_EVERY = 0.01  # seconds between re-evaluations of a tripped fuse by one process's rejected calls


def _forced_by_policy(r: Region, rec: int) -> bool:
    """Whether the breaker at ``rec`` was forced open by a fleet's policy (its recorded cause),
    as any process of the host sees it."""
    tag = r.load(rec + _native.REC_CAUSE)
    if tag <= 0:
        return False
    text = decode_text(r.load_range(rec + _native.REC_CAUSE + 1, _native.REC_CAUSE_WORDS - 1))
    return text == FORCED_BY_POLICY and r.load(rec + _native.REC_CAUSE) == tag


class FuseState(enum.IntEnum):
    """The state of the global fuse."""

    CLEAR = 0
    """Breakers decide alone."""
    TRIPPED = 1
    """Too many breakers are open: every breaker rejects (trial calls excepted)."""
    FORCED = 2
    """Tripped by hand with :meth:`Fuse.trip`; stays so until :meth:`Fuse.reset`."""


@dataclass(frozen=True, kw_only=True)
class FuseSnapshot:
    """The fuse at one instant."""

    state: FuseState
    open_breakers: int
    """Breakers not closed (OPEN, HALF_OPEN, FORCED_OPEN)."""
    counted_breakers: int
    """Breakers that count (all but DISABLED)."""
    open_ratio: float
    trips: int
    config: FuseConfig


def pack_config(config: FuseConfig) -> int:
    """Pack a fuse config into one word (ratios to 1e-5)."""
    return (
        round(config.open_ratio * _RATIO_UNIT)
        | (round(config.close_ratio * _RATIO_UNIT) << 20)
        | (min(config.min_components, (1 << 23) - 1) << 40)
    )


def unpack_config(word: int) -> FuseConfig:
    """Inverse of :func:`pack_config`."""
    return FuseConfig(
        open_ratio=(word & _FIELD) / _RATIO_UNIT,
        close_ratio=((word >> 20) & _FIELD) / _RATIO_UNIT,
        min_components=word >> 40,
    )


class Fuse:
    """Shows and controls the global fuse of a core (``core.fuse``)."""

    def __init__(self, ctx: CoreContext) -> None:
        self._ctx = ctx
        self._r = ctx.segment.region
        self._repaired_at = -_REPAIR_EVERY

    @property
    def state(self) -> FuseState:
        """The current fuse state."""
        return FuseState(self._r.load(L.H_FUSE))

    @property
    def tripped(self) -> bool:
        """Whether the fuse rejects calls (TRIPPED or FORCED)."""
        return self._r.load(L.H_FUSE) != FuseState.CLEAR

    @property
    def config(self) -> FuseConfig:
        """The fuse configuration shared by every process."""
        return unpack_config(self._r.load(L.H_FUSE_CONFIG))

    def configure(self, config: FuseConfig) -> None:
        """Change the fuse configuration for every process; re-evaluates the fuse."""
        if not isinstance(config, FuseConfig):
            raise ConfigError("config", f"expected a FuseConfig, got {type(config).__name__}")
        self._r.store(L.H_FUSE_CONFIG, pack_config(config))
        self.evaluate()

    def trip(self, reason: str = "tripped by hand") -> None:
        """Force the fuse: every breaker rejects until :meth:`reset`."""
        self._move(FuseState.FORCED, reason)

    def reset(self, reason: str = "reset by hand") -> None:
        """Clear the fuse (forced or not), then re-evaluate it from the breakers."""
        self._move(FuseState.CLEAR, reason)
        self.evaluate()

    def _move(self, target: FuseState, reason: str) -> None:
        r = self._r
        while True:
            old = r.load(L.H_FUSE)
            if old == target:
                return
            if r.cas(L.H_FUSE, old, target):
                break
        self._changed(FuseState(old), target, reason)

    def _changed(self, old: FuseState, new: FuseState, reason: str) -> None:
        self._r.store(L.H_FUSE_CHANGED_NS, self._ctx.clock.now_ns())
        if new is not FuseState.CLEAR:
            self._r.add(L.H_FUSE_TRIPS, 1)
        self._ctx.record_event(EventKind.BREAKER, -1, int(new), f"fuse: {old.name}->{new.name}: {reason}")
        self._ctx.notify("bot4_fuse_changed", core=self._ctx.owner, old=old, new=new, reason=reason)

    def _count(self) -> tuple[int, int]:
        """(breakers not closed, breakers counted): not counting disabled breakers, nor those the
        fleet's policy forced open while its Redis is unreachable (a fail-open breaker stays usable)."""
        r, lay = self._r, self._ctx.segment.layout
        counted = not_closed = 0
        for index in range(r.load(L.H_BREAKERS_USED)):
            rec = lay.record(index)
            if r.load(rec + _native.REC_STATUS) != 1:
                continue
            state = r.load(rec + _native.REC_STATE) & 7
            if state == BreakerState.DISABLED or state == BreakerState.FORCED_OPEN and _forced_by_policy(r, rec):
                continue
            counted += 1
            not_closed += state != BreakerState.CLOSED
        return not_closed, counted

    def evaluate(self) -> None:
        """Trip or release the fuse from the breakers' states (called after every transition)."""
        cfg = self.config
        not_closed, counted = self._count()
        ratio = not_closed / counted if counted else 0.0
        r = self._r
        state = r.load(L.H_FUSE)
        if state == FuseState.CLEAR and counted >= cfg.min_components and ratio >= cfg.open_ratio:
            if r.cas(L.H_FUSE, FuseState.CLEAR, FuseState.TRIPPED):
                self._changed(
                    FuseState.CLEAR, FuseState.TRIPPED, f"{not_closed} of {counted} breakers open ({ratio:.0%})"
                )
        elif state == FuseState.TRIPPED and (counted < cfg.min_components or ratio < cfg.close_ratio):
            if r.cas(L.H_FUSE, FuseState.TRIPPED, FuseState.CLEAR):
                self._changed(
                    FuseState.TRIPPED, FuseState.CLEAR, f"{not_closed} of {counted} breakers open ({ratio:.0%})"
                )

    def repair(self) -> bool:
        """Re-evaluate a tripped fuse from the breakers (at most every 10 ms per process).

        The fuse is moved in a second step after a breaker's transition; a process killed
        between the two leaves it tripped over breakers that are all closed, which would
        then reject every call and never transition again. A call the fuse would reject
        asks for this first. Returns whether it re-evaluated.
        """
        now = time.monotonic()
        if now - self._repaired_at < _REPAIR_EVERY:
            return False
        self._repaired_at = now
        self.evaluate()
        return True

    def snapshot(self) -> FuseSnapshot:
        """Return the fuse state and the counts it is decided from."""
        not_closed, counted = self._count()
        return FuseSnapshot(
            state=self.state,
            open_breakers=not_closed,
            counted_breakers=counted,
            open_ratio=not_closed / counted if counted else 0.0,
            trips=self._r.load(L.H_FUSE_TRIPS),
            config=self.config,
        )
