"""The native guarded call: a decorated function behaves as the function it wraps, and as
the breaker promises, on every path the closed fast path hands back to Python."""

from __future__ import annotations

import abc
import asyncio
import copy
import functools
import gc
import inspect
import pickle
import warnings
from collections.abc import Iterator

import pytest

from bot4 import (
    BreakerConfig,
    BreakerState,
    CircuitOpenError,
    Core,
    ManualClock,
    SegmentError,
    hookimpl,
    make_plugin_manager,
)
from tests.helpers import Boom, fail

CFG = BreakerConfig(consecutive_failures=2, open_seconds=10, half_open_calls=1)

_module_core = Core.create(plugins=make_plugin_manager(entry_points=False))
_module_core.unlink()  # made at collection: a run that deselects this module must not leave it behind
_module_breaker = _module_core.breaker("pickled")


@_module_breaker
def module_level(x: int) -> int:
    """Doubles x."""
    return 2 * x


class Venue:
    @_module_breaker
    def price(self, symbol: str) -> tuple[Venue, str]:
        return self, symbol

    @_module_breaker
    async def aprice(self, symbol: str) -> str:
        return symbol


@pytest.fixture(scope="module", autouse=True)
def _module_core_closed() -> Iterator[None]:
    yield
    _module_core.close()


def test_a_guarded_function_is_the_function_it_wraps() -> None:
    assert module_level(2) == 4
    assert module_level.__name__ == "module_level" and module_level.__doc__ == "Doubles x."
    assert inspect.signature(module_level) == inspect.signature(module_level.__wrapped__)
    assert pickle.loads(pickle.dumps(module_level)) is module_level  # as a function: by reference
    assert copy.copy(module_level) is module_level and copy.deepcopy(module_level) is module_level
    venue = Venue()
    assert venue.price("BTC") == (venue, "BTC")  # bound as a method
    assert Venue.price(venue, "ETH") == (venue, "ETH")
    assert asyncio.run(venue.aprice("SOL")) == "SOL"


def test_an_async_guarded_function_is_a_coroutine_function() -> None:
    async def fetch(symbol: str, *, depth: int = 5) -> int:
        return depth

    guarded = _module_breaker(fetch)
    partial = _module_breaker(functools.partial(fetch, "BTC"))
    for f in (guarded, partial, Venue.aprice):
        assert inspect.iscoroutinefunction(f) and asyncio.iscoroutinefunction(f)
    assert not inspect.iscoroutinefunction(module_level)
    assert inspect.signature(guarded) == inspect.signature(fetch)
    call = guarded("BTC", depth=3)
    assert asyncio.iscoroutine(call)
    assert asyncio.run(call) == 3
    assert asyncio.run(partial(depth=7)) == 7


def test_admission_happens_when_the_call_is_awaited(core: Core) -> None:
    br = core.breaker("x", CFG)
    ran: list[str] = []

    @br
    async def order(tag: str) -> str:
        ran.append(tag)
        return tag

    async def main() -> None:
        made_closed = order("a")
        br.force_open()
        with pytest.raises(CircuitOpenError):
            await made_closed  # refused when awaited: the breaker opened meanwhile
        made_open = order("b")
        br.reset()
        assert await made_open == "b"  # admitted when awaited: the breaker closed meanwhile
        results = await asyncio.gather(order("c"), asyncio.create_task(order("d")))
        assert results == ["c", "d"]

    asyncio.run(main())
    assert ran[0] == "b" and sorted(ran[1:]) == ["c", "d"]


def test_an_async_call_is_awaited_once_and_warned_of_when_never_awaited(core: Core) -> None:
    br = core.breaker("x", CFG)

    @br
    async def order() -> int:
        return 1

    async def main() -> None:
        call = order()
        assert await call == 1
        with pytest.raises(RuntimeError, match="already awaited"):
            await call

    asyncio.run(main())
    with pytest.warns(RuntimeWarning, match="order' was never awaited"):
        order()
        gc.collect()
    assert br.snapshot().calls == 1


def test_bad_arguments_are_a_failed_call_when_awaited(core: Core) -> None:
    br = core.breaker("x", CFG)

    @br
    async def order(qty: int) -> int:
        return qty

    call = order(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        asyncio.run(call)
    assert br.snapshot().failures == 1  # as an `async def` wrapper around it counted it


def test_a_cancelled_trial_gives_its_permit_back(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", CFG)
    fail(br)
    fail(br)
    clock.advance(10)
    started = asyncio.Event()

    @br
    async def slow_trial() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.create_task(slow_trial())
        await started.wait()
        assert br.snapshot().half_open_permits_in_use == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        snap = br.snapshot()
        assert snap.state is BreakerState.HALF_OPEN and snap.half_open_permits_in_use == 0

    asyncio.run(main())


def test_a_cancelled_closed_call_is_not_recorded(core: Core) -> None:
    br = core.breaker("x", CFG)
    started = asyncio.Event()

    @br
    async def venue() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.create_task(venue())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert br.snapshot().calls == 0


def test_throw_and_close_follow_the_coroutine_protocol(core: Core, clock: ManualClock) -> None:
    br = core.breaker("x", CFG)

    @br
    async def venue() -> int:
        try:
            await asyncio.sleep(0)
        except KeyError:
            return 7
        return 1

    unstarted = venue()
    with pytest.raises(Boom):
        unstarted.throw(Boom("before it ran"))
    running = venue()
    running.send(None)  # suspended inside the function
    with pytest.raises(StopIteration) as stop:
        running.throw(KeyError("caught inside"))
    assert stop.value.value == 7
    assert br.snapshot().calls == 1
    fail(br)
    fail(br)
    clock.advance(10)
    trial = venue()
    trial.send(None)
    assert br.snapshot().half_open_permits_in_use == 1
    trial.close()  # a trial cut short: its permit comes back
    assert br.snapshot().half_open_permits_in_use == 0
    unstarted_trial = venue()
    unstarted_trial.close()
    assert br.snapshot().half_open_permits_in_use == 0


class VenueError(Exception, metaclass=abc.ABCMeta):
    """An exception class whose membership an ABC registry decides."""


VenueError.register(TimeoutError)


def test_exception_classes_with_their_own_isinstance_are_honoured(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=1, record=(VenueError,)))

    @br
    def venue() -> None:
        raise TimeoutError("slow venue")

    with pytest.raises(TimeoutError):
        venue()
    assert br.state is BreakerState.OPEN


def test_a_plugin_registered_after_decoration_hears_rejections(core: Core) -> None:
    heard: list[str] = []

    class Listener:
        @hookimpl
        def bot4_call_rejected(self, breaker: object, error: CircuitOpenError) -> None:
            heard.append(error.breaker)

    br = core.breaker("x", CFG)
    venue = br(lambda: 1)
    br.open_for(10)
    with pytest.raises(CircuitOpenError):
        venue()
    plugin = Listener()
    core.plugins.register(plugin)
    with pytest.raises(CircuitOpenError):
        venue()
    core.plugins.unregister(plugin)
    with pytest.raises(CircuitOpenError):
        venue()
    assert heard == ["x"]
    assert br.snapshot().rejections == 3


def test_a_rejection_says_why_and_what_opened_it(core: Core) -> None:
    br = core.breaker("x", CFG)

    @br
    def venue() -> None:
        raise Boom("exchange down")

    for _ in range(2):
        with pytest.raises(Boom):
            venue()
    with pytest.raises(CircuitOpenError) as info:
        venue()
    assert info.value.state is BreakerState.OPEN and 0 < info.value.retry_after <= 10
    assert info.value.cause == "Boom: exchange down"


def test_calls_after_close_raise_a_bot4_error() -> None:
    core = Core.create(plugins=make_plugin_manager(entry_points=False))
    br = core.breaker("x")
    venue = br(lambda: 1)

    @br
    async def avenue() -> int:
        return 1

    core.close()
    core.unlink()
    with pytest.raises(SegmentError):
        venue()
    with pytest.raises(SegmentError):
        asyncio.run(avenue())


def test_ctrl_c_inside_the_call_is_ignored_and_propagates(core: Core) -> None:
    br = core.breaker("x", CFG)

    @br
    def venue() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        venue()
    assert br.snapshot().calls == 0


def test_no_warning_or_leak_on_the_fast_paths(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=None, minimum_calls=10**6))

    @br
    async def ok() -> int:
        return 1

    @br
    async def down() -> int:
        raise Boom("x")

    async def main() -> None:
        for _ in range(1000):
            assert await ok() == 1
            with pytest.raises(Boom):
                await down()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())
        gc.collect()
    snap = br.snapshot()
    assert (snap.calls, snap.failures) == (2000, 1000)


# ---------------------------------------------------------------- what a coroutine promises


def test_a_call_driven_from_inside_itself_is_refused_and_recorded_once(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=None, minimum_calls=10**6))
    holder: dict[str, object] = {}
    inner: list[BaseException] = []

    @br
    async def venue() -> str:
        try:
            holder["call"].send(None)  # type: ignore[attr-defined]
        except ValueError as exc:
            inner.append(exc)
        return "ok"

    call = venue()
    holder["call"] = call
    with pytest.raises(StopIteration) as stop:
        call.send(None)
    assert stop.value.value == "ok" and "already executing" in str(inner[0])
    assert (br.snapshot().calls, br.snapshot().failures) == (1, 0)


def test_a_guarded_coroutine_function_can_be_guarded_again(core: Core) -> None:
    inner, outer = core.breaker("inner", CFG), core.breaker("outer", CFG)

    @outer
    @inner
    async def venue() -> int:
        await asyncio.sleep(0)
        return 7

    assert asyncio.run(venue()) == 7  # the inner call is an awaitable, not a coroutine: awaited as one
    assert inner.snapshot().calls == outer.snapshot().calls == 1


def test_before_it_starts_a_call_has_no_frame_and_then_its_function_s(core: Core) -> None:
    br = core.breaker("x", CFG)

    @br
    async def venue(x: int) -> int:
        await asyncio.sleep(0)
        return x

    call = venue(1)
    assert not hasattr(call, "cr_frame")  # as trio expects of an awaitable that is not a coroutine yet
    call.send(None)
    assert call.cr_frame.f_locals["x"] == 1 and inspect.getcoroutinestate(call) == inspect.CORO_SUSPENDED
    with pytest.raises(StopIteration):
        call.send(None)


def test_a_guarded_partial_copies_as_itself(core: Core) -> None:
    guarded = core.breaker("x", CFG)(functools.partial(print, "x"))
    settings = {"handler": guarded}
    assert copy.deepcopy(settings)["handler"] is guarded and copy.copy(guarded) is guarded


def test_a_listener_subscribed_during_a_call_hears_it(core: Core) -> None:
    br = core.breaker("x", CFG)
    seen: list[str] = []

    @br
    def venue() -> None:
        br.subscribe(lambda event: seen.append(event.kind))
        raise Boom("down")

    with pytest.raises(Boom):
        venue()
    assert seen == ["failure"]


def test_reconfiguring_the_window_keeps_the_failure_streak(core: Core) -> None:
    br = core.breaker("x", BreakerConfig(consecutive_failures=5, minimum_calls=100))
    for _ in range(4):
        fail(br)
    br.reconfigure(br.config.replace(window_seconds=30))
    assert br.snapshot().consecutive_failures == 4  # only a success (or closing) resets the streak
    fail(br)
    assert br.state is BreakerState.OPEN


class CtrlCClock(ManualClock):
    """A clock whose next reading raises KeyboardInterrupt once armed."""

    armed = False

    def now_ns(self) -> int:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        return super().now_ns()


@pytest.mark.parametrize("kind", ["sync", "async", "block"])
def test_ctrl_c_while_a_trial_is_recorded_gives_its_permit_back(kind: str) -> None:
    clock = CtrlCClock(1000.0)
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as core:
        try:
            br = core.breaker("x", BreakerConfig(half_open_calls=1, half_open_max_seconds=30))
            br.half_open()

            def body() -> str:
                clock.armed = True  # the reading that records the trial gets Ctrl-C
                return "ok"

            async def abody() -> str:
                return body()

            with pytest.raises(KeyboardInterrupt):
                if kind == "sync":
                    br(body)()
                elif kind == "async":
                    asyncio.run(br(abody)())
                else:
                    with br.call():
                        body()
            assert br.snapshot().half_open_permits_in_use == 0
            assert br(lambda: 1)() == 1  # the next trial is admitted
        finally:
            core.unlink()
