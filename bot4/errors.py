"""Every error bot4 raises, under one base class :class:`Bot4Error`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot4.breaker.state import BreakerState
    from bot4.risk.decision import Decision

__all__ = [
    "Bot4Error",
    "CapacityError",
    "CircuitOpenError",
    "ConfigError",
    "ConfigTypeError",
    "ExchangeError",
    "ExchangeTimeoutError",
    "ExchangeUnavailableError",
    "FillError",
    "FleetUnavailableError",
    "ForeignSegmentError",
    "FuseTrippedError",
    "InvalidOrderError",
    "InvalidTransitionError",
    "JournalError",
    "LockTimeoutError",
    "OrderNotFoundError",
    "OrderRejectedError",
    "PluginError",
    "ReservationError",
    "SegmentError",
    "SegmentExistsError",
    "SegmentLayoutError",
    "SegmentNotFoundError",
    "SegmentSpaceError",
    "SegmentStateError",
    "StreamClosedError",
    "StreamError",
    "StreamGapError",
    "StreamMessageError",
    "UnknownOrderError",
]


class Bot4Error(Exception):
    """Base class of every error raised by bot4."""


class _FieldError(Bot4Error, ValueError):
    """An invalid value; ``field`` names it, ``message`` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ConfigError(_FieldError):
    """An invalid configuration value or argument; ``field`` names the offending field."""


class ConfigTypeError(ConfigError, TypeError):
    """A :class:`ConfigError` for an argument of the wrong type (also a ``TypeError``)."""


class InvalidOrderError(_FieldError):
    """An order with an invalid field; ``field`` names it."""


class OrderRejectedError(Bot4Error):
    """An order was rejected by the risk engine; ``decision`` holds every rejection."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision)
        self.decision = decision

    def __str__(self) -> str:
        return "order rejected: " + "; ".join(f"{r.code} ({r.message})" for r in self.decision.rejections)


class ReservationError(Bot4Error):
    """A reservation that is not live was used (already released or filled), or a fill too large."""


class InvalidTransitionError(Bot4Error):
    """An order event that the state machine does not allow in the order's status."""


class FillError(Bot4Error):
    """A fill that cannot apply: it would exceed the order's quantity, or is malformed."""


class UnknownOrderError(Bot4Error):
    """No order with that id is known to the order manager."""


class ExchangeError(Bot4Error):
    """A venue refused or failed a request; ``venue`` names it."""

    def __init__(self, venue: str, message: str) -> None:
        super().__init__(venue, message)
        self.venue = venue
        self.message = message

    def __str__(self) -> str:
        return f"{self.venue}: {self.message}"


class ExchangeUnavailableError(ExchangeError):
    """The venue is down or unreachable (an outage, a network error)."""


class ExchangeTimeoutError(ExchangeError):
    """The venue did not answer in time; the request's outcome is unknown."""


class OrderNotFoundError(ExchangeError):
    """The venue knows no order with that id."""


class ExchangeReplyError(ExchangeError):
    """A venue answered something that is not a valid reply; ``field`` names what is wrong.

    The request's outcome at the venue is unknown (it may have placed the order).
    """

    def __init__(self, venue: str, field: str, message: str) -> None:
        super().__init__(venue, f"invalid reply: {field}: {message}")
        self.field = field
        self.args = (venue, field, message)  # pickled and rebuilt from these


class StreamError(Bot4Error):
    """Base class of the errors of a venue's stream."""


class StreamMessageError(StreamError, ValueError):
    """A stream message that is not what its kind must be: counted, logged and dropped;
    the connection goes on. ``field`` names what is wrong."""

    def __init__(self, kind: str, field: str, message: str) -> None:
        super().__init__(kind, field, message)
        self.kind = kind
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return f"malformed {self.kind} message: {self.field}: {self.message}"


class StreamClosedError(StreamError):
    """A stream adapter was closed, or lost its connection, while a ``watch_*`` call waited:
    call it again to wait on the next connection (a closed adapter refuses it)."""


