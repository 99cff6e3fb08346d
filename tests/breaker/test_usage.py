"""Decorator and context manager, sync and async; errors; events."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest

import bot4
from bot4 import BreakerConfig, BreakerState, CircuitOpenError, Core, ManualClock
from tests.helpers import Boom, fail


def test_decorator_preserves_signature_and_metadata(core: Core) -> None:
    br = core.breaker("x")

    def place(symbol: str, qty: float = 1.0) -> str:
        """Place an order."""
        return f"{symbol}:{qty}"

    guarded = br(place)
    assert guarded.__name__ == "place"
    assert guarded.__doc__ == "Place an order."
    assert inspect.signature(guarded) == inspect.signature(place)
    assert guarded.__wrapped__ is place  # type: ignore[attr-defined]
    place = guarded
    assert place("BTC", qty=2) == "BTC:2"
    assert br.snapshot().calls == 1


def test_decorator_records_failures_and_rejects_before_running(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=2))
    ran: list[int] = []

    @br
    def call(n: int) -> None:
        ran.append(n)
        raise Boom("down")

    for n in range(2):
        with pytest.raises(Boom):
            call(n)
    with pytest.raises(CircuitOpenError):
        call(99)
    assert ran == [0, 1]


def test_decorated_sync_function_with_slow_path_admission(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1.0, half_open_calls=1))

    @br
    def call(ok: bool) -> str:
        if not ok:
            raise Boom("down")
        return "filled"

    with pytest.raises(Boom):
        call(False)
    clock.advance(1.0)
    assert call(True) == "filled"  # the trial call, admitted on the slow path
    assert br.state is BreakerState.CLOSED


def test_async_decorator(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=2, open_seconds=1.0, half_open_calls=1))

    @br
    async def fetch(ok: bool) -> str:
        await asyncio.sleep(0)
        if not ok:
            raise Boom("down")
        return "book"

    assert inspect.iscoroutinefunction(fetch)

    async def scenario() -> None:
        assert await fetch(True) == "book"
        for _ in range(2):
            with pytest.raises(Boom):
                await fetch(False)
        with pytest.raises(CircuitOpenError):
            await fetch(True)
        clock.advance(1.0)
        assert await fetch(True) == "book"

    asyncio.run(scenario())
    assert br.state is BreakerState.CLOSED


def test_async_context_manager(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1))

    async def scenario() -> None:
        async with br.call():
            await asyncio.sleep(0)
        with pytest.raises(Boom):
            async with br.call():
                raise Boom("down")
        ran = []
        with pytest.raises(CircuitOpenError):
            async with br.call():
                ran.append(1)
        assert ran == []

    asyncio.run(scenario())


def test_cancellation_is_not_a_failure(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1))

    @br
    async def slow() -> None:
        await asyncio.sleep(10)

    async def scenario() -> None:
        task = asyncio.create_task(slow())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert br.state is BreakerState.CLOSED
    assert br.snapshot().calls == 0


def test_cancelled_trial_returns_its_permit(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, open_seconds=1.0, half_open_calls=1))
    fail(br)
    clock.advance(1.0)

    @br
    async def slow() -> None:
        await asyncio.sleep(10)

    async def scenario() -> None:
        task = asyncio.create_task(slow())
        await asyncio.sleep(0)
        assert br.snapshot().half_open_permits_in_use == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert br.snapshot().half_open_permits_in_use == 0
    assert br.state is BreakerState.HALF_OPEN


def test_decorating_a_non_callable_is_a_type_error(core: Core) -> None:
    with pytest.raises(TypeError) as info:
        core.breaker("x")(42)  # type: ignore[call-overload]
    assert isinstance(info.value, bot4.Bot4Error)


# ---------------------------------------------------------------- events


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str, BreakerState, BreakerState, str]] = []
        self.rejections: list[CircuitOpenError] = []

    @bot4.hookimpl
    def bot4_breaker_state_changed(self, breaker, old, new, reason):  # type: ignore[no-untyped-def]
        self.changes.append((breaker.name, old, new, reason))

    @bot4.hookimpl
    def bot4_call_rejected(self, breaker, error):  # type: ignore[no-untyped-def]
        self.rejections.append(error)


def test_state_change_and_rejection_events(core: Core, clock: ManualClock) -> None:
    rec = Recorder()
    core.plugins.register(rec)
    br = core.breaker("venue", BreakerConfig(consecutive_failures=2, open_seconds=1.0, half_open_calls=1))
    fail(br)
    fail(br)
    with pytest.raises(CircuitOpenError) as info:
        with br.call():
            pass
    clock.advance(1.0)
    with br.call():
        pass
    assert [(c[1], c[2]) for c in rec.changes] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert "2 consecutive failures" in rec.changes[0][3]
    assert rec.rejections == [info.value]


def test_a_raising_hook_is_logged_and_never_breaks_the_call(core: Core, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        @bot4.hookimpl
        def bot4_breaker_state_changed(self, breaker, old, new, reason):  # type: ignore[no-untyped-def]
            raise RuntimeError("plugin bug")

        @bot4.hookimpl
        def bot4_call_rejected(self, breaker, error):  # type: ignore[no-untyped-def]
            raise RuntimeError("plugin bug")

    rec = Recorder()
    core.plugins.register(rec)
    core.plugins.register(Broken(), name="broken")
    br = core.breaker("x", BreakerConfig(consecutive_failures=1))
    with caplog.at_level(logging.ERROR, logger="bot4.plugins"):
        fail(br)  # the trip fires the broken hook: the caller still sees its own Boom
        with pytest.raises(CircuitOpenError):
            with br.call():
                pass
    assert br.state is BreakerState.OPEN
    assert len(rec.changes) == 1 and len(rec.rejections) == 1  # the other plugin still ran
    assert caplog.text.count("'broken' raised") == 2
