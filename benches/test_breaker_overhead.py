"""Overhead of a guarded call: bot4 against pybreaker, circuitbreaker and purgatory.

Run: ``make bench`` (or ``.venv/bin/python -m pytest benches --benchmark-only``).
Groups: success / failure (the breaker stays closed) / rejected (by an open breaker),
sync and async. bot4's breaker lives in a shared segment that any other process can
attach to; the peers keep their state inside the process. pybreaker's async support
needs Tornado, so it is measured sync only.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import circuitbreaker
import pybreaker
import pytest
from purgatory import AsyncCircuitBreakerFactory, SyncCircuitBreakerFactory

from bot4 import BreakerConfig, Core

HUGE = 10**9
_names = itertools.count()


class Down(Exception):
    pass


def ok() -> int:
    return 1


def down() -> int:
    raise Down("exchange down")


async def aok() -> int:
    return 1


async def adown() -> int:
    raise Down("exchange down")


@pytest.fixture(scope="module")
def core() -> Iterator[Core]:
    with Core.create(max_breakers=256) as c:
        yield c


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def breaker_for(lib: str, core: Core, loop: asyncio.AbstractEventLoop, rejecting: bool, is_async: bool) -> Any:
    """A decorator from ``lib`` that guards with one breaker, tripped open if ``rejecting``."""
    name = f"{lib}-{next(_names)}"
    if lib == "plain":
        return lambda fn: fn
    if lib == "bot4":
        cfg = (
            BreakerConfig(consecutive_failures=1, open_seconds=3600)
            if rejecting
            else BreakerConfig(consecutive_failures=None, minimum_calls=HUGE)
        )
        return core.breaker(name, cfg)
    if lib == "circuitbreaker":
        return circuitbreaker.CircuitBreaker(
            failure_threshold=1 if rejecting else HUGE, recovery_timeout=3600, expected_exception=Down, name=name
        )
    if lib == "pybreaker":
        pb = pybreaker.CircuitBreaker(fail_max=1 if rejecting else HUGE, reset_timeout=3600, name=name)
        return pb
    if lib == "purgatory":
        threshold = 1 if rejecting else HUGE
        if is_async:
            factory = AsyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=3600)
            loop.run_until_complete(factory.initialize())
        else:
            factory = SyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=3600)
        return factory(name)
    raise ValueError(lib)


def run_batch(fn: Callable[[], int], n: int) -> None:
    for _ in range(n):
        try:
            fn()
        except Exception:
            pass


def run_async_batch(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[int]], n: int) -> None:
    async def many() -> None:
        for _ in range(n):
            try:
                await fn()
            except Exception:
                pass

    loop.run_until_complete(many())


SYNC_LIBS = ["plain", "bot4", "circuitbreaker", "pybreaker", "purgatory"]
ASYNC_LIBS = ["plain", "bot4", "circuitbreaker", "purgatory"]


def sync_case(lib: str, core: Core, loop: asyncio.AbstractEventLoop, kind: str) -> Callable[[], int]:
    decorate = breaker_for(lib, core, loop, kind == "rejected", False)
    if kind == "rejected" and lib != "plain":
        run_batch(decorate(down), 1)  # one failure trips it
    return decorate(down if kind == "failure" else ok)


def async_case(lib: str, core: Core, loop: asyncio.AbstractEventLoop, kind: str) -> Callable[[], Awaitable[int]]:
    decorate = breaker_for(lib, core, loop, kind == "rejected", True)
    if kind == "rejected" and lib != "plain":
        run_async_batch(loop, decorate(adown), 1)
    return decorate(adown if kind == "failure" else aok)


@pytest.mark.parametrize("lib", SYNC_LIBS)
@pytest.mark.parametrize("kind", ["success", "failure", "rejected"])
def test_sync(benchmark: Any, core: Core, loop: asyncio.AbstractEventLoop, lib: str, kind: str, batch: int) -> None:
    benchmark.group = f"sync {kind}"
    fn = sync_case(lib, core, loop, kind)
    benchmark(run_batch, fn, batch)


@pytest.mark.parametrize("lib", ASYNC_LIBS)
@pytest.mark.parametrize("kind", ["success", "failure", "rejected"])
def test_async(benchmark: Any, core: Core, loop: asyncio.AbstractEventLoop, lib: str, kind: str, batch: int) -> None:
    benchmark.group = f"async {kind}"
    fn = async_case(lib, core, loop, kind)
    benchmark(run_async_batch, loop, fn, batch)
