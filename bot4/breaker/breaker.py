"""The circuit breaker: one per component, the same in every attached process."""

from __future__ import annotations

import asyncio
import datetime
import functools
import inspect
import logging
import os
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, overload

from bot4._numbers import is_number
from bot4.breaker.config import BreakerConfig, Outcome
from bot4.breaker.state import BreakerState, StateWord, ns_until
from bot4.errors import CircuitOpenError, ConfigError, ConfigTypeError, FuseTrippedError, SegmentError
from bot4.shm import _native
from bot4.shm import layout as L
from bot4.shm.events import EventKind
from bot4.shm.text import decode_text, encode_text

if TYPE_CHECKING:
    from bot4._context import CoreContext
    from bot4.breaker.registry import BreakerRegistry
    from bot4.core import Core

__all__ = ["BreakerSnapshot", "CallEvent", "CircuitBreaker"]

log = logging.getLogger("bot4.breaker")

P = ParamSpec("P")
R = TypeVar("R")

_LOW32 = 0xFFFFFFFF
_OPEN = BreakerState.OPEN
_FUSE_TRIPPED = 1  # FuseState.TRIPPED (a fuse forced by hand is never re-evaluated)
_PASS = object()  # token: the breaker is disabled, the call is neither checked nor recorded
_NO_RESULT = object()  # a guarded block (not a function): there is no return value to classify


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _coroutine_template(*args: Any, **kwargs: Any) -> Any:
    """Lends its code object to guarded callables that are not functions (partials, ...)."""


def _mark_coroutine_function(guarded: Any, fn: Callable[..., Any]) -> None:
    """Make ``inspect.iscoroutinefunction`` and ``asyncio.iscoroutinefunction`` true for
    ``guarded``, a native callable standing for the coroutine function ``fn``."""
    code = getattr(fn, "__code__", None)
    guarded.__code__ = code if isinstance(code, types.CodeType) else _coroutine_template.__code__
    guarded.__defaults__ = getattr(fn, "__defaults__", None)
    guarded.__kwdefaults__ = getattr(fn, "__kwdefaults__", None)
    if not isinstance(getattr(guarded, "__name__", None), str):  # a partial has none
        guarded.__name__ = getattr(getattr(fn, "func", None), "__name__", type(fn).__name__)
    guarded._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    mark = getattr(inspect, "markcoroutinefunction", None)  # Python >= 3.12
    if mark is not None:
        mark(guarded)


class _Trial:
    """Token of a half-open trial call: the episode (seq) that granted the permit."""

    __slots__ = ("seq", "t0")

    def __init__(self, seq: int, t0: int) -> None:
        self.seq = seq
        self.t0 = t0


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One call through a breaker, as a listener of :meth:`CircuitBreaker.subscribe` sees it."""

    breaker: str
    kind: str
    """``"success"``, ``"failure"``, ``"ignored"`` (an ignored exception) or ``"rejected"``."""
    seconds: float | None
    """How long the call took (None for a rejected call, which did not run)."""
    error: BaseException | None
    """The exception the call raised, or the ``CircuitOpenError`` of a rejection; None otherwise."""


_KIND = {Outcome.SUCCESS: "success", Outcome.FAILURE: "failure", Outcome.IGNORED: "ignored"}


@dataclass(frozen=True, kw_only=True)
class BreakerSnapshot:
    """A breaker's state and window as seen at one instant (by :meth:`CircuitBreaker.snapshot`)."""

    name: str
    state: BreakerState
    calls: int
    """Recorded calls (successes + failures) in the window, all processes."""
    failures: int
    slow_calls: int
    failure_rate: float
    """failures / calls in the window (0.0 when empty)."""
    slow_call_rate: float
    consecutive_failures: int
    seconds_until_half_open: float | None
    """Seconds until an OPEN breaker admits trial calls; None in any other state."""
    half_open_permits_in_use: int
    trips: int
    """Transitions into OPEN since the segment was created."""
    rejections: int
    """Calls rejected since the segment was created."""
    config: BreakerConfig
    half_open_successes: int = 0
    """Trial calls of the current half-open episode that succeeded (0 in any other state)."""
    opened_by: str | None = None
    """Why it last opened, seen by any process: see :meth:`CircuitBreaker.opened_by`."""
    opened_by_pid: int | None = None
    """The process that saw what opened it."""
    seconds_in_state: float | None = None
    """How long it has been in ``state`` (None if it never changed state)."""
    transitions: Mapping[BreakerState, int] = field(default_factory=dict)
    """How many times each state was entered since the segment was created, all processes."""
    trial_calls: int = 0
    """Trial calls admitted in half-open since the segment was created."""
    trial_failures: int = 0
    """Of those, the ones that failed (or were slow, with ``slow_trial_fails``)."""
    total_successes: int = 0
    """Calls recorded as successes since the segment was created, all processes (trial calls not included)."""
    total_failures: int = 0
    """Calls recorded as failures since the segment was created, all processes (trial calls not included)."""
    total_slow_calls: int = 0
    """Of the recorded calls, the slow ones, since the segment was created."""


