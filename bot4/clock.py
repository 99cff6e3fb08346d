"""Time sources. Every time bot4 reads goes through a :class:`Clock`.

The default :class:`MonotonicClock` reads ``CLOCK_MONOTONIC``, which is host-wide on
Linux: every process on the machine sees the same time, so deadlines written to the
shared segment by one worker mean the same to all the others. :class:`ManualClock`
is for tests: time stands still until you move it.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol, runtime_checkable

from bot4.errors import ConfigError
from bot4.shm._native import monotonic_ns

__all__ = ["Clock", "ManualClock", "MonotonicClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of time in integer nanoseconds, never going backwards."""

    def now_ns(self) -> int:
        """Return the current (monotonic) time in nanoseconds."""
        ...

    def time_ns(self) -> int:
        """Return wall-clock time in nanoseconds since the epoch (for trading days and display)."""
        ...


class MonotonicClock:
    """The host-wide monotonic clock (``CLOCK_MONOTONIC``); the default."""

    def now_ns(self) -> int:
        """Return ``CLOCK_MONOTONIC`` in nanoseconds."""
        return monotonic_ns()

    def time_ns(self) -> int:
        """Return the system's wall-clock time in nanoseconds since the epoch."""
        return time.time_ns()

    def __repr__(self) -> str:
        return "MonotonicClock()"


class ManualClock:
    """A clock that moves only when told to; for tests.

    Its time serves as both the monotonic time and the wall-clock time (seconds since
    the epoch), so ``ManualClock(start)`` can place a test on a given date.

    Args:
        start: the initial time in seconds (not negative).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._ns = _to_ns("start", start)

    def now_ns(self) -> int:
        """Return the current manual time in nanoseconds."""
        return self._ns

    def time_ns(self) -> int:
        """Return the manual time, read as nanoseconds since the epoch."""
        return self._ns

    def now(self) -> float:
        """Return the current manual time in seconds."""
        return self._ns / 1e9

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (not negative)."""
        delta = _to_ns("seconds", seconds)
        with self._lock:
            self._ns += delta

    def set(self, seconds: float) -> None:
        """Set the time to ``seconds``; it may not move backwards."""
        target = _to_ns("seconds", seconds)
        with self._lock:
            if target < self._ns:
                raise ConfigError("seconds", f"a clock never goes backwards ({seconds} < {self.now()})")
            self._ns = target

    def __repr__(self) -> str:
        return f"ManualClock({self.now()!r})"


def _to_ns(field: str, seconds: float) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ConfigError(field, f"expected a number of seconds, got {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(field, f"must be a finite number >= 0, got {seconds!r}")
    return round(seconds * 1_000_000_000)
