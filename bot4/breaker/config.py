"""Breaker and fuse configuration."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot4._numbers import is_number
from bot4.errors import ConfigError, ConfigTypeError
from bot4.shm import _native
from bot4.shm.layout import BUCKETS

__all__ = ["WINDOW_CALLS_MAX", "BreakerConfig", "FuseConfig", "Outcome"]

WINDOW_CALLS_MAX = _native.RING_WORDS
"""The longest count-based window (``BreakerConfig.window_calls``)."""

ExceptionTypes = tuple[type[BaseException], ...]


def _number(name: str, value: Any, *, lo: float, hi: float = math.inf, lo_open: bool = False) -> None:
    if not is_number(value):
        raise ConfigError(name, f"expected a finite number, got {value!r}")
    if value < lo or (lo_open and value == lo) or value > hi:
        left = "(" if lo_open else "["
        right = "]" if hi != math.inf else ")"
        raise ConfigError(name, f"must be in {left}{lo}, {hi}{right}, got {value!r}")


def _integer(name: str, value: Any, *, lo: int, hi: int = 2**31 - 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(name, f"must be in [{lo}, {hi}], got {value!r}")


def _exception_types(name: str, value: Any) -> ExceptionTypes:
    items = value if isinstance(value, (tuple, list)) else (value,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigError(name, f"expected exception classes, got {item!r}")
    return tuple(items)


class Outcome:
    """How a call's result counts: one of :attr:`SUCCESS`, :attr:`FAILURE`, :attr:`IGNORED`."""

    SUCCESS = 0
    FAILURE = 1
    IGNORED = 2


