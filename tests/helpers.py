"""Small helpers shared by the tests."""

from __future__ import annotations

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
