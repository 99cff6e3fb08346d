"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot4 import CircuitBreaker, CircuitOpenError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require_binary(binary: str, package: str) -> str:
    """The path of a real service's ``binary`` (from Debian's ``package``). Missing, the test is
    skipped — unless ``BOT4_REQUIRE_SERVICES=1`` (CI), where that is a failure."""
    path = shutil.which(binary)
    if path is not None:
        return path
    message = f"{binary} is not installed (apt-get install {package}; tools/ensure-services does it)"
    if os.environ.get("BOT4_REQUIRE_SERVICES") == "1":
        raise RuntimeError(message)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def creator_process(name: str, *, simulated: bool = False) -> subprocess.Popen[str]:
    """A process that creates desk ``name`` (equity, a price; on a manual clock if
    ``simulated``), says so, and waits to be killed."""
    clock = "ManualClock()" if simulated else "None"
    code = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from bot4 import Core, ManualClock, make_plugin_manager
        core = Core.create({name!r}, clock={clock}, plugins=make_plugin_manager(entry_points=False))
        core.risk.set_equity(100_000.0)
        core.risk.on_price("BTC/USDT", 50_000.0)
        core.heartbeat()  # on a manual clock: the time a reader outside follows
        print("ready", flush=True)
        sys.stdin.read()  # until killed (or its stdin closes)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


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
