"""Time sources. Every time bot4 reads goes through a :class:`Clock`.

The default :class:`MonotonicClock` reads ``CLOCK_MONOTONIC``, which is host-wide on
Linux: every process on the machine sees the same time, so deadlines written to the
shared segment by one worker mean the same to all the others. :class:`ManualClock`
is for tests: time stands still until you move it. :class:`SharedClock` is a manual clock
that worker processes share, for runs in simulated time.
"""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
from typing import Any, Protocol, runtime_checkable

from bot4.errors import ConfigError
from bot4.shm._native import monotonic_ns

__all__ = ["Clock", "ManualClock", "MonotonicClock", "SharedClock"]


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

    now_ns = staticmethod(monotonic_ns)
    """Return ``CLOCK_MONOTONIC`` in nanoseconds (the native function itself: no Python frame)."""

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


class SharedClock:
    """A manual clock shared by processes: simulated time that one process moves and all read.

    Give it to :class:`bot4.Supervisor` (``clock=``): every worker's core reads it, so
    breaker deadlines, rate windows and outage windows follow simulated time, and a run
    driven turn by turn replays exactly (``bot4 demo`` does this). It lives in shared
    memory made at construction and travels to spawned workers with them. Move it from
    one process at a time (moves are not atomic across processes).

    Args:
        start: the initial time in seconds (not negative).
        epoch: the wall-clock time, in seconds since the epoch, that time 0 stands for.
    """

    def __init__(self, start: float = 0.0, *, epoch: float = 0.0) -> None:
        self._ns: Any = multiprocessing.get_context("spawn").RawValue("q", _to_ns("start", start))
        self._epoch_ns = _to_ns("epoch", epoch)

    def now_ns(self) -> int:
        """Return the shared simulated time in nanoseconds."""
        return int(self._ns.value)

    def time_ns(self) -> int:
        """Return the simulated time as nanoseconds since the epoch (``epoch`` + now)."""
        return self._epoch_ns + int(self._ns.value)

    def now(self) -> float:
        """Return the shared simulated time in seconds."""
        return int(self._ns.value) / 1e9

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (not negative)."""
        self._ns.value += _to_ns("seconds", seconds)

    def set(self, seconds: float) -> None:
        """Set the time to ``seconds``; it may not move backwards."""
        target = _to_ns("seconds", seconds)
        if target < self._ns.value:
            raise ConfigError("seconds", f"a clock never goes backwards ({seconds} < {self.now()})")
        self._ns.value = target

    def __repr__(self) -> str:
        return f"SharedClock({self.now()!r})"


def _to_ns(field: str, seconds: float) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ConfigError(field, f"expected a number of seconds, got {type(seconds).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(field, f"must be a finite number >= 0, got {seconds!r}")
    return round(seconds * 1_000_000_000)