@dataclass(frozen=True, kw_only=True)
class BreakerConfig:
    """How a circuit breaker decides. Invalid values raise :class:`bot4.ConfigError`.

    The numeric fields live in the shared segment: every process sees the same values,
    and :meth:`~bot4.CircuitBreaker.reconfigure` changes them for all at their next call.
    ``record``, ``ignore``, ``predicate`` and ``failed_result`` are code, so they belong to
    the process that passes them.
    """

    failure_rate_threshold: float = 0.5
    """Trip when failures / calls in the window reaches this (0 < x <= 1)."""
    minimum_calls: int = 20
    """Rate rules apply only once the window holds at least this many calls."""
    window_seconds: float = 10.0
    """Length of the sliding time window; it moves in steps of ``window_seconds / 10``."""
    window_calls: int | None = None
    """Make the window the last this many calls of every process instead of a time span
    (resilience4j's count-based window; 1 to ``WINDOW_CALLS_MAX`` = 1024); None: the time
    window. A rate rule then waits for ``min(minimum_calls, window_calls)`` calls."""
    consecutive_failures: int | None = 5
    """Trip after this many failures in a row across all processes, whatever the rate; None: off."""
    slow_call_seconds: float | None = None
    """A call taking at least this long is slow (1 ns to 1 day; the clock reads ns); None: not tracked."""
    slow_call_rate_threshold: float = 1.0
    """Trip when slow calls / calls in the window reaches this (0 < x <= 1)."""
    open_seconds: float = 5.0
    """How long the breaker stays open after a trip, before it lets trial calls through."""
    open_backoff: float = 2.0
    """Each re-opening after a failed trial multiplies the open period by this (>= 1)."""
    max_open_seconds: float | None = None
    """Cap of the open period under backoff (>= open_seconds); None: the larger of 60 s and open_seconds."""
    half_open_calls: int = 3
    """Trial permits in half-open; that many successes close it, one failure reopens it."""
    half_open_max_seconds: float = 30.0
    """Half-open without a verdict for this long goes back to open; its permits are reclaimed."""
    slow_trial_fails: bool = True
    """A trial call in half-open that succeeds but is slow (``slow_call_seconds``) reopens the
    breaker as a failed trial would: a venue answering slowly is not closed again."""
    record: ExceptionTypes = (Exception,)
    """Exceptions that count as failures (others count as successes)."""
    ignore: ExceptionTypes = ()
    """Exceptions that count as neither success nor failure; checked before ``record``."""
    predicate: Callable[[BaseException], bool] | None = field(default=None, compare=False)
    """Optional final say for a recorded exception: True → failure, False → success."""
    failed_result: Callable[[Any], bool] | None = field(default=None, compare=False)
    """Optional: a return value for which this returns True counts as a failure (a venue that
    answers ``{"status": "error"}`` without raising); the caller still gets the value. Applies
    to decorated functions (a ``with br.call():`` block has no return value)."""

    def __post_init__(self) -> None:
        _number("failure_rate_threshold", self.failure_rate_threshold, lo=0.0, hi=1.0, lo_open=True)
        _integer("minimum_calls", self.minimum_calls, lo=1)
        _number("window_seconds", self.window_seconds, lo=0.01, hi=86_400.0)
        if self.window_calls is not None:
            _integer("window_calls", self.window_calls, lo=1, hi=WINDOW_CALLS_MAX)
        if self.consecutive_failures is not None:
            _integer("consecutive_failures", self.consecutive_failures, lo=1)
        if self.slow_call_seconds is not None:
            _number("slow_call_seconds", self.slow_call_seconds, lo=1e-9, hi=86_400.0)
        _number("slow_call_rate_threshold", self.slow_call_rate_threshold, lo=0.0, hi=1.0, lo_open=True)
        _number("open_seconds", self.open_seconds, lo=0.001, hi=31_536_000.0)
        _number("open_backoff", self.open_backoff, lo=1.0, hi=1000.0)
        if self.max_open_seconds is None:
            object.__setattr__(self, "max_open_seconds", max(60.0, float(self.open_seconds)))
        _number("max_open_seconds", self.max_open_seconds, lo=self.open_seconds, hi=31_536_000.0)
        _integer("half_open_calls", self.half_open_calls, lo=1)
        _number("half_open_max_seconds", self.half_open_max_seconds, lo=0.001, hi=31_536_000.0)
        if not isinstance(self.slow_trial_fails, bool):
            raise ConfigError("slow_trial_fails", f"expected True or False, got {self.slow_trial_fails!r}")
        object.__setattr__(self, "record", _exception_types("record", self.record))
        object.__setattr__(self, "ignore", _exception_types("ignore", self.ignore))
        if self.predicate is not None and not callable(self.predicate):
            raise ConfigError("predicate", f"expected a callable or None, got {self.predicate!r}")
        if self.failed_result is not None and not callable(self.failed_result):
            raise ConfigError("failed_result", f"expected a callable or None, got {self.failed_result!r}")

    def replace(self, **changes: Any) -> BreakerConfig:
        """A copy with ``changes`` applied and every other field kept (``record`` and
        ``ignore`` included): ``br.reconfigure(br.config.replace(open_seconds=30))``."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise ConfigTypeError("changes", str(exc)) from None

    def classify(self, exc: BaseException) -> int:
        """Return the :class:`Outcome` of a call that raised ``exc``.

        ``BaseException``s that are not ``Exception`` (KeyboardInterrupt, SystemExit,
        asyncio.CancelledError) and ``ignore`` matches are IGNORED; ``record`` matches
        are FAILURE unless ``predicate`` says otherwise; anything else is SUCCESS. A
        predicate that raises counts the call as a failure.
        """
        if not isinstance(exc, Exception) or isinstance(exc, self.ignore):
            return Outcome.IGNORED
        if not isinstance(exc, self.record):
            return Outcome.SUCCESS
        if self.predicate is None:
            return Outcome.FAILURE
        try:
            return Outcome.FAILURE if self.predicate(exc) else Outcome.SUCCESS
        except Exception:
            return Outcome.FAILURE

    def result_fails(self, result: Any) -> bool:
        """Whether a call that returned ``result`` counts as a failure (``failed_result``).

        A ``failed_result`` that raises counts the call as a failure.
        """
        if self.failed_result is None:
            return False
        try:
            return bool(self.failed_result(result))
        except Exception:
            return True

    # --- the shared (numeric) part, as stored in a config block of the segment -------

    def to_words(self) -> dict[int, tuple[str, float | int]]:
        """The numeric fields as ``{block offset: (kind, value)}``, kind ``"f"`` or ``"i"``."""
        window_ns = round(self.window_seconds * 1e9)
        return {
            _native.CFG_FAILURE_RATE: ("f", float(self.failure_rate_threshold)),
            _native.CFG_MINIMUM_CALLS: ("i", self.minimum_calls),
            _native.CFG_WINDOW_NS: ("i", window_ns),
            _native.CFG_BUCKET_NS: ("i", max(1, window_ns // BUCKETS)),
            _native.CFG_CONSECUTIVE: ("i", self.consecutive_failures or 0),
            _native.CFG_SLOW_NS: ("i", round((self.slow_call_seconds or 0) * 1e9)),
            _native.CFG_SLOW_RATE: ("f", float(self.slow_call_rate_threshold)),
            _native.CFG_OPEN_NS: ("i", round(self.open_seconds * 1e9)),
            _native.CFG_OPEN_BACKOFF: ("f", float(self.open_backoff)),
            _native.CFG_MAX_OPEN_NS: ("i", round(float(self.max_open_seconds or 0) * 1e9)),
            _native.CFG_HALF_OPEN_CALLS: ("i", self.half_open_calls),
            _native.CFG_HALF_OPEN_MAX_NS: ("i", round(self.half_open_max_seconds * 1e9)),
            _native.CFG_SLOW_TRIAL_FAILS: ("i", int(self.slow_trial_fails)),
            _native.CFG_WINDOW_CALLS: ("i", self.window_calls or 0),
        }

    @classmethod
    def from_words(cls, values: dict[int, float | int], local: BreakerConfig | None = None) -> BreakerConfig:
        """Rebuild a config from stored numeric fields, taking code fields from ``local``."""
        consecutive = int(values[_native.CFG_CONSECUTIVE])
        slow_ns = int(values[_native.CFG_SLOW_NS])
        kwargs: dict[str, Any] = dict(
            failure_rate_threshold=float(values[_native.CFG_FAILURE_RATE]),
            minimum_calls=int(values[_native.CFG_MINIMUM_CALLS]),
            window_seconds=int(values[_native.CFG_WINDOW_NS]) / 1e9,
            consecutive_failures=consecutive or None,
            slow_call_seconds=slow_ns / 1e9 if slow_ns else None,
            slow_call_rate_threshold=float(values[_native.CFG_SLOW_RATE]),
            open_seconds=int(values[_native.CFG_OPEN_NS]) / 1e9,
            open_backoff=float(values[_native.CFG_OPEN_BACKOFF]),
            max_open_seconds=int(values[_native.CFG_MAX_OPEN_NS]) / 1e9,
            half_open_calls=int(values[_native.CFG_HALF_OPEN_CALLS]),
            half_open_max_seconds=int(values[_native.CFG_HALF_OPEN_MAX_NS]) / 1e9,
            slow_trial_fails=bool(values[_native.CFG_SLOW_TRIAL_FAILS]),
            window_calls=int(values[_native.CFG_WINDOW_CALLS]) or None,
        )
        if local is not None:
            kwargs.update(
                record=local.record, ignore=local.ignore, predicate=local.predicate, failed_result=local.failed_result
            )
        return cls(**kwargs)

    def shared_equal(self, other: BreakerConfig) -> bool:
        """Whether the numeric (shared) fields of both configs are the same."""
        return self.to_words() == other.to_words()


@dataclass(frozen=True, kw_only=True)
class FuseConfig:
    """When the global fuse of a core trips and releases.

    The fuse trips when at least ``open_ratio`` of the core's breakers (not counting
    disabled ones, nor those a fleet's policy forced open while its Redis is unreachable)
    are not closed, provided there are at least ``min_components``; it
    releases when that ratio falls below ``close_ratio``.
    """

    open_ratio: float = 0.5
    """Trip at this share of breakers not closed (0 < x <= 1)."""
    close_ratio: float = 0.35
    """Release below this share (0 <= x < open_ratio)."""
    min_components: int = 3
    """The fuse never trips with fewer breakers than this."""

    def __post_init__(self) -> None:
        _number("open_ratio", self.open_ratio, lo=0.0, hi=1.0, lo_open=True)
        _number("close_ratio", self.close_ratio, lo=0.0, hi=1.0)
        if self.close_ratio >= self.open_ratio:
            raise ConfigError("close_ratio", f"must be below open_ratio ({self.open_ratio}), got {self.close_ratio}")
        _integer("min_components", self.min_components, lo=1)