class CircuitBreaker:
    """A circuit breaker whose state lives in the core's shared segment.

    Get one with :meth:`bot4.Core.breaker`; every process that attaches to the same
    segment and asks for the same name gets the same breaker. Guard calls with the
    decorator (``@br``, sync or async) or the context manager (``with br.call():`` /
    ``async with br.call():``). A rejected call raises :class:`bot4.CircuitOpenError`
    before the guarded code runs.
    """

    def __init__(
        self,
        ctx: CoreContext,
        registry: BreakerRegistry,
        index: int,
        name: str,
        gate: _native.Gate,
        config: BreakerConfig,
    ) -> None:
        seg = ctx.segment
        rec = seg.layout.record(index)
        self._ctx = ctx
        self._registry = registry
        self._name = name
        self._index = index
        self._r = seg.region
        self._rec = rec
        self._state_i = rec + _native.REC_STATE
        self._permits_i = rec + _native.REC_PERMITS
        self._succ_i = rec + _native.REC_SUCCESSES
        self._rejects_i = rec + _native.REC_REJECTS
        self._gate = gate
        self._local = config
        self._classify = config.classify
        self._result_check = config.result_fails if config.failed_result is not None else None
        self._listeners: tuple[Callable[[CallEvent], object], ...] = ()
        self._extra = False
        self._config_seen: tuple[int, BreakerConfig, BreakerConfig] | None = None  # (generation, local, config)
        self._sync_policy()
        self._plugins = ctx.plugins
        gate.set_rejection(CircuitOpenError, _OPEN, name, self, ctx.plugins)

    # ------------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        """The breaker's name, unique within its core."""
        return self._name

    @property
    def core(self) -> Core:
        """The core this breaker belongs to."""
        core: Core = self._ctx.owner
        return core

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._name!r} {self.state.name}>"

    # ------------------------------------------------------------------ guarding

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or async) so every call goes through this breaker."""
        if not callable(fn):
            raise ConfigTypeError("fn", f"a breaker decorates callables, got {fn!r}")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise ConfigTypeError(
                "fn",
                f"{getattr(fn, '__qualname__', fn)!r} is a generator function: calling it only creates the "
                "generator, so its errors would never reach the breaker; guard each step inside it with "
                "`with breaker.call():` (or `async with`)",
            )
        is_async = inspect.iscoroutinefunction(fn)
        native = _native.Guarded(
            gate=self._gate,
            fn=fn,
            slow=fn if is_async else self._python_guard(fn),
            trip=self._trip_on,
            admit=self._admit_slow,
            finish=self._finish,
            is_async=is_async,
        )
        functools.update_wrapper(native, fn)
        if is_async:  # inspect and asyncio see a coroutine function, as they saw fn
            _mark_coroutine_function(native, fn)
        return native

    def _python_guard(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """``fn`` guarded in Python: what the native guard hands a call the closed path does not cover."""
        acquire, success = self._gate.acquire, self._gate.success
        on_exception, admit, finish, refuse = self._closed_exception, self._admit_slow, self._finish, self._refuse_open

        def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
            t0 = acquire()
            if t0 < 0:
                if t0 < -1:
                    raise refuse(t0)
                token = admit()
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    finish(token, exc)
                    raise
                finish(token, None, result)
                return result
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                on_exception(t0, exc)
                raise
            if self._extra:  # a result to check or listeners to tell
                finish(t0, None, result)
            else:
                verdict = success(t0)
                if verdict:
                    self._trip(verdict)
            return result

        return guarded

    def call(self) -> _Guard:
        """A context manager (sync and async) guarding its body with this breaker."""
        return _Guard(self)

    # ------------------------------------------------------------------ outcomes

    def _closed_exception(self, t0: int, exc: BaseException) -> None:
        outcome = self._classify(exc)
        verdict = 0
        if outcome == Outcome.FAILURE:
            verdict = self._gate.failure(t0)
        elif outcome == Outcome.SUCCESS:
            verdict = self._gate.success(t0)
        if self._listeners:
            self._emit(_KIND[outcome], t0, exc)
        if verdict:
            self._trip(verdict, _describe(exc))

    def _finish(self, token: object, exc: BaseException | None, result: object = _NO_RESULT) -> None:
        """Record the outcome of a call admitted with ``token`` (that raised ``exc`` or returned ``result``)."""
        if token is _PASS:
            return
        check = self._result_check
        bad_result = exc is None and result is not _NO_RESULT and check is not None and check(result)
        if isinstance(token, _Trial):
            cause: str | None
            if exc is not None:
                outcome, cause = self._classify(exc), _describe(exc)
            else:
                outcome = Outcome.FAILURE if bad_result else Outcome.SUCCESS
                cause = f"failed result {result!r}" if bad_result else None
            try:
                if self._listeners:
                    self._emit(_KIND[outcome], token.t0, exc)
                self._trial_done(token, outcome, cause)
            except BaseException:  # Ctrl-C, a failing clock: the trial's permit is not lost with it
                self._return_permit(token.seq)
                raise
            return
        assert isinstance(token, int)
        if exc is not None:
            self._closed_exception(token, exc)
            return
        if self._listeners:
            self._emit("failure" if bad_result else "success", token, None)
        if bad_result:
            self._failed_call(token, result)
        else:
            verdict = self._gate.success(token)
            if verdict:
                self._trip(verdict)

    # ------------------------------------------------------------------ per-call events

    def subscribe(self, listener: Callable[[CallEvent], object]) -> Callable[[], None]:
        """Call ``listener(event)`` for every call through this breaker in this process —
        success, failure, ignored, rejected — and return the function that unsubscribes it.

        Listeners run after the call is recorded, on the calling thread; one that raises is
        logged and skipped. The closed path pays nothing while no listener is subscribed.
        Transitions, seen by every process, go to the ``bot4_breaker_state_changed`` hook.
        """
        if not callable(listener):
            raise ConfigTypeError("listener", f"expected a callable, got {listener!r}")
        self._listeners = (*self._listeners, listener)
        self._sync_policy()

        def unsubscribe() -> None:
            self._listeners = tuple(x for x in self._listeners if x is not listener)
            self._sync_policy()

        return unsubscribe

    def _emit(self, kind: str, t0: int | None, error: BaseException | None) -> None:
        seconds = None if t0 is None else max(0, self._gate.now() - t0) / 1e9
        event = CallEvent(self._name, kind, seconds, error)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("listener %r of breaker %r raised; ignored", listener, self._name)

    def _trip_on(self, verdict: int, exc: BaseException | None) -> None:
        """Open the breaker: a trip rule (``verdict``) was met on a call that raised ``exc`` (or returned)."""
        self._trip(verdict, None if exc is None else _describe(exc))

    def _failed_call(self, t0: int, result: object) -> None:
        """Record a call of the closed path as failed (it returned a failed ``result``)."""
        verdict = self._gate.failure(t0)
        if verdict:
            self._trip(verdict, f"failed result {result!r}")

    def _enter(self) -> object:
        t0 = self._gate.acquire()
        if t0 >= 0:
            return t0
        if t0 < -1:
            raise self._refuse_open(t0)
        return self._admit_slow()

    # ------------------------------------------------------------------ slow path

    def _refuse_open(self, code: int) -> CircuitOpenError:
        """The error for a call the gate found OPEN for another ``-code - 2`` ns (counted, announced)."""
        error: CircuitOpenError = self._gate.refuse(code)
        if self._plugins.rejections_heard or self._listeners:
            self._announce_rejection(error)
        return error

    def _announce_rejection(self, error: CircuitOpenError) -> None:
        """Tell this process's listeners and the ``bot4_call_rejected`` plugins of a rejected call."""
        if self._listeners:
            self._emit("rejected", None, error)
        if self._plugins.rejections_heard:
            self._ctx.notify("bot4_call_rejected", breaker=self, error=error)

    def _admit_slow(self) -> object:
        """Decide on a call the closed fast path did not admit; return its token or raise."""
        r, ctx = self._r, self._ctx
        if ctx.closed:
            raise SegmentError(ctx.name, f"core {ctx.name!r} is closed")
        now = self._gate.now()
        while True:
            word = r.load(self._state_i)
            sw = StateWord.unpack(word)
            state = sw.state
            if state is BreakerState.DISABLED:
                return _PASS
            if state is BreakerState.CLOSED:
                fuse = r.load(L.H_FUSE)
                if fuse == _FUSE_TRIPPED and ctx.fuse is not None and ctx.fuse.repair():  # left stale by a kill?
                    fuse = r.load(L.H_FUSE)
                if fuse != 0:
                    self._reject(FuseTrippedError(self._name, state, None, "global fuse tripped"))
                return now
            if state is BreakerState.FORCED_OPEN:
                self._reject(CircuitOpenError(self._name, state, None, "forced open"))
            left = ns_until(sw.until_ms, now)
            if state is BreakerState.OPEN:
                if left > 0:
                    self._reject(CircuitOpenError(self._name, state, left / 1e9, ""))
                cfg = self._config_words()
                new = sw.successor(BreakerState.HALF_OPEN, until_ns=now + int(cfg[_native.CFG_HALF_OPEN_MAX_NS]))
                if r.cas(self._state_i, word, new):
                    self._changed(BreakerState.OPEN, BreakerState.HALF_OPEN, "open period elapsed", now)
                continue
            # HALF_OPEN
            if left <= 0:
                new = sw.successor(BreakerState.OPEN, until_ns=now + self._open_ns(sw.level))
                if r.cas(self._state_i, word, new):
                    self._changed(
                        BreakerState.HALF_OPEN, BreakerState.OPEN, "no trial verdict within half_open_max_seconds", now
                    )
                continue
            limit = int(self._config_words()[_native.CFG_HALF_OPEN_CALLS])
            permits = r.load(self._permits_i)
            issued = permits & _LOW32 if permits >> 32 == sw.seq else 0
            if issued >= limit:
                self._reject(CircuitOpenError(self._name, state, left / 1e9, "trial permits in use"))
            if r.cas(self._permits_i, permits, (sw.seq << 32) | (issued + 1)):
                try:  # the permit is taken: anything raised before the trial is handed out gives it back
                    current = r.load(self._state_i) == word
                    fleet = ctx.fleet
                    if current and (fleet is None or fleet.permit(self, limit)):  # the fleet-wide budget
                        r.add(self._rec + _native.REC_TRIAL_CALLS, 1)
                        return _Trial(sw.seq, now)
                except BaseException:
                    self._return_permit(sw.seq)
                    raise
                self._return_permit(sw.seq)
                if current:
                    self._reject(CircuitOpenError(self._name, state, left / 1e9, "fleet trial permits in use"))

    def _return_permit(self, seq: int) -> None:
        r = self._r
        while True:
            permits = r.load(self._permits_i)
            if permits >> 32 != seq or permits & _LOW32 == 0:
                return
            if r.cas(self._permits_i, permits, permits - 1):
                return

    def _trial_done(self, trial: _Trial, outcome: int, cause: str | None = None) -> None:
        r = self._r
        if outcome == Outcome.IGNORED:
            self._return_permit(trial.seq)
            return
        now = self._gate.now()
        why = "trial call failed"
        if outcome == Outcome.SUCCESS:
            cfg = self._config_words()
            slow_ns = int(cfg[_native.CFG_SLOW_NS])
            if cfg[_native.CFG_SLOW_TRIAL_FAILS] and slow_ns > 0 and now - trial.t0 >= slow_ns:
                outcome, why = Outcome.FAILURE, f"trial call was slow ({(now - trial.t0) / 1e9:.3f}s)"
        if outcome == Outcome.FAILURE:
            r.add(self._rec + _native.REC_TRIAL_FAILS, 1)
            word = r.load(self._state_i)
            sw = StateWord.unpack(word)
            if sw.state is BreakerState.HALF_OPEN and sw.seq == trial.seq:
                level = sw.level + 1
                new = sw.successor(BreakerState.OPEN, level=level, until_ns=now + self._open_ns(level))
                if r.cas(self._state_i, word, new):
                    self._changed(BreakerState.HALF_OPEN, BreakerState.OPEN, why, now, cause)
            return
        fleet = self._ctx.fleet
        if fleet is not None and fleet.trial_succeeded(self):
            return  # counted fleet-wide; the fleet closes the breaker everywhere
        while True:
            # A trial that outlived its episode counts for nothing: its episode is over, and
            # its tag would overwrite the next episode's count.
            sw = StateWord.unpack(r.load(self._state_i))
            if sw.state is not BreakerState.HALF_OPEN or sw.seq != trial.seq:
                return
            succ = r.load(self._succ_i)
            done = (succ & _LOW32 if succ >> 32 == trial.seq else 0) + 1
            if r.cas(self._succ_i, succ, (trial.seq << 32) | done):
                break
        limit = int(self._config_words()[_native.CFG_HALF_OPEN_CALLS])
        if done < limit:
            return
        word = r.load(self._state_i)
        sw = StateWord.unpack(word)
        if sw.state is BreakerState.HALF_OPEN and sw.seq == trial.seq:
            self._clear_window()
            if r.cas(self._state_i, word, sw.successor(BreakerState.CLOSED, level=0)):
                self._changed(BreakerState.HALF_OPEN, BreakerState.CLOSED, f"{done} trial calls succeeded", now)

    def _trip(self, verdict: int, cause: str | None = None) -> None:
        """Open a closed breaker because a trip rule (``verdict``) was met (on ``cause``)."""
        r = self._r
        now = self._gate.now()
        word = r.load(self._state_i)
        sw = StateWord.unpack(word)
        if sw.state is not BreakerState.CLOSED:
            return
        calls, failures, slow = self._gate.counts()
        consecutive = r.load(self._rec + _native.REC_CONSEC)
        new = sw.successor(BreakerState.OPEN, level=0, until_ns=now + self._open_ns(0))
        if r.cas(self._state_i, word, new):
            r.store(self._rec + _native.REC_CONSEC, 0)
            if verdict == _native.VERDICT_CONSECUTIVE:
                reason = f"{consecutive} consecutive failures"
            elif verdict == _native.VERDICT_RATE:
                reason = f"failure rate {failures}/{calls} calls reached its threshold"
            else:
                reason = f"slow call rate {slow}/{calls} calls reached its threshold"
            self._changed(BreakerState.CLOSED, BreakerState.OPEN, reason, now, cause)

    def _reject(self, error: CircuitOpenError) -> NoReturn:
        error._breaker = self  # its cause is read only if asked for
        self._r.add(self._rejects_i, 1)
        self._announce_rejection(error)
        raise error

    def _changed(self, old: BreakerState, new: BreakerState, reason: str, now: int, cause: str | None = None) -> None:
        self._r.store(self._rec + _native.REC_CHANGED_NS, now)
        self._r.add(self._rec + _native.REC_ENTERED + int(new), 1)
        if new is BreakerState.OPEN:
            self._r.add(self._rec + _native.REC_TRIPS, 1)
        if new is BreakerState.OPEN or new is BreakerState.FORCED_OPEN:
            self._record_cause(cause or reason)
        ctx = self._ctx
        if ctx.fuse is not None:  # first: nothing slow or foreign between the transition and the fuse
            ctx.fuse.evaluate()
        if ctx.fleet is not None:
            ctx.fleet.breaker_changed(self, old, new, reason)
        ctx.record_event(EventKind.BREAKER, self._index, int(new), f"{self._name}: {old.name}->{new.name}: {reason}")
        ctx.notify("bot4_breaker_state_changed", breaker=self, old=old, new=new, reason=reason)

    def _record_cause(self, text: str) -> None:
        """Keep why the breaker opened, for every process (tagged: a reader never sees half of it)."""
        r, i = self._r, self._rec + _native.REC_CAUSE
        tag = StateWord.unpack(r.load(self._state_i)).seq + 1  # positive, new with every transition
        r.store(i, -tag)
        for k, word in enumerate(encode_text(text, _native.REC_CAUSE_WORDS - 1)):
            r.store(i + 1 + k, word)
        r.store(self._rec + _native.REC_CAUSE_PID, os.getpid())
        r.store(i, tag)

    def opened_by(self) -> str | None:
        """Why the breaker last opened — the failure that tripped it (exception type and
        message, or the failed result), the rule, or the reason it was forced open — as seen
        by any process; None if it never opened (the snapshot also has the opener's pid)."""
        return self._cause()[0]

    def _cause(self) -> tuple[str | None, int | None]:
        r, i = self._r, self._rec + _native.REC_CAUSE
        for _ in range(64):
            tag = r.load(i)
            if tag == 0:
                return None, None
            if tag < 0:
                continue  # being written
            text = decode_text(r.load_range(i + 1, _native.REC_CAUSE_WORDS - 1))
            pid = r.load(self._rec + _native.REC_CAUSE_PID)
            if r.load(i) == tag:
                return text, pid
        return None, None

    def _clear_window(self) -> None:
        self._registry.clear_window(self._rec)

    def _open_ns(self, level: int) -> int:
        cfg = self._config_words()
        base = int(cfg[_native.CFG_OPEN_NS])
        return min(int(base * float(cfg[_native.CFG_OPEN_BACKOFF]) ** level), int(cfg[_native.CFG_MAX_OPEN_NS]))

    # ------------------------------------------------------------------ control

    @property
    def state(self) -> BreakerState:
        """The breaker's current state (an OPEN breaker whose period elapsed shows OPEN until its next call)."""
        return StateWord.unpack(self._r.load(self._state_i)).state

    def would_reject(self) -> bool:
        """Whether a call made now would be rejected without running (no side effects).

        False for a closed breaker, an open one whose period has ended (its next call is a
        trial), a half-open one with a trial permit free, and a disabled one; True while
        open, forced open, under the fuse, or half-open with every permit out or its time up.
        """
        code = self._gate.acquire()
        if code >= 0:
            return False
        if code < -1:
            return True
        word = self._r.load(self._state_i)
        state = word & 7
        if state == BreakerState.FORCED_OPEN:
            return True
        if state == BreakerState.CLOSED:
            return self._r.load(L.H_FUSE) != 0
        if state == BreakerState.HALF_OPEN:  # refused once its time is up or every permit is out
            sw = StateWord.unpack(word)
            if ns_until(sw.until_ms, self._gate.now()) <= 0:
                return True
            permits = self._r.load(self._permits_i)
            issued = permits & _LOW32 if permits >> 32 == sw.seq else 0
            return issued >= int(self._config_words()[_native.CFG_HALF_OPEN_CALLS])
        return False

    def force_open(self, reason: str = "forced open") -> None:
        """Reject every call in every process until :meth:`reset`."""
        self._set_state(BreakerState.FORCED_OPEN, reason)

    def open_for(self, seconds: float, reason: str = "opened by hand") -> None:
        """Open the breaker in every process for ``seconds`` (millisecond resolution, up to a
        year); then it admits trial calls as after a trip (``retry_after`` tells callers when)."""
        if not is_number(seconds) or not 0.001 <= seconds <= 31_536_000:
            raise ConfigError("seconds", f"must be a number of seconds in [0.001, 31536000], got {seconds!r}")
        self._set_state(BreakerState.OPEN, reason, until_ns=self._gate.now() + round(seconds * 1e9))

    def open_until(self, when: datetime.datetime, reason: str = "opened by hand") -> None:
        """Open the breaker in every process until the wall-clock instant ``when`` (timezone-aware)."""
        if not isinstance(when, datetime.datetime) or when.tzinfo is None:
            raise ConfigError("when", f"expected a timezone-aware datetime, got {when!r}")
        seconds = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
        if seconds <= 0:
            raise ConfigError("when", f"{when.isoformat()} is not in the future")
        self.open_for(seconds, reason)

    def half_open(self, reason: str = "half-open by hand") -> None:
        """Admit trial calls now, in every process, whatever the state."""
        cfg = self._config_words()
        self._set_state(
            BreakerState.HALF_OPEN, reason, until_ns=self._gate.now() + int(cfg[_native.CFG_HALF_OPEN_MAX_NS])
        )

    def disable(self, reason: str = "disabled") -> None:
        """Admit every call and record nothing, in every process, until :meth:`reset`."""
        self._set_state(BreakerState.DISABLED, reason)

    def reset(self, reason: str = "reset") -> None:
        """Close the breaker and empty its window, whatever its state."""
        self._clear_window()
        self._set_state(BreakerState.CLOSED, reason)

    def _adopt(self, target: BreakerState, left_ns: int, reason: str) -> bool:
        """Take ``target`` (for ``left_ns`` more, when OPEN or HALF_OPEN) from the fleet; False if already in it."""
        r = self._r
        now = self._gate.now()
        while True:
            word = r.load(self._state_i)
            sw = StateWord.unpack(word)
            if sw.state is target:
                return False
            level = sw.level + 1 if target is BreakerState.OPEN and sw.state is BreakerState.HALF_OPEN else None
            if target is BreakerState.CLOSED:
                level = 0
            if r.cas(self._state_i, word, sw.successor(target, level=level, until_ns=now + max(0, left_ns))):
                break
        if target is BreakerState.CLOSED:
            self._clear_window()
        self._changed(sw.state, target, reason, now)
        return True

    def _deadline_ns(self) -> int:
        """Nanoseconds until the current state's deadline (OPEN, HALF_OPEN); 0 when none or passed."""
        sw = StateWord.unpack(self._r.load(self._state_i))
        return max(0, ns_until(sw.until_ms, self._gate.now()))

    def _set_state(self, target: BreakerState, reason: str, until_ns: int = 0) -> None:
        if not isinstance(reason, str):
            raise ConfigError("reason", f"expected a string, got {reason!r}")
        r = self._r
        while True:
            word = r.load(self._state_i)
            sw = StateWord.unpack(word)
            if r.cas(self._state_i, word, sw.successor(target, level=0, until_ns=until_ns)):
                break
        if sw.state is not target or until_ns:
            self._changed(sw.state, target, reason, self._gate.now())
        elif self._ctx.fleet is not None:  # the state it was in already: still an operator's word for the fleet
            self._ctx.fleet.breaker_changed(self, target, target, reason)

    @property
    def config(self) -> BreakerConfig:
        """The configuration in force: shared numeric fields, this process's classification."""
        gen, local = self._r.load(self._rec + _native.REC_CFG_GEN), self._local
        seen = self._config_seen
        if seen is not None and seen[0] == gen and seen[1] is local:
            return seen[2]  # unchanged since it was last read (every write moves the generation)
        config = BreakerConfig.from_words(self._config_words(), local)
        self._config_seen = (gen, local, config)
        return config

    def reconfigure(self, config: BreakerConfig) -> None:
        """Change the configuration for every process, from its next call.

        The numeric fields are written to the segment; ``record``/``ignore``/``predicate``
        apply to this process. A changed ``window_seconds`` empties the window. A breaker
        that is already open keeps the deadline it was given.
        """
        if not isinstance(config, BreakerConfig):
            raise ConfigTypeError("config", f"reconfigure takes a BreakerConfig, got {type(config).__name__}")
        if self._ctx.closed:
            raise SegmentError(self._ctx.name, f"core {self._ctx.name!r} is closed")
        self._registry.write_config(self._rec, config, self._ctx.ident)
        self._local = config
        self._classify = config.classify
        self._result_check = config.result_fails if config.failed_result is not None else None
        self._sync_policy()

    def _sync_policy(self) -> None:
        """Tell the native guard what this process's calls need: Python for listeners and result
        checks; Python to classify exceptions when a predicate or a class with its own
        ``__instancecheck__`` machinery (a metaclass) decides."""
        cfg = self._local
        self._extra = self._result_check is not None or bool(self._listeners)
        simple = cfg.predicate is None and all(type(c) is type for c in (*cfg.record, *cfg.ignore))
        self._gate.set_policy(self._extra, simple, cfg.record, cfg.ignore)

    def _config_words(self) -> dict[int, float | int]:
        return self._registry.read_config(self._rec)

    def snapshot(self) -> BreakerSnapshot:
        """Return the breaker's state, window counts and rates at this instant."""
        r = self._r
        now = self._gate.now()
        sw = StateWord.unpack(r.load(self._state_i))
        calls, failures, slow = self._gate.counts()
        permits = r.load(self._permits_i)
        in_use = permits & _LOW32 if sw.state is BreakerState.HALF_OPEN and permits >> 32 == sw.seq else 0
        successes = r.load(self._succ_i)
        succeeded = successes & _LOW32 if sw.state is BreakerState.HALF_OPEN and successes >> 32 == sw.seq else 0
        cause, cause_pid = self._cause()
        until = None
        if sw.state is BreakerState.OPEN:
            until = max(0.0, ns_until(sw.until_ms, now) / 1e9)
        changed = r.load(self._rec + _native.REC_CHANGED_NS)
        entered = r.load_range(self._rec + _native.REC_ENTERED, len(BreakerState))
        return BreakerSnapshot(
            name=self._name,
            state=sw.state,
            calls=calls,
            failures=failures,
            slow_calls=slow,
            failure_rate=failures / calls if calls else 0.0,
            slow_call_rate=slow / calls if calls else 0.0,
            consecutive_failures=r.load(self._rec + _native.REC_CONSEC),
            seconds_until_half_open=until,
            half_open_permits_in_use=in_use,
            trips=r.load(self._rec + _native.REC_TRIPS),
            rejections=r.load(self._rec + _native.REC_REJECTS),
            config=self.config,
            half_open_successes=succeeded,
            opened_by=cause,
            opened_by_pid=cause_pid,
            seconds_in_state=max(0, now - changed) / 1e9 if changed else None,
            transitions={state: entered[state] for state in BreakerState},
            trial_calls=r.load(self._rec + _native.REC_TRIAL_CALLS),
            trial_failures=r.load(self._rec + _native.REC_TRIAL_FAILS),
            total_successes=r.load(self._rec + _native.REC_SUCCESS_TOTAL),
            total_failures=r.load(self._rec + _native.REC_FAILURE_TOTAL),
            total_slow_calls=r.load(self._rec + _native.REC_SLOW_TOTAL),
        )


class _Guard:
    """``with br.call():`` / ``async with br.call():`` — admission on enter, outcome on exit."""

    __slots__ = ("_breaker", "_token")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._token: object = None

    def __enter__(self) -> CircuitBreaker:
        self._token = self._breaker._enter()
        return self._breaker

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._breaker._finish(self._token, exc)

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)
