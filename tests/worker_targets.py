"""Worker targets for the supervisor tests (importable by spawned processes)."""

from __future__ import annotations

import json
import sys

from bot4 import BreakerConfig, Core, Supervisor, WorkerContext
from tests.helpers import fail


def count_calls(context: WorkerContext) -> None:
    breaker = context.core.breaker("venue")
    while context.running():
        with breaker.call():
            pass
        context.sleep(0.01)


def crash(context: WorkerContext) -> None:
    raise RuntimeError("this worker always fails")


def supervise(name: str, duration: float, n: int) -> None:
    """Run a supervisor in this process (the main thread) and print its result as JSON."""
    with Core.create(name) as core:
        supervisor = Supervisor(core, count_calls, n, backoff=0.05)
        code = supervisor.run(duration)
        print(
            json.dumps({"code": code, "restarts": supervisor.restarts, "calls": core.breaker("venue").snapshot().calls})
        )
    sys.stdout.flush()


if __name__ == "__main__":
    supervise(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))


def read_shared_clock(context: WorkerContext) -> None:
    """Trip a breaker open for 10 s of the worker core's clock: its deadline shows which clock that was."""
    fail(context.core.breaker("clocked", BreakerConfig(consecutive_failures=1, open_seconds=10)))
