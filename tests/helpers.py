"""Small helpers shared by the tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot4 import CircuitBreaker, CircuitOpenError


class Boom(Exception):
    """A failure of the guarded call."""


def succeed(br: CircuitBreaker) -> None:
    with br.call():
        pass


def fail(br: CircuitBreaker, exc: BaseException | None = None) -> None:
    error = exc if exc is not None else Boom("exchange down")
    with pytest.raises(type(error)):
        with br.call():
            raise error


def rejected(br: CircuitBreaker) -> CircuitOpenError:
    ran = []
    with pytest.raises(CircuitOpenError) as info:
        with br.call():
            ran.append(1)
    assert ran == [], "a rejected call must not run its body"
    return info.value


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds (a bound, not a pace)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        time.sleep(0.002)


def interrupt_at(k: int, operation: Callable[[], Any]) -> bool:
    """Run ``operation``, raising KeyboardInterrupt when its k-th native call returns (where
    Python delivers Ctrl-C); return whether it was raised (False: fewer than k native calls)."""
    seen = [0]

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_return":
            seen[0] += 1
            if seen[0] == k:
                raise KeyboardInterrupt

    sys.setprofile(profile)
    try:
        operation()
    except KeyboardInterrupt:
        return True
    finally:
        sys.setprofile(None)
    return False
