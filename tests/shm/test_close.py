"""close() at the wrong moment: other threads inside native calls never touch unmapped memory.

Each scenario runs in a subprocess of its own, so a crash (SIGSEGV) is a failed test here
rather than the end of the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run(
        [sys.executable, "-m", "tests.shm.close_targets", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("clock", ["python", "default"])
def test_closing_under_threads_in_guarded_calls_and_reserves(clock: str) -> None:
    done = _run("torture", "600", clock)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "ok"


@pytest.mark.processes
def test_closing_while_a_thread_waits_for_the_ledger_mutex() -> None:
    done = _run("wait")
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "ok"
