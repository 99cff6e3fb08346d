"""The supervisor: real worker processes, restarts, and clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot4 import ConfigError, Core, SegmentNotFoundError, Supervisor
from bot4.shm._proc import is_alive
from tests.worker_targets import count_calls, crash

pytestmark = pytest.mark.processes
ROOT = Path(__file__).resolve().parent.parent


def launch(name: str, duration: float, n: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker_targets", name, str(duration), str(n)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def worker_idents(name: str, want: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with Core.attach(name) as core:
                workers = [w for w in core.workers() if w.alive and w.slot != core.slot and w.pid != os.getpid()]
                slots = [w.slot for w in workers]
                if len(workers) >= want + 1:  # the supervisor's own slot, and the workers
                    idents = [core._slots.owner(s) for s in slots]
                    return idents
        except SegmentNotFoundError:
            pass
        time.sleep(0.1)
    raise AssertionError("workers did not start")


def test_workers_run_and_stop_when_the_time_is_up() -> None:
    with Core.create() as core:
        code = Supervisor(core, count_calls, 3).run(duration=1.5)
        assert code == 0
        assert core.breaker("venue").snapshot().calls > 30  # three workers, ~100 calls/s each
        assert [w for w in core.workers() if w.alive and w.slot != core.slot] == []


def test_a_killed_worker_is_restarted_and_the_run_completes() -> None:
    name = f"bot4-sup-{os.getpid()}"
    proc = launch(name, 4.0, 2)
    idents = worker_idents(name, 2)
    victim = idents[-1] & 0xFFFFFFFF
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["code"] == 0 and result["restarts"] >= 1 and result["calls"] > 0
    assert not os.path.exists(f"/dev/shm/{name}")


def test_a_worker_that_keeps_dying_stops_the_run_with_a_message() -> None:
    with Core.create() as core:
        supervisor = Supervisor(core, crash, 2, max_restarts=2, backoff=0.01)
        started = time.monotonic()
        assert supervisor.run(duration=60) == 1
        assert time.monotonic() - started < 30
        assert supervisor.failure is not None and "died 3 times" in supervisor.failure


def test_sigterm_leaves_no_process_and_no_segment_behind() -> None:
    name = f"bot4-term-{os.getpid()}"
    proc = launch(name, 60.0, 3)
    idents = worker_idents(name, 3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["code"] == 0
    time.sleep(0.2)
    assert not any(is_alive(ident) for ident in idents), "a worker outlived its supervisor"
    assert not os.path.exists(f"/dev/shm/{name}")


def test_bad_arguments() -> None:
    with Core.create() as core:
        with pytest.raises(ConfigError):
            Supervisor(core, count_calls, 0)
        with pytest.raises(ConfigError):
            Supervisor(core, "not a function", 1)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            Supervisor(core, count_calls, 1, backoff=-1)
