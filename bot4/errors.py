"""Every error bot4 raises, under one base class :class:`Bot4Error`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot4.breaker.state import BreakerState

__all__ = [
    "Bot4Error",
    "CapacityError",
    "CircuitOpenError",
    "ConfigError",
    "FuseTrippedError",
    "PluginError",
    "SegmentError",
    "SegmentExistsError",
    "SegmentLayoutError",
    "SegmentNotFoundError",
]


class Bot4Error(Exception):
    """Base class of every error raised by bot4."""


class ConfigError(Bot4Error, ValueError):
    """An invalid configuration value or argument; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class SegmentError(Bot4Error):
    """Base class of the shared-memory segment errors; ``name`` is the segment name."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message)


class SegmentNotFoundError(SegmentError):
    """No segment with that name exists (attach to a missing name)."""


class SegmentExistsError(SegmentError):
    """A live segment with that name already exists (create over a live one)."""


class SegmentLayoutError(SegmentError):
    """The segment is not a bot4 segment, or was created by an incompatible layout version."""


class CapacityError(Bot4Error):
    """A fixed-size table of the segment is full (worker slots, breakers, ...)."""


class PluginError(Bot4Error):
    """A plugin could not be registered; the message names the plugin."""


class CircuitOpenError(Bot4Error):
    """A call was rejected by a circuit breaker before it ran.

    Attributes:
        breaker: the breaker's name.
        state: the breaker's state when the call was rejected.
        retry_after: seconds until a call may be admitted again, ``None`` when that is
            not known (forced open, or the global fuse).
    """

    def __init__(self, breaker: str, state: BreakerState, retry_after: float | None, detail: str = "") -> None:
        self.breaker = breaker
        self.state = state
        self.retry_after = retry_after
        when = "" if retry_after is None else f"; retry after {retry_after:.3f}s"
        extra = f" ({detail})" if detail else ""
        super().__init__(f"circuit {breaker!r} is {state.name}{extra}{when}")


class FuseTrippedError(CircuitOpenError):
    """A call was rejected because the core's global fuse is tripped."""
