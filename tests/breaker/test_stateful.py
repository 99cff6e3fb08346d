"""A hypothesis state machine: the breaker against a small reference model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from bot4 import BreakerConfig, BreakerState, CircuitOpenError, Core, ManualClock, make_plugin_manager
from tests.helpers import Boom

CFG = BreakerConfig(
    failure_rate_threshold=0.5,
    minimum_calls=4,
    window_seconds=1.0,
    consecutive_failures=3,
    open_seconds=1.0,
    open_backoff=2.0,
    max_open_seconds=4.0,
    half_open_calls=2,
    half_open_max_seconds=3.0,
    ignore=(KeyError,),
)
MS = 1_000_000
BUCKET_NS = 100 * MS


def ceil_ms(ns: int) -> int:
    return -(-ns // MS) * MS


@dataclass
class Model:
    """The breaker's rules, written as plainly as possible."""

    now: int
    state: BreakerState = BreakerState.CLOSED
    level: int = 0
    seq: int = 0
    until: int = 0
    consec: int = 0
    window: list[tuple[int, bool]] = field(default_factory=list)  # (bucket, failed)
    permits: dict[int, int] = field(default_factory=dict)
    successes: dict[int, int] = field(default_factory=dict)
    window_calls: int | None = None  # None: the time window; n: the last n calls
    entered: dict[BreakerState, int] = field(default_factory=lambda: dict.fromkeys(BreakerState, 0))
    trial_calls: int = 0
    trial_failures: int = 0

    def move(self, state: BreakerState, *, level: int | None = None, until: int = 0) -> None:
        if state is not self.state:
            self.entered[state] += 1
        self.state, self.seq, self.until = state, self.seq + 1, until
        if level is not None:
            self.level = level

    def open_ns(self, level: int) -> int:
        return min(int(1_000_000_000 * 2.0**level), 4_000_000_000)

    def counts(self) -> tuple[int, int]:
        if self.window_calls:
            inside = [failed for _, failed in self.window[-self.window_calls :]]
        else:
            cur = self.now // BUCKET_NS
            inside = [failed for bucket, failed in self.window if max(0, cur - 9) <= bucket <= cur]
        return len(inside), sum(inside)

    @property
    def minimum_calls(self) -> int:
        return min(4, self.window_calls) if self.window_calls else 4

    def clear(self) -> None:
        self.window, self.consec = [], 0

    def admit(self) -> tuple[str, int] | BreakerState:
        while True:
            s = self.state
            if s is BreakerState.DISABLED:
                return ("pass", 0)
            if s is BreakerState.CLOSED:
                return ("closed", 0)
            if s is BreakerState.FORCED_OPEN:
                return s
            if s is BreakerState.OPEN:
                if self.now < self.until:
                    return s
                self.move(BreakerState.HALF_OPEN, until=ceil_ms(self.now + 3_000_000_000))
                continue
            if self.now >= self.until:
                self.move(BreakerState.OPEN, until=ceil_ms(self.now + self.open_ns(self.level)))
                continue
            if self.permits.get(self.seq, 0) >= 2:
                return s
            self.permits[self.seq] = self.permits.get(self.seq, 0) + 1
            self.trial_calls += 1
            return ("trial", self.seq)

    def finish(self, token: tuple[str, int], outcome: str) -> None:
        kind, seq = token
        if kind == "pass":
            return
        if kind == "closed":
            if outcome == "ignored":
                return
            failed = outcome == "failure"
            self.window.append((self.now // BUCKET_NS, failed))
            self.consec = self.consec + 1 if failed else 0
            calls, failures = self.counts()  # the rate rule is checked on every recorded call
            if self.consec >= 3 or (calls >= self.minimum_calls and failures >= 0.5 * calls):
                if self.state is BreakerState.CLOSED:
                    self.move(BreakerState.OPEN, level=0, until=ceil_ms(self.now + self.open_ns(0)))
                    self.consec = 0
            return
        current = self.state is BreakerState.HALF_OPEN and self.seq == seq
        if outcome == "ignored":
            if self.permits.get(seq, 0) > 0:
                self.permits[seq] -= 1
        elif outcome == "failure":
            self.trial_failures += 1
            if current:
                lvl = self.level + 1
                self.move(BreakerState.OPEN, level=lvl, until=ceil_ms(self.now + self.open_ns(lvl)))
        else:
            self.successes[seq] = self.successes.get(seq, 0) + 1
            if self.successes[seq] >= 2 and current:
                self.clear()
                self.move(BreakerState.CLOSED, level=0)


OUTCOMES = {"success": None, "failure": Boom("down"), "ignored": KeyError("ignored")}


class BreakerMachine(RuleBasedStateMachine):
    calls = Bundle("calls")
    config = CFG

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(100.0)
        self.core = Core.create(clock=self.clock, plugins=make_plugin_manager(entry_points=False))
        self.br = self.core.breaker("venue", self.config)
        self.model = Model(now=self.clock.now_ns(), window_calls=self.config.window_calls)
        # The same calls through a decorated function: the native guarded call.
        self.decorated = {outcome: self.br(self._raiser(exc)) for outcome, exc in OUTCOMES.items()}

    @staticmethod
    def _raiser(exc: BaseException | None) -> Callable[[], str]:
        def call() -> str:
            if exc is not None:
                raise exc
            return "ok"

        return call

    def teardown(self) -> None:
        self.core.close()
        self.core.unlink()

    @rule(target=calls)
    def begin(self) -> object:
        expected = self.model.admit()
        guard = self.br.call()
        try:
            guard.__enter__()
        except CircuitOpenError as exc:
            assert isinstance(expected, BreakerState), f"rejected, model admits {expected}"
            assert exc.state is expected
            return None
        assert isinstance(expected, tuple), f"admitted, model rejects in {expected}"
        return (guard, expected)

    @rule(call=consumes(calls), outcome=st.sampled_from(sorted(OUTCOMES)))
    def finish(self, call: object, outcome: str) -> None:
        if call is None:
            return
        guard, token = call  # type: ignore[misc]
        exc = OUTCOMES[outcome]
        guard.__exit__(type(exc) if exc else None, exc, None)
        self.model.finish(token, outcome)

    @rule(outcomes=st.lists(st.sampled_from(sorted(OUTCOMES)), min_size=1, max_size=8))
    def whole_calls(self, outcomes: list[str]) -> None:
        for outcome in outcomes:
            self.finish(self.begin(), outcome)

    @rule(outcomes=st.lists(st.sampled_from(sorted(OUTCOMES)), min_size=1, max_size=8))
    def decorated_calls(self, outcomes: list[str]) -> None:
        for outcome in outcomes:
            expected = self.model.admit()
            try:
                assert self.decorated[outcome]() == "ok"
                ran = True
            except CircuitOpenError as exc:
                assert isinstance(expected, BreakerState), f"rejected, model admits {expected}"
                assert exc.state is expected
                ran = False
            except (Boom, KeyError):
                ran = True
            if ran:
                assert isinstance(expected, tuple), f"admitted, model rejects in {expected}"
                self.model.finish(expected, outcome)

    @rule(n=st.integers(1, 6), outcome=st.sampled_from(sorted(OUTCOMES)))
    def same_calls(self, n: int, outcome: str) -> None:
        for _ in range(n):
            self.finish(self.begin(), outcome)

    @rule(ms=st.sampled_from([1, 50, 99, 100, 500, 999, 1000, 2000, 3000, 4001]))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms / 1000)
        self.model.now = self.clock.now_ns()

    @rule()
    def force_open(self) -> None:
        self.br.force_open()
        self.model.move(BreakerState.FORCED_OPEN, level=0)

    @rule()
    def disable(self) -> None:
        self.br.disable()
        self.model.move(BreakerState.DISABLED, level=0)

    @rule()
    def reset(self) -> None:
        self.br.reset()
        self.model.clear()
        self.model.move(BreakerState.CLOSED, level=0)

    @invariant()
    def agrees_with_model(self) -> None:
        snap = self.br.snapshot()
        m = self.model
        assert snap.state is m.state
        assert (snap.calls, snap.failures) == m.counts()
        assert snap.consecutive_failures == m.consec
        in_use = m.permits.get(m.seq, 0) if m.state is BreakerState.HALF_OPEN else 0
        assert snap.half_open_permits_in_use == in_use
        assert snap.transitions == m.entered
        assert (snap.trial_calls, snap.trial_failures) == (m.trial_calls, m.trial_failures)


class CountWindowMachine(BreakerMachine):
    """The same machine with resilience4j's count-based window: the last 5 calls."""

    config = CFG.replace(window_calls=5)


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestBreakerAgainstModel = BreakerMachine.TestCase
CountWindowMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestCountWindowAgainstModel = CountWindowMachine.TestCase
