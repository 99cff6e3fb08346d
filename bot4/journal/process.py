"""The recorder as a supervised process: started, watched and restarted by the process that asks for it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

from bot4.errors import ConfigError
from bot4.journal.recorder import EXIT_NO_SEGMENT

__all__ = ["RecorderProcess"]

log = logging.getLogger("bot4.journal")
_RESTART_MIN, _RESTART_MAX = 0.1, 5.0


class RecorderProcess:
    """Runs ``python -m bot4.journal SEGMENT PATH`` and restarts it whenever it dies.

    A recorder that dies (killed, out of memory) is started again after a pause that grows
    while it keeps dying (0.1 s to 5 s); meanwhile new risk is refused (its heartbeat stops).
    A restarted recorder goes on from the last batch it made durable. One that exits by
    itself in order (its segment removed, its supervisor gone) is not restarted, and new
    risk stays refused; one that cannot open the journal now (read-only) is tried again. It runs in a session of its own (a Ctrl-C at the desk's terminal is the desk's
    to handle), and stops when the process that started it is gone.

    Args:
        segment: the segment's name.
        path: the journal database.
        synchronous: as for :class:`bot4.journal.JournalStore`.
        max_bytes: a size cap for the journal, or None.
    """

    def __init__(
        self, segment: str, path: str | os.PathLike[str], *, synchronous: str = "FULL", max_bytes: int | None = None
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError("synchronous", f"must be 'FULL', 'NORMAL' or 'EXTRA', got {synchronous!r}")
        self._args = [
            sys.executable,
            "-m",
            "bot4.journal",
            segment,
            os.fspath(path),
            "--synchronous",
            synchronous,
            "--exit-with-parent",
        ]
        if max_bytes is not None:
            self._args += ["--max-bytes", str(int(max_bytes))]
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.restarts = 0
        """How many times the recorder was started again after it died."""

    @property
    def pid(self) -> int | None:
        """The recorder's PID now (None: not running)."""
        proc = self._proc
        return None if proc is None or proc.poll() is not None else proc.pid

    def start(self) -> None:
        """Start the recorder and its supervision (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._spawn()
            self._thread = threading.Thread(target=self._supervise, name="bot4-recorder-supervisor", daemon=True)
            self._thread.start()

    def _spawn(self) -> None:
        # a session of its own: a Ctrl-C at the desk's terminal is the desk's to handle, not the recorder's
        self._proc = subprocess.Popen(self._args, stdin=subprocess.DEVNULL, close_fds=True, start_new_session=True)

    def _supervise(self) -> None:
        pause = _RESTART_MIN
        while not self._stop.is_set():
            proc = self._proc
            assert proc is not None
            while proc.poll() is None:
                if self._stop.wait(0.05):
                    return
            with self._lock:
                if self._stop.is_set():
                    return
                if proc.returncode in (0, EXIT_NO_SEGMENT):  # stopped in order, or its segment is gone
                    log.error(
                        "the journal's recorder (pid %d) exited with %s: not restarted", proc.pid, proc.returncode
                    )
                    return
                log.error(
                    "the journal's recorder (pid %d) exited with %s; restarting in %.1fs",
                    proc.pid,
                    proc.returncode,
                    pause,
                )
            if self._stop.wait(pause):
                return
            with self._lock:
                if self._stop.is_set():
                    return
                self._spawn()
                self.restarts += 1
            pause = min(_RESTART_MAX, pause * 2)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the recorder (it writes what was appended up to then) and its supervision."""
        with self._lock:
            self._stop.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("the journal's recorder (pid %d) did not stop in %.0fs; killed", proc.pid, timeout)
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout)
