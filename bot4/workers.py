"""Worker processes: start n, keep them running, stop them cleanly.

The supervisor owns the core (it created the segment); each worker is a fresh process
(spawn) that attaches to the segment by name and runs ``target(context)``. A worker that
dies is restarted with backoff; one that keeps dying stops the run with a clear message
and a non-zero exit code. SIGINT and SIGTERM stop every worker, and the owner then
unlinks the segment: nothing is left behind.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from bot4.clock import Clock
from bot4.core import Core
from bot4.errors import ConfigError

__all__ = ["Supervisor", "WorkerContext", "run_workers"]

log = logging.getLogger("bot4.workers")


@dataclass
class WorkerContext:
    """What a worker's target gets: its core (attached), its index, and the stop signal."""

    core: Core
    index: int
    """0 .. n-1; a restarted worker keeps its index."""
    incarnation: int
    """How many times this index was started before (0 the first time)."""
    _stop: Any = field(repr=False)

    @property
    def stopping(self) -> bool:
        """Whether the supervisor asked every worker to stop."""
        return bool(self._stop.value)

    def running(self) -> bool:
        """Heartbeat, then whether to go on: ``while context.running(): ...``."""
        self.core.heartbeat()
        return not self._stop.value

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds``, waking within 10 ms of a stop; returns whether to go on."""
        deadline = time.monotonic() + seconds
        while not self._stop.value:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(0.01, left))
        return False


def _worker_main(
    name: str,
    target: Callable[[WorkerContext], None],
    index: int,
    incarnation: int,
    stop: Any,
    fleet: dict[str, Any] | None = None,
    clock: Clock | None = None,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when workers stop
    # a core linked to a fleet gives its workers links of their own to the same desk
    if fleet is None:
        core = Core.attach(name, clock=clock)
    else:
        core = Core.connect(name=name, attach=True, clock=clock, **fleet)
    with core:
        target(WorkerContext(core=core, index=index, incarnation=incarnation, _stop=stop))


class Supervisor:
    """Runs ``n`` workers of ``target`` against ``core`` (which the caller created).

    Args:
        core: the owning core; workers attach to ``core.name``.
        target: a picklable top-level function taking a :class:`WorkerContext`.
        n: how many workers.
        max_restarts: restarts of one worker allowed within ``restart_window`` seconds;
            one more stops the run (exit code 1).
        backoff: seconds before the first restart of a worker, doubling to ``max_backoff``.
        clock: the clock of the workers' cores (picklable, e.g. a :class:`bot4.SharedClock`);
            default: the host's monotonic clock.
    """

    def __init__(
        self,
        core: Core,
        target: Callable[[WorkerContext], None],
        n: int,
        *,
        max_restarts: int = 5,
        restart_window: float = 60.0,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError("n", f"expected an integer >= 1, got {n!r}")
        if not callable(target):
            raise ConfigError("target", f"expected a function, got {target!r}")
        for field_name, value in (
            ("backoff", backoff),
            ("max_backoff", max_backoff),
            ("restart_window", restart_window),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(field_name, f"expected seconds >= 0, got {value!r}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ConfigError("max_restarts", f"expected an integer >= 0, got {max_restarts!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("clock", f"expected a bot4.Clock, got {clock!r}")
        self.core = core
        self.clock = clock
        self.target = target
        self.n = n
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._ctx = mp.get_context("spawn")
        # A lock-free shared flag: a worker SIGKILLed while holding a multiprocessing lock
        # (an Event has one) would leave everyone else waiting on it forever.
        self._stop = self._ctx.RawValue("b", 0)
        self._procs: list[Any] = [None] * n
        self._incarnations = [0] * n
        self._deaths: list[deque[float]] = [deque() for _ in range(n)]
        self._due: list[float | None] = [None] * n
        self.restarts = 0
        """Restarts so far, all workers."""
        self.signaled: str | None = None
        """The signal that stopped the run (``"SIGINT"``, ``"SIGTERM"``), None if none did."""
        self.failure: str | None = None
        """Why the run stopped early, if it did."""

    def _start(self, index: int) -> None:
        proc = self._ctx.Process(
            target=_worker_main,
            args=(
                self.core.name,
                self.target,
                index,
                self._incarnations[index],
                self._stop,
                None if self.core.fleet is None else self.core.fleet.connect_args(),
                self.clock,
            ),
            name=f"bot4-worker-{index}",
            daemon=True,
        )
        proc.start()
        self._procs[index] = proc
        self._incarnations[index] += 1

    def stop(self) -> None:
        """Ask every worker to stop (they see it at their next ``context.running()``)."""
        self._stop.value = 1

    def run(self, duration: float | None = None, *, on_tick: Callable[[], None] | None = None) -> int:
        """Start the workers and supervise them until they finish, ``duration`` passes, or a signal.

        ``on_tick`` is called every ~50 ms in this process (a live view, say). Returns 0 on a
        clean end, 1 when a worker kept dying (see :attr:`failure`).
        """
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.signaled = signal.Signals(signum).name
            log.info("signal %s: stopping workers", self.signaled)
            self.stop()

        for sig in previous:
            signal.signal(sig, on_signal)
        try:
            for index in range(self.n):
                self._start(index)
            deadline = None if duration is None else time.monotonic() + duration
            while not self._stop.value:
                if deadline is not None and time.monotonic() >= deadline:
                    self.stop()
                    break
                if all(p is not None and not p.is_alive() and p.exitcode == 0 for p in self._procs):
                    break  # every worker finished its work
                self._watch()
                if on_tick is not None:
                    on_tick()
                time.sleep(0.05)
            return 1 if self.failure else 0
        finally:
            self.stop()
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _watch(self) -> None:
        now = time.monotonic()
        for index, proc in enumerate(self._procs):
            due = self._due[index]
            if due is not None:
                if now >= due:
                    self._due[index] = None
                    self.restarts += 1
                    self._start(index)
                continue
            if proc is None or proc.is_alive() or proc.exitcode == 0:
                continue
            deaths = self._deaths[index]
            deaths.append(now)
            while deaths and now - deaths[0] > self.restart_window:
                deaths.popleft()
            if len(deaths) > self.max_restarts:
                self.failure = (
                    f"worker {index} died {len(deaths)} times within {self.restart_window:g}s "
                    f"(last exit code {proc.exitcode}); stopping"
                )
                log.error(self.failure)
                self.stop()
                return
            delay = min(self.max_backoff, self.backoff * 2 ** (len(deaths) - 1))
            log.warning("worker %d exited with %s; restarting in %.2fs", index, proc.exitcode, delay)
            self._due[index] = now + delay

    def _shutdown(self, grace: float = 5.0) -> None:
        deadline = time.monotonic() + grace
        for proc in self._procs:
            if proc is not None:
                proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc is not None and proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc is not None and proc.is_alive():
                proc.kill()
                proc.join(1.0)


def run_workers(
    target: Callable[[WorkerContext], None], n: int, *, core: Core, duration: float | None = None, **options: Any
) -> int:
    """Run ``n`` workers of ``target`` on ``core`` under a :class:`Supervisor`; return its exit code."""
    return Supervisor(core, target, n, **options).run(duration)
