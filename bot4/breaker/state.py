"""Breaker states and the packed state word.

The whole decision state of a breaker is one 64-bit word, changed only by
compare-and-swap, so a transition is a single atomic step that a process killed at
any instant either made or did not make:

=========  ======  ===========================================================
bits       field   meaning
=========  ======  ===========================================================
0-2        state   :class:`BreakerState`
3-7        level   consecutive re-openings (drives ``open_backoff``), capped at 31
8-23       seq     transition counter; tags half-open permits to their episode
24-63      until   deadline in ms of the clock: OPEN → half-open at; HALF_OPEN → give up at
=========  ======  ===========================================================
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["BreakerState", "StateWord"]


class BreakerState(enum.IntEnum):
    """The state of a circuit breaker."""

    CLOSED = 0
    """Calls pass and their outcomes are recorded."""
    OPEN = 1
    """Calls are rejected until the open period ends."""
    HALF_OPEN = 2
    """A bounded number of trial calls pass; their verdict closes or reopens the breaker."""
    FORCED_OPEN = 3
    """Every call is rejected until :meth:`~bot4.CircuitBreaker.reset`."""
    DISABLED = 4
    """Every call passes and nothing is recorded until :meth:`~bot4.CircuitBreaker.reset`."""


_LEVEL_MAX = 31
_SEQ_MASK = 0xFFFF
_UNTIL_MASK = (1 << 39) - 1


class StateWord(NamedTuple):
    """The unpacked fields of a state word."""

    state: BreakerState
    level: int
    seq: int
    until_ms: int

    @classmethod
    def unpack(cls, word: int) -> StateWord:
        """Split a raw state word into its fields."""
        return cls(BreakerState(word & 7), (word >> 3) & 31, (word >> 8) & _SEQ_MASK, (word >> 24) & _UNTIL_MASK)

    def successor(self, state: BreakerState, *, level: int | None = None, until_ms: int = 0) -> int:
        """Pack the word that follows this one: ``seq`` + 1, the given fields."""
        lvl = self.level if level is None else min(level, _LEVEL_MAX)
        until = max(0, min(until_ms, _UNTIL_MASK))
        return int(state) | (lvl << 3) | (((self.seq + 1) & _SEQ_MASK) << 8) | (until << 24)