class StreamGapError(StreamError):
    """Updates of a symbol's stream were lost (its update ids leave a gap): its book is out
    of sync until a new snapshot."""

    def __init__(self, symbol: str, expected: int, got: int) -> None:
        super().__init__(symbol, expected, got)
        self.symbol = symbol
        self.expected = expected
        self.got = got

    def __str__(self) -> str:
        return f"{self.symbol}: update {self.expected} expected, {self.got} came: updates lost, resync"


class SegmentError(Bot4Error):
    """Base class of the shared-memory segment errors; ``name`` is the segment name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(name, message)
        self.name = name
        self.message = message

    def __str__(self) -> str:
        return self.message


class SegmentNotFoundError(SegmentError):
    """No segment with that name exists (attach to a missing name)."""


class SegmentExistsError(SegmentError):
    """A live segment with that name already exists (create over a live one)."""


class SegmentLayoutError(SegmentError):
    """The segment is not a bot4 segment, or was created by an incompatible layout version."""


class SegmentStateError(SegmentError):
    """Shared state stayed inconsistent after the bounded retries and the repair (a torn
    read that no transaction repaired, or words that no bot4 process could have written)."""


class LockTimeoutError(Bot4Error):
    """A live process held a segment lock for longer than the wait allows."""


class ForeignSegmentError(SegmentLayoutError):
    """The segment is not this user's alone (another owner, a mode other than 0600) or was
    made in another PID namespace; attach with ``allow_foreign=True`` to trust it anyway."""


class SegmentSpaceError(SegmentError):
    """``/dev/shm`` has no room for the segment (it is reserved in full when created)."""


class CapacityError(Bot4Error):
    """A fixed-size table of the segment is full (worker slots, breakers, ...)."""


class FleetUnavailableError(Bot4Error):
    """The fleet's Redis cannot be reached for a call that needs it; ``desk`` names the desk."""

    def __init__(self, desk: str, message: str) -> None:
        super().__init__(f"fleet {desk}: Redis unreachable: {message}")
        self.desk = desk


class JournalError(Bot4Error):
    """A journal cannot be opened, read or recovered from (its path, schema or contents)."""


class PluginError(Bot4Error):
    """A plugin could not be registered; the message names the plugin."""


class CircuitOpenError(Bot4Error):
    """A call was rejected by a circuit breaker before it ran.

    Raised as ``CircuitOpenError(breaker, state, retry_after, detail)``; the fields are
    read back as attributes. (No ``__init__`` of its own: a rejection is on the hot path,
    and this keeps raising one as cheap as raising a plain exception.)
    """

    _breaker: Any = None
    """The breaker object that raised it (set on rejection; its cause is read only if asked for)."""

    @property
    def breaker(self) -> str:
        """The name of the breaker that rejected the call."""
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def state(self) -> BreakerState:
        """The breaker's state when the call was rejected."""
        return self.args[1]  # type: ignore[no-any-return]

    @property
    def retry_after(self) -> float | None:
        """Seconds until a call may be admitted again; None when not known (forced open, fuse)."""
        return self.args[2]  # type: ignore[no-any-return]

    @property
    def detail(self) -> str:
        """Why, beyond the state (``"trial permits in use"``, ``"global fuse tripped"``, ...)."""
        return self.args[3] if len(self.args) > 3 else ""

    @property
    def cause(self) -> str | None:
        """Why the breaker last opened (the failure that tripped it, a failed result, or the
        reason it was forced open), read from the shared segment when asked; None when not known."""
        breaker = self.__dict__.get("_breaker")
        if breaker is None:
            return self.__dict__.get("_cause")
        try:
            return breaker.opened_by()  # type: ignore[no-any-return]
        except Bot4Error:  # its core was closed since
            return None

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to another process (a pool's result, a queue): the cause as read now, not the breaker.
        return (type(self), self.args, {"_cause": self.cause})

    def __str__(self) -> str:
        when = "" if self.retry_after is None else f"; retry after {self.retry_after:.3f}s"
        extra = f" ({self.detail})" if self.detail else ""
        return f"circuit {self.breaker!r} is {self.state.name}{extra}{when}"


class FuseTrippedError(CircuitOpenError):
    """A call was rejected because the core's global fuse is tripped."""
