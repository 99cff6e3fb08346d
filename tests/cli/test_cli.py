"""The bot4 command, through real subprocesses."""

from __future__ import annotations

import subprocess
import sys


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot4", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_demo_trips_for_every_worker_and_recovers() -> None:
    result = run("demo", "--workers", "3", "--duration", "2.5")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "breaker 'exchange' CLOSED -> OPEN" in out
    assert "HALF_OPEN -> CLOSED" in out
    for worker in (1, 2):  # workers that never saw a failure were protected all the same
        assert f"worker {worker}: order rejected before reaching the exchange" in out
        assert f"worker {worker}: order failed" not in out
    assert "ends CLOSED: 1 trip(s)" in out


def test_bad_arguments_exit_non_zero_with_one_line() -> None:
    result = run("demo", "--workers", "0")
    assert result.returncode == 2
    assert "must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr
