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
24-62      until   deadline in ms of the clock, modulo 2**39: OPEN → half-open at;
                   HALF_OPEN → give up at
=========  ======  ===========================================================

Deadlines are compared modulo 2**39 ms (about 17 years): any clock origin works, and no
deadline is ever more than a year ahead (the configuration caps open periods at one).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["BreakerState", "StateWord", "ns_until"]


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
_UNTIL_HALF = 1 << 38
_MS = 1_000_000


def deadline_ms(ns: int) -> int:
    """The deadline field for clock time ``ns`` (rounded up to the next ms)."""
    return (-(-ns // _MS)) & _UNTIL_MASK


def ns_until(until_ms: int, now_ns: int) -> int:
    """Nanoseconds from ``now_ns`` to the deadline field ``until_ms`` (negative once passed)."""
    now_ms = now_ns // _MS
    delta = (until_ms - now_ms) & _UNTIL_MASK
    if delta >= _UNTIL_HALF:
        delta -= _UNTIL_MASK + 1
    return delta * _MS - (now_ns - now_ms * _MS)


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

    def successor(self, state: BreakerState, *, level: int | None = None, until_ns: int = 0) -> int:
        """Pack the word that follows this one: ``seq`` + 1, the given fields (deadline in clock ns)."""
        lvl = self.level if level is None else min(level, _LEVEL_MAX)
        until = deadline_ms(until_ns)
        return int(state) | (lvl << 3) | (((self.seq + 1) & _SEQ_MASK) << 8) | (until << 24)
